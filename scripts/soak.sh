#!/usr/bin/env bash
# The long reliability run for release checks (docs/reliability.md): the reliability
# suite at soak scale (≥ 1 M sign-ups, ≥ 20 kills per kill loop, longer load), then
# every fuzz target for longer. Prints the figures at the end and keeps them in
# target/reliability-figures.jsonl.
#
#   scripts/soak.sh                       defaults below
#   MILLRACE_REL_SIGNUPS=2000000 MILLRACE_REL_KILLS=40 scripts/soak.sh
#
# Knobs (environment; CI defaults in brackets, soak defaults after):
#   MILLRACE_REL_SIGNUPS   sign-ups through the kill loop     [80000]  1000000
#   MILLRACE_REL_LINES     text lines through word count      [20000]  100000
#   MILLRACE_REL_KILLS     kill -9s per kill loop             [20]     25
#   MILLRACE_REL_KILL_MAX_MS  longest run before its kill     [2500]   6000
#   MILLRACE_REL_LOAD_SECS seconds of over-fast producing     [20]     120
#   MILLRACE_REL_KAFKA_RECORDS records per Kafka fault test   [200000] 1000000
#   MILLRACE_REL_SEED      repeat a run's random choices
#   FUZZ_SECONDS           per fuzz target                    300
# The Kafka cluster tests need MILLRACE_TEST_CLUSTER_BOOTSTRAP (scripts/kafka.sh
# start-cluster prints it); this script starts the cluster when it is unset.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${MILLRACE_CACHE:-$HOME/.cache/millrace}/target}"
export MILLRACE_REL_SOAK=1
FIGURES="$CARGO_TARGET_DIR/reliability-figures.jsonl"
mkdir -p "$CARGO_TARGET_DIR"
: >"$FIGURES"
export MILLRACE_REL_FIGURES="$FIGURES"

started=""
cleanup() { if [ -n "$started" ]; then scripts/kafka.sh stop cluster || true; fi; }
trap cleanup EXIT
if [ -z "${MILLRACE_TEST_CLUSTER_BOOTSTRAP:-}" ]; then
  scripts/kafka.sh fetch
  MILLRACE_TEST_CLUSTER_BOOTSTRAP="$(scripts/kafka.sh start-cluster | tail -n1)"
  export MILLRACE_TEST_CLUSTER_BOOTSTRAP
  started=1
fi

LOG="$CARGO_TARGET_DIR/reliability-soak.log"
rc=0
cargo test --release -p millrace --features kafka --test reliability -- --test-threads 2 --nocapture \
  >"$LOG" 2>&1 || rc=$?
grep -E '^(test |reliability figure|test result)' "$LOG" || true
[ "$rc" = 0 ] || { echo "soak: reliability suite FAILED (log: $LOG)"; exit 1; }
scripts/fuzz.sh "${FUZZ_SECONDS:-300}"
echo "== figures ($FIGURES)"
cat "$FIGURES"
