"""Read a loadlens store with DuckDB and with pyarrow and check that what
otel_send.py sent is there, value for value.

usage: read_back.py DATA_DIR expected.json [expected.json ...]
"""

import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

# The store's partition columns are strings; say so, or pyarrow cannot type a
# column whose values are all NULL (a store with production data only).
PARTITIONING = ds.partitioning(pa.schema([("date", pa.string()), ("run_id", pa.string())]), flavor="hive")


def check_duckdb(data, expected):
    con = duckdb.connect()
    table = lambda t: f"read_parquet('{data}/{t}/**/*.parquet', hive_partitioning = true)"
    service = expected["service"]
    rows = con.execute(
        f"""SELECT lower(hex(trace_id)), lower(hex(span_id)), lower(hex(parent_span_id)), name, kind,
                   status_code, len(events), len(links), attributes, http_response_status_code,
                   deployment_environment, scope_name, scope_version, run_id
            FROM {table('spans')} WHERE service_name = ?""",
        [service],
    ).fetchall()
    by_id = {r[1]: r for r in rows}
    assert len(rows) == len(expected["spans"]), (len(rows), expected["spans"])
    for span in expected["spans"]:
        row = by_id[span["span_id"]]
        assert row[0] == span["trace_id"], (row, span)
        assert (row[2] or None) == span["parent"], (row, span)
        assert row[3] == span["name"] and row[4] == span["kind"], (row, span)
        assert row[5] == span["status"], (row, span)
        assert (row[6], row[7]) == (span["events"], span["links"]), (row, span)
        assert row[10] == "production" and row[11] == "interop" and row[12] == "1.2.3", row
        assert row[13] is None, "no run: the partition reads as NULL"
        if span["name"] == "GET /interop":
            attributes = dict(row[8])
            for key, value in expected["attributes"].items():
                assert attributes.get(key) == value, (key, attributes)
            assert row[9] == 200, row
            assert "http.response.status_code" not in attributes, "promoted attributes leave the map"
    numbers = dict(
        con.execute(
            f"SELECT metric_name, value FROM {table('metrics_number')} WHERE service_name = ?", [service]
        ).fetchall()
    )
    for name in ("interop.requests", "interop.inflight", "interop.temperature"):
        assert numbers[name] == expected["metrics"][name], (name, numbers)
    count, total, buckets, bounds = con.execute(
        f"""SELECT count, sum, bucket_counts, explicit_bounds FROM {table('metrics_histogram')}
            WHERE service_name = ? AND metric_name = 'interop.latency'""",
        [service],
    ).fetchone()
    assert (count, total) == (3, 38.5), (count, total)
    assert sum(buckets) == 3 and len(buckets) == len(bounds) + 1, (buckets, bounds)
    count, total, zero, positive = con.execute(
        f"""SELECT count, sum, zero_count, positive_bucket_counts FROM {table('metrics_exp_histogram')}
            WHERE service_name = ? AND metric_name = 'interop.latency_exp'""",
        [service],
    ).fetchone()
    assert (count, total) == (4, 15.0), (count, total)
    assert zero + sum(positive) == 4, (zero, positive)


def check_pyarrow(data, expected):
    service = expected["service"]
    spans = ds.dataset(f"{data}/spans", format="parquet", partitioning=PARTITIONING).to_table(
        filter=pc.field("service_name") == service
    )
    ids = {bytes(v.as_py()).hex() for v in spans.column("span_id")}
    assert ids == {s["span_id"] for s in expected["spans"]}, ids
    assert spans.column("run_id").null_count == spans.num_rows
    numbers = ds.dataset(f"{data}/metrics_number", format="parquet", partitioning=PARTITIONING).to_table(
        filter=pc.field("service_name") == service
    )
    values = dict(zip(numbers.column("metric_name").to_pylist(), numbers.column("value").to_pylist()))
    for name in ("interop.requests", "interop.inflight", "interop.temperature"):
        assert values[name] == expected["metrics"][name], (name, values)


def main():
    data = sys.argv[1]
    for path in sys.argv[2:]:
        expected = json.load(open(path))
        check_duckdb(data, expected)
        check_pyarrow(data, expected)
        print(f"{expected['service']}: {len(expected['spans'])} spans and 5 metrics intact (DuckDB, pyarrow)")


if __name__ == "__main__":
    main()
