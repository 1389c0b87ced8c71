#!/usr/bin/env bash
# What a collector's first compaction pass costs when every span file of a
# store is new to it (as after a restart): CPU seconds and peak RSS.
#
#   benches/compaction_compare.sh STORE
#
# STORE is left as it is: the collector works on a hard-linked copy (same
# file system as /tmp), with a target size so small that every file counts as
# large, so the pass only compares files with their partitions. Files younger
# than a day are compared; the analyzer's bench store, written by
# `loadlens-fixture`, is a good STORE on the day it is written.
set -euo pipefail

store=${1:?usage: benches/compaction_compare.sh STORE}
root=$(cd "$(dirname "$0")/.." && pwd)
loadlens=${LOADLENS:-${CARGO_TARGET_DIR:-$root/target}/release/loadlens}
[[ -x $loadlens ]] || { echo "no release build at $loadlens; run cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
cp -al "$store" "$work/store"
cat > "$work/collector.yaml" <<CONF
data: $work/store
grpc_addr: 127.0.0.1:14617
http_addr: 127.0.0.1:14618
compaction_interval: 2s
compaction_target_size: 1KiB
CONF
count() { find "$work/store/spans" -name 'part-*.parquet' | wc -l; }
before=$(count)
echo "span files: $before"
"$loadlens" collector --config "$work/collector.yaml" >"$work/collector.log" 2>&1 &
pid=$!
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# The pass is over when the CPU time has not moved for three seconds.
last=-1 same=0
for _ in $(seq 600); do
    sleep 1
    now=$(cpu)
    if [[ $now == "$last" ]]; then same=$((same + 1)); else same=0; fi
    last=$now
    (( same >= 3 && now > 0 )) && break
done
ticks=$(getconf CLK_TCK)
python3 -c "import sys; print(f'first pass: {int(sys.argv[1]) / int(sys.argv[2]):.2f} CPU-s')" "$last" "$ticks"
grep VmHWM "/proc/$pid/status"
kill -TERM "$pid"; wait "$pid" || true
echo "span files after: $(count); new (rewritten): $(find "$work/store/spans" -name 'part-*.parquet' -newer "$work/collector.yaml" | wc -l)"
