#!/usr/bin/env bash
# Generator throughput against wrk, side by side on one machine.
#
# nginx serves a small static response on loopback, pinned to one core; wrk
# (one thread) and then `loadlens run` (closed model, the same number of
# connections) drive it from the other core for the same duration. loadlens
# runs twice: with telemetry off, and with every request traced to a running
# collector (which shares nginx's core; on a 2-core machine there is no third).
# Serving a file, nginx's core is the limit; so wrk, oha and untraced loadlens
# then run once more against a response nginx writes from its configuration,
# which costs it less, so that the generator's own core is the limit.
#
#   benches/generator_vs_wrk.sh [connections] [seconds]
#
# Needs: wrk and nginx (Debian: apt-get install wrk nginx-light), taskset, and a
# release build of loadlens (cargo build --release; set LOADLENS to its path).
# oha (cargo install oha) runs too when it is on the PATH.
set -euo pipefail

connections=${1:-50}
seconds=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
loadlens=${LOADLENS:-${CARGO_TARGET_DIR:-$root/target}/release/loadlens}
[[ -x $loadlens ]] || { echo "no release build at $loadlens; run cargo build --release" >&2; exit 2; }
for tool in wrk nginx taskset python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done
cores=$(nproc)
gen_core=0
srv_core=$((cores > 1 ? 1 : 0))

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port=18090
chmod 755 "$work"   # nginx workers run as another user
mkdir -p "$work/html"
printf 'ok\n' > "$work/html/index.html"
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
        root $work/html;
        # The same 3 bytes from nginx's configuration: no open, fstat and
        # close per request, so nginx costs less and the generator's core
        # becomes the limit.
        location = /fixed { return 200 "ok\n"; }
    }
}
CONF
taskset -c "$srv_core" nginx -c "$work/nginx.conf" -p "$work"
sleep 0.5
url="http://127.0.0.1:$port/index.html"
curl -sf "$url" >/dev/null

echo "machine: $(nproc) cores, $(uname -m); generator on core $gen_core, nginx on core $srv_core"
echo "connections $connections, $seconds s each, after a 3 s warm-up run"
taskset -c "$gen_core" wrk -t1 -c "$connections" -d3s "$url" >/dev/null

# Each function below drives $1 from the generator's core for the run's
# length and prints "<requests per second> <CPU microseconds per request>",
# CPU being user + system time from /usr/bin/time, so every tool is timed
# the same way.
time_wrk() {
    /usr/bin/time -f "%U %S" -o "$work/wrk.cpu" taskset -c "$gen_core" wrk -t1 -c "$connections" \
        -d"${seconds}s" "$1" >"$work/wrk.out"
    python3 -c '
import sys
cpu = sum(map(float, open(sys.argv[1]).read().split()))
out = open(sys.argv[2]).read().split()
rate = float(out[out.index("Requests/sec:") + 1])
requests = int(out[out.index("requests") - 1])
print(rate, round(1e6 * cpu / requests, 1))' "$work/wrk.cpu" "$work/wrk.out"
}
# oha (cargo install oha) is a second peer when it is installed.
time_oha() {
    /usr/bin/time -f "%U %S" -o "$work/oha.cpu" taskset -c "$gen_core" oha -z "${seconds}s" \
        -c "$connections" --no-tui --output-format json "$1" >"$work/oha.json"
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
cpu = sum(map(float, open(sys.argv[2]).read().split()))
print(round(s["requestsPerSec"], 1), round(1e6 * cpu / (s["requestsPerSec"] * s["total"]), 1))' \
        "$work/oha.json" "$work/oha.cpu"
}
# loadlens with telemetry off; the traced run below also writes a summary.
summary_rps() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput_rps"], 1))' "$1"; }
cpu_per_request() {
    python3 -c 'import json,sys; cpu=sum(map(float, open(sys.argv[2]).read().split())); print(round(1e6 * cpu / json.load(open(sys.argv[1]))["requests"], 1))' "$1" "$2"
}
time_loadlens_off() {
    /usr/bin/time -f "%U %S" -o "$work/off.cpu" taskset -c "$gen_core" "$loadlens" run --url "$1" \
        --concurrency "$connections" --duration "${seconds}s" --no-telemetry --quiet \
        --summary-json "$work/off.json" >/dev/null
    echo "$(summary_rps "$work/off.json") $(cpu_per_request "$work/off.json" "$work/off.cpu")"
}

read -r wrk_rps wrk_cpu < <(time_wrk "$url")
echo "wrk -t1:                          $wrk_rps req/s ($wrk_cpu us CPU per request)"
oha_rps=""
oha_cpu=""
if command -v oha >/dev/null; then
    read -r oha_rps oha_cpu < <(time_oha "$url")
    echo "oha:                              $oha_rps req/s ($oha_cpu us CPU per request)"
fi
read -r off_rps off_cpu < <(time_loadlens_off "$url")
echo "loadlens, telemetry off:         $off_rps req/s ($off_cpu us CPU per request)"

grpc=127.0.0.1:14317
taskset -c "$srv_core" "$loadlens" collector --data "$work/store" --grpc-addr "$grpc" \
    --http-addr 127.0.0.1:14318 --no-fsync >"$work/collector.log" 2>&1 &
collector=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:14318/healthz >/dev/null && break; sleep 0.1; done
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
nginx_before=$(cpu_s "$nginx_worker")
/usr/bin/time -f "%U %S" -o "$work/on.cpu" taskset -c "$gen_core" "$loadlens" run --url "$url" \
    --concurrency "$connections" --duration "${seconds}s" --collector "http://$grpc" \
    --data "$work/store" --quiet --summary-json "$work/on.json" >/dev/null
on_rps=$(summary_rps "$work/on.json")
on_cpu=$(cpu_per_request "$work/on.json" "$work/on.cpu")
collector_cpu=$(cpu_s "$collector")
nginx_cpu=$(python3 -c 'import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))' "$nginx_before" "$(cpu_s "$nginx_worker")")
generator_cpu=$(python3 -c 'print(round(sum(map(float, open("'"$work/on.cpu"'").read().split())), 2))')
read -r exported dropped < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["spans_exported"], s["spans_dropped"])' "$work/on.json")
kill -TERM "$collector"; wait "$collector" || true
echo "loadlens, every request traced:  $on_rps req/s (spans exported $exported, dropped $dropped;" \
    "$on_cpu us CPU per request)"
echo "  CPU-s over the ${seconds} s traced run: generator $generator_cpu (core $gen_core);" \
    "nginx $nginx_cpu + collector $collector_cpu (core $srv_core)"

fixed="http://127.0.0.1:$port/fixed"
echo "fixed response ($fixed), telemetry off; CPU-s of nginx's core each tool left idle shows which core was the limit:"
nginx_idle() { python3 -c 'import sys; print(round(float(sys.argv[3]) - float(sys.argv[2]) + float(sys.argv[1]), 2))' "$seconds" "$(cpu_s "$nginx_worker")" "$1"; }
before=$(cpu_s "$nginx_worker")
read -r fixed_wrk_rps fixed_wrk_cpu < <(time_wrk "$fixed")
echo "  wrk -t1:                        $fixed_wrk_rps req/s ($fixed_wrk_cpu us CPU per request; nginx idle $(nginx_idle "$before") s)"
fixed_oha_rps=""
if command -v oha >/dev/null; then
    before=$(cpu_s "$nginx_worker")
    read -r fixed_oha_rps fixed_oha_cpu < <(time_oha "$fixed")
    echo "  oha:                            $fixed_oha_rps req/s ($fixed_oha_cpu us CPU per request; nginx idle $(nginx_idle "$before") s)"
fi
before=$(cpu_s "$nginx_worker")
read -r fixed_off_rps fixed_off_cpu < <(time_loadlens_off "$fixed")
echo "  loadlens:                       $fixed_off_rps req/s ($fixed_off_cpu us CPU per request; nginx idle $(nginx_idle "$before") s)"

python3 - "$wrk_rps" "$off_rps" "$on_rps" "$oha_rps" "$off_cpu" "$on_cpu" "$wrk_cpu" "$oha_cpu" \
    "$fixed_wrk_rps" "$fixed_off_rps" "$fixed_oha_rps" <<'PY'
import sys
wrk, off, on = map(float, sys.argv[1:4])
print(f"ratio telemetry off / wrk:  {off / wrk:.2f}  (goal >= 1.0)")
print(f"ratio traced / wrk:         {on / wrk:.2f}  (goal >= 0.8)")
off_cpu, on_cpu, wrk_cpu = map(float, sys.argv[5:8])
print(f"CPU per request, off / traced: {off_cpu / on_cpu:.2f}  (the traced rate the generator's own core allows, as a share of the untraced one)")
# When nginx's core is the limit, both tools make about the same rate
# whatever they cost; requests per CPU-second compare the tools themselves.
print(f"requests per CPU-second, telemetry off / wrk: {wrk_cpu / off_cpu:.2f}")
print(f"requests per CPU-second, traced / wrk:        {wrk_cpu / on_cpu:.2f}")
if sys.argv[4]:
    oha = float(sys.argv[4])
    print(f"ratio telemetry off / oha:  {off / oha:.2f}")
    print(f"ratio traced / oha:         {on / oha:.2f}")
    oha_cpu = float(sys.argv[8])
    print(f"requests per CPU-second, telemetry off / oha: {oha_cpu / off_cpu:.2f}")
    print(f"requests per CPU-second, traced / oha:        {oha_cpu / on_cpu:.2f}")
# Against the fixed response the generator's core is the limit, so the rate
# ratio compares the tools directly.
fixed_wrk, fixed_off = map(float, sys.argv[9:11])
print(f"fixed response, ratio telemetry off / wrk: {fixed_off / fixed_wrk:.2f}  (goal >= 1.0)")
if sys.argv[11]:
    print(f"fixed response, ratio telemetry off / oha: {fixed_off / float(sys.argv[11]):.2f}")
PY
