"""Per-endpoint latency percentiles of a store's generator requests, computed
with pyarrow and numpy straight from the Parquet files, for comparison with
loadlens SQL.

usage: percentiles.py STORE_DIR  → JSON {step: {"count": n, "0.5": v, ...}}

latency_ms is (end_time - COALESCE(intended_start, start_time)) in ns as int64,
converted to float64 and divided by 1e6, the same arithmetic as the requests
view; quantiles use numpy's default method="linear" (Hyndman & Fan type 7).
"""
import json
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds

QUANTILES = [0.5, 0.9, 0.99, 0.999]

dataset = ds.dataset(f"{sys.argv[1]}/spans", format="parquet", partitioning="hive")
table = dataset.to_table(
    columns=["kind", "request_id", "step", "start_time", "intended_start", "end_time"],
    filter=(pc.field("kind") == "CLIENT") & pc.field("request_id").is_valid(),
)
start = pc.coalesce(table["intended_start"], table["start_time"])
nanos = pc.subtract(pc.cast(table["end_time"], "int64"), pc.cast(start, "int64"))
latency = pc.divide(pc.cast(nanos, "float64"), 1e6).to_numpy()
steps = table["step"].to_numpy(zero_copy_only=False)

out = {}
for step in sorted(set(steps)):
    values = latency[steps == step]
    out[step] = {"count": int(values.size)}
    for q in QUANTILES:
        out[step][str(q)] = float(np.quantile(values, q))
json.dump(out, sys.stdout)
