#!/usr/bin/env python3
"""The analyzer against DuckDB: the same questions on the same Parquet store.

    python3 analyzer/benches/sql_vs_duckdb.py --data /tmp/bench-store \
        --loadlens target/release/loadlens --fixture target/release/loadlens-fixture

If --data does not exist yet, the store is written first with
`loadlens-fixture --requests-only --requests N` (default N: 20,100,000
scheduled requests, which gives just over 20,000,000 request spans: the
fixture drops 0.05% of spans as a real generator may).

Three questions about the fixture's load run, each written once for loadlens
(over its `requests` view) and once for DuckDB (over a view with the same
definition on `read_parquet(..., hive_partitioning = true)`):

  latency  p50, p95 and p99 of latency_ms by endpoint (step)
  rps      requests per second in each 10-second bucket of sent_at
  errors   error counts by error_type

Each query runs in two ways per engine:

  warm     the engine is up and has run the query once; the time is from
           sending the SQL to holding the whole result. loadlens: a
           `loadlens serve` process, POST /api/query over loopback (so the
           time includes HTTP and JSON). DuckDB: one in-process connection,
           execute + fetchall.
  cold     a new process per query, start to exit: `loadlens sql --format csv`
           against `python3 -c "import duckdb; ..."` (interpreter start and
           module import included; the file system cache is warm for both).

Each time is the best of --runs. Both engines get the same number of threads
(--threads, default: the machine's cores; DataFusion uses every core unless
told otherwise, DuckDB gets SET threads). The results of the two engines are
compared for every query: row counts, keys and counts exactly, floats to a
relative 1e-12. Any difference ends the bench with exit status 1 before a
figure is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

RUN_ID = "fixture-run"
FLOAT_TOLERANCE = 1e-12


@dataclass
class Query:
    name: str
    question: str
    loadlens: str
    duckdb: str


def queries(run_id: str) -> list[Query]:
    """The questions, as each engine spells them.

    DuckDB gets the fastest spelling found for it, so the ratio is not
    flattered: one quantile_cont with a list of quantiles (17% faster than
    three calls on the 20-million-span store), and 10-second buckets by
    integer arithmetic on epoch_ns (a third of the time of time_bucket,
    which needs a cast of the TIMESTAMPTZ_NS column to TIMESTAMPTZ and then
    works through ICU).
    """
    where = f"WHERE run_id = '{run_id}'"
    return [
        Query(
            "latency",
            "p50/p95/p99 latency by endpoint",
            f"""SELECT step, COUNT(*) AS n,
                   percentile(latency_ms, 0.5) AS p50_ms,
                   percentile(latency_ms, 0.95) AS p95_ms,
                   percentile(latency_ms, 0.99) AS p99_ms
               FROM requests {where}
               GROUP BY step ORDER BY step""",
            f"""SELECT step, n, p[1] AS p50_ms, p[2] AS p95_ms, p[3] AS p99_ms
               FROM (
                   SELECT step, COUNT(*) AS n,
                          quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS p
                   FROM requests {where}
                   GROUP BY step
               )
               ORDER BY step""",
        ),
        Query(
            "rps",
            "requests per second per 10-second bucket",
            f"""SELECT time_bucket('10s', sent_at) AS bucket, COUNT(*) / 10.0 AS rps
               FROM requests {where}
               GROUP BY bucket ORDER BY bucket""",
            # make_timestamp takes microseconds since the epoch.
            f"""SELECT make_timestamp(epoch_ns(sent_at) // 10000000000 * 10000000) AS bucket,
                      COUNT(*) / 10.0 AS rps
               FROM requests {where}
               GROUP BY bucket ORDER BY bucket""",
        ),
        Query(
            "errors",
            "error counts by type",
            f"""SELECT error_type, COUNT(*) AS n
               FROM requests {where} AND is_error
               GROUP BY error_type ORDER BY error_type""",
            f"""SELECT error_type, COUNT(*) AS n
               FROM requests {where} AND is_error
               GROUP BY error_type ORDER BY error_type""",
        ),
    ]


def breakdown(run_id: str) -> list[Query]:
    """Parts of the latency query, to see where its time goes (--breakdown).
    The views match, so one text serves both engines."""
    where = f"WHERE run_id = '{run_id}'"
    parts = [
        ("count", "COUNT(*): the filter columns", f"SELECT COUNT(*) FROM requests {where}"),
        ("nothing", "SELECT 1: the round trip, parsing and planning", "SELECT 1"),
        (
            "is_error",
            "COUNT(*) of errors: plus status_code",
            f"SELECT COUNT(*) FROM requests {where} AND is_error",
        ),
        (
            "max",
            "MAX(latency_ms): plus three timestamp columns",
            f"SELECT MAX(latency_ms) FROM requests {where}",
        ),
        (
            "max by step",
            "MAX(latency_ms) by step: plus grouping",
            f"SELECT step, COUNT(*), MAX(latency_ms) FROM requests {where} "
            "GROUP BY step ORDER BY step",
        ),
    ]
    queries = [Query(name, question, sql, sql) for name, question, sql in parts]
    # The percentile query with calls that cannot share one state (their
    # FILTERs differ, though every row passes them): the cost of three
    # copies of the values, as before `percentile` calls were shared.
    filters = ["latency_ms >= 0", "latency_ms > -1", "latency_ms > -2"]
    calls = ", ".join(
        f"{{f}}(latency_ms, {q}) FILTER (WHERE {cond}) AS p{i}"
        for i, (q, cond) in enumerate(zip([0.5, 0.95, 0.99], filters))
    )
    unshared = f"SELECT step, COUNT(*), {calls} FROM requests {where} GROUP BY step ORDER BY step"
    queries.append(
        Query(
            "unshared",
            "the percentile query, three calls that cannot share their values",
            unshared.format(f="percentile"),
            unshared.format(f="quantile_cont"),
        )
    )
    return queries


def duckdb_setup(data: Path, threads: int) -> list[str]:
    """DuckDB statements that make `requests` mean what it means in loadlens.

    The view repeats the columns of loadlens's `requests` view that the
    queries use, with the same arithmetic (integer nanoseconds, then a double
    divided by 1e6), so latency values are bit for bit the same.
    """
    glob = (data / "spans" / "**" / "*.parquet").as_posix()
    return [
        f"SET threads = {threads}",
        f"""CREATE VIEW requests AS
            SELECT
                NULLIF(run_id, '__HIVE_DEFAULT_PARTITION__') AS run_id,
                step,
                start_time AS sent_at,
                CAST(epoch_ns(end_time) - epoch_ns(COALESCE(intended_start, start_time)) AS DOUBLE)
                    / 1e6 AS latency_ms,
                error_type,
                status_code = 'ERROR' AS is_error
            FROM read_parquet('{glob}', hive_partitioning = true)
            WHERE kind = 'CLIENT' AND request_id IS NOT NULL""",
    ]


# ---------------------------------------------------------------- engines


class LoadlensServer:
    """A `loadlens serve` process on free loopback ports."""

    def __init__(self, binary: Path, data: Path):
        self.http = free_port()
        pg = free_port()
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--data",
                str(data),
                "--pg-addr",
                f"127.0.0.1:{pg}",
                "--http-addr",
                f"127.0.0.1:{self.http}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"loadlens serve exited: {self.log.read().decode()}")
            if time.monotonic() > deadline:
                self.close()
                raise SystemExit("loadlens serve did not answer /healthz in 60 s")
            time.sleep(0.1)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def query(self, sql: str) -> tuple[list[str], list[list]]:
        request = urllib.request.Request(
            self.url("/api/query"),
            data=json.dumps({"sql": sql}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=3600) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise SystemExit(f"loadlens: {e.read().decode()}\n{sql}") from e
        return body["columns"], body["rows"]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def best_of(runs: int, action) -> tuple[float, object]:
    """Runs `action` once untimed (warm-up), then `runs` times; the best time."""
    result = action()
    best = math.inf
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def run_process(argv: list[str]) -> None:
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode()}")


DUCKDB_PROCESS = """
import sys, duckdb
con = duckdb.connect()
for statement in sys.argv[1:-1]:
    con.execute(statement)
con.execute(sys.argv[-1]).fetchall()
"""


# ---------------------------------------------------------- comparison


def normalize(value):
    """One representation for both engines' values."""
    if isinstance(value, dt.datetime):
        # DuckDB hands a TIMESTAMP over naive: it is UTC already.
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return parsed
    return value


def differences(ours: list[list], theirs: list[tuple]) -> tuple[list[str], float]:
    """What differs between the two results, and the largest relative float difference."""
    problems = []
    if len(ours) != len(theirs):
        problems.append(f"{len(ours)} rows from loadlens, {len(theirs)} from DuckDB")
    worst = 0.0
    for i, (a_row, b_row) in enumerate(zip(ours, theirs)):
        if len(a_row) != len(b_row) and len(problems) < 10:
            problems.append(f"row {i}: {len(a_row)} columns from loadlens, {len(b_row)} from DuckDB")
        for j, (a, b) in enumerate(zip(a_row, b_row)):
            a, b = normalize(a), normalize(b)
            if isinstance(a, float) or isinstance(b, float):
                if a is None or b is None:
                    same = a is b
                else:
                    error = abs(a - b) / max(abs(a), abs(b), 1e-300)
                    worst = max(worst, error)
                    same = error <= FLOAT_TOLERANCE
            else:
                same = a == b
            if not same and len(problems) < 10:
                problems.append(f"row {i} column {j}: loadlens {a!r}, DuckDB {b!r}")
    return problems, worst


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="store directory")
    parser.add_argument("--loadlens", type=Path, default=Path("target/release/loadlens"))
    parser.add_argument(
        "--fixture", type=Path, default=Path("target/release/loadlens-fixture")
    )
    parser.add_argument("--requests", type=int, default=20_100_000)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per query (best is kept)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", help="comma-separated query names (latency,rps,errors)")
    parser.add_argument("--skip-cold", action="store_true", help="warm timings only")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the parts of the latency query"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import duckdb  # the bench's one dependency: pip install duckdb

    if not args.data.exists():
        print(f"writing {args.requests:,} requests to {args.data} ...", file=sys.stderr)
        run_process(
            [str(args.fixture), "--requests-only", "--requests", str(args.requests),
             "--data", str(args.data)]
        )

    setup = duckdb_setup(args.data, args.threads)
    con = duckdb.connect()
    for statement in setup:
        con.execute(statement)
    spans = con.execute(
        f"SELECT COUNT(*) FROM requests WHERE run_id = '{RUN_ID}'"
    ).fetchone()[0]
    files = sum(1 for _ in (args.data / "spans").rglob("*.parquet"))
    size = sum(p.stat().st_size for p in (args.data / "spans").rglob("*.parquet"))

    selected = queries(RUN_ID)
    if args.breakdown:
        selected += breakdown(RUN_ID)
    if args.only:
        names = args.only.split(",")
        selected = [q for q in selected if q.name in names]

    server = LoadlensServer(args.loadlens, args.data)
    figures = []
    failed = False
    try:
        for query in selected:
            print(f"{query.name}: {query.question}", file=sys.stderr)
            ours_s, (columns, ours) = best_of(args.runs, lambda: server.query(query.loadlens))
            theirs_s, theirs = best_of(
                args.runs, lambda: con.execute(query.duckdb).fetchall()
            )
            problems, worst = differences(ours, theirs)
            if problems:
                failed = True
                print(f"  RESULTS DIFFER ({len(ours)} rows):", file=sys.stderr)
                for p in problems:
                    print(f"    {p}", file=sys.stderr)
                continue
            figure = {
                "query": query.name,
                "question": query.question,
                "rows": len(ours),
                "max_relative_difference": worst,
                "warm_loadlens_s": ours_s,
                "warm_duckdb_s": theirs_s,
            }
            if not args.skip_cold:
                cold_ours, _ = best_of(
                    args.runs,
                    lambda: run_process(
                        [str(args.loadlens), "sql", "--data", str(args.data),
                         "--format", "csv", query.loadlens]
                    ),
                )
                cold_theirs, _ = best_of(
                    args.runs,
                    lambda: run_process(
                        [sys.executable, "-c", DUCKDB_PROCESS, *setup, query.duckdb]
                    ),
                )
                figure["cold_loadlens_s"] = cold_ours
                figure["cold_duckdb_s"] = cold_theirs
            figures.append(figure)
            print(f"  {json.dumps(figure)}", file=sys.stderr)
    finally:
        server.close()
    if failed:
        print("FAILED: loadlens and DuckDB disagree; no figures.", file=sys.stderr)
        return 1

    print(
        f"store: {spans:,} request spans of run '{RUN_ID}' in {files} files, "
        f"{size / 1e9:.2f} GB; threads: {args.threads}; best of {args.runs}; "
        f"duckdb {duckdb.__version__}; {platform.machine()}, {os.cpu_count()} cores\n"
    )
    cold = not args.skip_cold
    header = "| query | rows | warm loadlens | warm DuckDB | ratio |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    if cold:
        header += " cold loadlens | cold DuckDB | ratio |"
        rule += " ---: | ---: | ---: |"
    print(header)
    print(rule)
    for f in figures:
        line = (
            f"| {f['question']} | {f['rows']:,} | {f['warm_loadlens_s']:.3f} s "
            f"| {f['warm_duckdb_s']:.3f} s | {f['warm_loadlens_s'] / f['warm_duckdb_s']:.2f} |"
        )
        if cold:
            line += (
                f" {f['cold_loadlens_s']:.3f} s | {f['cold_duckdb_s']:.3f} s "
                f"| {f['cold_loadlens_s'] / f['cold_duckdb_s']:.2f} |"
            )
        print(line)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
