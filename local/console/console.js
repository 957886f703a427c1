// fhir-ws local console: a browser client of this stack, written as a browser app would
// be: the HTTP API with a bearer token, the WebSocket API bound with binding tokens.
// No framework and no build step; everything it loads or calls is on this origin.
"use strict";

const BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
const CHANNEL_TYPES = "http://terminology.hl7.org/CodeSystem/subscription-channel-type";
/** A token is renewed when this share of its lifetime has passed, as the CLI does. */
const RENEW_AT = 0.8;

const $ = (id) => document.getElementById(id);
const state = {
  socket: null,
  /** subscription id → { token, expiration (Date), version, timer } */
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

/** Calls the HTTP API; returns the parsed body, or throws an Error carrying it. */
async function api(method, path, body, version = $("version").value) {
  const headers = { Accept: "application/fhir+json", Authorization: "Bearer " + bearer() };
  if (body !== undefined) headers["Content-Type"] = "application/fhir+json";
  const response = await fetch(base(version) + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const error = new Error(method + " " + base(version) + path + " answered " + response.status);
    error.body = parsed ?? text;
    throw error;
  }
  return parsed;
}

/** The value[x] of a Parameters parameter (or part) named `name`. */
function parameterValue(list, name) {
  const found = (list || []).find((p) => p.name === name);
  if (!found) return undefined;
  const key = Object.keys(found).find((k) => k.startsWith("value"));
  return key ? found[key] : found.resource;
}

// ---------------------------------------------------------------- reading status resources

/** What a status resource says, for every version: R5 and R4B SubscriptionStatus, R4 Parameters. */
function readStatus(resource) {
  if (!resource) return null;
  if (resource.resourceType === "SubscriptionStatus") {
    return {
      type: resource.type,
      status: resource.status,
      subscription: resource.subscription?.reference,
      topic: resource.topic,
      count: resource.eventsSinceSubscriptionStart,
      events: (resource.notificationEvent || []).map((e) => ({
        number: e.eventNumber,
        focus: e.focus?.reference,
        timestamp: e.timestamp,
      })),
      error: (resource.error || []).map((e) => e.text || e.coding?.[0]?.code).filter(Boolean),
    };
  }
  if (resource.resourceType === "Parameters") {
    const list = resource.parameter || [];
    return {
      type: parameterValue(list, "type"),
      status: parameterValue(list, "status"),
      subscription: parameterValue(list, "subscription")?.reference,
      topic: parameterValue(list, "topic"),
      count: parameterValue(list, "events-since-subscription-start"),
      events: list
        .filter((p) => p.name === "notification-event")
        .map((p) => ({
          number: parameterValue(p.part, "event-number"),
          focus: parameterValue(p.part, "focus")?.reference,
          timestamp: parameterValue(p.part, "timestamp"),
        })),
      error: list.filter((p) => p.name === "error").map((p) => p.valueCodeableConcept?.text),
    };
  }
  return null;
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
      ["events since start", status?.count],
      ["errors", status?.error?.join("; ")],
    ]),
  );
  for (const event of status?.events || []) {
    view.append(
      definitions([
        ["event #", event.number],
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
  const body = error.body;
  const pretty = body && body.resourceType === "OperationOutcome" ? prettyOutcome(body) : null;
  log("error", { text: error.message, json: body ?? undefined, pretty });
}

/** One WebSocket frame, whatever it is. */
function showFrame(data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    log("text", { text: String(data) });
    return;
  }
  if (message?.resourceType === "Bundle") {
    const status = readStatus(message.entry?.[0]?.resource);
    const numbers = (status?.events || []).map((e) => e.number).filter((n) => n !== undefined);
    log(status?.type || "Bundle", {
      json: message,
      subscription: status?.subscription,
      numbers,
      pretty: prettyBundle(message, status),
    });
    if (status?.type === "event-notification" || status?.type === "handshake") refreshSubscriptions(false);
  } else if (message?.resourceType === "OperationOutcome") {
    log("OperationOutcome", { json: message, pretty: prettyOutcome(message) });
  } else {
    log(message?.type || "frame", { json: message });
  }
}

// ---------------------------------------------------------------- subscriptions

function filterLines() {
  return $("filters").value.split("\n").map((l) => l.trim()).filter(Boolean);
}

/** `Encounter?patient:missing=true&date=ge2020` as R5 filterBy entries. */
function filterBy(criteria) {
  const [resourceType, query] = criteria.split("?", 2);
  if (!query) throw new Error("a filter needs a resource type and a query: " + criteria);
  const comparators = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];
  return query.split("&").map((clause) => {
    const at = clause.indexOf("=");
    if (at < 1) throw new Error("a filter clause needs name=value: " + clause);
    const [name, modifier] = decodeURIComponent(clause.slice(0, at)).split(":", 2);
    let value = decodeURIComponent(clause.slice(at + 1));
    const entry = { resourceType, filterParameter: name };
    const prefix = value.slice(0, 2);
    if (!modifier && comparators.includes(prefix) && /^[0-9-]/.test(value.slice(2))) {
      entry.comparator = prefix;
      value = value.slice(2);
    }
    if (modifier) entry.modifier = modifier;
    entry.value = value;
    return entry;
  });
}

/** The websocket Subscription the form describes, in the selected version's shape. */
function subscriptionFromForm(version) {
  const topic = $("topic").value.trim();
  const content = $("content").value;
  const heartbeat = parseInt($("heartbeat").value, 10);
  const filters = filterLines();
  if (version === "R5") {
    const resource = {
      resourceType: "Subscription",
      status: "requested",
      topic,
      channelType: { system: CHANNEL_TYPES, code: "websocket" },
      content,
    };
    if (heartbeat > 0) resource.heartbeatPeriod = heartbeat;
    if (filters.length) resource.filterBy = filters.flatMap(filterBy);
    return resource;
  }
  // The Subscriptions Backport IG's profile for R4 and R4B.
  const resource = {
    resourceType: "Subscription",
    status: "requested",
    reason: "fhir-ws console",
    criteria: topic,
    channel: {
      type: "websocket",
      payload: "application/fhir+json",
      _payload: { extension: [{ url: BACKPORT + "backport-payload-content", valueCode: content }] },
    },
  };
  if (heartbeat > 0) {
    resource.channel.extension = [{ url: BACKPORT + "backport-heartbeat-period", valueUnsignedInt: heartbeat }];
  }
  if (filters.length) {
    resource._criteria = {
      extension: filters.map((c) => ({ url: BACKPORT + "backport-filter-criteria", valueString: c })),
    };
  }
  return resource;
}

async function createSubscription(event) {
  event.preventDefault();
  const version = $("version").value;
  try {
    const created = await api("POST", "/Subscription", subscriptionFromForm(version));
    log("created", { text: "Subscription/" + created.id + " (" + version + ")", json: created });
    await refreshSubscriptions(true);
  } catch (error) {
    if (error.body === undefined) error.body = String(error);
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
        element("td", { class: "count", "data-label": "events" }, status?.count ?? ""),
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

// ---------------------------------------------------------------- the socket and bindings

function setSocketState(text, css) {
  const pill = $("socket-state");
  pill.textContent = text;
  pill.className = "pill " + css;
}

/** The open socket to `url`, opening one if there is none. */
function socketTo(url) {
  if (state.socket && state.socket.readyState <= WebSocket.OPEN) {
    if (state.socket.readyState === WebSocket.OPEN) return Promise.resolve(state.socket);
    return new Promise((resolve, reject) => {
      state.socket.addEventListener("open", () => resolve(state.socket), { once: true });
      state.socket.addEventListener("error", () => reject(new Error("the WebSocket did not open")), { once: true });
    });
  }
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    state.socket = socket;
    setSocketState("socket opening", "expiring");
    socket.addEventListener("open", () => {
      setSocketState("socket open", "open");
      log("socket", { text: "connected to " + url.split("?")[0] });
      resolve(socket);
    });
    socket.addEventListener("message", (event) => showFrame(event.data));
    socket.addEventListener("error", () => reject(new Error("the WebSocket to " + url + " failed")));
    socket.addEventListener("close", (event) => {
      if (state.socket === socket) state.socket = null;
      setSocketState("socket closed", "closed");
      log("socket", { text: "closed (" + event.code + (event.reason ? ", " + event.reason : "") + ")" });
      for (const id of [...state.bindings.keys()]) forgetBinding(id);
    });
  });
}

/** Gets a binding token for the subscription and binds this page's socket with it. */
async function bindSubscription(id, version) {
  try {
    const parameters = await api("POST", "/Subscription/" + id + "/$get-ws-binding-token", undefined, version);
    const list = parameters?.parameter || [];
    const token = parameterValue(list, "token");
    const expiration = new Date(parameterValue(list, "expiration"));
    const url = parameterValue(list, "websocket-url");
    if (!token || !url || isNaN(expiration)) throw Object.assign(new Error("unexpected token answer"), { body: parameters });
    const socket = await socketTo(url);
    socket.send("bind-with-token " + token);
    const previous = state.bindings.get(id);
    if (previous) clearTimeout(previous.timer);
    const lifetime = Math.max(expiration - Date.now(), 0);
    const timer = setTimeout(() => bindSubscription(id, version), Math.max(lifetime * RENEW_AT, 1000));
    state.bindings.set(id, { expiration, version, timer });
    log("bind", { text: (previous ? "renewed " : "bound ") + "Subscription/" + id + ", token expires " + expiration.toLocaleTimeString() });
    renderBindings();
    renderSubscriptions();
  } catch (error) {
    if (error.body === undefined) error.body = String(error);
    logError(error);
  }
}

function forgetBinding(id) {
  const binding = state.bindings.get(id);
  if (binding) clearTimeout(binding.timer);
  state.bindings.delete(id);
  renderBindings();
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
    const left = binding.expiration - Date.now();
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
          "token expires " + binding.expiration.toLocaleTimeString() + " (in " + remaining(left) + ")",
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
    const numbers = (status?.events || []).map((e) => e.number).filter((n) => n !== undefined);
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

function closeSocket() {
  if (state.socket) state.socket.close(1000, "user or version changed");
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
      closeSocket();
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
