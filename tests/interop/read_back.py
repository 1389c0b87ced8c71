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


# Columns of each metric table beyond those every point has, with the name
# otel_send.py gives each in a point.
POINT_COLUMNS = {
    "metrics_number": {"value": "value", "is_monotonic": "monotonic"},
    "metrics_histogram": {
        "count": "count", "sum": "sum", "min": "min", "max": "max",
        "bucket_counts": "bucket_counts", "explicit_bounds": "bounds",
    },
    "metrics_exp_histogram": {
        "count": "count", "sum": "sum", "min": "min", "max": "max", "scale": "scale",
        "zero_count": "zero_count", "flags": "flags", "positive_offset": "positive_offset",
        "positive_bucket_counts": "positive", "negative_offset": "negative_offset",
        "negative_bucket_counts": "negative",
    },
}


def as_dict(pairs):
    """A map column's value, whichever way the reader gives it."""
    if pairs is None:
        return {}
    if isinstance(pairs, dict):
        if set(pairs) == {"key", "value"} and isinstance(pairs["key"], list):
            return dict(zip(pairs["key"], pairs["value"]))
        return pairs
    return dict(pairs)


def check_every_value(reader, spans, points, expected):
    """`spans` by span id and `points` by metric name, as one reader read
    them, against what was sent: every field the collector stores."""
    for span in expected["spans"]:
        got = spans[span["span_id"]]
        want = {
            "start": span["start"],
            "end": span["end"],
            "status_message": span["status_message"],
            "events": span["event_list"],
            "links": span["link_list"],
        }
        assert got == want, (reader, span["name"], got, want)
    assert set(points) == set(expected["points"]), (reader, sorted(points))
    for name, want in expected["points"].items():
        got = points[name]
        for key, value in want.items():
            if key == "exemplars":
                got_exemplars = sorted(got.get(key) or [], key=lambda e: (e["time"], e["value"]))
                assert got_exemplars == value, (reader, name, got_exemplars, value)
            elif key in ("negative", "bucket_counts", "positive", "bounds"):
                assert list(got.get(key) or []) == value, (reader, name, key, got.get(key), value)
            else:
                assert got.get(key) == value, (reader, name, key, got.get(key), value)


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

    spans = {}
    for span_id, start, end, message, events, links in con.execute(
        f"""SELECT lower(hex(span_id)), epoch_ns(start_time), epoch_ns(end_time), status_message,
                   list_transform(events, lambda e: {{'time': epoch_ns(e.time), 'name': e.name,
                                                 'attributes': e.attributes}}),
                   list_transform(links, lambda l: {{'trace_id': lower(hex(l.trace_id)),
                                                'span_id': lower(hex(l.span_id))}})
            FROM {table('spans')} WHERE service_name = ?""",
        [service],
    ).fetchall():
        spans[span_id] = {
            "start": start,
            "end": end,
            "status_message": message,
            "events": [dict(e, attributes=as_dict(e["attributes"])) for e in events],
            "links": links,
        }
    points = {}
    for name, columns in POINT_COLUMNS.items():
        extra = "".join(f", {column}" for column in columns)
        cursor = con.execute(
            f"""SELECT metric_name, metric_unit, epoch_ns(time), epoch_ns(start_time), attributes,
                       temporality,
                       list_transform(exemplars, lambda e: {{'time': epoch_ns(e.time), 'value': e.value,
                                      'trace_id': lower(hex(e.trace_id)), 'span_id': lower(hex(e.span_id)),
                                      'attributes': e.filtered_attributes}}){extra}
                FROM {table(name)} WHERE service_name = ?""",
            [service],
        )
        for row in cursor.fetchall():
            point = dict(zip(("unit", "time", "start_time", "attributes", "temporality"), row[1:6]))
            point["attributes"] = as_dict(point["attributes"])
            point["exemplars"] = [dict(e, attributes=as_dict(e["attributes"])) for e in row[6] or []]
            point.update(zip(columns.values(), row[7:]))
            points[row[0]] = point
    check_every_value("DuckDB", spans, points, expected)


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

    starts, ends = (spans.column(c).cast(pa.int64()).to_pylist() for c in ("start_time", "end_time"))
    # Times as nanoseconds from the columns: pyarrow's datetimes stop at µs.
    events = lists_by_row(
        spans.column("events"),
        {"time": ("time", nanoseconds), "name": ("name", as_python), "attributes": ("attributes", maps)},
    )
    by_id = {}
    for i, row in enumerate(spans.select(["span_id", "status_message", "links"]).to_pylist()):
        by_id[bytes(row["span_id"]).hex()] = {
            "start": starts[i],
            "end": ends[i],
            "status_message": row["status_message"],
            "events": events[i],
            "links": [
                {"trace_id": bytes(l["trace_id"]).hex(), "span_id": bytes(l["span_id"]).hex()}
                for l in row["links"] or []
            ],
        }
    points = {}
    for table, columns in POINT_COLUMNS.items():
        rows = ds.dataset(f"{data}/{table}", format="parquet", partitioning=PARTITIONING).to_table(
            filter=pc.field("service_name") == service
        )
        times = rows.column("time").cast(pa.int64()).to_pylist()
        start_times = rows.column("start_time").cast(pa.int64()).to_pylist()
        exemplars = lists_by_row(
            rows.column("exemplars"),
            {
                "time": ("time", nanoseconds),
                "value": ("value", as_python),
                "trace_id": ("trace_id", hex_ids),
                "span_id": ("span_id", hex_ids),
                "attributes": ("filtered_attributes", maps),
            },
        )
        plain = ["metric_name", "metric_unit", "attributes", "temporality", *columns]
        for i, row in enumerate(rows.select(plain).to_pylist()):
            point = {
                "unit": row["metric_unit"],
                "time": times[i],
                "start_time": start_times[i],
                "attributes": as_dict(row["attributes"]),
                "temporality": row["temporality"],
                "exemplars": exemplars[i],
            }
            point.update((key, row[column]) for column, key in columns.items())
            points[row["metric_name"]] = point
    check_every_value("pyarrow", by_id, points, expected)


def lists_by_row(column, fields):
    """Each row's list of structs from a list column (events, exemplars), as
    dicts: `fields` maps each key to the struct's field and how to read it."""
    column = column.combine_chunks()
    lengths = [n or 0 for n in pc.list_value_length(column).to_pylist()]
    flat = column.flatten()
    read = {key: convert(flat.field(name)) for key, (name, convert) in fields.items()}
    items = iter([dict(zip(read, values)) for values in zip(*read.values())])
    return [[next(items) for _ in range(n)] for n in lengths]


def as_python(array):
    return array.to_pylist()


def nanoseconds(array):
    """Times as nanoseconds: pyarrow's datetimes stop at µs."""
    return array.cast(pa.int64()).to_pylist()


def hex_ids(array):
    return [None if v is None else bytes(v).hex() for v in array.to_pylist()]


def maps(array):
    return [as_dict(v) for v in array.to_pylist()]


def main():
    data = sys.argv[1]
    for path in sys.argv[2:]:
        expected = json.load(open(path))
        check_duckdb(data, expected)
        check_pyarrow(data, expected)
        print(
            f"{expected['service']}: {len(expected['spans'])} spans and {len(expected['points'])} metric points, "
            "every stored field intact (DuckDB, pyarrow)"
        )


if __name__ == "__main__":
    main()
