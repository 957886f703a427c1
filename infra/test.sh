#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the pinned Python tools into .venv
# and the browsers for the console's test (Debian's Chromium and Firefox ESR, geckodriver
# built from crates.io),
# starts moto_server (DynamoDB) on a free port with the tables of template.yaml, runs
# formatting, lints, every Rust test (unit, contract, handler end-to-end) and the
# template gates, then stops the server. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
# A fresh clone builds once: incremental state would only cost disk (about 2 GiB here, and
# a CI machine's disk once ran out) and time.
export CARGO_INCREMENTAL=0
# shellcheck source=infra/lib.sh
. infra/lib.sh

# mdBook builds in the background while the Python tools download (mostly network time).
mkdir -p .tmp
ensure_mdbook >.tmp/mdbook-install.log 2>&1 &
mdbook_install=$!
ensure_python_tools
ensure_venv .venv/checkov infra/requirements-checkov.txt
ensure_venv .venv/r4 infra/requirements-r4.txt
ensure_chromium
ensure_firefox
ensure_node_packages
export FHIR_WS_PYTHON="$PWD/.venv/bin/python" FHIR_WS_PYTHON_R4="$PWD/.venv/r4/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== template gates (SAM lint, cfn-lint with serverless rules, checkov)"
.venv/bin/sam validate --lint --template template.yaml
.venv/bin/cfn-lint --config-file infra/cfn-lint.yaml
.venv/checkov/bin/checkov -f template.yaml --config-file infra/checkov.yaml

echo "== JavaScript client: declarations and a typed example (tsc --noEmit), package contents"
(cd clients/js && npx --no-install tsc --noEmit -p . && npm pack --dry-run --json 2>/dev/null | node -e '
  const files = JSON.parse(require("fs").readFileSync(0, "utf8"))[0].files.map((f) => f.path).sort();
  const wanted = ["README.md", "package.json", "src/index.d.ts", "src/index.js"];
  if (JSON.stringify(files) !== JSON.stringify(wanted)) { console.error("npm pack would ship", files); process.exit(1); }')

echo "== docs: links, anchors and the configuration table (infra/doc_check.py); the guide (mdbook build); cargo doc -D warnings"
.venv/bin/python infra/doc_check.py
if ! wait "$mdbook_install"; then
  cat .tmp/mdbook-install.log >&2
  exit 1
fi
cat .tmp/mdbook-install.log
.tools/bin/mdbook build docs
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

start_dynamodb

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
echo "== each function's binary under the Lambda Runtime Interface Emulator"
# Fresh tables: what the tests left behind (e.g. bindings to their stopped stub
# endpoints) is not what a newly deployed stack starts with.
stop_dynamodb
start_dynamodb
# The dev profile with the whole workspace's features: its dependencies are then exactly
# the ones the tests just compiled, so this costs a link per function, not a second build
# of the AWS SDK (selecting the functions with -p unifies other features and rebuilt it).
# The check is about wiring (environment names, event shapes, answers); release-profile
# cold-start figures are a benchmark, infra/cold_start.sh.
cargo build --locked --workspace --bins
.venv/bin/python infra/rie_check.py --binaries target/debug
# Negative control: a misspelled environment name in the template must fail the check
# (one function that reads it is enough to show that; starting all again would cost a minute).
rm -rf .tmp/rie-misspelled
sed 's/BINDINGS_TABLE:/BINDING_TABLE:/' template.yaml >.tmp/template-misspelled.yaml
if .venv/bin/python infra/rie_check.py --binaries target/debug --template .tmp/template-misspelled.yaml \
  --only subscription-api --logs .tmp/rie-misspelled >.tmp/rie-misspelled.out 2>&1; then
  echo "the emulator check passed a template with a misspelled environment name" >&2
  exit 1
fi
# It must fail for that reason: the function refuses to start naming the variable it misses
# (not, say, because the emulator or moto_server did not start).
if ! grep -q 'Missing("BINDINGS_TABLE")' .tmp/rie-misspelled/subscription-api.log; then
  echo "the emulator check failed on the misspelled template, but not because of BINDINGS_TABLE:" >&2
  cat .tmp/rie-misspelled.out .tmp/rie-misspelled/subscription-api.log >&2
  exit 1
fi
echo "   (a template with BINDINGS_TABLE misspelled fails the check, naming the variable, as it must)"

echo "== all checks passed"
