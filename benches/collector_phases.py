#!/usr/bin/env python3
"""Where the collector's CPU goes, by phase, from a recording with DWARF
call graphs of the collector process:

    perf record -F 499 --call-graph dwarf,16384 -p PID -o perf.data -- sleep 5
    perf script -i perf.data -F pid,ip,sym | benches/collector_phases.py PID
    perf script -i perf.data -F pid,ip,sym | benches/collector_phases.py PID convert

Each sample counts once, for the first phase in the list below whose
pattern a frame on its stack contains: the Parquet writer before the rest
of a flush, the flush before the runtime, and so on. With a second
argument, the leaf symbols of the phases whose names start with it follow.
BENCHMARKS.md ("Where the collector's CPU goes now") quotes its output.
"""

import collections
import sys

from perf_symbols import samples

# (phase, pattern), most specific first.
PHASES = [
    ("flush.encode.zstd", "ZSTD_"),
    ("flush.encode.strings.intern", "Interner"),
    ("flush.encode.strings.stats", "compute_min_max"),
    ("flush.encode.strings", "ByteArrayEncoder"),
    ("flush.encode.ids", "FixedLenByteArray"),
    ("flush.encode.ints", "DeltaBitPack"),
    ("flush.encode.ints", "ColumnValueEncoderImpl"),
    ("flush.encode", "parquet::"),
    ("flush.gather", "interleave"),
    ("flush.recent", "RecentSpans"),
    ("flush.sort", "sort"),
    ("flush.other", "write_partition_after"),
    ("convert.walk", "convert_traces"),
    ("convert.other", "convert_encoded"),
    ("wal.sync", "fdatasync"),
    ("wal", "wal_thread"),
    ("red", "red::"),
    ("tonic.decode", "tonic::codec::decode"),
    ("grpc.service", "ExportTraces"),
    ("h2", "h2::"),
    ("hyper", "hyper::"),
    ("tonic", "tonic::"),
    ("drop.batches", "drop_in_place<alloc::vec::Vec<arrow_array::record_batch::RecordBatch"),
    ("drop", "drop_in_place"),
    ("runtime", "tokio::"),
]


def phase(stack):
    for name, pattern in PHASES:
        if any(pattern in frame for frame in stack):
            return name
    return "other"


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    pid, detail = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    phases: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[tuple[str, str]] = collections.Counter()
    for stack in samples(sys.stdin, pid):
        name = phase(stack)
        phases[name] += 1
        leaves[(name, stack[0])] += 1
    total = sum(phases.values())
    print(f"{total} samples of process {pid}")
    for name, count in phases.most_common():
        print(f"{count:8} {100 * count / max(total, 1):5.1f}%  {name}")
    if detail:
        for (name, leaf), count in leaves.most_common():
            if name.startswith(detail) and count >= 3:
                print(f"{count:8}  {name}  {leaf}")


if __name__ == "__main__":
    main()
