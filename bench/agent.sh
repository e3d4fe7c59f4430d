#!/usr/bin/env bash
# Agent throughput, side by side with mtail on the same file, in one run.
#
#   bench/agent.sh [LINES]        (default 2,000,000)
#
# Measures, pinned to one core (taskset -c 0): the agent's tail + parse +
# route normalization + binary encoding (and, separately, + zstd), lines/s
# and peak RSS; then mtail --one_shot on the same file with an equivalent
# program (bench/access.mtail). Prints both and the ratio.
#
# An agent run takes under a second, where a neighbour's burst on a shared
# machine shows; mtail's takes ten or more, where it averages out. So the
# agent runs AGENT_RUNS times (default 3) and the ratio uses the median
# wall clock; every run is printed, and the peak RSS is the highest seen.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES="${1:-2000000}"
RUNS="${AGENT_RUNS:-3}"
WORK="${PANORAMA_BENCH_DIR:-/tmp/panorama-bench}"
mkdir -p "$WORK"
LOG="$WORK/access-$LINES.log"

if ! command -v mtail >/dev/null 2>&1; then
    echo "installing mtail (Debian package) for the comparison" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtail >/dev/null
fi
[[ -s "$LOG" ]] || { echo "generating $LINES lines into $LOG" >&2; python3 bench/gen_access_log.py "$LOG" "$LINES"; }
cargo build --release -q -p panorama-agent --example throughput
# Where that build went: a CARGO_TARGET_DIR in the environment moves it.
AGENT_BIN="${CARGO_TARGET_DIR:-target}/release/examples/throughput"

# Warm the page cache so both read from memory.
cat "$LOG" >/dev/null

# run_agent NAME [--zstd]: RUNS runs, each "seconds peak-KB" on a line of
# $WORK/NAME.times.
run_agent() {
    local name=$1
    shift
    : >"$WORK/$name.times"
    for ((i = 1; i <= RUNS; i++)); do
        /usr/bin/time -f "%e %M" -o "$WORK/agent.time" taskset -c 0 "$AGENT_BIN" "$LOG" "$@"
        cat "$WORK/agent.time" >>"$WORK/$name.times"
    done
}
echo "== agent (tail + parse + normalize + encode), $RUNS runs"
run_agent agent
echo "== agent (… + zstd level 1, as shipped), $RUNS runs"
run_agent agentz --zstd

echo "== mtail --one_shot"
/usr/bin/time -f "%e %M" -o "$WORK/mtail.time" taskset -c 0 \
    mtail --one_shot --one_shot_format prometheus --progs bench/access.mtail --logs "$LOG" --logtostderr \
    >"$WORK/mtail.out" 2>/dev/null
read -r mtail_s mtail_kb <"$WORK/mtail.time"
mtail_lines=$(awk '/^http_requests_total/ {s += $2} END {print s}' "$WORK/mtail.out")

python3 - "$LINES" "$WORK/agent.times" "$WORK/agentz.times" "$mtail_s" "$mtail_kb" "$mtail_lines" <<'PY'
import statistics, sys
lines, agent_times, agentz_times, m_s, m_kb, m_lines = sys.argv[1:]
lines, m = int(lines), float(m_s)

def runs(path):
    rows = [line.split() for line in open(path) if line.strip()]
    return [float(s) for s, _ in rows], max(int(kb) for _, kb in rows)

(a_all, a_kb), (z_all, z_kb) = runs(agent_times), runs(agentz_times)
a, z = statistics.median(a_all), statistics.median(z_all)
each = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print()
print(f"file: {lines:,} lines (mtail counted {int(float(m_lines or 0)):,})")
print(f"agent          {lines / a:>12,.0f} lines/s  {a:6.2f} s  peak RSS {a_kb / 1024:6.1f} MB  (median of {len(a_all)}: {each(a_all)} s; wall clock incl. start-up)")
print(f"agent + zstd   {lines / z:>12,.0f} lines/s  {z:6.2f} s  peak RSS {z_kb / 1024:6.1f} MB  (median of {len(z_all)}: {each(z_all)} s)")
print(f"mtail          {lines / m:>12,.0f} lines/s  {m:6.2f} s  peak RSS {int(m_kb) / 1024:6.1f} MB")
print(f"ratio agent / mtail: {m / a:.1f}x   (agent + zstd / mtail: {m / z:.1f}x; slowest agent run: {m / max(a_all):.1f}x)")
PY
