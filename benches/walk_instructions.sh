#!/usr/bin/env bash
# Instructions the collector's wire walk (`convert_encoded`) takes in the
# throughput bench's one-thread phases, counted by callgrind: repeatable
# whatever else the machine does, so a change of a few percent shows where
# timed runs drift by more. One line per bench binary: the instructions
# and, per span, over the requests of 512 spans the phases convert.
#
#   benches/walk_instructions.sh [--function NAME] BENCH [more benches...]
#   benches/walk_instructions.sh /tmp/bench-before /tmp/bench-after
#
# With --function, a second line gives the instructions of the function
# NAME (as callgrind names it, e.g.
# `collector::convert::spans::SparseStrings::append_option`) over the
# same phases, its calls, and the instructions a call: what a call of a
# builder costs, to weigh writing one's own.
#
# A bench binary is what `cargo bench -p collector --bench throughput
# --no-run` prints as its executable; copy it aside before building the
# other side. Needs valgrind (Debian's `valgrind` package); each bench
# takes about a minute under it.
set -euo pipefail
function=
if [[ ${1:-} == --function ]]; then
    function=${2:?--function takes a name}
    shift 2
fi
[[ $# -ge 1 ]] || { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for bench in "$@"; do
    [[ -x $bench ]] || { echo "not an executable: $bench" >&2; exit 2; }
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bench" --bench --phases-only --spans 51200 >/dev/null 2>&1
    # In the caller tree, a function's block is its callers' lines ("<",
    # each with its call count) and then its own line ("*", the inclusive
    # cost). callgrind_annotate names source files relative to the folder
    # it runs in, and splits a function in two where sources are found, so
    # it runs in the temporary file's folder, where none are.
    (cd "$(dirname "$out")" && callgrind_annotate --tree=caller --inclusive=yes --threshold=100 "$out" 2>/dev/null) |
        awk -v bench="$(basename "$bench")" -v fname="$function" '
            /^ *$/ { calls = 0; next }
            / < / { n = $0; sub(/.*\(/, "", n); sub(/x\).*/, "", n); gsub(",", "", n); calls += n; next }
            !found && / \* .*spans::convert_encoded \[/ && calls > 0 {
                gsub(",", "", $1)
                printf "%s: %s instructions in convert_encoded, %d requests, %d per span\n",
                    bench, $1, calls, $1 / (calls * 512)
                found = 1
            }
            fname != "" && !named && / \* / && index($0, ":" fname " [") && calls > 0 {
                gsub(",", "", $1)
                printf "%s: %s instructions in %s, %d calls, %.1f per call\n",
                    bench, $1, fname, calls, $1 / calls
                named = 1
            }
            END {
                if (!found) { print bench ": convert_encoded not found" > "/dev/stderr"; exit 1 }
                if (fname != "" && !named) { print bench ": " fname " not found" > "/dev/stderr"; exit 1 }
            }'
done
