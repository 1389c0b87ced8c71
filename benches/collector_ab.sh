#!/usr/bin/env bash
# Two builds of the collector's throughput bench, run in turn, so that a
# change is measured against the build without it under the same load of
# the machine. One line per run: the end-to-end spans per collector
# CPU-second, its ratio to decode-only, the two one-thread phases, bytes
# per span on disk, the collector's peak RSS and its page faults per span.
#
#   benches/collector_ab.sh ROUNDS SPANS BENCH_A BENCH_B [more benches...]
#   benches/collector_ab.sh 5 2000000 /tmp/bench-before /tmp/bench-after
#
# A bench binary is what `cargo bench -p collector --bench throughput
# --no-run` prints as its executable; copy it aside before building the
# other side. Runs vary by 5-10% from one to the next on a 2-core machine,
# so compare the means of several rounds, never two single runs.
set -euo pipefail
[[ $# -ge 4 ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
rounds=$1
spans=$2
shift 2
for bench in "$@"; do
    [[ -x $bench ]] || { echo "not an executable: $bench" >&2; exit 2; }
done
field() { awk -v key="$1" -v n="$2" 'index($0, key) == 1 { print $n }'; }
for round in $(seq 1 "$rounds"); do
    for bench in "$@"; do
        out=$("$bench" --spans "$spans" 2>&1)
        printf '%s %s e2e=%s ratio=%s walk=%s flush=%s bytes=%s rss_mib=%s faults_per_span=%s\n' \
            "$round" "$(basename "$bench")" \
            "$(field 'end to end' 5 <<<"$out")" \
            "$(field 'ratio' 3 <<<"$out")" \
            "$(field 'wire to Arrow' 5 <<<"$out")" \
            "$(field 'Arrow to Parquet' 5 <<<"$out")" \
            "$(field 'on disk' 4 <<<"$out")" \
            "$(field 'collector memory' 4 <<<"$out")" \
            "$(field 'collector memory' 8 <<<"$out")"
    done
done
