# scripts/pg_major.sh: the PostgreSQL major version that the scripts
# install, build against and test on (sourced by setup.sh, throwaway.sh,
# bench/run).  The one place it is written; to try another version:
#   PG_MAJOR=16 bash scripts/test.sh
: "${PG_MAJOR:=15}"
export PG_MAJOR
