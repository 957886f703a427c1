"""Runs every function's binary under the AWS Lambda Runtime Interface Emulator.

Each function gets exactly the environment variables template.yaml gives it (names from
the template; intrinsic functions resolved locally: table Refs become the table names
infra/local_tables.py created, parameters their test values), plus the standard SDK
variables that point DynamoDB at the local server. Each is invoked with the sample events
of infra/events/ and its answers are checked. This catches wiring bugs in `main`,
environment names that drift from the template, and event-shape mismatches.

    python infra/rie_check.py --binaries target/debug [--template template.yaml]

infra/test.sh runs it on the dev-profile binaries (a wiring check); infra/cold_start.sh on
the release profile, for the cold-start figures in docs/src/deploying.md.

Prints, per function, the emulator's init duration, the first invocation's duration and
the function's peak memory. When the binaries folder also holds `reference-runtime` (a
bare `lambda_runtime` binary of this workspace, `infra/reference-runtime/`, built with the
same profile), it runs first and every init is also shown as a multiple of its init.
`--repeat N` starts each binary N times and shows the medians. Exits non-zero when any
function fails to start or answers wrongly.
"""

import argparse
import json
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import samcli
from cfnlint.decode import decode

ROOT = pathlib.Path(__file__).resolve().parent.parent
EVENTS = ROOT / "infra" / "events"
RIE = pathlib.Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"

# Test values for the template's parameters (what `sam deploy` would be given).
PARAMETERS = {
    "JwtIssuer": "https://issuer.example.org",
    "JwtAudience": "fhir-ws-clients",
    "LogLevel": "INFO",
    "LogRetentionDays": "30",
    "AlarmTopicArn": "",
    "TokenLifetimeSeconds": "1800",
    "TenantClaim": "",
    "WebSocketStageName": "live",
    "PublicWebSocketUrl": "",
    "WebSocketSubprotocols": "",
    "FhirBaseUrl": "https://fhir.example.org/r5",
    "EventRetentionSeconds": "604800",
    "CorsAllowedOrigins": "",
    "CorsMaxAge": "600",
    "WebSocketAllowedOrigins": "",
    "EventFhirVersion": "R4",
    # The sample HTTP events carry SMART scopes (scope, and scp in API Gateway's bracket form).
    "AuthorizationMode": "smart",
    "SmartPatientClaim": "patient",
    "MaxNotificationContent": "full-resource",
    "DeliveryPageSize": "1000",
    "ManagementApiRate": "5000",
    "FanoutConcurrency": "10",
}
# Each generated secret's JSON, as the functions that read a secret at runtime find it in
# moto_server (the relay secret is the one infra/events/relay-*.json present).
SECRET_JSON = {
    "SigningKeySecret": '{"keyId": "k1", "previous": "", "secret": "rieCheckSecret0123456789abcdef0123456789abcdef"}',
    "RelaySecret": '{"secrets": "example-relay-secret-0123456789abcdef"}',
}
# Variables naming a secret read at runtime, and the variable that gives its value instead.
SECRET_VARIABLES = {"TOKEN_SIGNING_KEYS_SECRET": "TOKEN_SIGNING_KEYS", "RELAY_SECRETS_SECRET": "RELAY_SECRETS"}
PSEUDO = {"AWS::Region": "us-east-1", "AWS::URLSuffix": "amazonaws.com", "AWS::AccountId": "000000000000",
          "AWS::Partition": "aws", "AWS::StackName": "fhir-ws"}

# Per function: (sample event, check of the answer).
def status_is(code):
    return lambda answer: isinstance(answer, dict) and answer.get("statusCode") == code, f"statusCode {code}"

INVOCATIONS = {
    # smart mode (PARAMETERS): the samples' tokens hold user/Subscription.cruds and user/*.rs
    # (creating needs read on what notifications carry); one without a Subscription scope is refused.
    "subscription-api": [("subscription-create.json", status_is(201)), ("subscription-create-r4.json", status_is(201)),
                         ("subscription-create-forbidden.json", status_is(403)),
                         ("subscription-search.json", status_is(200)),
                         ("subscription-status.json", status_is(200)), ("subscription-events.json", status_is(404)),
                         ("metadata.json", status_is(200))],
    "get-ws-binding-token": [("get-ws-binding-token-all.json", status_is(200)),
                             ("get-ws-binding-token-type-post.json", status_is(404)),
                             ("get-ws-binding-token-revoke.json", status_is(400))],
    "ws-connect": [("ws-connect.json", status_is(200)), ("ws-connect-with-token.json", status_is(401))],
    "ws-default": [("ws-default-bind.json", status_is(200))],
    "ws-disconnect": [("ws-disconnect.json", status_is(200))],
    # A resource change with no topics deployed (infra/topics/ is empty by default) is
    # invalid: moved to the dead-letter queue (in moto_server) with its reason, and
    # reported handled, not a crash.
    "fanout": [("fanout-sqs.json", (lambda a: isinstance(a, dict) and a.get("batchItemFailures") == [], "no batch item failures")),
               ("fanout-change.json", (lambda a: isinstance(a, dict) and a.get("batchItemFailures") == [] and
                                       dead_lettered("6a2f1c1e-3b7d-4f52-9d0e-7c1b2a3e4f51"),
                                       "the change in the dead-letter queue with its reason, no failures"))],
    "heartbeat": [("heartbeat-schedule.json", (lambda a: a is None, "null"))],
    # A handshake queues nothing (the queue is SQS, tested against moto by the suite); a
    # wrong secret is refused.
    "relay": [("relay-handshake.json", status_is(200)), ("relay-wrong-secret.json", status_is(401))],
}
# The bare runtime answers every event with an empty object.
REFERENCE = "reference-runtime"
REFERENCE_INVOCATIONS = [("reference-runtime.json", (lambda a: a == {}, "{}"))]


class Resolver:
    """Resolves the intrinsic functions the template uses, for a local run."""

    def __init__(self, template):
        self.template = template
        self.resources = template.get("Resources", {})
        self.conditions = {}

    def ref(self, name):
        if name in PARAMETERS:
            return PARAMETERS[name]
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return None
        kind = self.resources.get(name, {}).get("Type")
        if kind == "AWS::DynamoDB::Table":
            return name  # infra/local_tables.py names tables after their logical id
        if kind == "AWS::SQS::Queue":
            return queue_url(name)  # put_secrets creates it in moto_server
        if kind:
            return f"local-{name}"
        raise KeyError(f"unresolvable Ref {name}")

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = self.value(self.template["Conditions"][name])
        return self.conditions[name]

    def value(self, node):
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: self.sub(m.group(1)), arg)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::GetAtt":
                return f"arn:aws:local:{arg[0] if isinstance(arg, list) else arg}"
            if key == "Condition":
                return self.condition(arg)
        if isinstance(node, (str, int, float, bool)):
            return node
        raise ValueError(f"cannot resolve {node!r}")

    def sub(self, name):
        if "." in name:
            resource, attribute = name.split(".", 1)
            return f"local-{resource}-{attribute}"
        return str(self.ref(name))

    def functions(self):
        globals_env = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            # What Lambda derives from LoggingConfig, as the functions' logging reads it.
            logging = resource.get("Properties", {}).get("LoggingConfig") or \
                self.template.get("Globals", {}).get("Function", {}).get("LoggingConfig", {})
            variables = {}
            if "LogFormat" in logging:
                variables["AWS_LAMBDA_LOG_FORMAT"] = logging["LogFormat"]
            if "ApplicationLogLevel" in logging:
                variables["AWS_LAMBDA_LOG_LEVEL"] = logging["ApplicationLogLevel"]
            variables.update(globals_env)
            variables.update(resource.get("Properties", {}).get("Environment", {}).get("Variables", {}))
            env = {}
            for name, node in variables.items():
                value = self.value(node)
                if value is not None:
                    env[name] = str(value)
            yield logical_id, binary, env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def invoke(port, event):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations",
                                     data=json.dumps(event).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def run_function(binary_path, env, invocations, log_path):
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "PATH", "HOME"))}
    full_env.update(env)
    full_env["AWS_LAMBDA_FUNCTION_NAME"] = binary_path.name
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
                                    str(binary_path)], env=full_env, stdout=log, stderr=subprocess.STDOUT)
    problems = []
    peak_kib = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        for event_file, (check, expected) in invocations:
            event = json.loads((EVENTS / event_file).read_text())
            try:
                answer = invoke(port, event)
            except (urllib.error.URLError, TimeoutError) as error:
                problems.append(f"{event_file}: no answer ({error})")
                continue
            if isinstance(answer, dict) and "errorType" in answer:
                problems.append(f"{event_file}: function error {answer.get('errorType')}: {answer.get('errorMessage')}")
            elif not check(answer):
                problems.append(f"{event_file}: expected {expected}, got {json.dumps(answer)[:300]}")
        peak_kib = runtime_peak_kib(binary_path)
    finally:
        process.terminate()
        process.wait(timeout=10)
    log = pathlib.Path(log_path).read_text(errors="replace")
    # The emulator's REPORT line echoes the memory size as "Max Memory Used" and a
    # near-zero "Init Duration"; its INIT REPORT line has the real init time, and the
    # runtime process's own high-water mark is the real memory figure.
    init = re.findall(r"INIT REPORT\(durationMs: ([0-9.]+)\)", log)
    durations = re.findall(r"^REPORT RequestId: \S+\t(?:Init Duration: [0-9.]+ ms\t)?Duration: ([0-9.]+) ms", log, re.M)
    first = float(durations[0]) if durations else None
    return problems, (float(init[0]) if init else None), first, peak_kib, log


def measure(path, env, invocations, log_path, repeat):
    """Runs the binary `repeat` times; its problems (of any run) and median figures."""
    runs = [run_function(path, env, invocations, log_path) for _ in range(repeat)]
    problems = [problem for run in runs for problem in run[0]]

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None
    init, first, memory = (median(run[i] for run in runs) for i in (1, 2, 3))
    return problems, init, first, memory, runs[-1][4]


def row(name, path, init, first, memory, reference_init, result):
    def text(value, pattern):
        return pattern.format(value) if value is not None else "-"
    ratio = init / reference_init if init is not None and reference_init else None
    size = path.stat().st_size / 1048576 if path.exists() else None
    print(f"{name:<22} {text(init, '{:.1f}'):>8} {text(ratio, '{:.1f}x'):>7} {text(first, '{:.1f}'):>9} "
          f"{text(memory and memory / 1024, '{:.1f}'):>9} {text(size, '{:.1f}'):>9}  {result}")


def runtime_peak_kib(binary_path):
    """VmHWM of the running function process (a child of the emulator), in KiB."""
    target = os.path.realpath(binary_path)
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.path.realpath(entry / "exe") != target:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            continue
    return None


def queue_url(name):
    """The URL of the template's queue `name` in moto_server."""
    return f"{os.environ['AWS_ENDPOINT_URL_DYNAMODB']}/000000000000/local-{name}"


def dead_lettered(message_id):
    """Whether the dead-letter queue holds the message `message_id` with a reason."""
    import boto3
    client = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    answer = client.receive_message(QueueUrl=queue_url("EventsDeadLetterQueue"), MaxNumberOfMessages=10,
                                    MessageAttributeNames=["All"], WaitTimeSeconds=1)
    for message in answer.get("Messages", []):
        attributes = message.get("MessageAttributes", {})
        if attributes.get("SourceMessageId", {}).get("StringValue") == message_id and \
                attributes.get("InvalidReason", {}).get("StringValue"):
            return True
    return False


def put_secrets():
    """The template's secrets and queues, in the same moto_server as the tables (moto
    serves every service on one port): the functions that read their keys at runtime read
    them there, and the fan-out dead-letters invalid events there."""
    import boto3
    endpoint = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = endpoint
    os.environ["AWS_ENDPOINT_URL_SQS"] = endpoint
    client = boto3.client("secretsmanager", endpoint_url=endpoint)
    for name, value in SECRET_JSON.items():
        try:
            client.create_secret(Name=f"local-{name}", SecretString=value)
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=f"local-{name}", SecretString=value)
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    for name in ("EventsDeadLetterQueue", "EventsQueue"):
        sqs.create_queue(QueueName=f"local-{name}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binaries", required=True, help="folder with the x86_64 function binaries")
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument("--logs", default=str(ROOT / ".tmp" / "rie"))
    parser.add_argument("--keys-in-environment", action="store_true",
                        help="give the functions their signing keys and relay secrets in TOKEN_SIGNING_KEYS and "
                             "RELAY_SECRETS instead of the secrets' ids (as deployed before they were read at "
                             "runtime): the reference for the cost of reading them")
    parser.add_argument("--only", nargs="*", help="run only these functions")
    parser.add_argument("--repeat", type=int, default=1, help="start each binary this many times; medians shown")
    args = parser.parse_args()
    template, problems = decode(args.template)
    if template is None:
        sys.exit(f"cannot read {args.template}: {problems}")
    pathlib.Path(args.logs).mkdir(parents=True, exist_ok=True)
    put_secrets()
    failures = 0
    seen = set()
    print(f"{'function':<22} {'init ms':>8} {'x bare':>7} {'first ms':>9} {'peak MiB':>9} {'size MiB':>9}  result")
    reference_init = None
    reference = pathlib.Path(args.binaries) / REFERENCE
    if reference.exists():
        problems, reference_init, first, memory, _ = measure(
            reference, {}, REFERENCE_INVOCATIONS, pathlib.Path(args.logs) / f"{REFERENCE}.log", args.repeat)
        row(f"({REFERENCE})", reference, reference_init, first, memory, reference_init,
            "reference" if not problems else "FAILED")
        failures += bool(problems)
    for logical_id, binary, env in Resolver(template).functions():
        seen.add(binary)
        if args.only and binary not in args.only:
            continue
        for by_id, inline in SECRET_VARIABLES.items():
            if args.keys_in_environment and by_id in env:
                env[inline] = SECRET_JSON[env.pop(by_id).removeprefix("local-")]
        invocations = INVOCATIONS.get(binary)
        if invocations is None:
            print(f"{binary or logical_id:<22} no sample events listed in infra/rie_check.py")
            failures += 1
            continue
        path = pathlib.Path(args.binaries) / binary
        problems, init, first, memory, log = measure(
            path, env, invocations, pathlib.Path(args.logs) / f"{binary}.log", args.repeat)
        row(binary, path, init, first, memory, reference_init, "ok" if not problems else "FAILED")
        for problem in problems:
            print(f"    {problem}")
        if problems:
            failures += 1
            tail = "\n".join(log.splitlines()[-8:])
            print(f"    last log lines:\n{tail}")
    missing = set(INVOCATIONS) - seen
    if missing and not args.only:
        print(f"functions with sample events but not in the template: {sorted(missing)}")
        failures += 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
