#!/usr/bin/env bash
# Fuzzes millrace's decoders and parsers with cargo-fuzz (libFuzzer), a bounded time each:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default 20 s; every target)
#   MILLRACE_BIN=path/to/millrace scripts/fuzz.sh   (reuse a built binary for seeds)
#
# Targets (fuzz/fuzz_targets/): decode_batches (the store's batch decoder),
# store_recovery (opening a data directory whose segment bytes are the input),
# pipeline_parse (the pipeline-file parser and planner), kafka_request (the Kafka
# server's request decoder and, for produce requests, its record batch decoder).
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
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode_batches store_recovery pipeline_parse kafka_request)
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
  mkdir -p fuzz/corpus/decode_batches fuzz/corpus/store_recovery fuzz/corpus/pipeline_parse \
    fuzz/corpus/kafka_request
  # Kafka requests as clients send them: Metadata v12 for one topic, and Produce v9
  # with one uncompressed record batch (CRC-32C and all).
  python3 - fuzz/corpus/kafka_request <<'PY'
import struct, sys
out = sys.argv[1]
def crc32c(b):
    crc = 0xffffffff
    for x in b:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff
def uvar(n):
    o = b""
    while n >= 0x80:
        o += bytes([(n & 0x7f) | 0x80]); n >>= 7
    return o + bytes([n])
def svar(n):
    return uvar((n << 1) ^ (n >> 63))
def header(key, version):
    return struct.pack(">hhih", key, version, 1, 4) + b"seed" + b"\x00"
topic = b"seed-topic"
meta = header(3, 12) + uvar(2) + b"\x00" * 16 + uvar(len(topic) + 1) + topic + b"\x00" + b"\x01\x00\x00"
open(out + "/metadata", "wb").write(meta)
record = b"\x00" + svar(0) + svar(0) + svar(-1) + svar(5) + b"hello" + uvar(0)
record = svar(len(record)) + record
body = struct.pack(">hiqqqhii", 0, 0, 1000, 1000, -1, -1, -1, 1) + record
batch_tail = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(body)) + body
batch = struct.pack(">qi", 0, len(batch_tail)) + batch_tail
part = struct.pack(">i", 0) + uvar(len(batch) + 1) + batch + b"\x00"
topics = uvar(2) + uvar(len(topic) + 1) + topic + uvar(2) + part + b"\x00"
produce = header(0, 9) + b"\x00" + struct.pack(">hi", -1, 5000) + topics + b"\x00"
open(out + "/produce", "wb").write(produce)
PY
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
