#!/usr/bin/env bash
# The collector's CPU per span while a generator traces every request to it,
# by the generator's export batch size. Runs of `loadlens run --rate RATE`
# take turns with each size against one long-lived collector, and the
# collector's CPU (user + system, from /proc/<pid>/stat) is read before and
# after each run.
#
#   benches/collector_cpu_per_span.sh [pairs] [seconds] [rate] [sizes...]
#   benches/collector_cpu_per_span.sh 4 10 40000 512 2048 4096   # the defaults
#   COLLECTOR_CONFIG=no-compaction.yaml benches/collector_cpu_per_span.sh 4 10 40000 2048
#
# The generator runs on core 0; nginx (`return 200`) and the collector
# (`--no-fsync`) share core 1, as in generator_vs_wrk.sh. The size reaches
# the generator as OTEL_BSP_MAX_EXPORT_BATCH_SIZE. The collector compacts
# once a minute by default, and a run that compaction falls into costs
# several CPU-seconds more: runs over 10 µs a span are marked and left out
# of the means (a config with `compaction_interval: 0s` shows the runs
# without it).
#
# Needs nginx and a release build (LOADLENS=path).
set -euo pipefail
pairs=${1:-4}
seconds=${2:-10}
rate=${3:-40000}
shift $(($# < 3 ? $# : 3))
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(512 2048 4096)
root=$(cd "$(dirname "$0")/.." && pwd)
loadlens=${LOADLENS:-${CARGO_TARGET_DIR:-$root/target}/release/loadlens}
[[ -x $loadlens ]] || { echo "no release build at $loadlens; run cargo build --release" >&2; exit 2; }
for tool in nginx taskset python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done
cores=$(nproc)
gen_core=0
srv_core=$((cores > 1 ? 1 : 0))

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
chmod 755 "$work"   # nginx workers run as another user
port=18094
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "ok\n"; }
    }
}
CONF
taskset -c "$srv_core" nginx -c "$work/nginx.conf" -p "$work"
sleep 0.5
url="http://127.0.0.1:$port/"
curl -sf "$url" >/dev/null

config=()
[[ -n ${COLLECTOR_CONFIG:-} ]] && config=(--config "$COLLECTOR_CONFIG")
taskset -c "$srv_core" "$loadlens" collector "${config[@]}" --data "$work/store" \
    --grpc-addr 127.0.0.1:24317 --http-addr 127.0.0.1:24318 --no-fsync >"$work/collector.log" 2>&1 &
collector=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:24318/healthz >/dev/null && break; sleep 0.1; done
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

echo "collector CPU per span: $rate traced req/s for $seconds s a run, sizes ${sizes[*]}, $pairs rounds"
: >"$work/runs"
for _ in $(seq "$pairs"); do
    for size in "${sizes[@]}"; do
        before=$(cpu_s "$collector")
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE=$size taskset -c "$gen_core" "$loadlens" run --url "$url" \
            --rate "$rate" --duration "${seconds}s" --collector http://127.0.0.1:24317 \
            --data "$work/store" --quiet --summary-json "$work/run.json" >/dev/null
        # Let the collector take in the last batches before reading its CPU.
        sleep 1.5
        after=$(cpu_s "$collector")
        python3 - "$work/run.json" "$before" "$after" "$size" <<'PY' | tee -a "$work/runs"
import json, sys
summary = json.load(open(sys.argv[1]))
cpu = float(sys.argv[3]) - float(sys.argv[2])
spans = max(1, summary["spans_exported"])
us = 1e6 * cpu / spans
mark = "  (over 10 us: compaction?)" if us > 10 else ""
print(f"batch {sys.argv[4]:>5}: {spans} spans, {summary['spans_dropped']} dropped, "
      f"collector {cpu:.2f} CPU-s, {us:.2f} us a span{mark}")
PY
    done
done
python3 - "$work/runs" <<'PY'
import re, statistics, sys
by_size = {}
for line in open(sys.argv[1]):
    m = re.match(r"batch +(\d+): .* ([\d.]+) us a span", line)
    if m and float(m.group(2)) <= 10:
        by_size.setdefault(int(m.group(1)), []).append(float(m.group(2)))
for size, values in sorted(by_size.items()):
    print(f"batch {size:>5}: mean {statistics.mean(values):.2f}, median "
          f"{statistics.median(values):.2f} us a span over {len(values)} runs")
PY
