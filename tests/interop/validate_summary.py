"""Validates a `loadlens run --summary-json` file against the committed JSON Schema.

Usage: python3 validate_summary.py SCHEMA SUMMARY; exits 1 with the first error.
"""

import json
import sys

import jsonschema


def main() -> int:
    schema_path, summary_path = sys.argv[1], sys.argv[2]
    with open(schema_path) as f:
        schema = json.load(f)
    with open(summary_path) as f:
        summary = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(summary), key=str)
    for error in errors:
        path = "/".join(str(p) for p in error.absolute_path)
        print(f"{summary_path}: at /{path}: {error.message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
