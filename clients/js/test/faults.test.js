// The client against a real `fhir-ws serve --fault-injection --token-lifetime 60
// --event-retention 60 --heartbeat-seconds 1` (FHIR_WS_BASE; the workspace's `js_client` test starts one and
// runs this): for R5, R4B and R4, with the server dropping the socket mid-stream, events
// sent while the client is away, a redelivered frame, heartbeats that stop (a half-open
// socket) and tokens of the shortest lifetime, each event reaches the app exactly once
// and in order; events the server no longer holds are reported as such, once, and the
// ones after them still delivered. Then the relay path: events that come from an upstream server's Bundle.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import WebSocket from "ws";

import { EventsUnavailableError, FhirWsClient } from "../src/index.js";

const SERVER = process.env.FHIR_WS_BASE;
if (!SERVER) {
  throw new Error("FHIR_WS_BASE is not set: start `fhir-ws serve --fault-injection --token-lifetime 60 " +
    "--heartbeat-seconds 1` and point it there (cargo nextest runs this through tests/tests/js_client.rs)");
}
const RELAY_SECRET = process.env.FHIR_WS_RELAY_SECRET ?? "local-relay-secret-0123456789abcdef";
/** The shortest token lifetime the operation allows; the server is started with it. */
const TOKEN_LIFETIME_MS = 60_000;
/** The shortest event retention (EVENT_RETENTION_SECONDS); the server is started with it. */
const RETENTION_MS = 60_000;
/** Short enough that a silent socket is noticed in seconds (the watchdog: twice this). */
const HEARTBEAT_PERIOD = 3;
const VERSIONS = ["R5", "R4B", "R4"];
const WAIT_MS = 20_000;

const baseOf = (version) => (version === "R5" ? SERVER : SERVER + "/" + version);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function post(path, body, headers = {}) {
  const response = await fetch(SERVER + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  assert.ok(response.ok, `POST ${path} answered ${response.status}: ${JSON.stringify(answer)}`);
  return answer;
}

/** One event for `topic` through the SQS stand-in. */
const sendEvent = (topic, n) =>
  post("/local/events", {
    topic,
    focus: { resourceType: "Encounter", id: "enc-" + n, status: "in-progress", subject: { reference: "Patient/123" } },
  });

/** Breaks the connections bound to the subscription; how many it reached. */
const fault = async (kind, subscription) => (await post("/local/faults", { fault: kind, subscription })).connections;

async function until(what, predicate, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await sleep(25);
  }
}

/** Every client started, closed when the tests end (a failed test must not leave a socket
 * open: it would keep the test process alive). */
const clients = new Set();
after(() => {
  for (const client of clients) client.close();
});

/** A started client of a new subscription to a topic of its own, recording what it emits. */
async function follow(version, name, options = {}) {
  const topic = `http://example.org/topics/client-test/${name}/${version}/${Math.random().toString(36).slice(2)}`;
  const client = new FhirWsClient({
    baseUrl: baseOf(version),
    accessToken: async () => "alice-token",
    subscription: { topic, content: "id-only", heartbeatPeriod: HEARTBEAT_PERIOD },
    // One of the three reads its version from the server's CapabilityStatement.
    fhirVersion: version === "R4B" ? undefined : version,
    WebSocket,
    ...options,
  });
  clients.add(client);
  const seen = { notifications: [], errors: [], disconnects: [], renewals: 0, bound: 0 };
  client.addEventListener("notification", (e) => seen.notifications.push(e.detail));
  client.addEventListener("error", (e) => seen.errors.push(e.detail));
  client.addEventListener("disconnected", (e) => seen.disconnects.push(e.detail));
  client.addEventListener("renewed", () => (seen.renewals += 1));
  client.addEventListener("bound", () => (seen.bound += 1));
  await client.start();
  const numbers = () => seen.notifications.map((n) => n.eventNumber);
  return { client, topic, id: client.subscriptions[0], seen, numbers };
}

function assertExactlyOnceInOrder(run, count, version) {
  assert.deepEqual(run.numbers(), Array.from({ length: count }, (_, i) => i + 1), `${version}: each event once, in order`);
  for (const n of run.seen.notifications) {
    assert.equal(n.subscription, run.id);
    assert.equal(n.type, n.replayed ? "query-event" : "event-notification");
    assert.match(n.focus ?? "", /Encounter\/enc-\d+$/, `${version}: the focus of #${n.eventNumber}`);
    assert.equal(n.raw.resourceType, "Bundle");
  }
  assert.deepEqual(run.seen.errors.filter((e) => e instanceof EventsUnavailableError), []);
}

describe("fhir-ws-client against fhir-ws serve with faults", { concurrency: true, timeout: 180_000 }, () => {
  for (const version of VERSIONS) {
    it(`${version}: the server drops the socket mid-stream`, async () => {
      const run = await follow(version, "drop");
      await sendEvent(run.topic, 1);
      await sendEvent(run.topic, 2);
      await until("events 1 and 2", () => run.numbers().length === 2);
      assert.equal(await fault("drop", run.id), 1);
      await until("the drop", () => run.seen.disconnects.length === 1);
      await until("a new binding", () => run.seen.bound === 2);
      await sendEvent(run.topic, 3);
      await until("event 3", () => run.numbers().length === 3);
      assert.equal(run.seen.disconnects[0].code, 1001, "API Gateway's going-away close");
      assertExactlyOnceInOrder(run, 3, version);
      run.client.close();
    });

    it(`${version}: events sent while the client is disconnected are replayed first`, async () => {
      // A second's backoff at least, so the events surely land while it is away.
      const run = await follow(version, "away", { initialDelayMs: 2000 });
      await sendEvent(run.topic, 1);
      await until("event 1", () => run.numbers().length === 1);
      assert.equal(await fault("drop", run.id), 1);
      await until("the drop", () => run.seen.disconnects.length === 1);
      for (const n of [2, 3, 4]) await sendEvent(run.topic, n);
      await until("events 2-4", () => run.numbers().length === 4);
      await sendEvent(run.topic, 5);
      await until("event 5", () => run.numbers().length === 5);
      assertExactlyOnceInOrder(run, 5, version);
      assert.deepEqual(
        run.seen.notifications.map((n) => n.replayed),
        [false, true, true, true, false],
        "2-4 came from $events, 5 live",
      );
      run.client.close();
    });

    it(`${version}: a redelivered event reaches the app once`, async () => {
      const run = await follow(version, "redelivery");
      await sendEvent(run.topic, 1);
      await until("event 1", () => run.numbers().length === 1);
      assert.equal(await fault("repeat", run.id), 1, "the server sent event 1 again");
      await sendEvent(run.topic, 2);
      await until("event 2", () => run.numbers().length >= 2);
      await sleep(200);
      assertExactlyOnceInOrder(run, 2, version);
      run.client.close();
    });

    it(`${version}: heartbeats stop (a half-open socket), the client reconnects and replays`, async () => {
      const run = await follow(version, "silent");
      await sendEvent(run.topic, 1);
      await until("event 1", () => run.numbers().length === 1);
      assert.equal(await fault("freeze", run.id), 1);
      await sendEvent(run.topic, 2);
      await sendEvent(run.topic, 3);
      // Nothing arrives on the frozen socket; the watchdog gives up on it after 2 × 3 s.
      await until("events 2 and 3", () => run.numbers().length === 3, WAIT_MS + 2 * HEARTBEAT_PERIOD * 1000);
      assert.equal(run.seen.disconnects[0]?.code, 4000, "closed by the heartbeat watchdog");
      assertExactlyOnceInOrder(run, 3, version);
      run.client.close();
    });

    it(`${version}: tokens of the shortest lifetime are renewed on the open socket`, async () => {
      const run = await follow(version, "renewal");
      const boundAt = Date.now();
      await sendEvent(run.topic, 1);
      await until("event 1", () => run.numbers().length === 1);
      await until("a renewal", () => run.seen.renewals >= 1, TOKEN_LIFETIME_MS);
      // Past the first token's end: only the renewed binding can carry event 2.
      await sleep(Math.max(0, boundAt + TOKEN_LIFETIME_MS + 2000 - Date.now()));
      await sendEvent(run.topic, 2);
      await until("event 2", () => run.numbers().length === 2);
      assertExactlyOnceInOrder(run, 2, version);
      assert.equal(run.seen.notifications[1].replayed, false, "event 2 arrived live");
      assert.deepEqual(run.seen.disconnects, [], "the socket stayed up");
      run.client.close();
    });
  }

  for (const version of VERSIONS) {
    it(`${version}: events past the server's retention are reported once, and later ones delivered`, async () => {
      const first = await follow(version, "retention");
      await sendEvent(first.topic, 1);
      await sendEvent(first.topic, 2);
      await until("events 1 and 2", () => first.numbers().length === 2);
      const sentAt = Date.now();
      first.client.close();
      // The app stopped after event 0 of a later run: 1 and 2 are gone by the time it is back.
      await sleep(Math.max(0, sentAt + RETENTION_MS + 2000 - Date.now()));
      await sendEvent(first.topic, 3);
      const client = new FhirWsClient({
        baseUrl: baseOf(version),
        accessToken: () => "alice-token",
        subscriptions: [first.id],
        since: { [first.id]: 0 },
        WebSocket,
      });
      clients.add(client);
      const notifications = [];
      const errors = [];
      client.addEventListener("notification", (e) => notifications.push(e.detail));
      client.addEventListener("error", (e) => errors.push(e.detail));
      const iterator = client.notifications();
      await client.start();
      await until("event 3", () => notifications.length === 1);
      assert.deepEqual(notifications.map((n) => [n.eventNumber, n.replayed]), [[3, true]]);
      assert.equal(errors.length, 1, `one error: ${errors.map((e) => e.message)}`);
      const [gone] = errors;
      assert.ok(gone instanceof EventsUnavailableError, gone.message);
      assert.deepEqual([gone.subscription, gone.since, gone.until], [first.id, 1, 2]);
      assert.equal(gone.outcome?.resourceType, "OperationOutcome", "the server's warning is carried");
      // The async iterator: the error once, then event 3.
      await assert.rejects(iterator.next(), EventsUnavailableError);
      assert.equal((await iterator.next()).value.eventNumber, 3);
      client.close();
    });
  }

  it("R4: events relayed from an upstream server's notification Bundle need no server changes", async () => {
    const run = await follow("R4", "relay");
    const upstream = "https://upstream.example.org/fhir";
    for (const n of [1, 2]) {
      const bundle = {
        resourceType: "Bundle",
        type: "history",
        timestamp: new Date().toISOString(),
        entry: [
          {
            fullUrl: "urn:uuid:" + crypto.randomUUID(),
            resource: {
              resourceType: "Parameters",
              parameter: [
                { name: "subscription", valueReference: { reference: upstream + "/Subscription/up-" + run.id } },
                { name: "topic", valueCanonical: run.topic },
                { name: "status", valueCode: "active" },
                { name: "type", valueCode: "event-notification" },
                { name: "events-since-subscription-start", valueString: String(n) },
                {
                  name: "notification-event",
                  part: [
                    { name: "event-number", valueString: String(n) },
                    { name: "timestamp", valueInstant: new Date().toISOString() },
                    { name: "focus", valueReference: { reference: upstream + "/Encounter/enc-" + n } },
                  ],
                },
              ],
            },
            request: { method: "GET", url: upstream + "/Subscription/up-" + run.id + "/$status" },
            response: { status: "200" },
          },
        ],
      };
      await post("/relay", bundle, { Authorization: "Bearer " + RELAY_SECRET });
    }
    await until("events 1 and 2", () => run.numbers().length === 2);
    assertExactlyOnceInOrder(run, 2, "R4 relay");
    run.client.close();
  });

  it("the async iterator hands out the same notifications, and ends on close()", async () => {
    const run = await follow("R5", "iterator");
    const iterated = [];
    const reading = (async () => {
      for await (const notification of run.client) iterated.push(notification.eventNumber);
    })();
    for (const n of [1, 2, 3]) await sendEvent(run.topic, n);
    await until("three iterated", () => iterated.length === 3);
    run.client.close();
    await reading;
    assert.deepEqual(iterated, [1, 2, 3]);
  });

  it("a Subscription the server refuses ends start() with an HttpError carrying its OperationOutcome", async () => {
    const client = new FhirWsClient({
      baseUrl: SERVER,
      accessToken: () => "alice-token",
      subscriptions: ["no-such-subscription"],
      WebSocket,
    });
    await assert.rejects(client.start(), (error) => {
      assert.equal(error.name, "HttpError");
      assert.equal(error.status, 404);
      assert.equal(error.outcome?.resourceType, "OperationOutcome");
      return true;
    });
  });
});
