# test/long.mk: the long tests, `make check-long` (included by the top
# Makefile after PGXS).  About 10 minutes with the defaults:
#
#   fuzz      each libFuzzer harness of fuzz/ for FUZZ_SECONDS (default 60)
#   soak      t-long/soak.pl: 8 clients for SOAK_SECONDS (default 180)
#   valgrind  the regression suite once against a server under valgrind
#             (test/valgrind.sh), failing on any report from the extension
#
# PostgreSQL refuses to run as root.  Run as root, check-long installs the
# extension, copies the tree to LONG_COPY, gives it to LONG_USER (postgres)
# and runs the steps there as that user; run as any other user it runs them
# in place (the extension must then be installed already).
#
#   make check-long                            # everything
#   make check-long SOAK_SECONDS=600 FUZZ_SECONDS=300
#   make check-long-fuzz | check-long-soak | check-long-valgrind   # one step

LONG_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
include $(dir $(LONG_MK_DIR))fuzz/fuzz.mk

SOAK_SECONDS ?= 180
LONG_USER ?= postgres
LONG_COPY ?= /tmp/invitetomedia-check-long
# (until the top Makefile includes this file, name both files to make)
LONG_MAKEFILES := $(if $(shell grep -s -l 'test/long.mk' Makefile),,-f Makefile -f test/long.mk)

.PHONY: check-long check-long-steps check-long-fuzz check-long-soak check-long-valgrind

ifeq ($(shell id -u),0)
check-long:
	$(MAKE) install
	rm -rf '$(LONG_COPY)'
	cp -a . '$(LONG_COPY)'
	rm -rf '$(LONG_COPY)/tmp_check' '$(LONG_COPY)/fuzz/fuzz_work'
	chown -R $(LONG_USER) '$(LONG_COPY)'
	cd '$(LONG_COPY)' && runuser -u $(LONG_USER) -- $(MAKE) check-long-steps \
		SOAK_SECONDS=$(SOAK_SECONDS) FUZZ_SECONDS=$(FUZZ_SECONDS) $(LONG_MAKEFILES)
else
check-long: check-long-steps
endif

check-long-steps: check-long-fuzz check-long-soak check-long-valgrind
	@echo "check-long: fuzz, soak and valgrind passed"

check-long-fuzz: fuzz

# PGXS's TAP runner (PostgreSQL::Test::Cluster), on the soak only
check-long-soak: PROVE_TESTS = t-long/soak.pl
check-long-soak: export SOAK_SECONDS := $(SOAK_SECONDS)
check-long-soak:
	$(prove_installcheck)

check-long-valgrind:
	$(LONG_MK_DIR)/valgrind.sh '$(CURDIR)/tmp_check/valgrind'
