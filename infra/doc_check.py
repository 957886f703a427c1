"""Docs that cannot drift, checked offline (infra/test.sh runs it):

1. every relative link and anchor in README.md, the clients' READMEs and docs/src/*.md
   resolves: the file exists, and an anchor names a heading of the target (GitHub's and
   mdBook's slug rules agree for the headings used here);
2. the configuration table in docs/src/configuration.md names exactly the parameters of
   template.yaml and exactly the environment variables the code reads (config.rs and the
   other readers), so a parameter or variable added, renamed or removed without the
   table (or the other way round) fails; for each variable the template sets, the
   table's function column names exactly the functions it sets it for, and each
   parameter's row has the template's default and description;
3. docs/src/deploying.md has a runbook heading for every CloudWatch alarm in
   template.yaml, and its metrics table names exactly the metrics the functions count
   (`Metrics::add` in functions/core);
4. the layers table in docs/src/architecture.md names every module of functions/core once,
   and no module's code (comments and tests aside) uses a module of a higher layer or one
   that uses it back.

Exit status 1 with one line per problem.
"""

import pathlib
import re
import sys

from cfnlint.decode import decode

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


def template_functions() -> tuple[dict[str, dict], dict]:
    """Each function's binary name with its template resource, and the whole template."""
    template, problems = decode(str(ROOT / "template.yaml"))
    if problems:
        raise SystemExit(f"template.yaml does not read: {problems[0]}")
    return {
        resource["Metadata"]["BuildProperties"]["Binary"]: resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }, template


def check_function_columns() -> list[str]:
    functions, _ = template_functions()
    set_for: dict[str, set[str]] = {}
    for binary, resource in functions.items():
        for variable in resource["Properties"].get("Environment", {}).get("Variables", {}):
            set_for.setdefault(variable, set()).add(binary)
    chapter = (ROOT / "docs/src/configuration.md").read_text(encoding="utf-8")
    problems = []
    for variable, cell in re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \|", chapter, re.MULTILINE):
        if variable not in set_for:
            continue  # read by the code but not set by the template (local runs, SDK)
        cell = re.sub(r"\([^)]*\)", "", cell)
        named = {word.strip() for word in cell.split(",") if word.strip()}
        listed = set(functions) if named == {"all"} else named
        if listed != set_for[variable]:
            problems.append(
                f"docs/src/configuration.md: {variable} is set for {', '.join(sorted(set_for[variable]))} "
                f"by template.yaml, but the table says {', '.join(sorted(listed))}"
            )
    return problems


def check_parameter_rows() -> list[str]:
    """Each template parameter's row says the template's default and description."""
    _, template = template_functions()
    chapter = (ROOT / "docs/src/configuration.md").read_text(encoding="utf-8").split("## Template parameters", 1)[1]
    rows = {
        name: (default.strip().strip("`"), meaning.replace("`", "").replace("\\|", "|"))
        for name, default, meaning in re.findall(r"^\| `([A-Za-z0-9]+)` \| ([^|]*) \| (.*) \|$", chapter, re.MULTILINE)
    }
    problems = []
    for name, parameter in template["Parameters"].items():
        if name not in rows:
            continue  # check_configuration reports it
        default, meaning = rows[name]
        wanted = str(parameter.get("Default", ""))
        if not (default == wanted or (wanted == "" and default in ("empty", "— (required)"))):
            problems.append(f"docs/src/configuration.md: {name} defaults to {wanted!r} in template.yaml, not {default!r}")
        description = " ".join(str(parameter.get("Description", "")).split())
        if description.rstrip(".") not in " ".join(meaning.split()):
            problems.append(f"docs/src/configuration.md: {name}'s meaning is not template.yaml's description: {description}")
    return problems


def check_operating() -> list[str]:
    _, template = template_functions()
    chapter = (ROOT / "docs/src/deploying.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{2,6} (.+)$", chapter, re.MULTILINE))
    problems = []
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm" and name not in headings:
            problems.append(f"docs/src/deploying.md has no runbook heading for the alarm {name}")
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "functions/core/src").rglob("*.rs"))
    counted = set(re.findall(r'\.add\(\s*"([A-Z][A-Za-z]+)"', code))
    # Names counted in a loop (reported as 0 up front) are in these arrays.
    for array in re.findall(r"for name in\s*\[([^\]]*)\]", code):
        counted |= set(re.findall(r'"([A-Z][A-Za-z]+)"', array))
    table = chapter.split("### Metrics", 1)[-1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Za-z]+)` \|", table, re.MULTILINE))
    for name in sorted(counted - documented):
        problems.append(f"metric {name} (counted in functions/core) is not in docs/src/deploying.md's metrics table")
    for name in sorted(documented - counted):
        problems.append(f"docs/src/deploying.md's metrics table lists {name}, which no function counts")
    return problems


def module_uses() -> dict[str, set[str]]:
    """Each top-level module of functions/core and the others its code names (`crate::x`)."""
    source = ROOT / "functions/core/src"
    modules = {path.stem for path in source.glob("*.rs") if path.stem != "lib"}
    modules |= {path.name for path in source.iterdir() if path.is_dir()}
    uses: dict[str, set[str]] = {module: set() for module in modules}
    for path in source.rglob("*.rs"):
        module = path.relative_to(source).parts[0].removesuffix(".rs")
        if module not in uses:
            continue
        code = path.read_text(encoding="utf-8").split("#[cfg(test)]", 1)[0]
        code = "\n".join(line for line in code.splitlines() if not line.strip().startswith("//"))
        named = set(re.findall(r"crate::([a-z_]+)", code))
        for group in re.findall(r"crate::\{([^}]*)\}", code):
            named |= set(re.findall(r"\b([a-z_]+)::", group))
        uses[module] |= (named & modules) - {module}
    return uses


def check_layers() -> list[str]:
    chapter = (ROOT / "docs/src/architecture.md").read_text(encoding="utf-8")
    layer_of: dict[str, int] = {}
    problems = []
    for number, cell in re.findall(r"^\| (\d+) \| ([^|]+) \|", chapter, re.MULTILINE):
        for module in re.findall(r"`([a-z_]+)`", cell):
            if module in layer_of:
                problems.append(f"docs/src/architecture.md: module {module} is in two layers")
            layer_of[module] = int(number)
    uses = module_uses()
    for module in sorted(set(uses) - set(layer_of)):
        problems.append(f"docs/src/architecture.md: module {module} of functions/core is in no layer")
    for module in sorted(set(layer_of) - set(uses)):
        problems.append(f"docs/src/architecture.md: the layers name {module}, which functions/core does not have")
    for module, used in sorted(uses.items()):
        for other in sorted(used):
            if module in layer_of and other in layer_of and layer_of[other] > layer_of[module]:
                problems.append(
                    f"functions/core: {module} (layer {layer_of[module]}) uses {other} (layer {layer_of[other]}), a layer above"
                )
    problems += [f"functions/core: a cycle of modules: {' -> '.join(cycle)}" for cycle in cycles(uses)]
    return problems


def cycles(uses: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that is on one (depth-first search)."""
    found, state = [], {}
    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(uses.get(module, ())):
            if state.get(other) == "open":
                found.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"
    for module in sorted(uses):
        if module not in state:
            visit(module, [module])
    return found


def main() -> int:
    problems = check_links() + check_configuration() + check_function_columns() + check_parameter_rows() + check_operating() + check_layers()
    for problem in problems:
        print(problem)
    if not problems:
        print(f"docs: links and anchors of {len(DOCS)} files resolve; the configuration table, the alarms' runbooks, the metrics table and the layers match template.yaml and the code")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
