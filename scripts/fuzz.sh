#!/usr/bin/env bash
# Fuzzes millrace's decoders and parsers with cargo-fuzz (libFuzzer), a bounded time each:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default 20 s; every target)
#   MILLRACE_BIN=path/to/millrace scripts/fuzz.sh   (reuse a built binary for seeds)
#
# Targets (fuzz/fuzz_targets/): decode_batches (the store's batch decoder),
# store_recovery (opening a data directory whose segment bytes are the input),
# pipeline_parse (the pipeline-file parser and planner).
#
# Seeds come from the real thing: segment files written by `millrace produce` and the
# example pipeline files. Prints the executions per target (and appends them as JSON
# to $MILLRACE_REL_FIGURES when set). A crash fails the script and leaves the input in
# fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/<what-it-found> and the
# reliability suite (fuzz_regressions_stay_fixed) replays it from then on.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain; without
# nightly it tries stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
SECONDS_EACH="${1:-20}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode_batches store_recovery pipeline_parse)
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/fuzz}"

say() { printf 'fuzz.sh: %s\n' "$*" >&2; }

command -v cargo-fuzz >/dev/null 2>&1 || { say "installing cargo-fuzz"; cargo install -q cargo-fuzz; }
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
else
  say "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi

seed() {
  # Seeds: real segments and pipeline files.
  local work millrace
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  mkdir -p fuzz/corpus/decode_batches fuzz/corpus/store_recovery fuzz/corpus/pipeline_parse
  cp examples/*.yaml fuzz/corpus/pipeline_parse/ 2>/dev/null || true
  # MILLRACE_BIN: a built millrace to write real segments with (else it is built).
  millrace="${MILLRACE_BIN:-}"
  if [ -z "$millrace" ]; then
    local seed_target="${SEED_TARGET_DIR:-$ROOT/target}"
    if cargo build -q -p millrace --target-dir "$seed_target"; then
      millrace="$seed_target/debug/millrace"
    else
      say "cannot build millrace for seeds; fuzzing from the example files only"
      return 0
    fi
  fi
  export MILLRACE_DATA="$work/data"
  "$millrace" topics create --topic t --partitions 1 >/dev/null
  printf '{"a":1}\nhello\n\n' | "$millrace" produce --topic t
  printf 'k1\tv1\nk2\tv2\n' | "$millrace" produce --topic t --property parse.key=true
  local seg="$work/data/topics/t/0/00000000000000000000.log"
  cp "$seg" fuzz/corpus/decode_batches/real-segment
  { printf '\x00'; cat "$seg"; } >fuzz/corpus/store_recovery/real-segment
  { printf '\x01'; cat "$seg"; } >fuzz/corpus/store_recovery/real-segment-and-journal
  { printf '\x02'; cat "$seg"; } >fuzz/corpus/store_recovery/real-sealed-segment
}

seed
cd fuzz
status=0
for t in "${TARGETS[@]}"; do
  say "$t for ${SECONDS_EACH}s"
  log="$(mktemp)"
  if "${FUZZ[@]}" run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
    tail -n 40 "$log" >&2
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  execs="${execs:-$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)}"
  echo "fuzz $t: ${execs:-?} executions in ${SECONDS_EACH}s: $result"
  if [ -n "${MILLRACE_REL_FIGURES:-}" ]; then
    printf '{"test":"fuzz_%s","executions":%s,"seconds":%s,"result":"%s"}\n' \
      "$t" "${execs:-0}" "$SECONDS_EACH" "$result" >>"$MILLRACE_REL_FIGURES"
  fi
  rm -f "$log"
done
exit $status
