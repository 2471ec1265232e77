# invitetomedia: PGXS build.  See README.md for the test and demo commands.

EXTENSION = invitetomedia
MODULE_big = invitetomedia
OBJS = \
	invitetomedia.o \
	src/itm_text.o
PGFILEDESC = "invitetomedia - invite links to media"

# the 1.0 install script plus every update script, so old versions install
DATA = invitetomedia--1.0.sql $(wildcard invitetomedia--*--*.sql)

# One regression file per feature, picked up by a glob.
TESTS = $(wildcard sql/*.sql)
REGRESS = $(patsubst sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --load-extension=pgcrypto --load-extension=$(EXTENSION)

ISOLATION = $(patsubst specs/%.spec,%,$(wildcard specs/*.spec))
ISOLATION_OPTS = --load-extension=pgcrypto --load-extension=$(EXTENSION)

TAP_TESTS = 1

# The build is warning-free; keep it so.  The server headers are included
# as system headers: a few of their inline functions trip -Wextra.
PG_CFLAGS = -Wall -Wextra -Werror
PG_CPPFLAGS = -I$(srcdir) -isystem $(shell $(PG_CONFIG) --includedir-server)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# the email sender program (README, "The sender")
include sender/sender.mk
all: invitetomedia-sender
install: sender-install
clean: sender-clean

# long tests (soak, fuzzing, valgrind): make check-long
include test/long.mk

# the benchmark (README, "Performance"); bench/run takes options
.PHONY: bench
bench:
	bench/run $(BENCH_OPTS)
