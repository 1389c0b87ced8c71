"""Runs statements against `loadlens serve` with psycopg 3 (libpq) and prints
what happened as JSON, for tests/serve.rs to check.

Usage: pg_client.py CONNINFO < steps.json

steps.json is a list of {"sql": ..., "params": [...] | null, "prepare": bool}.
Without params psycopg sends a simple query; with params, or with
"prepare": true, it uses the extended protocol (Parse/Bind/Execute), as
Grafana's Go driver does. Each step runs in autocommit mode, so a refused
statement does not abort the next one.

Output: {"connect_error": {...}} if the connection fails, else
{"results": [{"columns": [...], "types": [...], "rows": [[...]]} | {"error": {...}}, ...]}
where types are the PostgreSQL type OIDs of the columns
where an error is {"sqlstate": ..., "message": ...}.
"""

import json
import sys

import psycopg


def error(e):
    diag = getattr(e, "diag", None)
    return {
        "sqlstate": getattr(e, "sqlstate", None),
        "message": (diag.message_primary if diag else None) or str(e),
    }


def main():
    conninfo = sys.argv[1]
    steps = json.load(sys.stdin)
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        print(json.dumps({"connect_error": error(e)}))
        return
    results = []
    with conn:
        for step in steps:
            try:
                with conn.cursor() as cur:
                    cur.execute(step["sql"], step.get("params"), prepare=step.get("prepare") or None)
                    columns = [d.name for d in cur.description] if cur.description else []
                    types = [d.type_code for d in cur.description] if cur.description else []
                    rows = [list(r) for r in cur.fetchall()] if cur.description else []
                results.append({"columns": columns, "types": types, "rows": rows})
            except psycopg.Error as e:
                results.append({"error": error(e)})
    print(json.dumps({"results": results}, default=str))


if __name__ == "__main__":
    main()
