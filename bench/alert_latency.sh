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
# --- Peer, side by side in the same run (issue #21): mtail → Prometheus →
# Alertmanager from Debian's packages, on a copy of the same log stream,
# tuned alike (10 s scrape and evaluation, group_wait 5 s). The example runs
# their binaries by hand on loopback ports, never as services; set
# ALERT_LATENCY_PEER=0 to measure Panorama alone. ALERT_LATENCY_INCIDENTS
# (default 12) sets the number of incidents. It prints FIRING and RESOLVED
# p50/p90/p99/max, misses and duplicates of both, and the ratios; targets:
# FIRING p99 ≤ 10 s and ≤ 0.5 × the peer's p90, RESOLVED p99 ≤ 70 s.
if [[ "${ALERT_LATENCY_PEER:-1}" != 0 ]]; then
    peer_pkgs=()
    command -v mtail >/dev/null 2>&1 || peer_pkgs+=(mtail)
    [[ -x /usr/bin/prometheus ]] || peer_pkgs+=(prometheus)
    [[ -x /usr/bin/prometheus-alertmanager ]] || peer_pkgs+=(prometheus-alertmanager)
    if ((${#peer_pkgs[@]})); then
        echo "installing ${peer_pkgs[*]} (Debian packages) for the comparison" >&2
        apt-get update -qq
        # policy-rc.d or the lack of systemd keeps the packaged services from starting.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${peer_pkgs[@]}" >/dev/null
    fi
fi
# --- end of the peer section
exec cargo run --quiet -p panorama-tests --example alert_latency
