// fhir-ws local console: a browser client of this stack, written as a browser app would
// be: the HTTP API with a bearer token, and the WebSocket side through fhir-ws-client
// (clients/js, served as /console/fhir-ws-client.js): binding tokens, renewal,
// reconnects and exactly-once, in-order events with $events replay.
// No framework and no build step; everything it loads or calls is on this origin.

import { FhirWsClient, fhirRequest, readStatus, subscriptionResource } from "./fhir-ws-client.js";

const $ = (id) => document.getElementById(id);
const state = {
  /** subscription id → { client (FhirWsClient), version } */
  bindings: new Map(),
  subscriptions: [],
};

// ---------------------------------------------------------------- HTTP API

function base(version) {
  return version === "R5" ? "" : "/" + version;
}

function bearer() {
  return $("user").value;
}

/** Calls the HTTP API as the chosen user; the parsed body, or an HttpError carrying the
 * server's OperationOutcome. */
function api(method, path, body, version = $("version").value) {
  return fhirRequest({ baseUrl: location.origin + base(version), accessToken: bearer }, method, path, body);
}

// ---------------------------------------------------------------- frames log

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== undefined && child !== null) node.append(child);
  }
  return node;
}

function definitions(pairs) {
  const list = element("dl");
  for (const [term, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    list.append(element("dt", {}, term), element("dd", {}, String(value)));
  }
  return list;
}

/** The pretty view of a Bundle: its status resource and what it carries. */
function prettyBundle(bundle, status) {
  const view = element("div");
  view.append(
    definitions([
      ["Bundle type", bundle.type],
      ["notification", status?.type],
      ["subscription", status?.subscription],
      ["status", status?.status],
      ["topic", status?.topic],
      ["events since start", status?.eventsSinceSubscriptionStart],
      ["errors", status?.errors?.join("; ")],
    ]),
  );
  for (const event of status?.events || []) {
    view.append(
      definitions([
        ["event #", event.eventNumber],
        ["focus", event.focus],
        ["timestamp", event.timestamp],
      ]),
    );
  }
  const entries = (bundle.entry || []).slice(1);
  if (entries.length) {
    const list = element("ul");
    for (const entry of entries) {
      const resource = entry.resource;
      const label = resource ? resource.resourceType + "/" + (resource.id ?? "?") : "(no resource)";
      list.append(element("li", {}, label + (entry.fullUrl ? "  " + entry.fullUrl : "")));
    }
    view.append(element("div", {}, "entries:"), list);
  }
  return view;
}

function prettyOutcome(outcome) {
  return definitions(
    (outcome.issue || []).map((issue) => [
      issue.severity + " / " + issue.code,
      issue.diagnostics || issue.details?.text || "",
    ]),
  );
}

/** Adds one entry to the log: newest first. */
function log(kind, { text, json, subscription, numbers, pretty }) {
  const line = element(
    "div",
    { class: "line" },
    element("time", {}, new Date().toLocaleTimeString()),
    element("span", { class: "kind" }, kind),
    numbers?.length ? element("span", { class: "numbers" }, numbers.map((n) => "#" + n).join(" ")) : null,
    subscription ? element("span", { class: "sub" }, subscription) : null,
  );
  const frame = element("article", {
    class: "frame",
    "data-kind": kind,
    "data-events": numbers?.length ? numbers.join(",") : null,
  }, line);
  if (text) frame.append(element("div", {}, text));
  if (pretty) {
    frame.append(element("details", { open: "" }, element("summary", {}, "pretty"), pretty));
  }
  if (json !== undefined) {
    const raw = typeof json === "string" ? json : JSON.stringify(json, null, 2);
    frame.append(element("details", {}, element("summary", {}, "raw"), element("pre", {}, raw)));
  }
  $("frames").prepend(frame);
}

function logError(error) {
  const body = error.outcome ?? error.body;
  const pretty = body && body.resourceType === "OperationOutcome" ? prettyOutcome(body) : null;
  log("error", { text: error.message, json: body ?? undefined, pretty });
}

/** A handshake or heartbeat (from the client's `status` event). */
function showStatus(status) {
  const bundle = status.raw;
  log(status.type, {
    json: bundle,
    subscription: "Subscription/" + status.subscription,
    pretty: prettyBundle(bundle, status),
  });
  if (status.type === "handshake") refreshSubscriptions(false);
}

/** One event, once and in order (live, or replayed with $events after a gap). */
function showNotification(notification) {
  const bundle = notification.raw;
  const status = readStatus(bundle.entry?.[0]?.resource);
  // Only this event of a replayed $events Bundle.
  const shown = { ...status, type: "event-notification", events: status.events.filter((e) => e.eventNumber === notification.eventNumber) };
  log("event-notification", {
    text: notification.replayed ? "replayed with $events (missed on the socket)" : undefined,
    json: bundle,
    subscription: "Subscription/" + notification.subscription,
    numbers: [notification.eventNumber],
    pretty: prettyBundle(bundle, shown),
  });
  refreshSubscriptions(false);
}

// ---------------------------------------------------------------- subscriptions

function filterLines() {
  return $("filters").value.split("\n").map((l) => l.trim()).filter(Boolean);
}

/** The websocket Subscription the form describes, in the selected version's shape. */
function subscriptionFromForm(version) {
  const heartbeat = parseInt($("heartbeat").value, 10);
  return subscriptionResource(version, {
    topic: $("topic").value.trim(),
    content: $("content").value,
    heartbeatPeriod: heartbeat > 0 ? heartbeat : undefined,
    filters: filterLines(),
    reason: "fhir-ws console",
  });
}

async function createSubscription(event) {
  event.preventDefault();
  const version = $("version").value;
  try {
    const created = await api("POST", "/Subscription", subscriptionFromForm(version));
    log("created", { text: "Subscription/" + created.id + " (" + version + ")", json: created });
    await refreshSubscriptions(true);
  } catch (error) {
    logError(error);
  }
}

function topicOf(resource) {
  return resource.topic || resource.criteria || "";
}

/** Lists the caller's subscriptions at the selected version, each with its `$status`. */
async function refreshSubscriptions(reportErrors = true) {
  const version = $("version").value;
  try {
    const bundle = await api("GET", "/Subscription", undefined, version);
    const subscriptions = (bundle?.entry || []).map((e) => e.resource).filter(Boolean);
    const statuses = await Promise.all(
      subscriptions.map((s) =>
        api("GET", "/Subscription/" + s.id + "/$status", undefined, version)
          .then((b) => readStatus(b?.entry?.[0]?.resource))
          .catch(() => null),
      ),
    );
    state.subscriptions = subscriptions.map((resource, i) => ({ resource, status: statuses[i], version }));
    renderSubscriptions();
  } catch (error) {
    if (reportErrors) logError(error);
  }
}

function renderSubscriptions() {
  const body = $("subscriptions");
  body.replaceChildren();
  const choices = $("events-subscription");
  const chosen = choices.value;
  choices.replaceChildren();
  if (!state.subscriptions.length) {
    body.append(element("tr", { class: "empty" }, element("td", { colspan: "5" }, "none yet")));
  }
  for (const { resource, status, version } of state.subscriptions) {
    const bound = state.bindings.has(resource.id);
    const bind = element("button", { type: "button", class: "small bind" }, bound ? "Renew" : "Bind");
    bind.addEventListener("click", () => bindSubscription(resource.id, version));
    const remove = element("button", { type: "button", class: "small danger" }, "Delete");
    remove.addEventListener("click", () => deleteSubscription(resource.id, version));
    body.append(
      element(
        "tr",
        { "data-id": resource.id },
        element("td", { "data-label": "id" }, resource.id),
        element("td", { "data-label": "topic" }, topicOf(resource)),
        element("td", { "data-label": "status" }, status?.status || resource.status || ""),
        element("td", { class: "count", "data-label": "events" }, status?.eventsSinceSubscriptionStart ?? ""),
        element("td", { class: "actions" }, bind, remove),
      ),
    );
    choices.append(element("option", { value: resource.id }, resource.id));
  }
  if (chosen) choices.value = chosen;
}

async function deleteSubscription(id, version) {
  try {
    await api("DELETE", "/Subscription/" + id, undefined, version);
    log("deleted", { text: "Subscription/" + id });
    forgetBinding(id);
    await refreshSubscriptions(true);
  } catch (error) {
    logError(error);
  }
}

// ---------------------------------------------------------------- bindings (fhir-ws-client)

function setSocketState(text, css) {
  const pill = $("socket-state");
  pill.textContent = text;
  pill.className = "pill " + css;
}

function renderSocketState() {
  const open = [...state.bindings.values()].filter((b) => b.open).length;
  if (open) setSocketState(open === 1 ? "socket open" : open + " sockets open", "open");
  else if (state.bindings.size) setSocketState("reconnecting", "expiring");
  else setSocketState("socket closed", "closed");
}

/** Binds the subscription with a client of its own, or renews the binding's token now. */
async function bindSubscription(id, version) {
  const existing = state.bindings.get(id);
  if (existing) {
    await existing.client.renew();
    return;
  }
  const client = new FhirWsClient({
    baseUrl: location.origin + base(version),
    accessToken: () => bearer(),
    subscriptions: [id],
    fhirVersion: version,
  });
  const binding = { client, version, open: false };
  state.bindings.set(id, binding);
  client.addEventListener("open", (e) => {
    binding.open = true;
    renderSocketState();
    log("socket", { text: "connected to " + e.detail.url });
  });
  client.addEventListener("disconnected", (e) => {
    binding.open = false;
    renderSocketState();
    log("socket", { text: "closed (" + e.detail.code + (e.detail.reason ? ", " + e.detail.reason : "") + ")" });
  });
  client.addEventListener("reconnecting", (e) =>
    log("socket", { text: "reconnecting in " + e.detail.delayMs + " ms (attempt " + e.detail.attempt + ")" }),
  );
  client.addEventListener("bound", (e) => {
    log("bind", { text: "bound Subscription/" + id + ", token expires " + e.detail.expiration?.toLocaleTimeString() });
    renderBindings();
    renderSubscriptions();
  });
  client.addEventListener("renewed", (e) => {
    log("bind", { text: "renewed Subscription/" + id + ", token expires " + e.detail.expiration.toLocaleTimeString() });
    renderBindings();
  });
  client.addEventListener("status", (e) => showStatus(e.detail));
  client.addEventListener("notification", (e) => showNotification(e.detail));
  client.addEventListener("error", (e) => {
    const error = e.detail;
    log("error", { text: error.message, json: error.outcome, pretty: error.outcome ? prettyOutcome(error.outcome) : null });
  });
  client.addEventListener("close", () => {
    if (state.bindings.get(id) === binding) forgetBinding(id);
  });
  try {
    await client.start();
  } catch {
    // Reported through the client's `error` event.
  }
}

function forgetBinding(id) {
  const binding = state.bindings.get(id);
  state.bindings.delete(id);
  binding?.client.close();
  renderBindings();
  renderSocketState();
}

function remaining(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  const minutes = Math.floor(seconds / 60);
  return minutes + ":" + String(seconds % 60).padStart(2, "0");
}

function renderBindings() {
  const list = $("bindings");
  list.replaceChildren();
  if (!state.bindings.size) list.append(element("li", { class: "empty" }, "nothing bound"));
  for (const [id, binding] of state.bindings) {
    const expiration = binding.client.expiration;
    if (!expiration) continue;
    const left = expiration - Date.now();
    const renew = element("button", { type: "button", class: "small secondary" }, "Renew now");
    renew.addEventListener("click", () => bindSubscription(id, binding.version));
    list.append(
      element(
        "li",
        { "data-id": id },
        element("span", {}, "Subscription/" + id + " (" + binding.version + ")"),
        element(
          "span",
          { class: "pill " + (left < 60000 ? "expiring" : "open") },
          "token expires " + expiration.toLocaleTimeString() + " (in " + remaining(left) + ")",
        ),
        renew,
      ),
    );
  }
}

// ---------------------------------------------------------------- events

function exampleEvent() {
  const event = {
    topic: $("topic").value.trim(),
    focus: {
      resourceType: "Encounter",
      id: "example-" + Math.floor(Date.now() / 1000),
      status: "finished",
      class: { system: "http://terminology.hl7.org/CodeSystem/v3-ActCode", code: "AMB" },
      subject: { reference: "Patient/123" },
    },
  };
  $("event").value = JSON.stringify(event, null, 2);
}

async function sendEvent() {
  let event;
  try {
    event = JSON.parse($("event").value);
  } catch (error) {
    log("error", { text: "the event is not JSON: " + error.message });
    return;
  }
  try {
    const response = await fetch("/local/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(event),
    });
    const body = await response.json().catch(() => null);
    log("event sent", {
      text: response.status + (body?.delivered ? ", delivered" : ", not delivered"),
      json: body ?? undefined,
    });
  } catch (error) {
    logError(error);
  }
}

async function replayEvents(event) {
  event.preventDefault();
  const id = $("events-subscription").value;
  const entry = state.subscriptions.find((s) => s.resource.id === id);
  if (!entry) {
    log("error", { text: "pick one of your subscriptions to replay" });
    return;
  }
  const query = new URLSearchParams();
  if ($("events-since").value) query.set("eventsSinceNumber", $("events-since").value);
  if ($("events-until").value) query.set("eventsUntilNumber", $("events-until").value);
  try {
    const bundle = await api("GET", "/Subscription/" + id + "/$events?" + query, undefined, entry.version);
    const status = readStatus(bundle?.entry?.[0]?.resource);
    const numbers = (status?.events || []).map((e) => e.eventNumber).filter((n) => n !== undefined);
    log("events-replay", { subscription: status?.subscription, numbers, json: bundle, pretty: prettyBundle(bundle, status) });
  } catch (error) {
    logError(error);
  }
}

// ---------------------------------------------------------------- start

async function loadUsers() {
  const users = await fetch("/console/users").then((r) => r.json()).catch(() => []);
  const select = $("user");
  for (const user of users) {
    const option = element("option", { value: user.token }, user.principal);
    option.dataset.scope = user.scope || "";
    option.dataset.patient = user.patient || "";
    select.append(option);
  }
  showScopes();
}

// The chosen user's SMART scopes and launch patient (what `fhir-ws serve --authorization
// smart` holds them to).
function showScopes() {
  const option = $("user").selectedOptions[0];
  const patient = option?.dataset.patient ? ` · patient ${option.dataset.patient}` : "";
  $("user-scopes").textContent = option ? `${option.dataset.scope}${patient}` : "";
}

async function loadTopics() {
  try {
    const bundle = await api("GET", "/SubscriptionTopic", undefined, "R5");
    const topics = (bundle?.entry || []).map((e) => e.resource).filter((t) => t?.url);
    for (const topic of topics) $("topics").append(element("option", { value: topic.url }, topic.title || topic.url));
    if (topics.length) $("topic").value = topics[0].url;
  } catch {
    // No topic discovery: any topic may be typed.
  }
}

function closeSockets() {
  for (const id of [...state.bindings.keys()]) forgetBinding(id);
}

document.addEventListener("DOMContentLoaded", async () => {
  $("create-form").addEventListener("submit", createSubscription);
  $("refresh").addEventListener("click", () => refreshSubscriptions(true));
  $("send-event").addEventListener("click", sendEvent);
  $("example-event").addEventListener("click", exampleEvent);
  $("events-form").addEventListener("submit", replayEvents);
  $("clear").addEventListener("click", () => $("frames").replaceChildren());
  $("user").addEventListener("change", showScopes);
  for (const id of ["user", "version"]) {
    $(id).addEventListener("change", () => {
      closeSockets();
      refreshSubscriptions(true);
    });
  }
  setInterval(renderBindings, 1000);
  await loadUsers();
  await loadTopics();
  exampleEvent();
  await refreshSubscriptions(true);
  document.body.dataset.ready = "true";
});
