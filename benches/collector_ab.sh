#!/usr/bin/env bash
# Two builds of the collector's throughput bench, run in turn, so that a
# change is measured against the build without it under the same load of
# the machine. One line per run: the end-to-end spans per collector
# CPU-second and per second of wall time, the share of the run the
# collector was busy and the kernel's share of its CPU (benches since
# `b3d810c`), the ratio to decode-only, the decode-only peer
# before the run and after it (benches since the after figure was added
# print both), the two one-thread phases, bytes per span on disk, the
# collector's peak RSS and its page faults per span. Since `1d998f4` the
# ratio is to the mean of the two peer figures, before it to the one
# before the run: compare ratios between benches on the same side of it.
#
#   benches/collector_ab.sh [--phases] ROUNDS SPANS BENCH_A BENCH_B [more benches...]
#   benches/collector_ab.sh 5 2000000 /tmp/bench-before /tmp/bench-after
#   benches/collector_ab.sh 6 4000000 /tmp/bench /tmp/bench,--in-flight,16
#
# A bench may carry arguments of its own after commas, to compare one
# build run two ways; its runs are named by the whole word, and a bench
# given twice (one build against itself) as NAME and NAME#2. The first
# line names the host (model, CPUs, clock, AVX-512, boot time): a
# virtual machine is not always started on the same kind, and figures
# from two hosts do not compare.
#
# A bench binary is what `cargo bench -p collector --bench throughput
# --no-run` prints as its executable; copy it aside before building the
# other side. Runs vary by 10-15% from one to the next on a 2-core machine,
# and the machine's speed drifts within the hour, so compare several
# rounds, never two single runs: the summary at the end gives each bench's
# means and, against the first, the mean ratio of each round's pair.
#
# With --phases, each run is the bench's one-thread phases only (decode
# only, wire to Arrow, wire to Arrow with rows held, Arrow to Parquet),
# and the summary gives each phase's mean pair ratio. The decode-only
# phase runs the same code in every build: its pair ratio shows how far
# the machine drifted between the runs of a pair. Phases are counted in
# clock ticks: below some 2,000,000 spans they move in steps of a few
# percent. Benches before `e297722` flush without a warm-up round, some
# 1.8 times slower: compare the flush phase only between benches on the
# same side of it.
set -euo pipefail
phases=false
if [[ ${1:-} == --phases ]]; then
    phases=true
    shift
fi
# Without enough arguments, the comment above is the usage.
[[ $# -ge 4 ]] || { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2; }
rounds=$1
spans=$2
shift 2
for bench in "$@"; do
    [[ -x ${bench%%,*} ]] || { echo "not an executable: ${bench%%,*}" >&2; exit 2; }
done
# Each bench's name in the runs: its file name and arguments, with #2, #3
# after a name given again, so that a bench run against itself (to see
# how far runs of one build spread) is summed as two.
benches=("$@")
declare -A given
names=()
for bench in "${benches[@]}"; do
    name=$(basename "$bench")
    count=$((${given[$name]:-0} + 1))
    given[$name]=$count
    ((count > 1)) && name+="#$count"
    names+=("$name")
done
# Runs `bench` (PATH[,ARG...]) with the arguments given after its own.
run() {
    local -a command
    IFS=, read -ra command <<<"$1"
    shift
    "${command[@]}" "$@" 2>&1
}
field() { awk -v key="$1" -v n="$2" 'index($0, key) == 1 { print $n }'; }
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
# The host the runs had: figures from two hosts do not compare.
awk -F': ' '/^model name/ { model = $2 } /^cpu MHz/ { mhz = $2 } /^processor/ { n++ }
    /^flags/ { avx = index(" " $2 " ", " avx512f ") ? "with" : "without" }
    END { printf "machine: %s, %d CPUs at %s MHz, %s AVX-512, ", model, n, mhz, avx }' /proc/cpuinfo
booted=$(awk '/^btime/ { print $2 }' /proc/stat)
date -u -d "@${booted:-0}" '+booted %Y-%m-%d %H:%M UTC' 2>/dev/null || echo "booted at an unknown time"
for round in $(seq 1 "$rounds"); do
    for at in "${!names[@]}"; do
        bench=${benches[at]}
        if $phases; then
            out=$(run "$bench" --spans "$spans" --phases-only)
            printf '%s %s decode=%s wire=%s held=%s flush=%s\n' \
                "$round" "${names[at]}" \
                "$(field 'decode only' 4 <<<"$out")" \
                "$(field 'wire to Arrow' 5 <<<"$out")" \
                "$(field 'convert, held' 4 <<<"$out")" \
                "$(field 'Arrow to Parquet' 5 <<<"$out")" | tee -a "$runs"
            continue
        fi
        out=$(run "$bench" --spans "$spans")
        printf '%s %s e2e=%s wall=%s busy=%s kernel=%s ratio=%s decode=%s after=%s walk=%s flush=%s bytes=%s rss_mib=%s faults_per_span=%s per_commit=%s\n' \
            "$round" "${names[at]}" \
            "$(field 'end to end' 5 <<<"$out")" \
            "$(field 'end to end' 10 <<<"$out")" \
            "$(field 'collector busy' 4 <<<"$out" | tr -d %)" \
            "$(field 'collector kernel' 4 <<<"$out" | tr -d %)" \
            "$(field 'ratio' 3 <<<"$out")" \
            "$(field 'decode only' 4 <<<"$out")" \
            "$(field 'decode after' 4 <<<"$out")" \
            "$(field 'wire to Arrow' 5 <<<"$out")" \
            "$(field 'Arrow to Parquet' 5 <<<"$out")" \
            "$(field 'on disk' 4 <<<"$out")" \
            "$(field 'collector memory' 4 <<<"$out")" \
            "$(field 'collector memory' 8 <<<"$out")" \
            "$(field 'log commits' 5 <<<"$out" | tr -d '(')" | tee -a "$runs"
    done
done
# The runs' figures by bench, round and name: v[bench, round, name].
read_runs='
{
    b = $2; if (!(b in seen)) { seen[b] = 1; order[++n] = b }
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[b, $1, kv[1]] = kv[2] }
    rounds[b]++
}'
if $phases; then
    # Per bench, each phase's mean; against the first, each phase's mean
    # pair ratio and how often it was higher.
    awk "$read_runs"'
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
    exit
fi
# Per bench: the range and mean of each figure, runs at or above the goals
# (500,000 spans per collector CPU-second, 0.5 of decode-only); and against
# the first bench, round by round, how often it was higher and the mean of
# the ratios of the pair (which the machine's drift between rounds moves
# less than it moves the means).
awk "$read_runs"'
END {
    nk = split("e2e wall busy kernel ratio decode after flush bytes rss_mib", keys, " ")
    split("%.0f %.0f %.0f %.0f %.2f %.0f %.0f %.0f %.1f %.0f", formats, " ")
    for (o = 1; o <= n; o++) {
        b = order[o]; line = b ":"
        for (k = 1; k <= nk; k++) {
            # A figure an older bench does not print is left out.
            key = keys[k]; sum = 0; lo = ""; hi = ""; m = 0
            for (r = 1; r <= rounds[b]; r++) {
                if (v[b, r, key] == "") continue
                x = v[b, r, key] + 0; sum += x; m++
                if (lo == "" || x < lo) lo = x
                if (hi == "" || x > hi) hi = x
            }
            if (m) line = line sprintf(" %s %s-%s mean " formats[k] ";", key, lo, hi, sum / m)
            else line = line sprintf(" %s n/a;", key)
        }
        met = 0; half = 0
        for (r = 1; r <= rounds[b]; r++) { met += v[b, r, "e2e"] >= 500000; half += v[b, r, "ratio"] >= 0.5 }
        line = line sprintf(" e2e >= 500000 in %d of %d, ratio >= 0.5 in %d", met, rounds[b], half)
        if (o > 1) {
            a = order[1]; up = 0; e = 0; f = 0; m = 0
            for (r = 1; r <= rounds[b]; r++) {
                if (v[a, r, "e2e"] == "" || v[b, r, "e2e"] == "") continue
                m++; up += v[b, r, "e2e"] > v[a, r, "e2e"]
                e += v[b, r, "e2e"] / v[a, r, "e2e"]; f += v[b, r, "flush"] / v[a, r, "flush"]
            }
            if (m) line = line sprintf("; against %s: higher in %d of %d, mean pair ratio %.3f (flush %.3f)", a, up, m, e / m, f / m)
        }
        print line
    }
}' "$runs"
