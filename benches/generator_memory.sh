#!/usr/bin/env bash
# Generator memory: RSS per 1,000 open connections, and RSS growth over a long
# constant-rate run (goal: flat, under 5 % growth after the first minute).
#
#   benches/generator_memory.sh [minutes] [rate]
#   LEDGER=off benches/generator_memory.sh ...   # the long run without the ledger
#   PORT=18093 benches/generator_memory.sh ...   # a second copy side by side
#
# The environment reaches loadlens, so allocator settings can be compared
# side by side, e.g. one copy as is and one with
# `PORT=18093 MIMALLOC_PURGE_DELAY=0`.
#
# Needs nginx (Debian: nginx-light) and a release build (LOADLENS=path).
set -euo pipefail

minutes=${1:-10}
rate=${2:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
loadlens=${LOADLENS:-${CARGO_TARGET_DIR:-$root/target}/release/loadlens}
[[ -x $loadlens ]] || { echo "no release build at $loadlens" >&2; exit 2; }

work=$(mktemp -d)
chmod 755 "$work"
trap '[[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT
port=${PORT:-18092}
mkdir -p "$work/html"
printf 'ok\n' > "$work/html/index.html"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon on;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    server { listen 127.0.0.1:$port backlog=4096; root $work/html; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
url="http://127.0.0.1:$port/index.html"
ulimit -n 20000

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# RSS with 10 and with 2,010 virtual users (one connection each), 8 s in.
connections_rss() {
    "$loadlens" run --url "$url" --concurrency "$1" --duration 12s --no-telemetry --quiet >/dev/null &
    local pid=$!
    sleep 8
    local rss
    rss=$(rss_kib "$pid")
    wait "$pid"
    echo "$rss"
}
base=$(connections_rss 10)
many=$(connections_rss 2010)
echo "RSS with 10 connections: ${base} KiB; with 2,010: ${many} KiB"
echo "RSS per 1,000 connections: $(( (many - base) / 2 )) KiB"

# A long constant-rate run with the ledger on; RSS every 10 s.
if [[ ${LEDGER:-on} == off ]]; then ledger=(--no-ledger); else ledger=(--data "$work/store"); fi
"$loadlens" run --url "$url" --rate "$rate" --duration "${minutes}m" --no-telemetry \
    "${ledger[@]}" --quiet --summary-json "$work/summary.json" >/dev/null &
pid=$!
samples=()
while kill -0 "$pid" 2>/dev/null; do
    sleep 10
    rss=$(rss_kib "$pid" 2>/dev/null || true)
    [[ -n $rss ]] && samples+=("$rss")
done
wait "$pid" || true
python3 - "$rate" "${samples[@]}" <<'PY'
import sys
rate, samples = sys.argv[1], [int(s) for s in sys.argv[2:]]
# The first minutes fill the ledger buffer and the allocator's arenas; growth
# is measured from 2 minutes in (or the first sample of a shorter run).
base_at = min(11, len(samples) - 1)
base, last, peak = samples[base_at], samples[-1], max(samples)
print(f"constant {rate} req/s: RSS at {10 * (base_at + 1)} s {base} KiB, at the end {last} KiB, peak {peak} KiB")
print(f"growth from then to the end: {100 * (last - base) / base:+.1f} %  (goal < 5 %)")
PY
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("requests", s["requests"], "failed", s["requests_failed"], "ledger rows", (s["ledger"] or {}).get("rows"))' "$work/summary.json"
