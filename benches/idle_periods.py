#!/usr/bin/env python3
"""How long one CPU sat idle, from a recording of its context switches,
and in periods of what length: to see whether a process pinned to that
CPU used all of it.

    perf record -e sched:sched_switch -C CPU -o switches.data -- sleep 3
    perf script -i switches.data -F cpu,time,trace | benches/idle_periods.py

The collector's bench pins the collector to the last CPU (it prints
which). An idle period runs from a switch to the idle task (pid 0) to
the next switch away from it; a period under way when the recording
starts or ends is left out, so the figures cover the time from the first
switch to the last. The last lines name the threads after which the CPU
went idle, with their state as they left it: S, sleeping (waiting on a
socket, a channel or a timer), or D, waiting on the disk.
"""

import collections
import re
import sys

SWITCH = re.compile(
    r"\s*\[(\d+)\]\s+(\d+)\.(\d{6}):\s+prev_comm=(.+?) prev_pid=(\d+) .*?"
    r"prev_state=(\S+) ==> next_comm=.+? next_pid=(\d+) "
)

# Upper bounds of the period lengths reported, in µs.
BOUNDS = [10, 100, 1_000, 10_000, 100_000]


def label(bound):
    """`bound` µs as a period length bucket's name."""
    lower = {10: 0}.get(bound, bound // 10)
    if lower == 0:
        return f"under {bound / 1000:g} ms"
    return f"{lower / 1000:g} to {bound / 1000:g} ms"


def main():
    cpus = set()
    first = last = None
    idle_since = went_idle = None
    idle = 0
    by_length = collections.Counter()
    by_thread = collections.Counter()
    for line in sys.stdin:
        match = SWITCH.match(line)
        if not match:
            continue
        cpus.add(match[1])
        # Integer µs, so that a period's length falls in its bucket exactly.
        time = int(match[2]) * 1_000_000 + int(match[3])
        first = time if first is None else first
        last = time
        previous, previous_pid, state, next_pid = match[4], match[5], match[6], match[7]
        if next_pid == "0":
            idle_since, went_idle = time, f"{previous} ({previous_pid}), {state}"
        elif previous_pid == "0" and idle_since is not None:
            length = time - idle_since
            idle += length
            bound = next((b for b in BOUNDS if length < b), None)
            by_length[bound] += length
            by_thread[went_idle] += length
            idle_since = None
    if len(cpus) > 1:
        sys.exit(f"switches of {len(cpus)} CPUs in the input: record one, with `-C CPU`")
    if first is None or last == first:
        sys.exit("no context switches in the input: see the usage at the top of this file")
    span = last - first
    print(
        f"CPU {cpus.pop()}: {idle / 1e6:.3f} s idle in {span / 1e6:.3f} s "
        f"from its first switch to its last ({100 * idle / span:.0f}%)"
    )
    for bound in BOUNDS + [None]:
        if by_length[bound]:
            name = label(bound) if bound else f"{BOUNDS[-1] / 1000:g} ms or more"
            print(f"  in periods of {name}: {by_length[bound] / 1e3:.1f} ms")
    for thread, length in by_thread.most_common(5):
        print(f"  after {thread}: {length / 1e3:.1f} ms")


if __name__ == "__main__":
    main()
