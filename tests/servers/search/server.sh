#!/usr/bin/env bash
# The one implementation behind opensearch.sh and elasticsearch.sh: both search servers come
# as an integ-test zip from Maven Central (resolved by pom.xml beside this file, cached in
# ~/.m2), are configured the same way (single node on 127.0.0.1, free ports, no disk
# watermarks, 512 MB heap) and refuse to run as root. Sourced, with these set:
#   SERVER       opensearch | elasticsearch (also the Maven profile and the zip's artifactId)
#   VERSION      the distribution version
#   ENV_PREFIX   OPENSEARCH | ES (the start script's environment variable prefix)
#   EXTRA_YML    lines appended to the node's YAML settings
# Several test binaries may run at once: each names its own instance with
# CAF_SERVER_INSTANCE (default "default"), under target/test-servers/$SERVER/$INSTANCE/;
# `stop` with CAF_SERVER_REMOVE=1 also deletes that folder.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
base="$repo/target/test-servers/$SERVER"
run_user=caf-search
# As root, the server runs as $run_user, who must be able to reach it: a checkout under a
# private home (/root) is not, so the servers then live under /var/tmp instead.
if [ "$(id -u)" = 0 ]; then
  id "$run_user" >/dev/null 2>&1 \
    || useradd --system --no-create-home --shell /usr/sbin/nologin "$run_user" 2>/dev/null \
    || id "$run_user" >/dev/null 2>&1 \
    || { echo "error: cannot create user $run_user" >&2; exit 1; }
  mkdir -p "$base"
  if ! runuser -u "$run_user" -- test -x "$base"; then
    base="/var/tmp/caf-test-servers/$SERVER"
    echo "[$SERVER] note: $run_user cannot reach $repo; servers under $base" >&2
  fi
fi
dist="$base/$SERVER-$VERSION"
instance="${CAF_SERVER_INSTANCE:-default}"
case "$instance" in *[!A-Za-z0-9_.-]*|"") echo "error: CAF_SERVER_INSTANCE must be [A-Za-z0-9_.-]+" >&2; exit 2 ;; esac
inst="$base/$instance"
pidfile="$inst/server.pid"

say() { echo "[$SERVER/$instance] $*" >&2; }
die() { say "error: $*"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# The distribution, unpacked once (several instances may start at once: one unpacks).
ensure_dist() {
  mkdir -p "$base"
  (
    flock 9
    if [ ! -x "$dist/bin/$SERVER" ]; then
      say "resolving $SERVER $VERSION from Maven Central (cached in ~/.m2)"
      command -v mvn >/dev/null || die "mvn not found (apt-get install maven openjdk-17-jre-headless)"
      rm -rf "$dist"
      mvn -q -B -f "$here/pom.xml" initialize -P "$SERVER" \
        "-D$SERVER.version=$VERSION" "-Dserver.dir=$base" >&2 \
        || die "mvn could not resolve $SERVER $VERSION"
      [ -x "$dist/bin/$SERVER" ] || die "no $dist/bin/$SERVER after unpacking"
    fi
  ) 9>"$base/.unpack.lock"
}

# Search servers refuse to run as root: as root (CI), run as a system user of our own.
as_user=()
if [ "$(id -u)" = 0 ]; then
  as_user=(runuser -u "$run_user" --)
fi
as_user() { "${as_user[@]}" "$@"; }

start() {
  if pid="$(running_pid)"; then
    say "already running (pid $pid)"
    echo "http://127.0.0.1:$(cat "$inst/http.port")"
    return 0
  fi
  ensure_dist
  local java_home="${JAVA_HOME:-}"
  if [ -z "$java_home" ]; then
    java_home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" || die "java not found"
  fi
  rm -rf "$inst"
  mkdir -p "$inst/data" "$inst/logs" "$inst/tmp"
  cp -r "$dist/config" "$inst/config"
  # jvm.options names GC logs, heap dumps and crash files relative to the distribution (the
  # start script runs there, and it is not ours to write): point them into the instance.
  sed -i -e "s#file=logs/#file=$inst/logs/#; s#ErrorFile=logs/#ErrorFile=$inst/logs/#" \
    -e "s#HeapDumpPath=data#HeapDumpPath=$inst/data#" "$inst/config/jvm.options"
  local http transport
  http="$(free_port)"; transport="$(free_port)"
  while [ "$transport" = "$http" ]; do transport="$(free_port)"; done
  cat >>"$inst/config/$SERVER.yml" <<YML

# written by tests/servers/search/server.sh
cluster.name: caf-test-$instance
node.name: caf-test-$instance
network.host: 127.0.0.1
http.port: $http
transport.port: $transport
discovery.type: single-node
path.data: $inst/data
path.logs: $inst/logs
cluster.routing.allocation.disk.threshold_enabled: false
${EXTRA_YML:-}
YML
  echo "$http" >"$inst/http.port"
  if [ "$(id -u)" = 0 ]; then
    chown -R "$run_user" "$inst"
    as_user test -x "$dist/bin/$SERVER" \
      || die "user $run_user cannot reach $dist (a parent folder is not world-searchable)"
  fi
  # Not the distribution's own logs/: unwritable for $run_user, unused with path.logs set.
  say "starting on 127.0.0.1:$http (log: $inst/logs, console: $inst/console.log)"
    (
    cd "$inst"
    setsid "${as_user[@]}" env JAVA_HOME="$java_home" "${ENV_PREFIX}_PATH_CONF=$inst/config" "${ENV_PREFIX}_JAVA_HOME=$java_home" \
      "${ENV_PREFIX}_TMPDIR=$inst/tmp" "${ENV_PREFIX}_JAVA_OPTS=-Xms512m -Xmx512m" \
      "$dist/bin/$SERVER" -p "$pidfile" </dev/null >"$inst/console.log" 2>&1 &
    echo $! >"$inst/launcher.pid"
  )
  local deadline=$((SECONDS + 240)) health=""
  while [ $SECONDS -lt $deadline ]; do
    health="$(curl -s -m 5 "http://127.0.0.1:$http/_cluster/health?wait_for_status=yellow&timeout=2s" || true)"
    case "$health" in *'"status":"green"'*|*'"status":"yellow"'*) break ;; esac
    if ! kill -0 "$(cat "$inst/launcher.pid")" 2>/dev/null && ! running_pid >/dev/null; then
      tail -n 40 "$inst/console.log" >&2
      die "exited before serving (console above, logs in $inst/logs)"
    fi
    sleep 1
  done
  case "$health" in
    *'"status":"green"'*|*'"status":"yellow"'*) ;;
    *) tail -n 40 "$inst/console.log" >&2; stop; die "not healthy within 240 s: $health" ;;
  esac
  say "up: $health"
  echo "http://127.0.0.1:$http"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    say "not running"
  else
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      say "killed (did not stop within 30 s)"
    else
      say "stopped"
    fi
    rm -f "$pidfile"
  fi
  # The tests ask for this when they passed; a failed test's data and logs stay.
  if [ "${CAF_SERVER_REMOVE:-}" = 1 ]; then
    rm -rf "$inst"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  fetch) ensure_dist ;;  # resolve and unpack only (.ci/run, before the tests)
  *) echo "usage: $0 start|stop|fetch" >&2; exit 2 ;;
esac
