# test/long/fuzz/fuzz.mk: libFuzzer harnesses over the pure C of
# src/itm_text.c.  From the top directory:
#
#   make -f test/long/fuzz/fuzz.mk fuzz-build            # build test/long/fuzz/fuzz_{token,email,render}
#   make -f test/long/fuzz/fuzz.mk fuzz FUZZ_SECONDS=60  # run each for FUZZ_SECONDS
#
# Included by test/long/long.mk (check-long).  The seed corpus in
# corpus/<name>/ is read-only here: what libFuzzer finds goes to
# fuzz_work/<name>/ (ignored by git), crash reproducers to
# fuzz_work/<name>-crash-*.  Each run prints libFuzzer's final stats;
# the recipe fails on any crash, sanitizer report or broken property.

FUZZ_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
# the extension's sources, three levels up
FUZZ_SRC := $(FUZZ_DIR)/../../../src
FUZZ_CC ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS ?= -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer -Wall -Wextra -Werror
FUZZ_TARGETS = token email render
FUZZ_BINS = $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_TARGETS))
FUZZ_WORK = $(FUZZ_DIR)/fuzz_work

.PHONY: fuzz-build fuzz fuzz-clean

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_SRC)/itm_text.c $(FUZZ_SRC)/itm_text.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I$(FUZZ_SRC) $< $(FUZZ_SRC)/itm_text.c -o $@

# (not .PHONY: make skips pattern rules for phony targets)
# One harness: FUZZ_SECONDS of fuzzing, then a line
#   fuzz <name>: <executions> executions, no crash
fuzz-run-%: $(FUZZ_DIR)/fuzz_%
	@mkdir -p $(FUZZ_WORK)/$*
	@echo "fuzz $*: running for $(FUZZ_SECONDS) s"
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(FUZZ_DIR)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		-timeout=10 -rss_limit_mb=2048 -max_len=4096 \
		-artifact_prefix=$(FUZZ_WORK)/$*-crash- \
		$(FUZZ_WORK)/$* $(FUZZ_DIR)/corpus/$* > $(FUZZ_WORK)/$*.log 2>&1; \
	rc=$$?; \
	execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_WORK)/$*.log); \
	if [ $$rc -ne 0 ] || [ -z "$$execs" ]; then \
		tail -n 60 $(FUZZ_WORK)/$*.log; \
		echo "fuzz $*: FAILED (exit $$rc), see $(FUZZ_WORK)/$*.log"; exit 1; \
	fi; \
	echo "fuzz $*: $$execs executions, no crash"

fuzz: $(addprefix fuzz-run-,$(FUZZ_TARGETS))

fuzz-clean:
	rm -rf $(FUZZ_BINS) $(FUZZ_WORK)
