#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the pinned Python tools into .venv,
# starts moto_server (DynamoDB) on a free port with the tables of template.yaml, runs
# formatting, lints, every Rust test (unit, contract, handler end-to-end) and the
# template gates, then stops the server. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
# shellcheck source=infra/lib.sh
. infra/lib.sh

ensure_python_tools
export FHIR_WS_PYTHON="$PWD/.venv/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== template gates"
.venv/bin/sam validate --lint --template template.yaml
.venv/bin/cfn-lint template.yaml

start_dynamodb

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
echo "== all checks passed"
