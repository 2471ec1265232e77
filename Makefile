# invitetomedia: PGXS build.  See README.md for the test and demo commands.

EXTENSION = invitetomedia
MODULE_big = invitetomedia
OBJS = \
	invitetomedia.o \
	itm_guest.o \
	itm_invite.o \
	itm_mail.o \
	itm_plan.o \
	itm_settings.o \
	itm_tenant.o \
	itm_direct.o \
	itm_relay.o \
	src/itm_text.o
PGFILEDESC = "invitetomedia - invite links to media"

# the 1.0 install script plus every update script, so old versions install.
# The globs look in $(srcdir) (set by PGXS below; "=" defers them until
# then), so that a build in another directory (VPATH, as Debian's
# pg_buildext does) finds the same files.
DATA = invitetomedia--1.0.sql $(notdir $(wildcard $(srcdir)/invitetomedia--*--*.sql))

# One regression file per feature, picked up by a glob.
TESTS = $(wildcard $(srcdir)/sql/*.sql)
REGRESS = $(patsubst %.sql,%,$(notdir $(TESTS)))
REGRESS_OPTS = --load-extension=pgcrypto --load-extension=$(EXTENSION)

ISOLATION = $(patsubst %.spec,%,$(notdir $(wildcard $(srcdir)/specs/*.spec)))
ISOLATION_OPTS = --load-extension=pgcrypto --load-extension=$(EXTENSION)

TAP_TESTS = 1

# The build is warning-free; keep it so (the test command and CI add
# -Werror with COPT=-Werror; the Makefile does not, so that a newer
# compiler's new warning does not break a user's or a packager's build).
# The server headers are included as system headers: a few of their inline
# functions trip -Wextra.
# A call of a function the server's headers do not declare (one that a
# newer major removed) is an error always: as a warning it builds, and the
# server then refuses to load the library.
PG_CFLAGS = -Wall -Wextra -Werror=implicit-function-declaration
# The version in the library's magic block (pg_get_loaded_modules(), 18):
# the control file's default_version, the newest the library serves.
ITM_VERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(dir $(firstword $(MAKEFILE_LIST)))invitetomedia.control)
PG_CPPFLAGS = -I$(srcdir) -isystem $(shell $(PG_CONFIG) --includedir-server) \
	-DITM_VERSION='"$(ITM_VERSION)"'


PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track headers: every object depends on all of ours, so
# that a changed struct never leaves an object built against the old one.
$(OBJS): $(wildcard $(srcdir)/*.h) $(srcdir)/src/itm_text.h

# A build in another directory (VPATH, as pg_buildext's build-<version>/)
# writes src/itm_text.o there: src/ must exist.
ifneq ($(srcdir),.)
$(shell mkdir -p src)
endif

# The email sender (README, "The sender") is a program of its own, with
# its own Makefile and libraries: make -C sender.  The long checks (soak,
# fuzzing, valgrind) are in test/long/.

# the benchmark (README, "Performance"); bench/run takes options
.PHONY: bench
bench:
	bench/run $(BENCH_OPTS)

# the PGXN distribution: make dist (dist.mk)
include $(srcdir)/dist.mk
