#!/usr/bin/env bash
# Runs every test of millrace: formatting, clippy, and the whole workspace's tests —
# the embedded store, the CLI, the pipelines, and the Kafka backend against a real
# Apache Kafka broker, which this script starts (and stops) unless
# MILLRACE_TEST_BOOTSTRAP already points at one.
#
# Works on a fresh machine: installs what the tests need (kcat, Chromium and fonts,
# kafka-python, prometheus-client) when
# it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test.sh: %s\n' "$*" >&2; }

# A build cache outside the clone, so CI's fresh clones reuse earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${MILLRACE_CACHE:-$HOME/.cache/millrace}/target}"
export CARGO_TERM_COLOR=never

install_tools() {
  # kcat: a Kafka client nobody here wrote, for interop tests; chromium: the real
  # browser the page test drives; fonts: so the page measures text the same everywhere.
  local missing=()
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  [ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # javac too: the Kafka Streams test compiles its application.
  command -v java >/dev/null 2>&1 || missing_jdk=1
  command -v javac >/dev/null 2>&1 || missing_jdk=1
  command -v mvn >/dev/null 2>&1 || missing_jdk=1
  if [ -n "${missing_jdk:-}" ]; then
    say "installing a JDK and Maven (to fetch and run Apache Kafka and Kafka Streams)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
  fi
  if ! python3 -c 'import kafka' >/dev/null 2>&1; then
    say "installing kafka-python"
    python3 -m pip install -q kafka-python
  fi
  # The Prometheus project's own text-format parser: the /metrics test reads with it.
  if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    say "installing prometheus-client"
    python3 -m pip install -q prometheus-client
  fi
}

started_kafka=""
cleanup() {
  if [ -n "$started_kafka" ]; then scripts/kafka.sh stop || true; fi
}
trap cleanup EXIT

install_tools
# Kafka's jars: the brokers below, and the Java tools the server's tests run against
# `millrace serve` (crates/server/tests/java_tools.rs), even with a broker given; Kafka
# Streams' for the Streams application run against it (crates/server/tests/streams.rs).
scripts/kafka.sh fetch
scripts/kafka.sh fetch-streams
if [ -z "${MILLRACE_TEST_BOOTSTRAP:-}" ]; then
  scripts/kafka.sh start
  started_kafka=1
  export MILLRACE_TEST_BOOTSTRAP=127.0.0.1:9092
fi
# The three-broker cluster (replication factor 3, min.insync.replicas 2) for the
# replication and broker-failure tests.
if [ -z "${MILLRACE_TEST_CLUSTER_BOOTSTRAP:-}" ]; then
  scripts/kafka.sh start-cluster
  started_kafka=1
  export MILLRACE_TEST_CLUSTER_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
fi

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --features millrace/kafka,millrace-broker/kafka,millrace-runtime/kafka -- -D warnings
say "cargo test (embedded store and Kafka at $MILLRACE_TEST_BOOTSTRAP)"
cargo test --workspace --features millrace/kafka,millrace-broker/kafka,millrace-runtime/kafka -- --test-threads 2
