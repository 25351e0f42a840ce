"""Checks for tests/observability.rs, run with the venv `make observe-py` builds.

    observe_check.py types            /metrics text on stdin -> {"family": "type", ...} on stdout
    observe_check.py validate SCHEMA  JSON lines on stdin, each validated against SCHEMA

The parser is prometheus_client's own (the one Prometheus' Python ecosystem reads the text
format with); the validator is jsonschema's, for the draft the schema names.
"""

import json
import sys


def types():
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        # The parser strips `_total` from a counter's family name: give it back, so the
        # names are those a query uses.
        name = family.name + "_total" if family.type == "counter" else family.name
        found[name] = {
            "type": family.type,
            "series": len(family.samples),
        }
    json.dump(found, sys.stdout)


def validate(schema_path):
    import jsonschema

    with open(schema_path) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    count = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        error = jsonschema.exceptions.best_match(validator.iter_errors(json.loads(line)))
        if error is not None:
            sys.exit(f"line {n}: {error.message} at {list(error.path)}: {line}")
        count += 1
    print(count)


if __name__ == "__main__":
    if sys.argv[1] == "types":
        types()
    elif sys.argv[1] == "validate":
        validate(sys.argv[2])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
