#!/usr/bin/env bash
# Benchmark, not a test: builds every function with the release profile (what `sam build`
# deploys: fat LTO, one codegen unit) and runs each under the Lambda Runtime Interface
# Emulator against a fresh moto_server, printing init duration, peak RSS and binary size
# per function. Takes 11-14 minutes from a cold target/ on 2 cores; seconds when warm.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
# shellcheck source=infra/lib.sh
. infra/lib.sh
ensure_python_tools
start_dynamodb
time cargo build --release --locked $(printf -- '-p %s ' "${LAMBDA_FUNCTIONS[@]}")
.venv/bin/python infra/rie_check.py --binaries target/release --logs .tmp/rie-release
