#!/usr/bin/env bash
# Runs the HTTP functions on this machine, no AWS account and no Docker needed:
# installs the pinned tools into .venv, starts moto_server (DynamoDB) with the tables of
# template.yaml, and serves both functions with `cargo lambda watch` (rebuilding on
# change) on http://127.0.0.1:${PORT:-9000}. Invoke them with the sample API Gateway
# events in infra/events/ (see README, "Run it locally"). Ctrl-C stops everything.
#
# Interim: the WebSocket side and the local gateway (local/, `fhir-ws serve`) come with
# later issues; until then WEBSOCKET_URL is only the value the operation returns.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
# shellcheck source=infra/lib.sh
. infra/lib.sh

ensure_python_tools infra/requirements.txt infra/requirements-run.txt
start_dynamodb

export WEBSOCKET_URL="${WEBSOCKET_URL:-ws://127.0.0.1:9001/}"
if [ -z "${TOKEN_SIGNING_KEYS:-}" ]; then
  # A fresh random key per run: tokens from an earlier run stop verifying, as after a rotation.
  TOKEN_SIGNING_KEYS="local-dev:$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')"
  export TOKEN_SIGNING_KEYS
fi
# Base of the FHIR server whose resources events carry (used by fanout for references).
export FHIR_BASE_URL="${FHIR_BASE_URL:-http://127.0.0.1:8080/fhir}"
export AWS_LAMBDA_LOG_LEVEL="${AWS_LAMBDA_LOG_LEVEL:-info}"
port="${PORT:-9000}"

cat <<MSG
== serving subscription-api and get-ws-binding-token on http://127.0.0.1:$port
   tables: $SUBSCRIPTIONS_TABLE, $TOKENS_TABLE in moto_server at $AWS_ENDPOINT_URL_DYNAMODB
   websocket-url returned by the operation: $WEBSOCKET_URL
   in another terminal:
     .venv/bin/cargo-lambda lambda invoke subscription-api -A 127.0.0.1 --invoke-port $port --data-file infra/events/subscription-create.json
     .venv/bin/cargo-lambda lambda invoke get-ws-binding-token -A 127.0.0.1 --invoke-port $port --data-file infra/events/get-ws-binding-token-all.json
MSG
PATH="$PWD/.venv/bin:$PATH" cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port"
