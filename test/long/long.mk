# test/long/long.mk: the long checks, about 10 minutes with the defaults.
# Everything they need is in this folder:
#
#   fuzz      each libFuzzer harness of fuzz/ (with its seed corpus) for
#             FUZZ_SECONDS (default 60)
#   soak      soak.pl: 8 clients for SOAK_SECONDS (default 180)
#   valgrind  the regression suite once against a server under valgrind
#             (valgrind.sh), failing on any report from the extension
#
# A make file added to the top Makefile (PGXS: the soak is one of its TAP
# runs), from the top directory, with the extension installed:
#
#   make -f Makefile -f test/long/long.mk check-long
#   make -f Makefile -f test/long/long.mk check-long SOAK_SECONDS=600 FUZZ_SECONDS=300
#   make -f Makefile -f test/long/long.mk check-long-fuzz | check-long-soak | check-long-valgrind
#
# PostgreSQL refuses to run as root, so these refuse too: run them as a user
# that can write the tree.  `bash scripts/test.sh --long` does it all as
# root: installs the extension, copies the tree, gives the copy to postgres
# and runs check-long there as postgres.

LONG_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
include $(LONG_DIR)/fuzz/fuzz.mk

SOAK_SECONDS ?= 180

.PHONY: check-long check-long-not-root check-long-fuzz check-long-soak check-long-valgrind

check-long: check-long-fuzz check-long-soak check-long-valgrind
	@echo "check-long: fuzz, soak and valgrind passed"

check-long-not-root:
	@if [ "$$(id -u)" = 0 ]; then \
		echo "check-long: not as root (PostgreSQL refuses it); as root, run bash scripts/test.sh --long" >&2; \
		exit 1; \
	fi

check-long-fuzz: check-long-not-root fuzz

# PGXS's TAP runner (PostgreSQL::Test::Cluster), on the soak only
check-long-soak: PROVE_TESTS = $(LONG_DIR)/soak.pl
check-long-soak: export SOAK_SECONDS := $(SOAK_SECONDS)
check-long-soak: check-long-not-root
	$(prove_installcheck)

check-long-valgrind: check-long-not-root
	$(LONG_DIR)/valgrind.sh '$(CURDIR)/tmp_check/valgrind'
