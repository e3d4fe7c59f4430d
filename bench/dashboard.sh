#!/usr/bin/env bash
# Dashboard server time over a week of 10,000 series, in SQLite and in
# Elasticsearch: seeds each store (one rollup per series per hour for 7
# days, per minute for the last 2 hours), then times the overview and the
# url layer page at 1 h, 24 h and 7 d through the router (median and p90
# of 21 requests after a warm-up). Target: overview and layer page
# <= 100 ms median on both.
#
#   bench/dashboard.sh              (PANORAMA_ES_URL to use a running cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p panorama-dashboard --example bench
if [[ -z "${PANORAMA_ES_URL:-}" ]]; then
    PANORAMA_ES_URL="$(scripts/elasticsearch.sh start)"
fi
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$target/release/examples/bench" sqlite "$dir/sqlite"
"$target/release/examples/bench" elasticsearch "$PANORAMA_ES_URL"
