#!/usr/bin/env bash
# Where the collector's instructions go over a whole run of the throughput
# bench, counted by callgrind: the collector process's total and, per
# span, its main parts (the wire walk and conversion, the flush and three
# of its pieces, the log's thread, the span builders and the RED tally).
# `benches/walk_instructions.sh` counts the walk alone, faster; this one
# says what share of the collector the walk is.
#
#   benches/collector_instructions.sh BENCH [SPANS]
#   benches/collector_instructions.sh /tmp/bench 256000
#
# BENCH is a bench binary (`cargo bench -p collector --bench throughput
# --no-run` prints it). Both the bench and the collector it starts run
# under valgrind, phases included: some 4 minutes for 256,000 spans (the
# default). Needs valgrind (Debian's `valgrind` package).
set -euo pipefail
[[ $# -ge 1 && $# -le 2 ]] || { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2; }
bench=$1
spans=${2:-256000}
[[ -x $bench ]] || { echo "not an executable: $bench" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/cg.%p" \
    "$bench" --bench --spans "$spans" >"$dir/log" 2>&1
# The collector is the process with a log thread (the bench's own
# phases convert and flush too, but log nothing).
collector=$(grep -l "collector::ingest::wal_thread" "$dir"/cg.* | head -1 || true)
[[ -n $collector ]] || { echo "no collector process among the callgrind files" >&2; exit 1; }
sent=$(awk '/^collector throughput:/ { print $3 }' "$dir/log")
# callgrind_annotate names source files relative to the folder it runs in
# and splits a function where sources are found: run it where none are.
(cd "$dir" && callgrind_annotate --inclusive=yes "$collector" 2>/dev/null) |
    awk -v spans="$sent" -v bench="$(basename "$bench")" '
        function count(line) { split(line, f, " "); gsub(",", "", f[1]); return f[1] }
        /PROGRAM TOTALS/ { total = count($0) }
        # A function as a whole: its line that names the binary.
        / \[.*\]$/ {
            for (i = 1; i <= n; i++)
                if (!(i in got) && index($0, ":" names[i] " [")) { got[i] = count($0) }
        }
        BEGIN {
            n = split("collector::convert::wire::convert_traces|collector::store::writer::write_partition_after|collector::store::writer::Gather::encode|zstd::bulk::compressor::Compressor::compress|collector::store::recent::RecentSpans::claim_all|collector::ingest::wal_thread|collector::convert::spans::SpansBuilder::append|collector::red::Tally::add_span", names, "|")
            split("the walk and conversion|the flush|… its gather and encoding|… zstd|… the recent-id index|the log thread|the span builders|the RED tally", labels, "|")
        }
        END {
            printf "%s: %s instructions in the collector, %d spans, %d a span\n", bench, total, spans, total / spans
            for (i = 1; i <= n; i++)
                if (i in got) printf "  %-26s %6d a span (%.0f%%)\n", labels[i], got[i] / spans, 100 * got[i] / total
                else printf "  %-26s not found\n", labels[i]
        }'
