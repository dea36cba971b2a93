#!/usr/bin/env bash
# OpenSearch 2.19 for the tests (the `opensearch` sink, the contract suite): its integ-test
# zip from Maven Central, run by search/server.sh. Security is not in that zip, so there is
# nothing to switch off.
#   tests/servers/opensearch.sh start   # last line: http://127.0.0.1:PORT
#   tests/servers/opensearch.sh stop
SERVER=opensearch
VERSION=2.19.6
ENV_PREFIX=OPENSEARCH
EXTRA_YML=""
source "$(cd "$(dirname "$0")" && pwd)/search/server.sh"
