"""Writes functions/core/src/search/r5-search-parameters.tsv from the FHIR R5 core package.

The package (hl7.fhir.r5.core 5.0.0, CC0) is fetched from the npm registry and checked
against its published sha512. One row per (parameter, base resource): code, base, type,
the part of the FHIRPath expression that applies to that base, the parameter's canonical
URL and, for references, the target types (`*` for more than ten). Composite and special parameters are left out
(fhir-ws refuses them). Run it again only to move to another FHIR release:

    python3 infra/search_parameters.py
"""

import base64
import hashlib
import io
import json
import pathlib
import tarfile
import urllib.request

PACKAGE = "https://registry.npmjs.org/hl7.fhir.r5.core/-/hl7.fhir.r5.core-5.0.0.tgz"
SHA512 = "0TvJB1KKtokn/P2mRwcqEY8v8RN8IE/pQjvtlsPaJdYaDfYx4UBhuY4afAGeQjW01p9SNYPphxAFFkEsS6P05A=="
OUT = pathlib.Path(__file__).resolve().parent.parent / "functions/core/src/search/r5-search-parameters.tsv"
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


def main():
    data = urllib.request.urlopen(PACKAGE, timeout=120).read()
    if base64.b64encode(hashlib.sha512(data).digest()).decode() != SHA512:
        raise SystemExit("the package does not match its published sha512")
    rows = []
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not (name.startswith("SearchParameter-") and name.endswith(".json")):
                continue
            parameter = json.load(archive.extractfile(member))
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
                rows.append((parameter["code"], base, kind, " | ".join(mine), parameter["url"], targets))
    rows.sort()
    header = "# code\tbase\ttype\texpression\turl\ttargets\n"
    OUT.write_text(header + "".join("\t".join(row) + "\n" for row in rows))
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
