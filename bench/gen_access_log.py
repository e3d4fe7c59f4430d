#!/usr/bin/env python3
"""Writes a combined access log with request times for the agent benchmark.

A few hundred routes, picked with a Zipf-like skew (a few hot routes, a long
tail), ids in paths so that route normalization has work to do, about 2 %
errors, request times from 1 ms to a few seconds. Deterministic: the same
arguments always write the same file.

    bench/gen_access_log.py OUT [LINES [START]]

LINES defaults to 2,000,000; START (Unix seconds of the first line, 2000
lines a second after it) to 2026-11-22 00:00 UTC.
"""
import random
import sys
import time

def main():
    out = sys.argv[1]
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    rng = random.Random(42)
    templates = []
    resources = ["user", "item", "order", "cart", "pay", "login", "search", "shop", "game", "room"]
    actions = ["", "/detail", "/history", "/items", "/status", "/config", "/avatar", "/friends"]
    for r in resources:
        for a in actions:
            templates.append(("GET", f"/api/v1/{r}/{{id}}{a}"))
            templates.append(("POST", f"/api/v1/{r}/{{id}}{a}"))
            templates.append(("GET", f"/api/v2/{r}{a}/{{hex}}"))
    templates.append(("GET", "/health"))
    templates.append(("GET", "/static/app.{hex}.js"))
    # Zipf-like weights: route k gets 1/(k+1).
    weights = [1.0 / (k + 1) for k in range(len(templates))]
    start = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.mktime((2026, 11, 22, 0, 0, 0, 0, 0, -1)))
    statuses = [200] * 90 + [201] * 3 + [304] * 3 + [404] * 2 + [500, 503]
    agents = ['"Mozilla/5.0 (iPhone; CPU iPhone OS 18_0)"', '"okhttp/4.12.0"', '"curl/8.5.0"']
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    picks = rng.choices(range(len(templates)), weights=weights, k=lines)
    with open(out, "w", buffering=1 << 20) as f:
        for n in range(lines):
            t = time.gmtime(start + n // 2000)
            method, path = templates[picks[n]]
            path = path.replace("{id}", str(rng.randrange(1, 10_000_000))).replace("{hex}", "%012x" % rng.getrandbits(48))
            status = statuses[n % len(statuses)]
            rt = rng.expovariate(1 / 0.05)
            f.write(
                f'10.{n % 256}.{(n >> 8) % 256}.{n % 7} - - [{t.tm_mday:02d}/{months[t.tm_mon - 1]}/{t.tm_year}:'
                f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000] "{method} {path}?src=bench HTTP/1.1" '
                f'{status} {rng.randrange(200, 20000)} "-" {agents[n % 3]} {rt:.3f} {rt * 0.8:.3f}\n'
            )

if __name__ == "__main__":
    main()
