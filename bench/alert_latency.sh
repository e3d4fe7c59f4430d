#!/usr/bin/env bash
# Alert latency, side by side with mtail → Prometheus → Alertmanager: the
# first bad log line written (each pipeline tails its own copy of one
# stream) → the FIRING mail accepted by that pipeline's real SMTP server,
# and the incident's last bad line → the RESOLVED mail. 12 incidents
# (ALERT_LATENCY_INCIDENTS to change), each 30 % HTTP 500 on a route of its
# own for 40 s (ALERT_LATENCY_ERROR_PCT=100: the route fully down). Prints
# p50/p90/p99/max of both, misses and duplicates, and the ratios.
# Targets: FIRING p99 ≤ 10 s and ≤ 0.5 × the peer's p90, RESOLVED p99
# ≤ 70 s, nothing missed or doubled.
#
# Then, Panorama alone: one fault in two layers (the gateway calls and the
# route waiting for them fail together), timed from its first bad line to
# the incident mail naming the gateway call as the cause; no such mail
# within 90 s misses the target.
#
#   bench/alert_latency.sh
#
# Real processes: panorama-agent, panorama (embedded store, rules engine),
# scripts/smtp.sh (aiosmtpd; installed with `scripts/smtp.sh install`).
# Both pipelines tuned alike: window 1m, evaluation every 10 s (Panorama
# also evaluates as events arrive), no `for`, group_wait and group_interval
# 5 s. See tests/examples/alert_latency.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/smtp.sh install
# --- Peer, side by side in the same run (issue #21): mtail → Prometheus →
# Alertmanager from Debian's packages (10 s scrape and evaluation). The
# example runs their binaries by hand on loopback ports, never as services;
# set ALERT_LATENCY_PEER=0 to measure Panorama alone.
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
