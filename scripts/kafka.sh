#!/usr/bin/env bash
# A real Apache Kafka for millrace's tests, without Docker.
#
#   scripts/kafka.sh fetch          download Kafka's jars from Maven Central (cached)
#   scripts/kafka.sh fetch-streams  download Kafka Streams' jars the same way (cached)
#   scripts/kafka.sh start          one combined broker+controller on 127.0.0.1:9092
#   scripts/kafka.sh start-cluster  three brokers on 127.0.0.1:19092,19093,19094
#   scripts/kafka.sh stop [single|cluster]  stop what this script started (by pid)
#   scripts/kafka.sh status         say what runs and whether it answers
#
# Environment:
#   KAFKA_VERSION     Kafka release to fetch (default 4.4.0)
#   KAFKA_HOME_CACHE  where jars and run state live (default <repo>/.kafka, git-ignored)
#   KAFKA_HEAP        JVM heap per broker (default 512m)
#   KAFKA_START_TIMEOUT seconds to wait for a broker to answer (default 60)
#
# Every start formats fresh KRaft storage: test brokers begin empty. Works without a
# terminal (CI=true, no stdin) and is safe to run twice.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="${LOG4J_VERSION:-2.24.3}"
SLF4J_VERSION="${SLF4J_VERSION:-2.0.17}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KAFKA_HOME_CACHE:-$REPO_ROOT/.kafka}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
STREAMS_LIBS="$CACHE/kafka-streams-$KAFKA_VERSION/libs"
RUN="$CACHE/run"
HEAP="${KAFKA_HEAP:-512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"

# Single mode: broker port, controller port. Cluster mode: three of each.
SINGLE_PORT=9092
SINGLE_CONTROLLER_PORT=9093
CLUSTER_PORTS=(19092 19093 19094)
CLUSTER_CONTROLLER_PORTS=(19192 19193 19194)

say() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed ($2)"; }

# ---------------------------------------------------------------- fetch

# mvn_fetch DIR WHAT DEPENDENCY... : Maven resolves the runtime dependencies of the
# named artifacts (groupId:artifactId:version) into DIR, once (DIR/.complete).
mvn_fetch() {
  local dir=$1 what=$2
  shift 2
  if [[ -f "$dir/.complete" ]]; then
    say "$what already in $dir"
    return 0
  fi
  need mvn "apt-get install -y maven"
  need java "apt-get install -y openjdk-17-jre-headless"
  mkdir -p "$dir"
  local work deps="" dep g a v
  work="$(mktemp -d)"
  for dep in "$@"; do
    IFS=: read -r g a v <<<"$dep"
    deps+="    <dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"$'\n'
  done
  # A throwaway POM whose only job is to name what is wanted, so that Maven resolves
  # its runtime dependencies for us.
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>millrace</groupId>
  <artifactId>kafka-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$deps  </dependencies>
</project>
EOF
  say "fetching $what from Maven Central into $dir"
  if ! mvn -B -ntp -q -Dstyle.color=never -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$dir" </dev/null >"$work/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$work/mvn.log" | tail -n 40 >&2
    rm -rf "$work"
    die "mvn could not fetch $what (is Maven Central reachable? try KAFKA_VERSION=4.1.1)"
  fi
  rm -rf "$work"
  touch "$dir/.complete"
  say "fetched $(find "$dir" -name '*.jar' | wc -l) jars"
}

# Kafka's server, tools and a logging backend.
fetch() {
  mvn_fetch "$LIBS" "Kafka $KAFKA_VERSION" \
    "org.apache.kafka:kafka_2.13:$KAFKA_VERSION" \
    "org.apache.kafka:kafka-tools:$KAFKA_VERSION" \
    "org.apache.kafka:kafka-storage:$KAFKA_VERSION" \
    "org.slf4j:slf4j-api:$SLF4J_VERSION" \
    "org.apache.logging.log4j:log4j-core:$LOG4J_VERSION" \
    "org.apache.logging.log4j:log4j-slf4j2-impl:$LOG4J_VERSION"
  ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after fetch"
}

# Kafka Streams and a logging backend: the Streams application the server's tests run
# against `millrace serve` (crates/server/tests/streams.rs) is compiled against these.
fetch_streams() {
  mvn_fetch "$STREAMS_LIBS" "Kafka Streams $KAFKA_VERSION" \
    "org.apache.kafka:kafka-streams:$KAFKA_VERSION" \
    "org.slf4j:slf4j-api:$SLF4J_VERSION" \
    "org.apache.logging.log4j:log4j-core:$LOG4J_VERSION" \
    "org.apache.logging.log4j:log4j-slf4j2-impl:$LOG4J_VERSION"
  ls "$STREAMS_LIBS"/kafka-streams-*.jar >/dev/null 2>&1 || die "kafka-streams jar missing after fetch"
}

# ---------------------------------------------------------------- helpers

java_run() {
  # shellcheck disable=SC2086
  java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    -cp "$LIBS/*" "$@"
}

write_log4j() {
  mkdir -p "$RUN"
  cat >"$RUN/log4j2.properties" <<'EOF'
# Everything to stdout, which kafka.sh sends to the node's server.log.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# write_node DIR NODE_ID PORT CONTROLLER_PORT VOTERS REPLICATION
write_node() {
  local dir=$1 id=$2 port=$3 cport=$4 voters=$5 rf=$6
  local min_isr=1
  ((rf >= 3)) && min_isr=2
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.segment.bytes=16777216
log.retention.check.interval.ms=60000
message.max.bytes=4194304
replica.fetch.max.bytes=4194304
EOF
}

# start_nodes NAME PORTS[] CONTROLLER_PORTS[]
start_nodes() {
  local name=$1
  shift
  local -a ports=() cports=()
  local n=$(($# / 2)) i
  for ((i = 0; i < n; i++)); do ports+=("$1"); shift; done
  for ((i = 0; i < n; i++)); do cports+=("$1"); shift; done

  local base="$RUN/$name"
  local all_alive=1
  for ((i = 1; i <= n; i++)); do alive "$base/node$i/kafka.pid" || all_alive=0; done
  if ((all_alive)); then
    say "$name already running (ports ${ports[*]})"
    return 0
  fi
  for p in "${ports[@]}" "${cports[@]}"; do
    port_open "$p" && die "port $p is already taken by another process; stop it or use your own cluster via MILLRACE_BOOTSTRAP"
  done

  fetch
  write_log4j
  rm -rf "$base"
  local voters="" rf=1
  ((n >= 3)) && rf=3
  for ((i = 1; i <= n; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:${cports[$((i - 1))]}"
  done
  local cluster_id
  cluster_id="$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  [[ -n "$cluster_id" ]] || die "could not make a cluster id (kafka.tools.StorageTool random-uuid)"
  for ((i = 1; i <= n; i++)); do
    local dir="$base/node$i"
    write_node "$dir" "$i" "${ports[$((i - 1))]}" "${cports[$((i - 1))]}" "$voters" "$rf"
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 </dev/null || { cat "$dir/format.log" >&2; die "formatting KRaft storage failed"; }
  done
  for ((i = 1; i <= n; i++)); do
    local dir="$base/node$i"
    nohup java -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
      -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
      >"$dir/server.log" 2>&1 </dev/null &
    echo $! >"$dir/kafka.pid"
  done

  local deadline=$((SECONDS + START_TIMEOUT))
  for ((i = 1; i <= n; i++)); do
    local dir="$base/node$i"
    until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null && port_open "${ports[$((i - 1))]}"; do
      if ! alive "$dir/kafka.pid"; then
        tail -n 40 "$dir/server.log" >&2 || true
        die "broker node $i exited during start (log: $dir/server.log)"
      fi
      if ((SECONDS >= deadline)); then
        tail -n 40 "$dir/server.log" >&2 || true
        stop_nodes "$name"
        die "broker node $i did not answer within ${START_TIMEOUT}s (log: $dir/server.log)"
      fi
      sleep 0.5
    done
  done
  local bootstrap=""
  for p in "${ports[@]}"; do bootstrap+="${bootstrap:+,}127.0.0.1:$p"; done
  echo "$bootstrap" >"$base/bootstrap"
  say "$name up: bootstrap $bootstrap (logs under $base)"
  echo "$bootstrap"
}

stop_nodes() {
  local name=$1 base="$RUN/$1" pidf pid stopped=0
  [[ -d "$base" ]] || return 0
  for pidf in "$base"/node*/kafka.pid; do
    [[ -f "$pidf" ]] || continue
    pid="$(cat "$pidf")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      stopped=1
    fi
  done
  # Give each broker up to 20 s for a clean shutdown, then force it.
  for pidf in "$base"/node*/kafka.pid; do
    [[ -f "$pidf" ]] || continue
    pid="$(cat "$pidf")"
    local t=0
    while kill -0 "$pid" 2>/dev/null && ((t < 40)); do sleep 0.5; t=$((t + 1)); done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidf"
  done
  ((stopped)) && say "$name stopped"
  return 0
}

status_nodes() {
  local name=$1 base="$RUN/$1" pidf any=0
  for pidf in "$base"/node*/kafka.pid; do
    [[ -f "$pidf" ]] || continue
    any=1
    local node port
    node="$(basename "$(dirname "$pidf")")"
    port="$(sed -n 's#^advertised.listeners=PLAINTEXT://127.0.0.1:##p' "$(dirname "$pidf")/server.properties")"
    if alive "$pidf"; then
      if port_open "$port"; then
        echo "$name $node: running (pid $(cat "$pidf")), answering on 127.0.0.1:$port"
      else
        echo "$name $node: running (pid $(cat "$pidf")), not answering on 127.0.0.1:$port"
      fi
    else
      echo "$name $node: not running (stale pid file)"
    fi
  done
  ((any)) || echo "$name: not running"
}

# ---------------------------------------------------------------- main

cmd="${1:-}"
case "$cmd" in
  fetch) fetch ;;
  fetch-streams) fetch_streams ;;
  start) start_nodes single "$SINGLE_PORT" "$SINGLE_CONTROLLER_PORT" ;;
  start-cluster) start_nodes cluster "${CLUSTER_PORTS[@]}" "${CLUSTER_CONTROLLER_PORTS[@]}" ;;
  stop)
    case "${2:-all}" in
      single) stop_nodes single ;;
      cluster) stop_nodes cluster ;;
      all) stop_nodes single; stop_nodes cluster ;;
      *) die "stop takes single, cluster or nothing (both)" ;;
    esac
    ;;
  status)
    status_nodes single
    status_nodes cluster
    ;;
  *)
    echo "usage: scripts/kafka.sh fetch|fetch-streams|start|start-cluster|stop [single|cluster]|status" >&2
    exit 2
    ;;
esac
