#!/usr/bin/env bash
# Elasticsearch for the tests where it runs: its integ-test zip from Maven Central, run by
# search/server.sh like OpenSearch. That zip has no x-pack (no security, no ILM, no data
# streams), so only `_bulk` into an index and index templates can be checked against it.
#   tests/servers/elasticsearch.sh start   # last line: http://127.0.0.1:PORT
#   tests/servers/elasticsearch.sh stop
SERVER=elasticsearch
VERSION=8.19.4
ENV_PREFIX=ES
EXTRA_YML="xpack.security.enabled: false"
source "$(cd "$(dirname "$0")" && pwd)/search/server.sh"
