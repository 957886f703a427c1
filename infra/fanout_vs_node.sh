#!/usr/bin/env bash
# Benchmark, not a test: the fan-out through the real Management API client against the
# Node.js fan-out written the way the AWS serverless chat sample does it
# (tests/benches/node-fanout/, AWS SDK for JavaScript v3), both posting the same frame to
# the same local Management API stand-in at 1,000 and 10,000 connections; prints both and
# the ratio. Needs node and npm (installs the pinned SDK from package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
(cd tests/benches/node-fanout && npm ci --no-audit --no-fund --silent)
FANOUT_NODE_BASELINE="$PWD/tests/benches/node-fanout/fanout.mjs" cargo bench --locked -p fhir-ws-tests --bench fanout
