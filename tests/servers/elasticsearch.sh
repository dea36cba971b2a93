#!/usr/bin/env bash
# Elasticsearch for the tests where it runs: its integ-test zip from Maven Central, run by
# search/server.sh like OpenSearch. That zip holds only the modules apm, transport-netty4,
# x-pack-core and x-pack-security (switched off here): no ILM, data streams, mapper-extras,
# wildcard or constant-keyword, so the shipped template and ILM policy are refused there
# (README, "Which tests run against which real server"). The `_bulk` contract into an index
# is checked against it (tests/bulk_contract.rs).
#   tests/servers/elasticsearch.sh start   # last line: http://127.0.0.1:PORT
#   tests/servers/elasticsearch.sh stop
SERVER=elasticsearch
VERSION=8.19.4
ENV_PREFIX=ES
EXTRA_YML="xpack.security.enabled: false"
source "$(cd "$(dirname "$0")" && pwd)/search/server.sh"
