#!/usr/bin/env bash
# Agent throughput, side by side with mtail on the same file, in one run.
#
#   bench/agent.sh [LINES]        (default 2,000,000)
#
# Measures, pinned to one core (taskset -c 0): the agent's tail + parse +
# route normalization + binary encoding (and, separately, + zstd), lines/s
# and peak RSS; then mtail --one_shot on the same file with an equivalent
# program (bench/access.mtail). Prints both and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES="${1:-2000000}"
WORK="${PANORAMA_BENCH_DIR:-/tmp/panorama-bench}"
mkdir -p "$WORK"
LOG="$WORK/access-$LINES.log"

if ! command -v mtail >/dev/null 2>&1; then
    echo "installing mtail (Debian package) for the comparison" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtail >/dev/null
fi
[[ -s "$LOG" ]] || { echo "generating $LINES lines into $LOG" >&2; python3 bench/gen_access_log.py "$LOG" "$LINES"; }
cargo build --release -q -p panorama-agent --example throughput

# Warm the page cache so both read from memory.
cat "$LOG" >/dev/null

run_agent() {
    /usr/bin/time -f "%e %M" -o "$WORK/agent.time" taskset -c 0 target/release/examples/throughput "$LOG" "$@"
}
echo "== agent (tail + parse + normalize + encode)"
run_agent
read -r agent_s agent_kb <"$WORK/agent.time"
echo "== agent (… + zstd level 1, as shipped)"
run_agent --zstd
read -r agentz_s agentz_kb <"$WORK/agent.time"

echo "== mtail --one_shot"
/usr/bin/time -f "%e %M" -o "$WORK/mtail.time" taskset -c 0 \
    mtail --one_shot --one_shot_format prometheus --progs bench/access.mtail --logs "$LOG" --logtostderr \
    >"$WORK/mtail.out" 2>/dev/null
read -r mtail_s mtail_kb <"$WORK/mtail.time"
mtail_lines=$(awk '/^http_requests_total/ {s += $2} END {print s}' "$WORK/mtail.out")

python3 - "$LINES" "$agent_s" "$agent_kb" "$agentz_s" "$agentz_kb" "$mtail_s" "$mtail_kb" "$mtail_lines" <<'PY'
import sys
lines, a_s, a_kb, z_s, z_kb, m_s, m_kb, m_lines = sys.argv[1:]
lines = int(lines); a, z, m = float(a_s), float(z_s), float(m_s)
print()
print(f"file: {lines:,} lines (mtail counted {int(float(m_lines or 0)):,})")
print(f"agent          {lines / a:>12,.0f} lines/s  {a:6.2f} s  peak RSS {int(a_kb) / 1024:6.1f} MB  (wall clock incl. start-up)")
print(f"agent + zstd   {lines / z:>12,.0f} lines/s  {z:6.2f} s  peak RSS {int(z_kb) / 1024:6.1f} MB")
print(f"mtail          {lines / m:>12,.0f} lines/s  {m:6.2f} s  peak RSS {int(m_kb) / 1024:6.1f} MB")
print(f"ratio agent / mtail: {m / a:.1f}x   (agent + zstd / mtail: {m / z:.1f}x)")
PY
