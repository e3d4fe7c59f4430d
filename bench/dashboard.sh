#!/usr/bin/env bash
# Dashboard server time over a week of 10,000 series, in SQLite and in
# Elasticsearch: seeds each store (one rollup per series and minute for the
# last 24 hours, per series and hour for the 6 days before, and the
# collector's whole-layer rollups per minute), then times the overview and
# the url layer page at 1 h, 24 h and 7 d through the router (the first
# request, then median and p90 of 21 more). Target: overview and layer page
# <= 100 ms median on both. Takes about 25 minutes, most of it seeding.
#
#   bench/dashboard.sh      (PANORAMA_ES_URL to use a running cluster;
#                            PANORAMA_BENCH_MINUTE_HOURS=2 for a quick run;
#                            PANORAMA_BENCH_KEEP=1 keeps the Elasticsearch
#                            indices, and a later run of the example with
#                            PANORAMA_BENCH_REUSE=1 times them again)
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
