// The Node.js reference for `cargo bench -p fhir-ws-tests --bench fanout`: one message to
// N connections the way the AWS serverless WebSocket chat sample's sendmessage handler
// does it (AWS SDK for JavaScript v3, one PostToConnection per connection, all started at
// once and awaited with Promise.all, the SDK's default HTTP handler).
//
//   node fanout.mjs <endpoint> <connections> <payload file> [rounds]
//
// Runs one round that warms the client's connections (as a Lambda instance past its first
// invocation has them), then `rounds` rounds (default 1) with the same client, and prints
// one JSON line: {"posts_per_second" (the median round), "cpu_us_per_post" (over those
// rounds), "peak_rss_mib"}. The Rust benchmark starts this against its own Management API
// stand-in, so both post to the same endpoint warm, and prints the ratio.
import { readFileSync } from "node:fs";
import { ApiGatewayManagementApiClient, PostToConnectionCommand } from "@aws-sdk/client-apigatewaymanagementapi";

const [endpoint, size, payloadFile, roundsText = "1"] = process.argv.slice(2);
const connections = Number(size);
const rounds = Number(roundsText);
if (!endpoint || !Number.isInteger(connections) || connections <= 0 || !payloadFile || !(rounds >= 1)) {
  console.error("usage: node fanout.mjs <endpoint> <connections> <payload file> [rounds]");
  process.exit(2);
}
const payload = readFileSync(payloadFile);
const client = new ApiGatewayManagementApiClient({
  endpoint,
  region: "eu-west-1",
  credentials: { accessKeyId: "bench", secretAccessKey: "bench" },
});
const ids = Array.from({ length: connections }, (_, n) => `conn-${String(n).padStart(6, "0")}=`);

const post = (id) => client.send(new PostToConnectionCommand({ ConnectionId: id, Data: payload }));
await Promise.all(ids.slice(0, 100).map(post));

const rates = [];
const cpuBefore = process.cpuUsage();
for (let round = 0; round < rounds; round += 1) {
  const started = process.hrtime.bigint();
  await Promise.all(ids.map(post));
  rates.push(connections / (Number(process.hrtime.bigint() - started) / 1e9));
}
const cpu = process.cpuUsage(cpuBefore);
rates.sort((a, b) => a - b);
console.log(JSON.stringify({
  posts_per_second: rates[Math.floor(rounds / 2)],
  cpu_us_per_post: (cpu.user + cpu.system) / (connections * rounds),
  peak_rss_mib: process.resourceUsage().maxRSS / 1024,
}));
