#!/usr/bin/env python3
"""How long one CPU sat idle, from a recording of its context switches,
and in periods of what length: to see whether a process pinned to that
CPU used all of it.

    perf record -e sched:sched_switch -C 1 -o switches.data -- sleep 3
    perf script -i switches.data -F time,trace | benches/idle_periods.py

An idle period runs from a switch to the idle task (`swapper`) to the
next switch away from it. The last lines name the tasks that went idle,
with the idle time that followed each (a task that blocks on I/O, or on
a socket with nothing to read, leaves the CPU idle if nothing else can
run).
"""

import collections
import math
import re
import sys

SWITCH = re.compile(r"\s*([\d.]+):\s+prev_comm=(.+?) prev_pid=.*next_comm=(.+?) next_pid=")


def main():
    first = last = None
    idle_since = went_idle = None
    idle = 0.0
    by_length = collections.Counter()
    by_task = collections.Counter()
    for line in sys.stdin:
        match = SWITCH.match(line)
        if not match:
            continue
        time, previous, following = float(match[1]), match[2], match[3]
        first = time if first is None else first
        last = time
        if following.startswith("swapper"):
            idle_since, went_idle = time, previous
        elif previous.startswith("swapper") and idle_since is not None:
            length = time - idle_since
            idle += length
            # Decades: under 10 µs, 10-100 µs, ... 10-100 ms.
            decade = 10 ** math.floor(math.log10(max(length, 1e-6)))
            by_length[decade] += length
            by_task[went_idle] += length
            idle_since = None
    if first is None or last == first:
        sys.exit("no context switches in the input: see the usage at the top of this file")
    span = last - first
    print(f"{span:.3f} s recorded, {idle:.3f} s idle ({100 * idle / span:.0f}%)")
    for decade in sorted(by_length):
        print(f"  in periods of {decade * 1e3:g} to {decade * 1e4:g} ms: {by_length[decade]:.3f} s")
    for task, seconds in by_task.most_common(5):
        print(f"  after {task}: {seconds:.3f} s")


if __name__ == "__main__":
    main()
