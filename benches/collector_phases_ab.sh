#!/usr/bin/env bash
# The collector bench's one-thread phases (decode only, wire to Arrow,
# wire to Arrow with rows held for a flush, Arrow to Parquet) for two or
# more builds, run in turn, so that a change to the conversion or the
# flush is measured against the build without it under the same load of
# the machine. One line per run, then, against the first bench, the mean
# ratio of each round's pair per phase and how often it was higher. The
# decode-only phase runs the same code in every build: its pair ratio
# shows how far the machine drifted between the runs of a pair.
#
#   benches/collector_phases_ab.sh ROUNDS SPANS BENCH_A BENCH_B [more benches...]
#   benches/collector_phases_ab.sh 8 3000000 /tmp/bench-before /tmp/bench-after
#
# A bench binary is what `cargo bench -p collector --bench throughput
# --no-run` prints as its executable; copy it aside before building the
# other side. Phases are CPU-seconds of one thread, counted in clock
# ticks: below some 2,000,000 spans a run's figures move in steps of a
# few percent.
set -euo pipefail
[[ $# -ge 4 ]] || { sed -n '2,18p' "$0" >&2; exit 2; }
rounds=$1
spans=$2
shift 2
for bench in "$@"; do
    [[ -x $bench ]] || { echo "not an executable: $bench" >&2; exit 2; }
done
field() { awk -F: -v key="$1" 'index($0, key) == 1 { split($2, words, " "); print words[1] }'; }
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for round in $(seq 1 "$rounds"); do
    for bench in "$@"; do
        out=$("$bench" --spans "$spans" --phases-only 2>&1)
        printf '%s %s decode=%s wire=%s held=%s flush=%s\n' \
            "$round" "$(basename "$bench")" \
            "$(field 'decode only' <<<"$out")" \
            "$(field 'wire to Arrow' <<<"$out")" \
            "$(field 'convert, held' <<<"$out")" \
            "$(field 'Arrow to Parquet' <<<"$out")" | tee -a "$runs"
    done
done
awk '
{
    b = $2; if (!(b in seen)) { seen[b] = 1; order[++n] = b }
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[b, $1, kv[1]] = kv[2] }
    rounds[b]++
}
END {
    split("decode wire held flush", keys, " ")
    for (o = 1; o <= n; o++) {
        b = order[o]; line = b ":"
        for (k = 1; k <= 4; k++) {
            key = keys[k]; sum = 0
            for (r = 1; r <= rounds[b]; r++) sum += v[b, r, key]
            line = line sprintf(" %s mean %.0f;", key, sum / rounds[b])
        }
        print line
        if (o == 1) continue
        a = order[1]; line = "  against " a ":"
        for (k = 1; k <= 4; k++) {
            key = keys[k]; m = 0; up = 0; q = 0
            for (r = 1; r <= rounds[b]; r++) {
                if (v[a, r, key] + 0 == 0 || v[b, r, key] == "") continue
                m++; up += v[b, r, key] > v[a, r, key]; q += v[b, r, key] / v[a, r, key]
            }
            if (m) line = line sprintf(" %s %.3f (higher in %d of %d);", key, q / m, up, m)
        }
        print line
    }
}' "$runs"
