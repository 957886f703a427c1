#!/usr/bin/env bash
# Benchmark, not a test: builds every function with the release profile (what `sam build`
# deploys: fat LTO, one codegen unit) and runs each under the Lambda Runtime Interface
# Emulator against a fresh moto_server, printing init duration, peak RSS and binary size
# per function. Each function is built on its own (`-p`): one cargo invocation for several
# packages unifies their dependencies' features (the fan-out's FHIRPath engine asks tokio
# for "full"), giving every binary what only one needs. Whether `sam build` (cargo-lambda,
# `--bin` at the workspace root, which selects every member) does that too is open: see
# docs/src/perf-history.md, "The topic engine and cold starts". Takes 15-30 minutes from a cold target/ on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
# shellcheck source=infra/lib.sh
. infra/lib.sh
ensure_python_tools
start_dynamodb
for function in "${LAMBDA_FUNCTIONS[@]}" reference-runtime; do
  time cargo build --release --locked -p "$function"
done
.venv/bin/python infra/rie_check.py --binaries target/release --logs .tmp/rie-release --repeat 5
