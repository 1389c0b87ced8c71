#!/usr/bin/env python3
"""CPU a write-ahead log's appends cost, buffered against O_DIRECT.

    benches/wal_io.py [DIR] [--rounds N] [--records N] [--record-bytes N]
    taskset -c 1 benches/wal_io.py ~/.cache/loadlens

Appends records of a generator batch's size (200 KiB by default) to one
file in DIR, written over in place as the collector's reused log segments
are, with fdatasync after each, as the collector's log commits a request
at a time under load. Buffered, each record goes through the page cache and
its writeback; with O_DIRECT it is first copied into a page-aligned buffer
(the copy the log would have to make, counted here) and its length padded
to 4 KiB. Prints CPU seconds (user + system) and wall seconds per GiB
appended for each round of each mode, then the means and medians. DIR
must be on a file system that supports O_DIRECT, as ext4 and xfs do.
"""

import argparse
import mmap
import os
import statistics
import time

ALIGN = 4096


def append(path: str, payload: bytes, records: int, direct: bool) -> tuple[float, float]:
    """CPU and wall seconds to append `records` copies of `payload`."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags, 0o644)
    padded = (len(payload) + ALIGN - 1) // ALIGN * ALIGN
    aligned = mmap.mmap(-1, padded)  # page-aligned, as O_DIRECT needs
    before, start = os.times(), time.monotonic()
    offset = 0
    try:
        for _ in range(records):
            if direct:
                aligned[: len(payload)] = payload
                os.pwritev(fd, [memoryview(aligned)[:padded]], offset)
                offset += padded
            else:
                os.pwrite(fd, payload, offset)
                offset += len(payload)
            os.fdatasync(fd)
    finally:
        os.close(fd)
        aligned.close()
    after, end = os.times(), time.monotonic()
    cpu = (after.user - before.user) + (after.system - before.system)
    return cpu, end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default=".")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--record-bytes", type=int, default=200 * 1024 + 123)
    args = parser.parse_args()
    path = os.path.join(args.dir, f".wal-io-{os.getpid()}.log")
    payload = os.urandom(args.record_bytes)
    gib = args.records * args.record_bytes / 2**30
    results: dict[str, list[tuple[float, float]]] = {"buffered": [], "O_DIRECT": []}
    try:
        for round_ in range(1, args.rounds + 1):
            for mode in results:
                cpu, wall = append(path, payload, args.records, mode == "O_DIRECT")
                results[mode].append((cpu / gib, wall / gib))
                print(f"{round_} {mode:8}: {cpu / gib:.3f} CPU-s/GiB, {wall / gib:.2f} wall-s/GiB")
    except OSError as e:
        raise SystemExit(f"wal_io: {path}: {e.strerror} (O_DIRECT needs a file system that has it)")
    finally:
        if os.path.exists(path):
            os.unlink(path)
    for mode, runs in results.items():
        cpu, wall = [c for c, _ in runs], [w for _, w in runs]
        print(
            f"{mode:8}: CPU-s/GiB mean {statistics.mean(cpu):.3f}, median {statistics.median(cpu):.3f}; "
            f"wall-s/GiB mean {statistics.mean(wall):.2f}, median {statistics.median(wall):.2f}"
        )


if __name__ == "__main__":
    main()
