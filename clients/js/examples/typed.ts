// A typed use of fhir-ws-client in Node: `tsc --noEmit` checks it against the
// declarations (CI), and it runs as written with a TypeScript-aware runner.
import WebSocket from "ws";
import { EventsUnavailableError, FhirWsClient, HttpError, type Notification } from "fhir-ws-client";

const client = new FhirWsClient({
  baseUrl: "http://127.0.0.1:8080/R4",
  accessToken: async () => process.env.FHIR_TOKEN ?? "alice-token",
  subscription: { topic: "http://example.org/topics/encounter-start", content: "id-only", heartbeatPeriod: 60 },
  WebSocket: WebSocket as unknown as import("fhir-ws-client").WebSocketConstructor,
});

client.addEventListener("error", (event) => {
  if (event.detail instanceof EventsUnavailableError) {
    console.warn(`events ${event.detail.since}-${event.detail.until} are gone; reload what they covered`);
  } else if (event.detail instanceof HttpError && !event.detail.retryable) {
    console.error(`refused (${event.detail.status}):`, event.detail.outcome?.issue[0]?.diagnostics);
  }
});

async function main(): Promise<void> {
  for await (const notification of client) {
    const n: Notification = notification;
    console.log(`#${n.eventNumber} ${n.type} ${n.focus ?? "(no focus)"} on Subscription/${n.subscription}`);
  }
}

void main();
