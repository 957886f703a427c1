"""Writes the search-parameter tables of functions/core/src/search/ from the official FHIR packages.

One table per FHIR version the server serves, each from HL7's own package on the npm
registry, checked against the sha512 the registry publishes for it:

- R5 (5.0.0): hl7.fhir.r5.core, every SearchParameter-*.json;
- R4B (4.3.0): hl7.fhir.r4b.core, every SearchParameter-*.json;
- R4 (4.0.1): hl7.fhir.r4.examples, its Bundle-searchParams.json (the specification's
  search-parameters.json). hl7.fhir.r4.core has no versions on the npm registry; the
  examples package of the same release carries the same base SearchParameters (its loose
  SearchParameter-*.json files also hold the specification's examples, which are left out).

One row per (parameter, base resource): code, base, type, the part of the FHIRPath
expression that applies to that base, the parameter's canonical URL and, for references,
the target types (`*` for more than ten). Composite and special parameters are left out
(fhir-ws refuses them). From the same package, the Patient CompartmentDefinition: one row
per resource type in the compartment with the search parameters that put a resource in
it (`{def}`: the Patient itself). Run it again only to move to another FHIR release:

    python3 infra/search_parameters.py            # every version
    python3 infra/search_parameters.py R4 R4B     # some
"""

import base64
import hashlib
import io
import json
import pathlib
import sys
import tarfile
import urllib.request

REGISTRY = "https://registry.npmjs.org"
SOURCES = {
    "R5": (
        "hl7.fhir.r5.core",
        "5.0.0",
        "0TvJB1KKtokn/P2mRwcqEY8v8RN8IE/pQjvtlsPaJdYaDfYx4UBhuY4afAGeQjW01p9SNYPphxAFFkEsS6P05A==",
        None,
    ),
    "R4B": (
        "hl7.fhir.r4b.core",
        "4.3.0",
        "2Xa3QB5PQxNchsA8chSq3OLMHJf55iEc44bZCFaRarX6Leo8qjeTXSq4RNSMpvKtfG4u7CkWpEmlQtb0rwLWFw==",
        None,
    ),
    "R4": (
        "hl7.fhir.r4.examples",
        "4.0.1",
        "DXBdIZOeQaSKIgCU7w6HOC7sw/6BzylmipLkBW4f//pT+Bc94x+8LImwTdvaNThPJoOzpBzvxAzNqjeu3X/zLw==",
        "Bundle-searchParams.json",
    ),
}
OUT = pathlib.Path(__file__).resolve().parent.parent / "functions/core/src/search"
TYPES = {"string", "token", "reference", "date", "number", "quantity", "uri"}


def split_union(expression):
    """Top-level `|` alternatives (not inside parentheses or quotes)."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def root(part):
    """The resource type a union part starts from."""
    name = part.lstrip("(")
    return name.split(".", 1)[0].split(" ", 1)[0]


def search_parameters(archive, bundle_name):
    """Every SearchParameter of the package: the named Bundle's entries, or the loose files."""
    for member in archive.getmembers():
        name = member.name.rsplit("/", 1)[-1]
        if bundle_name is not None:
            if name == bundle_name:
                for entry in json.load(archive.extractfile(member))["entry"]:
                    yield entry["resource"]
        elif name.startswith("SearchParameter-") and name.endswith(".json"):
            yield json.load(archive.extractfile(member))


def write_compartment(version, archive, release, package):
    """The Patient compartment's (resource type, parameters) rows."""
    member = next(m for m in archive.getmembers() if m.name.endswith("/CompartmentDefinition-patient.json"))
    definition = json.load(archive.extractfile(member))
    rows = sorted((r["code"], ",".join(r["param"])) for r in definition["resource"] if r.get("param"))
    out = OUT / f"{version.lower()}-patient-compartment.tsv"
    header = f"# FHIR {release} ({package}) CompartmentDefinition/patient; type\tparameters\n"
    out.write_text(header + "".join("\t".join(row) + "\n" for row in rows))
    print(f"{version}: {len(rows)} compartment rows -> {out}")


def write_table(version):
    package, release, sha512, bundle_name = SOURCES[version]
    url = f"{REGISTRY}/{package}/-/{package}-{release}.tgz"
    data = urllib.request.urlopen(url, timeout=300).read()
    if base64.b64encode(hashlib.sha512(data).digest()).decode() != sha512:
        raise SystemExit(f"{url} does not match its published sha512")
    rows = set()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for parameter in search_parameters(archive, bundle_name):
            kind, expression = parameter.get("type"), parameter.get("expression")
            if kind not in TYPES or not expression:
                continue
            parts = split_union(expression)
            for base in parameter.get("base", []):
                mine = [p for p in parts if root(p) in (base, "Resource", "DomainResource")]
                if not mine:
                    continue
                targets = parameter.get("target", []) if kind == "reference" else []
                # Parameters that may point anywhere list every type; "*" says so shorter.
                targets = "*" if len(targets) > 10 else ",".join(targets)
                rows.add((parameter["code"], base, kind, " | ".join(mine), parameter["url"], targets))
        write_compartment(version, archive, release, package)
    out = OUT / f"{version.lower()}-search-parameters.tsv"
    header = f"# FHIR {release} ({package}); code\tbase\ttype\texpression\turl\ttargets\n"
    out.write_text(header + "".join("\t".join(row) + "\n" for row in sorted(rows)))
    print(f"{version}: {len(rows)} rows -> {out}")


def main():
    for version in sys.argv[1:] or list(SOURCES):
        if version not in SOURCES:
            raise SystemExit(f"unknown FHIR version {version}; one of {', '.join(SOURCES)}")
        write_table(version)


if __name__ == "__main__":
    main()
