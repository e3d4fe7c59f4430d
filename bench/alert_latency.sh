#!/usr/bin/env bash
# Alert latency: first bad log line written (the agent tails the file) →
# mail accepted by a real SMTP server, p50 and p99 over 20 incidents
# (ALERT_LATENCY_INCIDENTS to change). Target: p99 ≤ 30 s. Then one fault
# in two layers (gateway calls and the route waiting for them fail): the time
# from its first bad line to the incident mail naming the gateway call as
# the cause.
#
#   bench/alert_latency.sh
#
# Real processes: panorama-agent, panorama (embedded store, rules engine),
# scripts/smtp.sh (aiosmtpd; installed with `scripts/smtp.sh install`).
# Rule settings as in production: every = 10s (the default), window 1m,
# for 0; the route's group_wait is 5s. See tests/examples/alert_latency.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/smtp.sh install
exec cargo run --quiet -p panorama-tests --example alert_latency
