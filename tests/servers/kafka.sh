#!/usr/bin/env bash
# A real Apache Kafka (KRaft: one node, broker and controller) for the Kafka sink tests, from
# Maven Central jars alone (tests/servers/kafka/pom.xml; cached in ~/.m2):
#
#   tests/servers/kafka.sh start   # last line: 127.0.0.1:PORT, once a produce round-trip works
#   tests/servers/kafka.sh stop
#
# Data, configuration, pid and logs live in $CAF_KAFKA_DIR (default target/test-servers/kafka),
# so tests that need a broker of their own (to kill -9 it) point it elsewhere. `start` on a
# directory whose broker was killed restarts it with its data and on the same ports.
# $CAF_KAFKA_EXTRA_PROPERTIES, if set, names a file appended to server.properties.
# $CAF_KAFKA_OWNER_PID, if set, is a process whose end stops the broker.
# $CAF_KAFKA_SASL_SSL_PEM, if set, names a PEM file (private key, then certificate chain) for a
# second listener, SASL_SSL with SCRAM-SHA-512, whose address goes to $dir/sasl_ssl_address;
# $CAF_KAFKA_SCRAM_USER and $CAF_KAFKA_SCRAM_PASSWORD are its one user (set when formatting).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
project="$here/kafka"
base="$repo/target/test-servers/kafka"
dir="${CAF_KAFKA_DIR:-$base}"
lib="$base/lib"
heap="${CAF_KAFKA_HEAP:-384m}"
JAVA="${JAVA:-java}"

die() { echo "error: $*" >&2; exit 1; }

# The broker's jars, resolved once (under a lock: tests start brokers in parallel).
resolve() {
  mkdir -p "$base"
  exec 9>"$base/.resolve.lock"
  flock 9
  if [ ! -f "$lib/.complete" ] || [ "$project/pom.xml" -nt "$lib/.complete" ]; then
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka from Maven Central"
    rm -rf "$lib" "$lib.tmp"
    mvn -q -B -Dstyle.color=never -f "$project/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$lib.tmp" >&2 \
      || die "could not resolve Kafka from Maven Central (see above)"
    mv "$lib.tmp" "$lib"
    touch "$lib/.complete"
  fi
  flock -u 9
}

# A free loopback port below the kernel's ephemeral range (32768-60999 by default), so that no
# client connection takes it while a killed broker is down, claimed under $base/claimed so that
# brokers starting at the same time never pick the same one (released by `stop`).
free_port() {
  mkdir -p "$base/claimed"
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$p))" 2>/dev/null || continue
    mkdir "$base/claimed/$p" 2>/dev/null && { echo "$p"; return; }
  done
  die "no free loopback port in 20000-31999"
}

# Running, and not a zombie (a broker killed with -9 is one until something reaps it).
alive() {
  [ -f "$dir/pid" ] || return 1
  local stat
  stat=$(cat "/proc/$(cat "$dir/pid")/stat" 2>/dev/null) || return 1
  [ "$(echo "${stat##*) }" | cut -d' ' -f1)" != Z ]
}

start() {
  resolve
  mkdir -p "$dir"
  alive && die "a broker already runs from $dir (pid $(cat "$dir/pid")); stop it first"
  # Same ports on a restart: clients and the controller quorum keep their addresses.
  local port="" cport="" sport=""
  [ -f "$dir/ports" ] && read -r port cport sport <"$dir/ports"
  if ! [[ "$port $cport $sport" =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then
    port=$(free_port) cport=$(free_port) sport=$(free_port)
    echo "$port $cport $sport" >"$dir/ports"
  fi
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  local scram=()
  if [ -n "${CAF_KAFKA_SASL_SSL_PEM:-}" ]; then
    listeners+=",SASL_SSL://127.0.0.1:$sport"
    advertised+=",SASL_SSL://127.0.0.1:$sport"
    protocols+=",SASL_SSL:SASL_SSL"
    scram=(--add-scram "SCRAM-SHA-512=[name=${CAF_KAFKA_SCRAM_USER:?},password=${CAF_KAFKA_SCRAM_PASSWORD:?}]")
  fi
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  if [ -n "${CAF_KAFKA_SASL_SSL_PEM:-}" ]; then
    cat >>"$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$CAF_KAFKA_SASL_SSL_PEM
PROPS
    echo "127.0.0.1:$sport" >"$dir/sasl_ssl_address"
  fi
  if [ -n "${CAF_KAFKA_EXTRA_PROPERTIES:-}" ]; then
    cat "$CAF_KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties"
  fi
  cat >"$dir/log4j2.properties" <<PROPS
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
PROPS
  printf 'rootLogger.level=ERROR\n' >"$dir/log4j2-quiet.properties"
  local jvm=(-Xmx"$heap" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true -cp "$lib/*")
  if [ ! -f "$dir/data/meta.properties" ] || [ ! -s "$dir/data/meta.properties" ]; then
    rm -rf "$dir/data"
    local cluster
    cluster=$("$JAVA" "${jvm[@]}" -Dlog4j2.configurationFile="$dir/log4j2-quiet.properties" \
      kafka.tools.StorageTool random-uuid)
    "$JAVA" "${jvm[@]}" -Dlog4j2.configurationFile="$dir/log4j2-quiet.properties" \
      kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 \
      || die "formatting the storage failed: $(cat "$dir/format.log")"
  fi
  setsid "$JAVA" "${jvm[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  # A test killed before it could stop its broker (a timeout, a SIGKILL) must not leave a JVM
  # behind: with $CAF_KAFKA_OWNER_PID, the broker is stopped once that process is gone.
  if [ -n "${CAF_KAFKA_OWNER_PID:-}" ]; then
    (
      while kill -0 "$CAF_KAFKA_OWNER_PID" 2>/dev/null; do sleep 2; done
      stop
    ) </dev/null >/dev/null 2>&1 &
    disown
  fi
  local deadline=$((SECONDS + 120))
  until "$JAVA" -Xmx128m -cp "$lib/*" -Dlog4j2.configurationFile="$dir/log4j2-quiet.properties" \
      "$project/Probe.java" "127.0.0.1:$port" >"$dir/probe.log" 2>&1; do
    if ! alive; then
      die "Kafka exited while starting (logs in $dir): $(tail -n 30 "$dir/stdout.log"; grep -m3 -A8 'ERROR' "$dir/server.log" 2>/dev/null || tail -n 20 "$dir/server.log" 2>/dev/null)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      stop
      die "Kafka did not serve a produce round-trip on 127.0.0.1:$port within 120s: $(tail -n 5 "$dir/probe.log")"
    fi
    sleep 1
  done
  echo "Kafka $(basename "$lib"/kafka_2.13-*.jar .jar | sed 's/kafka_2.13-//') serving; data and logs in $dir" >&2
  echo "127.0.0.1:$port"
}

stop() {
  if alive; then
    local pid
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      alive || break
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
  if [ -f "$dir/ports" ]; then
    for p in $(cat "$dir/ports"); do rmdir "$base/claimed/$p" 2>/dev/null || true; done
    rm -f "$dir/ports"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
