"""Validates FHIR R5 JSON resources with an independent validator (fhir.resources).

Reads one JSON resource per line on stdin (or one document) and exits non-zero, naming
the problem, if any is not a valid R5 resource of its resourceType. Used by the Rust
tests (see tests/src/lib.rs) so outputs are checked by something other than our own code.
"""

import json
import sys

from fhir.resources import get_fhir_model_class


def main():
    text = sys.stdin.read()
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        resources = [json.loads(line) for line in lines]
    except json.JSONDecodeError:
        resources = [json.loads(text)]
    for index, resource in enumerate(resources):
        kind = resource.get("resourceType")
        try:
            get_fhir_model_class(kind).model_validate(resource)
        except Exception as error:  # noqa: BLE001 - any failure is a validation failure
            print(f"resource {index} ({kind}) is not valid FHIR R5: {error}", file=sys.stderr)
            sys.exit(1)
    print(f"{len(resources)} resource(s) valid")


if __name__ == "__main__":
    main()
