# Used by infra/test.sh: the project's Python tools, the browsers for the console's test,
# and a local DynamoDB-compatible server. Source it from the repository root.

# Every Lambda function's package (= binary) name, as template.yaml's CodeUri folders.
LAMBDA_FUNCTIONS=(subscription-api get-ws-binding-token ws-connect ws-default ws-disconnect fanout heartbeat relay)

# Creates the virtualenv DIR if needed and installs the requirements FILE into it; a file
# is installed again only when its content changes.
ensure_venv() {
  local dir=$1 file=$2 stamp wanted
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir"
  fi
  stamp="$dir/.$(basename "$file").sha256"
  wanted=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "== installing Python tools into $dir ($file)"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$file"
    echo "$wanted" >"$stamp"
  fi
}

# Installs the given requirements files (default: infra/requirements.txt) into ./.venv.
ensure_python_tools() {
  local file
  for file in "${@:-infra/requirements.txt}"; do
    ensure_venv .venv "$file"
  done
}

# Installs Debian's Chromium and ChromeDriver when either is missing (the console's
# browser test drives them) and exports CHROMIUM and CHROMEDRIVER for the tests.
ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "== installing Debian's chromium and chromium-driver (browser tests)"
    local root=()
    [ "$(id -u)" = 0 ] || root=(sudo)
    "${root[@]}" apt-get update -qq
    "${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null
  fi
  CHROMIUM=$(command -v chromium)
  CHROMEDRIVER=$(command -v chromedriver)
  export CHROMIUM CHROMEDRIVER
}

# geckodriver for the Firefox run of the console's test: Debian has no package, so it is
# built from crates.io (pinned) into .tools/ once. Tools are built unoptimised (--debug):
# they do little work, and it halves their build (geckodriver 55 s, mdBook 44 s on 2 cores).
GECKODRIVER_VERSION=0.36.0

# Installs Debian's Firefox ESR when missing and geckodriver into .tools/, and exports
# FIREFOX and GECKODRIVER for the tests.
ensure_firefox() {
  if ! command -v firefox-esr >/dev/null 2>&1; then
    echo "== installing Debian's firefox-esr (browser tests)"
    local root=()
    [ "$(id -u)" = 0 ] || root=(sudo)
    "${root[@]}" apt-get update -qq
    "${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      firefox-esr >/dev/null
  fi
  if [ "$(.tools/bin/geckodriver --version 2>/dev/null | head -n 1 | cut -d' ' -f2)" != "$GECKODRIVER_VERSION" ]; then
    echo "== building geckodriver $GECKODRIVER_VERSION from crates.io into .tools/ (browser tests)"
    cargo install --quiet --locked --debug --root .tools --version "$GECKODRIVER_VERSION" geckodriver
  fi
  FIREFOX=$(command -v firefox-esr)
  GECKODRIVER="$PWD/.tools/bin/geckodriver"
  export FIREFOX GECKODRIVER
}

# mdBook for the guide in docs/: built from crates.io (pinned, without its web server and
# file watcher, which the build does not use) into .tools/ once.
MDBOOK_VERSION=0.5.4

ensure_mdbook() {
  if [ "$(.tools/bin/mdbook --version 2>/dev/null | cut -d' ' -f2)" != "v$MDBOOK_VERSION" ]; then
    echo "== building mdBook $MDBOOK_VERSION from crates.io into .tools/ (the guide)"
    cargo install --quiet --locked --debug --no-default-features --root .tools --version "$MDBOOK_VERSION" mdbook
  fi
}

# Installs the JavaScript client's pinned development packages (ws for its Node tests,
# TypeScript for the declarations' check) from its package-lock.json into
# clients/js/node_modules, again only when the lock file changes. Needs node and npm.
ensure_node_packages() {
  local stamp=clients/js/node_modules/.package-lock.sha256 wanted
  wanted=$(sha256sum clients/js/package-lock.json | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "== installing the JavaScript client's pinned dev packages (npm ci)"
    (cd clients/js && npm ci --no-audit --no-fund --silent)
    echo "$wanted" >"$stamp"
  fi
}

# Starts moto_server (through infra/moto_serial.py, which answers one request at a time so
# concurrent conditional writes are atomic, as on DynamoDB) on a free loopback port,
# waits until it answers, creates the tables
# of template.yaml in it, and exports the endpoint and table variables the functions read.
# Sets MOTO_PID; call stop_dynamodb (or rely on the EXIT trap) to stop it.
start_dynamodb() {
  local port
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p .tmp
  .venv/bin/python infra/moto_serial.py -H 127.0.0.1 -p "$port" >.tmp/moto_server.log 2>&1 &
  MOTO_PID=$!
  trap stop_dynamodb EXIT
  trap 'exit 130' INT TERM
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "$AWS_ENDPOINT_URL_DYNAMODB/moto-api/"; then break; fi
    sleep 0.1
  done
  .venv/bin/python infra/local_tables.py --endpoint "$AWS_ENDPOINT_URL_DYNAMODB"
  export SUBSCRIPTIONS_TABLE=SubscriptionsTable TOKENS_TABLE=TokensTable BINDINGS_TABLE=BindingsTable COUNTERS_TABLE=CountersTable EVENTS_TABLE=EventsTable UPSTREAM_TABLE=UpstreamTable
  echo "== moto_server (DynamoDB) at $AWS_ENDPOINT_URL_DYNAMODB, pid $MOTO_PID"
}

stop_dynamodb() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=
  fi
}
