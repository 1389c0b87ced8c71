#!/usr/bin/env python3
"""Samples of one process by symbol, from `perf script -F pid,ip,sym` of a
recording made with call graphs (`perf record -g`).

    perf script -i perf.data -F pid,ip,sym | benches/perf_symbols.py PID
    perf script -i perf.data -F pid,ip,sym | benches/perf_symbols.py PID --inclusive
    perf script -i perf.data -F pid,ip,sym | benches/perf_symbols.py PID --under write_partition_after

By default each sample counts for its leaf symbol; with --inclusive it counts
once for every symbol on its stack. With --under TEXT only samples with a
symbol containing TEXT on their stack count: where one part of the work,
a flush, say, spends its time. PID is the process (all its threads):
`perf script -F pid,tid,comm | sort | uniq -c` lists what a recording holds.
Two recordings of the same work compare line by line (BENCHMARKS.md,
"What a request costs").
"""

import collections
import sys


def samples(lines, pid):
    """Stacks (leaf first, symbols without offsets) of the samples of
    process `pid` in `perf script -F pid,ip,sym` output. A sample is a
    header line holding its pid (perf may pad it with spaces), then one
    tab-indented line per frame, then a blank line."""
    ours, stack = False, []
    for line in lines:
        if not line.strip():
            if ours and stack:
                yield stack
            ours, stack = False, []
        elif not line.startswith("\t"):
            ours, stack = line.split()[0] == pid, []
        elif ours:
            parts = line.strip().split(None, 1)
            stack.append((parts[1] if len(parts) > 1 else "?").split("+0x")[0])
    if ours and stack:
        yield stack


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    pid = sys.argv[1]
    options = sys.argv[2:]
    inclusive = "--inclusive" in options
    under = None
    if "--under" in options:
        at = options.index("--under") + 1
        if at == len(options):
            sys.exit("--under takes the text of a symbol")
        under = options[at]
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for stack in samples(sys.stdin, pid):
        if under is not None and not any(under in symbol for symbol in stack):
            continue
        total += 1
        # Inclusive: once for every symbol on the stack; else the leaf's.
        counts.update(set(stack) if inclusive else stack[:1])
    what = f" under {under}" if under is not None else ""
    print(f"{total} samples of process {pid}{what}")
    for symbol, count in counts.most_common():
        print(f"{count:8} {symbol}")


if __name__ == "__main__":
    main()
