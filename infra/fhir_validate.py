"""Validates FHIR JSON resources with an independent validator (fhir.resources).

Reads one JSON resource per line on stdin (or one document) and exits non-zero, naming
the problem, if any is not a valid resource of its resourceType in the FHIR version asked
for: `--fhir-version R5` (default) or `R4B` with fhir.resources 8.x (infra/requirements.txt),
`R4` with fhir.resources 6.1.0 (infra/requirements-r4.txt, its own virtualenv). Used by
the Rust tests (see tests/src/lib.rs) so outputs are checked by something other than our
own code. These models check structure and datatypes, not code values: tests assert codes
themselves.
"""

import argparse
import json
import sys


def model_validator(version):
    """A function validating one resource dict in `version`, raising on failure."""
    if version == "R5":
        from fhir.resources import get_fhir_model_class

        return lambda resource: get_fhir_model_class(resource.get("resourceType")).model_validate(resource)
    if version == "R4B":
        from fhir.resources.R4B import get_fhir_model_class

        return lambda resource: get_fhir_model_class(resource.get("resourceType")).model_validate(resource)
    if version == "R4":
        import fhir.resources
        from fhir.resources import construct_fhir_element

        if getattr(fhir.resources, "__fhir_version__", "") != "4.0.1":
            sys.exit(f"R4 needs fhir.resources 6.1.0 (FHIR 4.0.1); found {fhir.resources.__version__}")
        return lambda resource: construct_fhir_element(resource.get("resourceType"), resource)
    sys.exit(f"unknown FHIR version {version}")


def main():
    parser = argparse.ArgumentParser(description="Validate FHIR JSON resources read from stdin.")
    parser.add_argument("--fhir-version", choices=["R4", "R4B", "R5"], default="R5")
    args = parser.parse_args()
    validate = model_validator(args.fhir_version)
    text = sys.stdin.read()
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        resources = [json.loads(line) for line in lines]
    except json.JSONDecodeError:
        resources = [json.loads(text)]
    for index, resource in enumerate(resources):
        kind = resource.get("resourceType")
        try:
            validate(resource)
        except Exception as error:  # noqa: BLE001 - any failure is a validation failure
            print(f"resource {index} ({kind}) is not valid FHIR {args.fhir_version}: {error}", file=sys.stderr)
            sys.exit(1)
    print(f"{len(resources)} resource(s) valid FHIR {args.fhir_version}")


if __name__ == "__main__":
    main()
