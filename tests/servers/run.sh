#!/usr/bin/env bash
# Start or stop a real server for the test suite, resolved from Maven Central (cached in
# ~/.m2, so a second run is offline-fast):
#
#   tests/servers/run.sh start kafka|opensearch|elasticsearch   # last line: its address
#   tests/servers/run.sh stop  kafka|opensearch|elasticsearch
#
# Each server has a script of its own beside this one (NAME.sh, taking start|stop) that picks
# free loopback ports, waits until the server really serves, prints its address as the last
# line of `start`, and keeps its data and logs under target/test-servers/NAME/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage() { echo "usage: $0 start|stop kafka|opensearch|elasticsearch" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 name=$2
case "$action" in start|stop) ;; *) usage ;; esac
case "$name" in kafka|opensearch|elasticsearch) ;; *) usage ;; esac
script="$here/$name.sh"
[ -f "$script" ] || { echo "error: no $name.sh beside $0" >&2; exit 1; }
exec bash "$script" "$action"
