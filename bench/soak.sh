#!/usr/bin/env bash
# The fault drill's mix for as long as asked (not part of scripts/test.sh):
# agent kill -9 under slow collector fsyncs, agent SIGTERM, collector
# kill -9, Elasticsearch outages, in 90-second rounds, on a clock crossing
# 00:00 UTC; then lines written, counted, missing and doubled per fault kind.
# Needs what scripts/test.sh installs (Elasticsearch, libfaketime, cc).
#
#   bench/soak.sh MINUTES
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:?usage: bench/soak.sh MINUTES}"
cargo build -q --workspace --bins
cargo build -q -p panorama-tests --example soak
exec target/debug/examples/soak "$MINUTES"
