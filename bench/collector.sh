#!/usr/bin/env bash
# Collector ingest throughput on one core: decode + dedup + WAL (group
# commit, fsync on) + per-minute aggregation, for the agent's binary
# encoding and for NDJSON; then the memory held per open series.
#
#   bench/collector.sh [EVENTS]     (default 2,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-2000000}"
cargo build --release -q -p panorama-collector --example ingest_bench
taskset -c 0 target/release/examples/ingest_bench binary "$EVENTS"
taskset -c 0 target/release/examples/ingest_bench ndjson "$((EVENTS / 2))"
target/release/examples/ingest_bench series 100000
