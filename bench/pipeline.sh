#!/usr/bin/env bash
# End-to-end ingest: the real `panorama-agent` process tailing a pre-written
# combined access log and shipping to the real `panorama collector` process
# (embedded store, WAL with fsync) over loopback, side by side with
# `mtail --one_shot` on the same file in the same run.
#
#   bench/pipeline.sh [LINES]         (default 1,000,000)
#   CATCHUP_LINES=5000000 LIVE_RATE=5000 bench/pipeline.sh [LINES]
#
# Prints, for the one-shot case: seconds from the agent's start until the
# collector's `panorama_collector_events_in_total` reaches LINES (every line
# durable in the WAL and aggregated), and until `/api/v1/top` sums to LINES
# over the log's minutes (every line in the store); lines/s for both; peak
# RSS of both processes; mtail's time; the ratio.
# Then the live case: one line at a time (LIVE_PROBES, default 50, about
# five a second) into a quiet log the agent tails, printing how long each
# takes to be durable and counted (p99 target 100 ms) and how long until
# the query API shows it (open minutes are written every 5 s).
# With CATCHUP_LINES set it also runs the catch-up case: that many lines
# already on disk plus a live writer appending LIVE_RATE lines/s to a second
# file, and prints the time to catch up and the live source's lag (from a
# line's write to the collector counting it) while catching up.
# COMPRESSION=zstd|none|auto sets the agent's `collector.compression`
# (default auto: uncompressed, the collector being this host).
set -euo pipefail
cd "$(dirname "$0")/.."
LINES="${1:-1000000}"
WORK="${PANORAMA_BENCH_DIR:-/tmp/panorama-bench}/pipeline"
rm -rf "$WORK"
mkdir -p "$WORK"

if ! command -v mtail >/dev/null 2>&1; then
    echo "installing mtail (Debian package) for the comparison" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtail >/dev/null
fi
cargo build --release -q -p panorama -p panorama-agent --bins
BIN="${CARGO_TARGET_DIR:-target}/release"

# Event times in the last hour, so the collector neither drops them as too
# old nor treats them as far in the future.
START=$(($(date +%s) - 3600))
LOG="$WORK/logs/access.log"
mkdir -p "$WORK/logs"
echo "generating $LINES lines" >&2
python3 bench/gen_access_log.py "$LOG" "$LINES" "$START"
cat "$LOG" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"

"$BIN/panorama" collector --listen "127.0.0.1:$PORT" --data-dir "$WORK/collector" \
    >"$WORK/collector.log" 2>&1 &
COLLECTOR=$!
AGENT=""
WRITER=""
cleanup() {
    for p in $AGENT $WRITER $COLLECTOR; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fs "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done

# agent_config DATA_DIR AGENT_ID: an agent shipping to the collector, host
# metrics off; combined_source NAME GLOB: one combined-log source, its service named NAME too.
agent_config() {
    printf 'data_dir = "%s"\nagent_id = "%s"\n[collector]\nurls = ["%s"]\ncompression = "%s"\n[host_metrics]\nenabled = false\n' "$1" "$2" "$URL" "${COMPRESSION:-auto}"
}
combined_source() {
    printf '[[source]]\nname = "%s"\npaths = ["%s"]\n[source.parse]\nformat = "combined"\nservice = "%s"\n' "$1" "$2" "$1"
}
{
    agent_config "$WORK/agent" bench
    combined_source access "$WORK/logs/access.log*"
    [[ -z "${CATCHUP_LINES:-}" ]] || combined_source live "$WORK/logs/live.log"
} >"$WORK/agent.toml"

# Samples events_in_total and both RSS figures every 20 ms until the count
# is reached; prints "seconds_to_wal seconds_to_store agent_peak_kb collector_peak_kb".
python3 - "$URL" "$LINES" "$BIN/panorama-agent" "$WORK/agent.toml" "$COLLECTOR" "$START" "$WORK/agent.pid" <<'PY' >"$WORK/result"
import json, subprocess, sys, time, urllib.request
url, lines, agent_bin, cfg, collector_pid, start, pid_file = sys.argv[1:]
lines, start = int(lines), int(start)

sys.path.insert(0, "bench")
from prom_metric import metric

def events_in():
    return metric(url, "panorama_collector_events_in_total") or 0

def hwm(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

def in_store():
    # The log spans lines / 2000 seconds from `start`: sum every minute's url series.
    total, first = 0, start - start % 60
    last = start + lines // 2000
    for minute in range(first, last + 60, 60):
        q = f"{url}/api/v1/top?layer=url&minute={minute * 1000}&by=count&limit=1000"
        top = json.load(urllib.request.urlopen(q, timeout=10))
        total += sum(s["point"]["count"] for s in top["series"])
    return total

base = events_in()
t0 = time.monotonic()
agent = subprocess.Popen([agent_bin, "--config", cfg], stdout=subprocess.DEVNULL, stderr=open(cfg + ".log", "w"))
open(pid_file, "w").write(str(agent.pid))
a_kb = c_kb = 0
wal = store = None
while time.monotonic() - t0 < 600:
    a_kb, c_kb = max(a_kb, hwm(agent.pid)), max(c_kb, hwm(collector_pid))
    if wal is None and events_in() - base >= lines:
        wal = time.monotonic() - t0
    if wal is not None:
        if in_store() >= lines:
            store = time.monotonic() - t0
            break
        time.sleep(0.2)
    else:
        time.sleep(0.02)
agent.terminate()
agent.wait()
print(wal or 0, store or 0, a_kb, c_kb)
PY
read -r wal_s store_s agent_kb collector_kb <"$WORK/result"

echo "== mtail --one_shot on the same file"
/usr/bin/time -f "%e %M" -o "$WORK/mtail.time" \
    mtail --one_shot --one_shot_format prometheus --progs bench/access.mtail --logs "$LOG" --logtostderr \
    >"$WORK/mtail.out" 2>/dev/null
read -r mtail_s mtail_kb <"$WORK/mtail.time"

python3 - "$LINES" "$wal_s" "$store_s" "$agent_kb" "$collector_kb" "$mtail_s" "$mtail_kb" <<'PY'
import sys
lines, wal, store, a_kb, c_kb, m, m_kb = sys.argv[1:]
lines, wal, store, m = int(lines), float(wal), float(store), float(m)
print()
print(f"file: {lines:,} lines, agent and collector on the same machine, loopback, WAL fsync on")
if wal <= 0:
    print("the collector did not count every line within 600 s: see the logs in the bench directory")
    sys.exit(1)
print(f"end to end, durable + aggregated {lines / wal:>12,.0f} lines/s  {wal:6.2f} s")
print(f"end to end, in the store         {lines / store:>12,.0f} lines/s  {store:6.2f} s" if store > 0 else "end to end, in the store: not all lines within 600 s")
print(f"peak RSS: agent {int(a_kb) / 1024:.1f} MB, collector {int(c_kb) / 1024:.1f} MB")
print(f"mtail --one_shot                 {lines / m:>12,.0f} lines/s  {m:6.2f} s  peak RSS {int(m_kb) / 1024:.1f} MB")
print(f"ratio end to end (durable) / mtail: {m / wal:.1f}x")
PY

echo
echo "== live tailing: one line at a time into a quiet log (${LIVE_PROBES:-50} lines, ~5 a second)"
mkdir -p "$WORK/quiet"
: >"$WORK/quiet/app.log"
{
    agent_config "$WORK/agent-quiet" bench-quiet
    combined_source quiet "$WORK/quiet/app.log"
} >"$WORK/quiet.toml"
python3 - "$URL" "$BIN/panorama-agent" "$WORK/quiet.toml" "$WORK/quiet/app.log" "${LIVE_PROBES:-50}" <<'PY'
import json, statistics, subprocess, sys, time, urllib.request
url, agent_bin, cfg, log, probes = sys.argv[1:]
probes = int(probes)

sys.path.insert(0, "bench")
from prom_metric import metric

def events_in():
    return metric(url, "panorama_collector_events_in_total") or 0

def stamp(t):
    g = time.gmtime(t)
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", g)

agent = subprocess.Popen([agent_bin, "--config", cfg], stdout=subprocess.DEVNULL, stderr=open(cfg + ".log", "w"))
time.sleep(2)  # the agent finds the (empty) file
wal, store, per_minute = [], [], {}
with open(log, "a", buffering=1) as f:
    for n in range(probes):
        before = events_in()
        t0 = time.monotonic()
        now = time.time()
        minute = int(now) // 60 * 60 * 1000
        per_minute[minute] = per_minute.get(minute, 0) + 1
        f.write(f'10.0.0.9 - - [{stamp(now)}] "GET /quiet/{n} HTTP/1.1" 200 5 "-" "bench" 0.002 0.002\n')
        f.flush()
        while events_in() <= before:
            if time.monotonic() - t0 > 10:
                break
            time.sleep(0.002)
        wal.append(time.monotonic() - t0)
        if n % 10 == 0:
            # The same line in the query API: the open minute is written
            # every open_flush interval (5 s by default).
            q = f"{url}/api/v1/series?layer=url&service=quiet&from={minute}&to={minute + 60000}"
            while time.monotonic() - t0 < 30:
                pts = json.load(urllib.request.urlopen(q, timeout=5)).get("points", [])
                if sum(p.get("count", 0) for p in pts) >= per_minute[minute]:
                    break
                time.sleep(0.05)
            store.append(time.monotonic() - t0)
        time.sleep(0.2)
agent.terminate()
agent.wait()
wal.sort()
p99 = wal[min(len(wal) - 1, int(len(wal) * 0.99))]
print(f"line written -> durable in the WAL and counted: median {statistics.median(wal) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {wal[-1] * 1000:.0f} ms over {len(wal)} lines (target p99 <= 100 ms)")
print(f"line written -> in /api/v1/series: median {statistics.median(store):.1f} s, max {max(store):.1f} s over {len(store)} lines (open minutes are written every 5 s)")
PY

[[ -n "${CATCHUP_LINES:-}" ]] || exit 0

echo
echo "== catch-up: $CATCHUP_LINES lines on disk + a live writer at ${LIVE_RATE:-5000} lines/s"
kill "$COLLECTOR" 2>/dev/null || true
wait "$COLLECTOR" 2>/dev/null || true
rm -rf "$WORK/collector" "$WORK/agent" "$WORK/logs"
mkdir -p "$WORK/logs"
python3 bench/gen_access_log.py "$WORK/logs/access.log" "$CATCHUP_LINES" "$START"
cat "$WORK/logs/access.log" >/dev/null
"$BIN/panorama" collector --listen "127.0.0.1:$PORT" --data-dir "$WORK/collector" \
    >"$WORK/collector.log" 2>&1 &
COLLECTOR=$!
for _ in $(seq 100); do curl -fs "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
APORT=$(free_port)
sed -i "s/^agent_id = \"bench\"/agent_id = \"bench\"\n[metrics]\nlisten = \"127.0.0.1:$APORT\"/" "$WORK/agent.toml"
python3 - "$URL" "$CATCHUP_LINES" "${LIVE_RATE:-5000}" "$BIN/panorama-agent" "$WORK/agent.toml" "$WORK/logs/live.log" "http://127.0.0.1:$APORT" <<'PY'
import statistics, subprocess, sys, threading, time, urllib.request
url, backlog, rate, agent_bin, cfg, live, agent_url = sys.argv[1:]
backlog, rate = int(backlog), int(rate)
backlog_bytes = __import__("os").path.getsize(live.replace("live.log", "access.log"))

sys.path.insert(0, "bench")
from prom_metric import metric

written = [(time.monotonic(), 0)]  # (when, live bytes written by then)
stop = threading.Event()
def writer():
    n = size = 0
    with open(live, "a", buffering=1 << 16) as f:
        t0 = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate)
            t = time.gmtime()
            stamp = f'{t.tm_mday:02d}/{time.strftime("%b", t)}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000'
            while n < due:
                line = f'10.0.0.1 - - [{stamp}] "GET /live/{n} HTTP/1.1" 200 10 "-" "bench" 0.001 0.001\n'
                f.write(line)
                size += len(line)
                n += 1
            f.flush()
            written.append((time.monotonic(), size))
            time.sleep(0.01)
open(live, "w").close()
th = threading.Thread(target=writer)
th.start()
t0 = time.monotonic()
agent = subprocess.Popen([agent_bin, "--config", cfg], stdout=subprocess.DEVNULL, stderr=open(cfg + ".catchup.log", "w"))
lags, caught = [], None
while time.monotonic() - t0 < 900:
    now = time.monotonic()
    if caught is None and (metric(agent_url, "panorama_agent_bytes_acked_total", "access") or 0) >= backlog_bytes:
        caught = now - t0
    acked = metric(agent_url, "panorama_agent_bytes_acked_total", "live")
    if acked is not None:
        # The live lag: how long ago the newest acknowledged live byte was written.
        behind = [t for t, b in written if b <= acked]
        lags.append(now - behind[-1])
    if caught is not None and now - t0 > caught + 5:
        break
    time.sleep(0.1)
stop.set(); th.join(); agent.terminate(); agent.wait()
if caught is None:
    print("did not catch up within 900 s"); sys.exit(1)
print(f"backlog of {backlog:,} lines counted in {caught:.2f} s ({backlog / caught:,.0f} lines/s) beside a live source writing {rate:,} lines/s")
if lags:
    lags.sort()
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(f"live source's lag (write -> acknowledged), sampled every 100 ms during catch-up and 5 s after: median {statistics.median(lags) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
PY
