# sender/sender.mk - builds invitetomedia-sender, the outbox's email sender
#
# Included from the top-level (PGXS) Makefile:
#
#   include sender/sender.mk
#   all: invitetomedia-sender
#   install: sender-install
#   clean: sender-clean
#
# Targets: invitetomedia-sender (at the top of the tree), sender-install
# (into $(DESTDIR)$(bindir), PostgreSQL's bindir under PGXS), sender-clean.
# Needs libpq and GMime 3 (Debian: libpq-dev libgmime-3.0-dev pkg-config).

# This fragment must not become the default goal wherever it is included.
SENDER_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

SENDER_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
SENDER_PROGRAM := invitetomedia-sender
SENDER_SRCS := $(SENDER_DIR)/invitetomedia-sender.c $(SENDER_DIR)/message.c \
	$(SENDER_DIR)/spawn.c
SENDER_HDRS := $(SENDER_DIR)/message.h $(SENDER_DIR)/spawn.h

SENDER_PG_CONFIG ?= $(if $(PG_CONFIG),$(PG_CONFIG),pg_config)
SENDER_PKG_CONFIG ?= pkg-config
SENDER_CC ?= $(if $(CC),$(CC),cc)
SENDER_OPTFLAGS ?= -O2 -g
SENDER_WARNINGS ?= -Wall -Wextra -Werror
SENDER_CPPFLAGS = -I$(shell $(SENDER_PG_CONFIG) --includedir) \
	$(shell $(SENDER_PKG_CONFIG) --cflags gmime-3.0)
SENDER_CFLAGS = -std=gnu11 $(SENDER_OPTFLAGS) $(SENDER_WARNINGS)
SENDER_LDFLAGS = -L$(shell $(SENDER_PG_CONFIG) --libdir)
SENDER_LIBS = -lpq $(shell $(SENDER_PKG_CONFIG) --libs gmime-3.0)
SENDER_BINDIR ?= $(if $(bindir),$(bindir),$(shell $(SENDER_PG_CONFIG) --bindir))

$(SENDER_PROGRAM): $(SENDER_SRCS) $(SENDER_HDRS)
	$(SENDER_CC) $(SENDER_CPPFLAGS) $(SENDER_CFLAGS) -o $@ $(SENDER_SRCS) \
		$(SENDER_LDFLAGS) $(SENDER_LIBS)

.PHONY: sender-install sender-clean
sender-install: $(SENDER_PROGRAM)
	install -d '$(DESTDIR)$(SENDER_BINDIR)'
	install -m 755 $(SENDER_PROGRAM) '$(DESTDIR)$(SENDER_BINDIR)/$(SENDER_PROGRAM)'

sender-clean:
	rm -f $(SENDER_PROGRAM)

.DEFAULT_GOAL := $(SENDER_SAVED_DEFAULT_GOAL)
