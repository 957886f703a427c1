// Reading notification Bundles of each version into one notification shape, writing
// Subscriptions in each version's shape, and the reconnect delays (no server needed).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DEFAULTS,
  readNotifications,
  readStatus,
  reconnectDelay,
  subscriptionId,
  subscriptionResource,
} from "../src/index.js";

const encounter = (id) => ({ resourceType: "Encounter", id, status: "in-progress" });

test("an R5 event-notification Bundle gives one notification per event", () => {
  const bundle = {
    resourceType: "Bundle",
    type: "subscription-notification",
    entry: [
      {
        resource: {
          resourceType: "SubscriptionStatus",
          status: "active",
          type: "event-notification",
          eventsSinceSubscriptionStart: "7",
          notificationEvent: [{ eventNumber: "7", timestamp: "2026-12-03T10:00:00Z", focus: { reference: "Encounter/e7" } }],
          subscription: { reference: "http://fhir.example.org/Subscription/abc" },
          topic: "http://example.org/topics/t",
        },
      },
      { fullUrl: "http://fhir.example.org/Encounter/e7", resource: encounter("e7") },
    ],
  };
  const [notification, ...rest] = readNotifications(bundle);
  assert.deepEqual(rest, []);
  assert.equal(notification.subscription, "abc");
  assert.equal(notification.topic, "http://example.org/topics/t");
  assert.equal(notification.type, "event-notification");
  assert.equal(notification.eventNumber, 7);
  assert.equal(notification.focus, "Encounter/e7");
  assert.equal(notification.timestamp, "2026-12-03T10:00:00Z");
  assert.deepEqual(notification.resources, [encounter("e7")]);
  assert.equal(notification.replayed, false);
  assert.equal(notification.raw, bundle);
});

test("an R4B $events Bundle's resources go to the event they belong to", () => {
  const bundle = {
    resourceType: "Bundle",
    type: "history",
    entry: [
      {
        resource: {
          resourceType: "SubscriptionStatus",
          status: "active",
          type: "query-event",
          notificationEvent: [
            { eventNumber: "2", focus: { reference: "Encounter/e2" } },
            { eventNumber: "3", focus: { reference: "Encounter/e3" } },
          ],
          subscription: { reference: "Subscription/s1" },
          topic: "http://example.org/topics/t",
        },
      },
      { fullUrl: "http://x/Encounter/e3", resource: encounter("e3") },
      { fullUrl: "http://x/Encounter/e2", resource: encounter("e2") },
    ],
  };
  const notifications = readNotifications(bundle);
  assert.deepEqual(notifications.map((n) => [n.eventNumber, n.resources.map((r) => r.id), n.replayed]), [
    [2, ["e2"], true],
    [3, ["e3"], true],
  ]);
});

test("an R4 Parameters notification reads the same", () => {
  const bundle = {
    resourceType: "Bundle",
    type: "history",
    entry: [
      {
        resource: {
          resourceType: "Parameters",
          parameter: [
            { name: "subscription", valueReference: { reference: "Subscription/r4" } },
            { name: "topic", valueCanonical: "http://example.org/topics/t" },
            { name: "status", valueCode: "active" },
            { name: "type", valueCode: "event-notification" },
            { name: "events-since-subscription-start", valueString: "12" },
            {
              name: "notification-event",
              part: [
                { name: "event-number", valueString: "12" },
                { name: "timestamp", valueInstant: "2026-12-03T10:00:00Z" },
                { name: "focus", valueReference: { reference: "Encounter/e12" } },
                { name: "additional-context", valueReference: { reference: "Patient/p1" } },
              ],
            },
          ],
        },
      },
    ],
  };
  const [notification] = readNotifications(bundle);
  assert.equal(notification.subscription, "r4");
  assert.equal(notification.eventNumber, 12);
  assert.equal(notification.focus, "Encounter/e12");
  assert.deepEqual(notification.additionalContext, ["Patient/p1"]);
  assert.deepEqual(notification.resources, []);
  const status = readStatus(bundle.entry[0].resource);
  assert.equal(status.eventsSinceSubscriptionStart, 12);
});

test("a handshake is a status, not a notification; other resources are neither", () => {
  const handshake = {
    resourceType: "Bundle",
    entry: [{ resource: { resourceType: "SubscriptionStatus", type: "handshake", eventsSinceSubscriptionStart: "0", subscription: { reference: "Subscription/a" } } }],
  };
  assert.deepEqual(readNotifications(handshake), []);
  assert.equal(readStatus(handshake.entry[0].resource).eventsSinceSubscriptionStart, 0);
  assert.equal(readStatus({ resourceType: "Patient" }), null);
  assert.deepEqual(readNotifications({ resourceType: "OperationOutcome" }), []);
  assert.equal(subscriptionId("Subscription/x/_history/2"), "x");
});

test("Subscriptions are written in each version's shape", () => {
  const request = { topic: "http://example.org/topics/t", filters: ["Encounter?patient=Patient/1"], heartbeatPeriod: 30 };
  const r5 = subscriptionResource("R5", request);
  assert.equal(r5.topic, request.topic);
  assert.deepEqual(r5.filterBy, [{ resourceType: "Encounter", filterParameter: "patient", value: "Patient/1" }]);
  assert.equal(r5.heartbeatPeriod, 30);
  assert.equal(r5.channelType.code, "websocket");
  for (const version of ["R4", "R4B"]) {
    const backport = subscriptionResource(version, request);
    assert.equal(backport.criteria, request.topic);
    assert.equal(backport.channel.type, "websocket");
    assert.equal(backport._criteria.extension[0].url, "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria");
    assert.equal(backport.channel.extension[0].valueUnsignedInt, 30);
    assert.equal(backport.channel._payload.extension[0].valueCode, "id-only");
  }
});

test("reconnect delays double up to the cap, each between half and all of its ceiling", () => {
  const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  ceilings.forEach((ceiling, i) => {
    assert.equal(reconnectDelay(i + 1, DEFAULTS, () => 0), ceiling / 2);
    assert.equal(reconnectDelay(i + 1, DEFAULTS, () => 1), ceiling);
  });
  for (let i = 0; i < 100; i++) {
    const delay = reconnectDelay(3, DEFAULTS);
    assert.ok(delay >= 1000 && delay <= 2000, String(delay));
  }
  assert.equal(reconnectDelay(1000, DEFAULTS, () => 1), 30000, "no overflow past the cap");
});
