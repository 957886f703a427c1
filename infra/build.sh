#!/usr/bin/env bash
# `sam build` from a clean clone: installs the pinned SAM CLI, cargo-lambda and zig into
# ./.venv, adds the aarch64 Rust target if it is missing, and builds every function for
# arm64 (BuildMethod: rust-cargolambda) into .aws-sam/build. Arguments go to `sam build`.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
# shellcheck source=infra/lib.sh
. infra/lib.sh
ensure_python_tools infra/requirements.txt infra/requirements-build.txt
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
# cargo-lambda finds zig on PATH (the ziglang wheel installs python-zig; expose it as zig).
mkdir -p .venv/zig-bin
cat >.venv/zig-bin/zig <<'ZIG'
#!/usr/bin/env bash
exec "$(dirname "$0")/../bin/python" -m ziglang "$@"
ZIG
chmod +x .venv/zig-bin/zig
export PATH="$PWD/.venv/bin:$PWD/.venv/zig-bin:$PATH"
time sam build "$@"
echo "== bootstrap sizes (arm64)"
for f in .aws-sam/build/*/bootstrap; do
  printf '%-32s %s\n' "$(basename "$(dirname "$f")")" "$(du -h "$f" | cut -f1)"
done
