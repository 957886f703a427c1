// Type declarations of fhir-ws-client (src/index.js); checked with `tsc --noEmit`
// against examples/typed.ts.

/** The Subscriptions Backport IG's StructureDefinition base (R4 and R4B shapes). */
export declare const BACKPORT: string;

/** FHIR versions the client reads and writes. */
export type FhirVersion = "R5" | "R4B" | "R4";

/** A FHIR resource, as JSON. */
export interface Resource {
  resourceType: string;
  id?: string;
  [key: string]: unknown;
}

/** An OperationOutcome, as the server sent it. */
export interface OperationOutcome extends Resource {
  resourceType: "OperationOutcome";
  issue: Array<{ severity: string; code: string; diagnostics?: string; details?: { text?: string } }>;
}

/** One event, read from an R5, R4B or R4 notification (or `$events`) Bundle. */
export interface Notification {
  /** The Subscription's logical id. */
  subscription: string;
  /** The SubscriptionTopic's canonical URL, when the server sent it. */
  topic?: string;
  /** `event-notification`, or `query-event` when it came from `$events`. */
  type: string;
  /** The event's number in its subscription (1, 2, …). */
  eventNumber: number;
  /** When the event happened, when the server said. */
  timestamp?: string;
  /** The focus reference (absent at content `empty`). */
  focus?: string;
  /** Further references of the event. */
  additionalContext: string[];
  /** The resources the Bundle carries for the event (content `full-resource`). */
  resources: Resource[];
  /** Whether it was fetched with `$events` (missed on the socket). */
  replayed: boolean;
  /** The Bundle it was read from. */
  raw: Resource;
}

/** What a handshake, heartbeat or other status resource says, in any version. */
export interface Status {
  type: string;
  status?: string;
  subscription?: string;
  topic?: string;
  eventsSinceSubscriptionStart?: number;
  events: Array<{ eventNumber?: number; timestamp?: string; focus?: string; additionalContext: string[] }>;
  errors: string[];
  /** The Bundle it was read from (in `status` events). */
  raw?: Resource;
}

/** A Subscription to create: written in the base's version's shape. */
export interface SubscriptionRequest {
  /** The SubscriptionTopic's canonical URL. */
  topic: string;
  /** Filters as the Backport IG writes them: `Encounter?patient=Patient/123`. */
  filters?: string[];
  /** `empty`, `id-only` (the default) or `full-resource`. */
  content?: "empty" | "id-only" | "full-resource";
  /** Seconds between heartbeats; also what the watchdog waits for (twice this). */
  heartbeatPeriod?: number;
  /** The Subscription's reason (R4/R4B require one). */
  reason?: string;
}

/** The WebSocket constructor the client uses (the browser's, or `ws` in Node). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ClientOptions {
  /** The FHIR base URL: the server's, or its `…/R4` or `…/R4B` base. */
  baseUrl: string;
  /** Returns the bearer token for each HTTP request (any OAuth or SMART library). */
  accessToken: () => string | Promise<string>;
  /** Existing Subscription ids to bind, all on one socket… */
  subscriptions?: string[];
  /** …or one Subscription to create first. */
  subscription?: SubscriptionRequest;
  /** The base's FHIR version; read from its CapabilityStatement when creating without it. */
  fhirVersion?: FhirVersion;
  /** Per subscription id, the last event number the app already has: later ones are replayed first. */
  since?: Record<string, number>;
  /** The WebSocket implementation (default: `globalThis.WebSocket`; Node 20: `ws`). */
  WebSocket?: WebSocketConstructor;
  /** The fetch implementation (default: `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Share of a token's lifetime after which it is renewed (default 0.8). */
  renewAt?: number;
  /** First reconnect delay's ceiling, in ms (default 500); doubles per failure. */
  initialDelayMs?: number;
  /** Largest reconnect delay, in ms (default 30000). */
  maxDelayMs?: number;
  /** Heartbeat periods without any frame before the socket counts as dead (default 2). */
  heartbeatGrace?: number;
  /** How often a number missing from `$events` is asked for again (default 8). */
  missingEventRetries?: number;
  /** Pause between those asks, in ms (default 250). */
  missingEventDelayMs?: number;
}

export declare const DEFAULTS: Readonly<
  Required<Pick<ClientOptions, "renewAt" | "initialDelayMs" | "maxDelayMs" | "heartbeatGrace" | "missingEventRetries" | "missingEventDelayMs">>
>;

export declare class FhirWsError extends Error {
  constructor(message: string, options?: { kind?: string; outcome?: OperationOutcome; cause?: unknown });
  /** `http`, `network`, `protocol`, `events-unavailable`, `closed` or `client`. */
  readonly kind: string;
  /** The server's OperationOutcome, when it sent one. */
  readonly outcome?: OperationOutcome;
}

export declare class HttpError extends FhirWsError {
  readonly status: number;
  readonly url: string;
  /** Whether asking again may succeed (5xx, 408, 429). */
  readonly retryable: boolean;
}

export declare class EventsUnavailableError extends FhirWsError {
  readonly subscription: string;
  /** First event number that cannot be delivered. */
  readonly since: number;
  /** Last event number that cannot be delivered. */
  readonly until: number;
}

export declare class ProtocolError extends FhirWsError {
  readonly frame?: unknown;
}

export interface ClientEventMap {
  notification: CustomEvent<Notification>;
  status: CustomEvent<Status>;
  created: CustomEvent<{ subscription: string; resource: Resource }>;
  open: CustomEvent<{ url: string }>;
  bound: CustomEvent<{ subscription: string; expiration: Date | null }>;
  renewed: CustomEvent<{ expiration: Date }>;
  disconnected: CustomEvent<{ code: number; reason: string }>;
  reconnecting: CustomEvent<{ attempt: number; delayMs: number }>;
  error: CustomEvent<FhirWsError>;
  close: CustomEvent<undefined>;
}

export declare class FhirWsClient extends EventTarget implements AsyncIterable<Notification> {
  constructor(options: ClientOptions);
  /** The subscriptions followed (a created one once it exists). */
  readonly subscriptions: string[];
  /** The last event number handed to the app, per subscription id. */
  readonly positions: Record<string, number | null>;
  /** Connects and binds; resolves when every subscription is bound. */
  start(): Promise<void>;
  /** When the token binding the socket expires (null before the first bind). */
  readonly expiration: Date | null;
  /** Binds the open socket with a fresh token now (it is done by itself before expiry). */
  renew(): Promise<void>;
  /** Closes the socket and ends iterators. */
  close(): void;
  /** Notifications as an async iterator (starts the client); leaving it leaves the client running. */
  notifications(): AsyncIterableIterator<Notification>;
  /** The same; leaving the loop closes the client. */
  [Symbol.asyncIterator](): AsyncIterableIterator<Notification>;
  addEventListener<K extends keyof ClientEventMap>(
    type: K,
    listener: (event: ClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

/** The wait before reconnect `attempt` (1, 2, …), in ms: doubling from initialDelayMs up to
 * maxDelayMs, then a random point between half of that and all of it. */
export declare function reconnectDelay(
  attempt: number,
  timing?: { initialDelayMs: number; maxDelayMs: number },
  random?: () => number,
): number;
/** One FHIR REST call with the bearer token `accessToken()` gives; rejects with HttpError or FhirWsError. */
export declare function fhirRequest(
  connection: { baseUrl: string; accessToken: () => string | Promise<string>; fetch?: typeof fetch },
  method: string,
  path: string,
  body?: unknown,
): Promise<any>;
/** The logical id in a Subscription reference. */
export declare function subscriptionId(reference: string): string;
/** What a status resource says, in any version's shape; null when it is none. */
export declare function readStatus(resource: unknown): Status | null;
/** One notification per event of a notification or `$events` Bundle of any version. */
export declare function readNotifications(bundle: unknown): Notification[];
/** Filter criteria (`Encounter?patient=Patient/1`) as R5 `filterBy` entries. */
export declare function filterBy(criteria: string): Array<Record<string, string>>;
/** A websocket Subscription in the version's shape. */
export declare function subscriptionResource(version: FhirVersion, request: SubscriptionRequest): Resource;
