# dist.mk: the PGXN distribution, `make dist` (README, "Install from PGXN").
# Included by the top Makefile; on its own:
#
#   make -f Makefile -f dist.mk dist
#   make dist DIST_DIR=/tmp/out DIST_REF=v1.1   # elsewhere, another commit
#
# Writes $(DIST_DIR)/NAME-VERSION.zip with `git archive` of the commit
# DIST_REF (default HEAD), every path under NAME-VERSION/ as PGXN Manager
# expects. NAME and VERSION are META.json's "name" and "version". Build
# products and test output are never committed (.gitignore), so they are
# never in the archive; what .gitattributes marks export-ignore (the
# repository's own tooling: CI, benchmark, Debian packaging, the release
# check) stays out too. Uncommitted changes are not in it: commit first.
#
# It refuses to write anything when META.json's version is not the control
# file's default_version read as a semantic version (PGXN versions have
# three parts: default_version '1.1' is "1.1.0", '1.0.1' is "1.0.1").
# t/100_meta.pl checks the whole set: META.json, the control file, the
# install and update scripts, debian/changelog and this archive.

ifndef ITM_DIST_MK
ITM_DIST_MK := 1

DIST_DIR ?= .
DIST_REF ?= HEAD
DIST_META = META.json
# the name of a META.json key's value (a string at the top level)
DIST_META_KEY = perl -MJSON::PP -0777 -ne 'print decode_json($$_)->{$(1)}' $(DIST_META)

.PHONY: dist
dist:
	@set -e; \
	name=$$($(call DIST_META_KEY,name)); \
	version=$$($(call DIST_META_KEY,version)); \
	test -n "$$name" && test -n "$$version" || \
		{ echo "dist: $(DIST_META) has no name or no version" >&2; exit 1; }; \
	control=$$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$$name.control"); \
	semver=$$(echo "$$control" | awk -F. '{ printf "%d.%d.%d", $$1, $$2, $$3 }'); \
	if [ "$$version" != "$$semver" ]; then \
		echo "dist: $(DIST_META) says version $$version, $$name.control default_version '$$control' ($$semver)" >&2; \
		exit 1; \
	fi; \
	git diff --quiet $(DIST_REF) -- 2>/dev/null || \
		echo "dist: warning: uncommitted changes are not in the archive (made from $(DIST_REF))" >&2; \
	zip="$(DIST_DIR)/$$name-$$version.zip"; \
	git archive --format zip --prefix="$$name-$$version/" -o "$$zip" $(DIST_REF); \
	echo "dist: wrote $$zip"

endif
