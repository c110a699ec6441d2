#!/usr/bin/env bash
# Kafka's own perf tools against `millrace serve` and against Apache Kafka, in the
# same run, alternating: records/s, MB/s and latency of kafka-producer-perf-test, and
# records/s of kafka-consumer-perf-test, with the ratio millrace/Kafka, plus each
# server's peak resident memory and the CPU seconds each server spent on a round
# (producing and consuming).
#
# kafka-consumer-perf-test reports two rates: fetch/s (its fetch.nMsg.sec: records over
# the time spent fetching) and consume/s (its nMsg.sec: over the whole run, the
# consumer group's first join included). The join waits group.initial.rebalance.delay.ms
# (Kafka's default 3 s; scripts/kafka.sh's broker sets 0): `millrace serve` is started
# with the Kafka broker's value, read from it, so both rates compare like with like.
#
#   scripts/serve-vs-kafka.sh [RECORDS] [RECORD_SIZE] [ACKS] [ROUNDS]
#        (defaults: 500000 100 1 2)
#
# Environment:
#   KAFKA_BOOTSTRAP   the Kafka broker (default 127.0.0.1:9092; scripts/kafka.sh start)
#   MILLRACE_BIN      a release millrace (default: built with cargo build --release)
#   DURABILITY        none (default: Kafka's default never fsyncs, so the topics on both
#                     sides do not) or batch (Kafka's topic gets flush.messages=1)
#   GROUP_DELAY_MS    group.initial.rebalance.delay.ms for `millrace serve` (default:
#                     the Kafka broker's, as its DescribeConfigs tells)
#
# Topics have one partition each and are made fresh per round on both sides.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RECORDS="${1:-500000}"
SIZE="${2:-100}"
ACKS="${3:-1}"
ROUNDS="${4:-2}"
KAFKA="${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
DURABILITY="${DURABILITY:-none}"
LIBS="$(ls -d .kafka/kafka-*/libs 2>/dev/null | head -n1)"
[ -n "$LIBS" ] || { echo "no Kafka jars: run scripts/kafka.sh fetch" >&2; exit 1; }

say() { printf 'serve-vs-kafka: %s\n' "$*" >&2; }

BIN="${MILLRACE_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build -q --release -p millrace
  BIN="${CARGO_TARGET_DIR:-target}/release/millrace"
fi

java_tool() { java -Xmx512m -cp "$LIBS/*" "$@"; }

# The Kafka broker's group.initial.rebalance.delay.ms (the first broker's, as
# kafka-configs --describe --all lists it).
kafka_group_delay() {
  java_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$KAFKA" \
    --entity-type brokers --describe --all 2>/dev/null |
    sed -n 's/^ *group\.initial\.rebalance\.delay\.ms=\([0-9]*\) .*/\1/p' | head -n1
}
GROUP_DELAY_MS="${GROUP_DELAY_MS:-$(kafka_group_delay)}"
[ -n "$GROUP_DELAY_MS" ] || { echo "cannot read group.initial.rebalance.delay.ms from $KAFKA" >&2; exit 1; }
say "group.initial.rebalance.delay.ms=$GROUP_DELAY_MS on both sides"

work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
"$BIN" serve --data "$work/data" --listen "127.0.0.1:$port" \
  --group-initial-rebalance-delay-ms "$GROUP_DELAY_MS" 2>"$work/serve.log" &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -f "$work/data/endpoint" ] && break; sleep 0.1; done
MILLRACE="127.0.0.1:$port"
kafka_pid="$(ss -ltnp "sport = :${KAFKA##*:}" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)"

rss_kb() { [ -n "$1" ] && awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# CPU seconds (user + system) a process has used so far; 0 when it is not known.
cpu_s() {
  if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
    sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($12 + $13) / hz}'
  else
    echo 0
  fi
}

create() { # bootstrap topic config
  java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --create --topic "$2" \
    --partitions 1 --config "$3" >/dev/null
}

produce() { # bootstrap topic -> "records/s MB/s avg_ms p99_ms"
  java_tool org.apache.kafka.tools.ProducerPerformance --topic "$2" --num-records "$RECORDS" \
    --record-size "$SIZE" --throughput -1 \
    --producer-props "bootstrap.servers=$1" "acks=$ACKS" linger.ms=5 2>/dev/null | tail -n1 |
    sed -E 's/.*records sent, ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\), ([0-9.]+) ms avg latency.* ([0-9]+) ms 99th.*/\1 \2 \3 \4/'
}

consume() { # bootstrap topic -> "fetch_records/s records/s"
  java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$1" --topic "$2" \
    --messages "$RECORDS" --timeout 60000 2>/dev/null | tail -n1 | awk -F', *' '{print $10, $6}'
}

if [ "$DURABILITY" = batch ]; then kafka_cfg=flush.messages=1; else kafka_cfg=flush.messages=9223372036854775807; fi
mill_cfg=$kafka_cfg

printf '%-8s %-6s %12s %8s %9s %8s %12s %12s %6s\n' \
  server round produce/s MB/s avg_ms p99_ms fetch/s consume/s cpu_s
for round in $(seq "$ROUNDS"); do
  for side in millrace kafka; do
    if [ "$side" = millrace ]; then
      b="$MILLRACE" cfg="$mill_cfg" pid="$serve_pid"
    else
      b="$KAFKA" cfg="$kafka_cfg" pid="$kafka_pid"
    fi
    topic="perf-$$-$round-$side"
    create "$b" "$topic" "$cfg"
    cpu0="$(cpu_s "$pid")"
    read -r rate mbs avg p99 <<<"$(produce "$b" "$topic")"
    read -r frate crate <<<"$(consume "$b" "$topic")"
    cpu="$(awk -v a="$cpu0" -v b="$(cpu_s "$pid")" 'BEGIN {printf "%.2f", b - a}')"
    printf '%-8s %-6s %12s %8s %9s %8s %12s %12s %6s\n' \
      "$side" "$round" "$rate" "$mbs" "$avg" "$p99" "$frate" "$crate" "$cpu"
    echo "$side $rate $p99 $frate $crate $cpu" >>"$work/rows"
  done
done
awk '
  { n[$1]++; p[$1]+=$2; l[$1]+=$3; f[$1]+=$4; c[$1]+=$5; s[$1]+=$6 }
  END {
    printf "ratio millrace/kafka: produce %.2f, fetch %.2f, consume %.2f, p99 latency %.2f, server CPU %.2f\n",
      (p["millrace"]/n["millrace"])/(p["kafka"]/n["kafka"]),
      (f["millrace"]/n["millrace"])/(f["kafka"]/n["kafka"]),
      (c["millrace"]/n["millrace"])/(c["kafka"]/n["kafka"]),
      (l["millrace"]/n["millrace"])/(l["kafka"]/n["kafka"]),
      (s["kafka"] > 0 ? (s["millrace"]/n["millrace"])/(s["kafka"]/n["kafka"]) : 0)
  }' "$work/rows"
echo "peak resident memory: millrace serve $(( $(rss_kb "$serve_pid") / 1024 )) MiB, Kafka $(( $(rss_kb "$kafka_pid") / 1024 )) MiB"
