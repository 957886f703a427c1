"""Docs that cannot drift, checked offline (infra/test.sh runs it):

1. every relative link and anchor in README.md, the clients' READMEs and docs/src/*.md
   resolves: the file exists, and an anchor names a heading of the target (GitHub's and
   mdBook's slug rules agree for the headings used here);
2. the configuration table in docs/src/configuration.md names exactly the parameters of
   template.yaml and exactly the environment variables the code reads (config.rs and the
   other readers), so a parameter or variable added, renamed or removed without the
   table (or the other way round) fails.

Exit status 1 with one line per problem.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "clients/js/README.md", ROOT / "clients/rust/README.md", *sorted((ROOT / "docs/src").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    found, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"^#{1,6} ", line):
            found.add(slug(line.lstrip("#")))
    return found


def links(path: pathlib.Path):
    fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        for match in LINK.finditer(line):
            yield number, match.group(1) or match.group(2)


def check_links() -> list[str]:
    problems = []
    for doc in DOCS:
        for number, target in links(doc):
            if re.match(r"^[a-z]+:", target):
                continue  # absolute URLs are not checked offline
            file_part, _, anchor = target.partition("#")
            resolved = (doc.parent / file_part).resolve() if file_part else doc
            where = f"{doc.relative_to(ROOT)}:{number}: {target}"
            if not resolved.exists():
                problems.append(f"{where}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    return problems


def table_names(text: str) -> set[str]:
    """The names in the first cell of each table row (one or more, each in backticks)."""
    names = set()
    for cell in re.findall(r"^\| ([^|]+) \|", text, re.MULTILINE):
        names |= set(re.findall(r"`([A-Z][A-Za-z0-9_]*)`", cell))
    return names


def check_configuration() -> list[str]:
    chapter = (ROOT / "docs/src/configuration.md").read_text(encoding="utf-8")
    documented = table_names(chapter)
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    block = template.split("\nParameters:\n", 1)[1]
    block = re.split(r"\n[A-Za-z]", block, maxsplit=1)[0]
    parameters = set(re.findall(r"^  ([A-Z][A-Za-z0-9]+):\s*$", block, re.MULTILINE))
    # What the functions read at run time (build scripts' OUT_DIR and the like are not).
    sources = [p for p in (ROOT / "functions").rglob("*.rs") if p.name != "build.rs"]
    code = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    read = set(re.findall(r'(?:value|required|number_in|var)\(\s*(?:source,\s*)?"([A-Z][A-Z0-9_]+)"', code))
    read |= set(re.findall(r'source\.value\("([A-Z][A-Z0-9_]+)"\)', code))
    read |= set(re.findall(r'const [A-Z_]+: &str = "([A-Z][A-Z0-9_]+)";', code))
    read -= {"CARGO_MANIFEST_DIR", "OUT_DIR"}
    problems = []
    for name in sorted(parameters - documented):
        problems.append(f"template parameter {name} is not in docs/src/configuration.md")
    for name in sorted(read - documented):
        problems.append(f"environment variable {name} (read by functions/) is not in docs/src/configuration.md")
    # Read by the AWS SDK itself, not by our code.
    for name in sorted(documented - parameters - read - {"AWS_ENDPOINT_URL_DYNAMODB"}):
        problems.append(f"docs/src/configuration.md lists {name}, which neither template.yaml nor the code has")
    return problems


def main() -> int:
    problems = check_links() + check_configuration()
    for problem in problems:
        print(problem)
    if not problems:
        print(f"docs: links and anchors of {len(DOCS)} files resolve; the configuration table matches template.yaml and the code")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
