#!/usr/bin/env python3
"""Samples of one process by symbol, from `perf script -F pid,ip,sym` of a
recording made with call graphs (`perf record -g`).

    perf script -i perf.data -F pid,ip,sym | benches/perf_symbols.py PID
    perf script -i perf.data -F pid,ip,sym | benches/perf_symbols.py PID --inclusive

By default each sample counts for its leaf symbol; with --inclusive it counts
once for every symbol on its stack. PID is the process (all its threads):
`perf script -F pid,tid,comm | sort | uniq -c` lists what a recording holds.
Two recordings of the same work compare line by line (BENCHMARKS.md,
"What a request costs").
"""

import collections
import sys


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    pid = sys.argv[1]
    inclusive = "--inclusive" in sys.argv[2:]
    counts: collections.Counter[str] = collections.Counter()
    samples = 0
    ours = False
    on_stack: set[str] = set()
    leaf = True
    for line in sys.stdin:
        if not line.strip():
            ours = False
            continue
        if not line[0].isspace():
            # A sample's header line: its pid.
            ours = line.split()[0] == pid
            samples += ours
            on_stack, leaf = set(), True
            continue
        if not ours:
            continue
        parts = line.split(None, 1)
        symbol = parts[1].split("+0x")[0].strip() if len(parts) > 1 else "?"
        if inclusive:
            if symbol not in on_stack:
                on_stack.add(symbol)
                counts[symbol] += 1
        elif leaf:
            counts[symbol] += 1
        leaf = False
    print(f"{samples} samples of process {pid}")
    for symbol, count in counts.most_common():
        print(f"{count:8} {symbol}")


if __name__ == "__main__":
    main()
