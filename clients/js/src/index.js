// fhir-ws-client: FHIR topic-based subscriptions over WebSockets, for browsers and Node.
//
// One client holds one WebSocket bound to one or more Subscriptions (R5, or R4/R4B with
// the Subscriptions Backport IG) and hands the app each event exactly once, in event
// number order per subscription: it gets binding tokens with
// `$get-ws-binding-token`, binds with `bind-with-token`, renews tokens before they
// expire, reconnects with capped exponential backoff and jitter, treats a socket that
// stays silent for twice the heartbeat period as dead, and fills every gap it sees (in
// handshakes, heartbeats and event numbers) with `$events` before newer events.
//
// No dependencies and no build step. Browsers use their own WebSocket and fetch; Node 20
// takes a WebSocket class (the `ws` package's) as the `WebSocket` option.

/** The Subscriptions Backport IG's StructureDefinition base (R4 and R4B shapes). */
export const BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
const CHANNEL_TYPES = "http://terminology.hl7.org/CodeSystem/subscription-channel-type";
const FHIR_JSON = "application/fhir+json";

// ---------------------------------------------------------------- errors

/** Every error this client reports. `kind` says which; `outcome` is the server's
 * OperationOutcome when it sent one. */
export class FhirWsError extends Error {
  constructor(message, { kind = "client", outcome, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "FhirWsError";
    this.kind = kind;
    this.outcome = outcome;
  }
}

/** The server answered an HTTP request with an error status. */
export class HttpError extends FhirWsError {
  constructor(message, { status, outcome, url }) {
    super(message, { kind: "http", outcome });
    this.name = "HttpError";
    this.status = status;
    this.url = url;
  }

  /** Whether asking again may succeed (server errors, throttling, timeouts). */
  get retryable() {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** Events the app has not seen are no longer held by the server (past its retention,
 * `EVENT_RETENTION_SECONDS` for fhir-ws): they cannot be delivered. */
export class EventsUnavailableError extends FhirWsError {
  constructor(message, { subscription, since, until, outcome }) {
    super(message, { kind: "events-unavailable", outcome });
    this.name = "EventsUnavailableError";
    this.subscription = subscription;
    this.since = since;
    this.until = until;
  }
}

/** The server sent something that is not the protocol (or an OperationOutcome frame). */
export class ProtocolError extends FhirWsError {
  constructor(message, { outcome, frame } = {}) {
    super(message, { kind: "protocol", outcome });
    this.name = "ProtocolError";
    this.frame = frame;
  }
}

// ---------------------------------------------------------------- reading FHIR

/** The value[x] of the Parameters parameter (or part) named `name`. */
function parameterValue(list, name) {
  const found = (list || []).find((p) => p.name === name);
  if (!found) return undefined;
  const key = Object.keys(found).find((k) => k.startsWith("value"));
  return key ? found[key] : found.resource;
}

function number(value) {
  if (value === undefined || value === null || value === "") return undefined;
  const parsed = Number(value);
  return Number.isSafeInteger(parsed) && parsed >= 0 ? parsed : undefined;
}

/** The logical id in a Subscription reference (`Subscription/abc`, an absolute URL,
 * with or without `_history`). */
export function subscriptionId(reference) {
  if (typeof reference !== "string") return undefined;
  const at = reference.lastIndexOf("Subscription/");
  if (at < 0) return reference;
  return reference.slice(at + "Subscription/".length).split("/")[0];
}

/**
 * What a status resource says, in every version's shape: R5 and R4B
 * `SubscriptionStatus`, R4 `Parameters` (Backport IG). `null` when it is neither.
 */
export function readStatus(resource) {
  if (!resource || typeof resource !== "object") return null;
  if (resource.resourceType === "SubscriptionStatus") {
    return {
      type: resource.type,
      status: resource.status,
      subscription: subscriptionId(resource.subscription?.reference),
      topic: resource.topic,
      eventsSinceSubscriptionStart: number(resource.eventsSinceSubscriptionStart),
      events: (resource.notificationEvent || []).map((e) => ({
        eventNumber: number(e.eventNumber),
        timestamp: e.timestamp,
        focus: e.focus?.reference,
        additionalContext: (e.additionalContext || []).map((r) => r.reference).filter(Boolean),
      })),
      errors: (resource.error || []).map((e) => e.text || e.coding?.[0]?.code).filter(Boolean),
    };
  }
  if (resource.resourceType === "Parameters") {
    const list = resource.parameter || [];
    const type = parameterValue(list, "type");
    if (type === undefined) return null;
    return {
      type,
      status: parameterValue(list, "status"),
      subscription: subscriptionId(parameterValue(list, "subscription")?.reference),
      topic: parameterValue(list, "topic"),
      eventsSinceSubscriptionStart: number(parameterValue(list, "events-since-subscription-start")),
      events: list
        .filter((p) => p.name === "notification-event")
        .map((p) => ({
          eventNumber: number(parameterValue(p.part, "event-number")),
          timestamp: parameterValue(p.part, "timestamp"),
          focus: parameterValue(p.part, "focus")?.reference,
          additionalContext: (p.part || [])
            .filter((q) => q.name === "additional-context")
            .map((q) => q.valueReference?.reference)
            .filter(Boolean),
        })),
      errors: list.filter((p) => p.name === "error").map((p) => p.valueCodeableConcept?.text).filter(Boolean),
    };
  }
  return null;
}

/** Whether bundle entry `entry` is the resource `reference` points at. */
function entryIs(entry, reference) {
  if (!reference) return false;
  if (entry.fullUrl && (entry.fullUrl === reference || entry.fullUrl.endsWith("/" + reference))) return true;
  const resource = entry.resource;
  if (!resource?.resourceType || !resource.id) return false;
  const local = resource.resourceType + "/" + resource.id;
  return reference === local || reference.endsWith("/" + local);
}

/**
 * The notifications in a notification or `$events` Bundle of any version: one object
 * per event, with the resources the Bundle carries for it. A handshake, heartbeat or
 * other status-only Bundle gives none (see {@link readStatus}).
 */
export function readNotifications(bundle) {
  if (bundle?.resourceType !== "Bundle") return [];
  const status = readStatus(bundle.entry?.[0]?.resource);
  if (!status) return [];
  const entries = (bundle.entry || []).slice(1).filter((e) => e.resource);
  const single = status.events.length === 1;
  return status.events
    .filter((event) => event.eventNumber !== undefined)
    .map((event) => {
      const references = [event.focus, ...event.additionalContext];
      const resources = single
        ? entries.map((e) => e.resource)
        : entries.filter((e) => references.some((r) => entryIs(e, r))).map((e) => e.resource);
      return {
        subscription: status.subscription,
        topic: status.topic,
        type: status.type,
        eventNumber: event.eventNumber,
        timestamp: event.timestamp,
        focus: event.focus,
        additionalContext: event.additionalContext,
        resources,
        replayed: status.type === "query-event",
        raw: bundle,
      };
    });
}

/** A warning the server attached to an `$events` answer: R5's `Bundle.issues`, or the
 * status entry's `response.outcome` in R4 and R4B. */
function bundleWarning(bundle) {
  return bundle?.issues ?? bundle?.entry?.[0]?.response?.outcome;
}

function outcomeText(outcome) {
  return (outcome?.issue || []).map((i) => i.diagnostics || i.details?.text).filter(Boolean).join("; ");
}

// ---------------------------------------------------------------- writing FHIR

/** `Encounter?patient=Patient/1&status:not=planned` as R5 `filterBy` entries. */
export function filterBy(criteria) {
  const [resourceType, query] = criteria.split("?", 2);
  if (!resourceType || !query) throw new FhirWsError("a filter needs a resource type and a query: " + criteria);
  const comparators = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];
  return query.split("&").map((clause) => {
    const at = clause.indexOf("=");
    if (at < 1) throw new FhirWsError("a filter clause needs name=value: " + clause);
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

/**
 * A websocket Subscription in `version`'s shape (R5, or the Backport IG's for R4 and
 * R4B) from `{ topic, filters, content, heartbeatPeriod, reason }`; `filters` are
 * written as the IG writes filter criteria (`Encounter?patient=Patient/123`).
 */
export function subscriptionResource(version, { topic, filters = [], content = "id-only", heartbeatPeriod, reason }) {
  if (!topic) throw new FhirWsError("a Subscription to create needs a topic");
  if (version === "R5") {
    const resource = {
      resourceType: "Subscription",
      status: "requested",
      topic,
      channelType: { system: CHANNEL_TYPES, code: "websocket" },
      content,
    };
    if (reason) resource.reason = reason;
    if (heartbeatPeriod) resource.heartbeatPeriod = heartbeatPeriod;
    if (filters.length) resource.filterBy = filters.flatMap(filterBy);
    return resource;
  }
  const resource = {
    resourceType: "Subscription",
    status: "requested",
    reason: reason || "fhir-ws-client",
    criteria: topic,
    channel: {
      type: "websocket",
      payload: FHIR_JSON,
      _payload: { extension: [{ url: BACKPORT + "backport-payload-content", valueCode: content }] },
    },
  };
  if (heartbeatPeriod) {
    resource.channel.extension = [{ url: BACKPORT + "backport-heartbeat-period", valueUnsignedInt: heartbeatPeriod }];
  }
  if (filters.length) {
    resource._criteria = {
      extension: filters.map((c) => ({ url: BACKPORT + "backport-filter-criteria", valueString: c })),
    };
  }
  return resource;
}

/** A Subscription's heartbeatPeriod in seconds, whatever its version. */
function heartbeatPeriodOf(resource) {
  if (resource?.heartbeatPeriod) return resource.heartbeatPeriod;
  const extension = (resource?.channel?.extension || []).find((e) => e.url === BACKPORT + "backport-heartbeat-period");
  return extension?.valueUnsignedInt;
}

/** The FHIR version a CapabilityStatement's `fhirVersion` names. */
function versionOf(fhirVersion) {
  if (typeof fhirVersion !== "string") return undefined;
  if (fhirVersion.startsWith("5.")) return "R5";
  if (fhirVersion.startsWith("4.3")) return "R4B";
  if (fhirVersion.startsWith("4.0")) return "R4";
  return undefined;
}

// ---------------------------------------------------------------- HTTP

/**
 * One FHIR REST call: `path` below `baseUrl` (or an absolute URL), JSON in and out, with
 * the bearer token `accessToken()` gives now. Resolves to the parsed body (null when
 * empty); rejects with an {@link HttpError} carrying the server's OperationOutcome, or a
 * network {@link FhirWsError}.
 */
export async function fhirRequest({ baseUrl, accessToken, fetch = globalThis.fetch?.bind(globalThis) }, method, path, body) {
  const headers = { Accept: FHIR_JSON, Authorization: "Bearer " + (await accessToken()) };
  if (body !== undefined) headers["Content-Type"] = FHIR_JSON;
  const target = /^https?:/.test(path) ? path : baseUrl.replace(/\/+$/, "") + path;
  let response;
  try {
    response = await fetch(target, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (cause) {
    throw new FhirWsError(method + " " + target + " failed: " + (cause?.message ?? cause), { kind: "network", cause });
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const outcome = parsed?.resourceType === "OperationOutcome" ? parsed : undefined;
    const said = outcomeText(outcome);
    throw new HttpError(method + " " + target + " answered " + response.status + (said ? ": " + said : ""), {
      status: response.status,
      outcome,
      url: target,
    });
  }
  return parsed;
}

// ---------------------------------------------------------------- the client

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const OPEN = 1;

/**
 * The wait before reconnect `attempt` (1, 2, …), in ms: a ceiling that starts at
 * `initialDelayMs` and doubles per failure in a row up to `maxDelayMs`, and a random
 * point between half of it and all of it (equal jitter), so clients dropped together do
 * not come back together.
 */
export function reconnectDelay(attempt, { initialDelayMs, maxDelayMs } = DEFAULTS, random = Math.random) {
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Defaults of the client's timing options. */
export const DEFAULTS = Object.freeze({
  renewAt: 0.8,
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  heartbeatGrace: 2,
  missingEventRetries: 8,
  missingEventDelayMs: 250,
});

/**
 * A WebSocket client of FHIR topic-based subscriptions. Events:
 * `notification` (detail: a notification), `status` (detail: a handshake's or
 * heartbeat's status), `bound` (detail: `{ subscription }`), `renewed` (detail:
 * `{ expiration }`), `disconnected` (detail: `{ code, reason }`), `reconnecting`
 * (detail: `{ attempt, delayMs }`), `error` (detail: a {@link FhirWsError}) and `close`.
 * Also an async iterable of notifications.
 */
export class FhirWsClient extends EventTarget {
  #options;
  #baseUrl;
  #WebSocket;
  #fetch;
  #subscriptions = new Map(); // id → { id, last, heartbeatPeriod, bound }
  #create;
  #version;
  #closed = false;
  #started = null;
  #socket = null; // { socket, done, abandon }
  #renewTimer = null;
  #watchdog = null;
  #work = Promise.resolve();
  #attempt = 0;
  #fatal = null;
  #expiration = null;

  /**
   * @param {object} options
   * @param {string} options.baseUrl the FHIR base URL (the server's, or `…/R4`, `…/R4B`)
   * @param {() => string | Promise<string>} options.accessToken returns the bearer token
   * @param {string[]} [options.subscriptions] existing Subscription ids to bind
   * @param {object} [options.subscription] or a Subscription to create: `{ topic,
   *   filters, content, heartbeatPeriod }`
   * @param {"R5"|"R4B"|"R4"} [options.fhirVersion] the base's version (read from its
   *   CapabilityStatement when a Subscription is to be created and this is not given)
   * @param {Record<string, number>} [options.since] per subscription id, the last event
   *   number the app already has: later ones are replayed first
   */
  constructor(options) {
    super();
    if (!options?.baseUrl) throw new FhirWsError("baseUrl is required");
    if (typeof options.accessToken !== "function") throw new FhirWsError("accessToken must be a function");
    const hasIds = Array.isArray(options.subscriptions) && options.subscriptions.length > 0;
    if (hasIds === Boolean(options.subscription)) {
      throw new FhirWsError("give either subscriptions (ids) or subscription (one to create)");
    }
    this.#options = { ...DEFAULTS, ...options };
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    if (!this.#WebSocket) throw new FhirWsError("no WebSocket implementation: pass the WebSocket option (Node: ws)");
    if (!this.#fetch) throw new FhirWsError("no fetch implementation: pass the fetch option");
    this.#version = options.fhirVersion;
    this.#create = options.subscription;
    for (const id of options.subscriptions || []) this.#track(id);
  }

  /** The ids of the subscriptions this client follows (known once created). */
  get subscriptions() {
    return [...this.#subscriptions.keys()];
  }

  /** The last event number handed to the app, per subscription id. */
  get positions() {
    return Object.fromEntries([...this.#subscriptions].map(([id, s]) => [id, s.last]));
  }

  #track(id) {
    const since = this.#options.since?.[id];
    this.#subscriptions.set(id, {
      id,
      last: typeof since === "number" ? since : null,
      heartbeatPeriod: undefined,
      bound: false,
    });
  }

  /**
   * Connects and binds (creating the Subscription first if asked to). Resolves once
   * every subscription is bound (its first handshake), rejects on an error that
   * retrying cannot fix (the server refused the token, the Subscription or the
   * credentials). Calling it again returns the same promise.
   */
  start() {
    if (!this.#started) {
      this.#started = new Promise((resolve, reject) => {
        this.#whenBound = resolve;
        this.#whenFailed = reject;
      });
      this.#started.catch(() => {}); // reported through `error` as well
      this.#run();
    }
    return this.#started;
  }

  #whenBound = () => {};
  #whenFailed = () => {};

  /** Stops: closes the socket, cancels timers, ends iterators. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#watchdog);
    this.#socket?.abandon(1000, "client closed");
    this.#whenFailed(new FhirWsError("closed before it was bound", { kind: "closed" }));
    this.dispatchEvent(new CustomEvent("close"));
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #fail(error) {
    this.#fatal = error;
    this.#emit("error", error);
    this.#whenFailed(error);
    this.close();
  }

  // ------------------------------------------------------------ HTTP

  #request(method, url, body) {
    return fhirRequest({ baseUrl: this.#baseUrl, accessToken: this.#options.accessToken, fetch: this.#fetch }, method, url, body);
  }

  async #prepare() {
    if (this.#create) {
      if (!this.#version) {
        const capability = await this.#request("GET", "/metadata");
        this.#version = versionOf(capability?.fhirVersion);
        if (!this.#version) throw new FhirWsError("the server's fhirVersion is not R4, R4B or R5", { kind: "protocol" });
      }
      const created = await this.#request("POST", "/Subscription", subscriptionResource(this.#version, this.#create));
      if (!created?.id) throw new ProtocolError("the created Subscription has no id", { frame: created });
      this.#track(created.id);
      this.#subscriptions.get(created.id).heartbeatPeriod = heartbeatPeriodOf(created);
      this.#create = undefined;
      this.#emit("created", { subscription: created.id, resource: created });
    }
    for (const entry of this.#subscriptions.values()) {
      if (entry.heartbeatPeriod === undefined) {
        const resource = await this.#request("GET", "/Subscription/" + encodeURIComponent(entry.id));
        entry.heartbeatPeriod = heartbeatPeriodOf(resource) ?? 0;
      }
    }
  }

  async #bindingToken() {
    const ids = this.subscriptions;
    const parameters =
      ids.length === 1
        ? await this.#request("POST", "/Subscription/" + encodeURIComponent(ids[0]) + "/$get-ws-binding-token")
        : await this.#request("POST", "/Subscription/$get-ws-binding-token", {
            resourceType: "Parameters",
            parameter: ids.map((id) => ({ name: "id", valueId: id })),
          });
    const list = parameters?.parameter || [];
    const token = parameterValue(list, "token");
    const expiration = new Date(parameterValue(list, "expiration"));
    const websocketUrl = parameterValue(list, "websocket-url");
    if (!token || !websocketUrl || Number.isNaN(expiration.getTime())) {
      throw new ProtocolError("$get-ws-binding-token answered without token, expiration or websocket-url", {
        frame: parameters,
      });
    }
    return { token, expiration, websocketUrl };
  }

  // ------------------------------------------------------------ the connection loop

  async #run() {
    while (!this.#closed) {
      try {
        await this.#prepare();
        const token = await this.#bindingToken();
        if (this.#closed) return;
        await this.#connect(token);
      } catch (error) {
        if (this.#closed) return;
        if (error instanceof HttpError && !error.retryable) return this.#fail(error);
        if (error instanceof ProtocolError) return this.#fail(error);
        this.#emit("error", error instanceof FhirWsError ? error : new FhirWsError(String(error), { cause: error }));
      }
      if (this.#closed) return;
      this.#attempt += 1;
      const delayMs = reconnectDelay(this.#attempt, this.#options);
      this.#emit("reconnecting", { attempt: this.#attempt, delayMs });
      await sleep(delayMs);
    }
  }

  /** Opens the socket, binds, and resolves when it is gone (closed, failed or abandoned). */
  #connect(token) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let opened = false;
      const socket = new this.#WebSocket(token.websocketUrl);
      const finish = (code, reason) => {
        if (settled) return;
        settled = true;
        clearTimeout(this.#renewTimer);
        clearTimeout(this.#watchdog);
        if (this.#socket?.socket === socket) this.#socket = null;
        for (const entry of this.#subscriptions.values()) entry.bound = false;
        this.#emit("disconnected", { code, reason });
        if (opened) resolve();
        else reject(new FhirWsError("the WebSocket to " + token.websocketUrl.split("?")[0] + " did not open", { kind: "network" }));
      };
      const connection = {
        socket,
        abandon: (code, reason) => {
          try {
            // A dead socket would never answer a closing handshake: Node's `ws` can
            // drop it at once; a browser's close() does not wait for the server.
            if (code !== 1000 && typeof socket.terminate === "function") socket.terminate();
            else socket.close(code, reason);
          } catch {
            // Already closing; the connection is abandoned either way.
          }
          finish(code, reason);
        },
      };
      this.#socket = connection;
      socket.addEventListener("open", () => {
        opened = true;
        this.#emit("open", { url: token.websocketUrl.split("?")[0] });
        this.#bind(connection, token);
        this.#armWatchdog(connection);
      });
      socket.addEventListener("message", (event) => {
        if (settled) return;
        this.#armWatchdog(connection);
        const data = event.data;
        this.#work = this.#work.then(() => this.#frame(connection, data)).catch((error) => this.#emit("error", error));
      });
      socket.addEventListener("error", () => {
        // `close` follows; nothing else to do.
      });
      socket.addEventListener("close", (event) => finish(event.code, event.reason));
    });
  }

  #bind(connection, token) {
    if (connection.socket.readyState !== OPEN) return;
    connection.socket.send("bind-with-token " + token.token);
    this.#expiration = token.expiration;
    const lifetime = Math.max(token.expiration.getTime() - Date.now(), 0);
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => this.#renew(connection), Math.max(lifetime * this.#options.renewAt, 1000));
  }

  /**
   * Gets a fresh token and binds the open socket with it now (the client does this by
   * itself before the token expires; call it after the app's credentials changed).
   * Resolves once sent; does nothing while disconnected (the reconnect gets a new token).
   */
  async renew() {
    if (this.#socket) await this.#renew(this.#socket);
  }

  /** When the token binding the socket expires (`null` before the first bind). */
  get expiration() {
    return this.#expiration;
  }

  async #renew(connection) {
    if (this.#closed || this.#socket !== connection) return;
    try {
      const token = await this.#bindingToken();
      if (this.#socket !== connection) return;
      this.#bind(connection, token);
      this.#emit("renewed", { expiration: token.expiration });
    } catch (error) {
      if (error instanceof HttpError && !error.retryable) return this.#fail(error);
      this.#emit("error", error);
      // Try again soon; if the token runs out first, the server ends the binding and
      // the heartbeat watchdog or the next handshake brings the client back.
      this.#renewTimer = setTimeout(() => this.#renew(connection), 1000);
    }
  }

  /** No frame within `heartbeatGrace` × the shortest heartbeat period: the socket is dead. */
  #armWatchdog(connection) {
    clearTimeout(this.#watchdog);
    const periods = [...this.#subscriptions.values()].map((s) => s.heartbeatPeriod).filter((p) => p > 0);
    if (!periods.length) return;
    const ms = this.#options.heartbeatGrace * Math.min(...periods) * 1000;
    this.#watchdog = setTimeout(() => {
      if (this.#socket === connection) connection.abandon(4000, "no heartbeat within " + ms + " ms");
    }, ms);
  }

  // ------------------------------------------------------------ frames and events

  async #frame(connection, data) {
    let message;
    try {
      message = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      this.#emit("error", new ProtocolError("a frame that is not JSON", { frame: data }));
      return;
    }
    if (message?.resourceType === "OperationOutcome") {
      // A refused bind (an expired or revoked token): bind again with a fresh token.
      this.#emit("error", new ProtocolError("the server said: " + outcomeText(message), { outcome: message }));
      if (this.#socket === connection) connection.abandon(4001, "refused by the server");
      return;
    }
    if (message?.resourceType !== "Bundle") return;
    const status = readStatus(message.entry?.[0]?.resource);
    const entry = status && this.#subscriptions.get(status.subscription);
    if (!entry) return;
    if (status.type === "handshake" || status.type === "heartbeat") {
      this.#emit("status", { ...status, raw: message });
      if (status.type === "handshake" && !entry.bound) {
        entry.bound = true;
        this.#attempt = 0;
        this.#emit("bound", { subscription: entry.id, expiration: this.#expiration });
        if ([...this.#subscriptions.values()].every((s) => s.bound)) this.#whenBound();
      }
      const count = status.eventsSinceSubscriptionStart;
      if (count === undefined) return;
      if (entry.last === null) entry.last = count;
      else if (count > entry.last) await this.#replay(entry, entry.last + 1, count);
      return;
    }
    if (status.type !== "event-notification") return;
    for (const notification of readNotifications(message).sort((a, b) => a.eventNumber - b.eventNumber)) {
      const n = notification.eventNumber;
      if (entry.last === null || n === entry.last + 1) {
        this.#deliver(entry, notification);
      } else if (n > entry.last + 1) {
        await this.#replay(entry, entry.last + 1, n - 1);
        if (n > entry.last) this.#deliver(entry, notification);
      }
      // n ≤ last: a redelivery of an event the app has; dropped.
    }
  }

  #deliver(entry, notification) {
    entry.last = entry.last === null ? notification.eventNumber : Math.max(entry.last, notification.eventNumber);
    this.#emit("notification", notification);
  }

  /** Fetches `since..=until` with `$events` (following `next` links). */
  async #events(entry, since, until) {
    const got = [];
    let warning;
    let url =
      "/Subscription/" + encodeURIComponent(entry.id) + "/$events?eventsSinceNumber=" + since + "&eventsUntilNumber=" + until;
    while (url) {
      const page = await this.#request("GET", url);
      warning ??= bundleWarning(page);
      got.push(...readNotifications(page));
      url = (page?.link || []).find((l) => l.relation === "next")?.url;
    }
    return { got, warning };
  }

  /**
   * Hands the app the events `since..=until` from `$events`, in order, before anything
   * newer. An event is numbered a moment before it is recorded, so a number missing
   * without a word from the server is asked for again a few times; numbers the server
   * says it no longer holds (or that never appear) are reported as an
   * {@link EventsUnavailableError} and passed over, and what follows them is delivered.
   */
  async #replay(entry, since, until) {
    let from = since;
    let attempt = 0;
    while (from <= until && !this.#closed) {
      const { got, warning } = await this.#events(entry, from, until);
      const byNumber = new Map(got.map((n) => [n.eventNumber, n]));
      let next = from;
      while (next <= until && byNumber.has(next)) {
        this.#deliver(entry, { ...byNumber.get(next), replayed: true });
        next += 1;
      }
      if (next > until) return;
      if (!warning && attempt < this.#options.missingEventRetries) {
        attempt += 1;
        from = next;
        await sleep(this.#options.missingEventDelayMs);
        continue;
      }
      // Lost: from `next` up to the next number the server still has.
      const held = [...byNumber.keys()].filter((n) => n > next);
      const lastLost = held.length ? Math.min(...held) - 1 : until;
      const said = outcomeText(warning);
      this.#emit(
        "error",
        new EventsUnavailableError(
          "Subscription/" + entry.id + ": events " + next + (lastLost > next ? "-" + lastLost : "") +
            " are not held by the server any more" + (said ? " (" + said + ")" : ""),
          { subscription: entry.id, since: next, until: lastLost, outcome: warning },
        ),
      );
      entry.last = Math.max(entry.last ?? 0, lastLost);
      from = lastLost + 1;
      attempt = 0;
    }
  }

  // ------------------------------------------------------------ async iteration

  /**
   * Notifications as an async iterator (starting the client). An error the app must
   * know about ({@link EventsUnavailableError}, or one that stopped the client) makes
   * `next()` reject once; iterating again goes on from there.
   */
  notifications() {
    const queue = [];
    const waiting = [];
    let done = false;
    const push = (item) => {
      const waiter = waiting.shift();
      if (waiter) settle(waiter, item);
      else queue.push(item);
    };
    const settle = (waiter, item) => {
      if (item.error) waiter.reject(item.error);
      else if (item.done) waiter.resolve({ value: undefined, done: true });
      else waiter.resolve({ value: item.value, done: false });
    };
    const onNotification = (event) => push({ value: event.detail });
    const onError = (event) => {
      const error = event.detail;
      if (error instanceof EventsUnavailableError || error === this.#fatal) push({ error });
    };
    const onClose = () => {
      done = true;
      push({ done: true });
    };
    this.addEventListener("notification", onNotification);
    this.addEventListener("error", onError);
    this.addEventListener("close", onClose);
    this.start();
    const stop = () => {
      this.removeEventListener("notification", onNotification);
      this.removeEventListener("error", onError);
      this.removeEventListener("close", onClose);
    };
    return {
      next: () => {
        if (queue.length) {
          const item = queue.shift();
          return item.error ? Promise.reject(item.error) : Promise.resolve(item.done ? { value: undefined, done: true } : { value: item.value, done: false });
        }
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
      },
      return: () => {
        stop();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /** `for await (const n of client)`: like {@link notifications}, and leaving the loop
   * (`break`, `return`, a throw) closes the client. */
  [Symbol.asyncIterator]() {
    const iterator = this.notifications();
    const detach = iterator.return;
    iterator.return = () => {
      this.close();
      return detach();
    };
    return iterator;
  }
}
