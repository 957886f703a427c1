// The Node.js reference for `cargo bench -p fhir-ws-tests --bench fanout`: one message to
// N connections the way the AWS serverless WebSocket chat sample's sendmessage handler
// does it (AWS SDK for JavaScript v3, one PostToConnection per connection, all started at
// once and awaited with Promise.all, the SDK's default HTTP handler).
//
//   node fanout.mjs <endpoint> <connections> <payload file>
//
// Prints one JSON line: {"posts_per_second", "cpu_us_per_post", "peak_rss_mib"}. The
// Rust benchmark starts this against its own Management API stand-in, so both post to the
// same endpoint, and prints the ratio.
import { readFileSync } from "node:fs";
import { ApiGatewayManagementApiClient, PostToConnectionCommand } from "@aws-sdk/client-apigatewaymanagementapi";

const [endpoint, size, payloadFile] = process.argv.slice(2);
const connections = Number(size);
if (!endpoint || !Number.isInteger(connections) || connections <= 0 || !payloadFile) {
  console.error("usage: node fanout.mjs <endpoint> <connections> <payload file>");
  process.exit(2);
}
const payload = readFileSync(payloadFile);
const client = new ApiGatewayManagementApiClient({
  endpoint,
  region: "eu-west-1",
  credentials: { accessKeyId: "bench", secretAccessKey: "bench" },
});
const ids = Array.from({ length: connections }, (_, n) => `conn-${String(n).padStart(6, "0")}=`);

const cpuBefore = process.cpuUsage();
const started = process.hrtime.bigint();
await Promise.all(ids.map((id) => client.send(new PostToConnectionCommand({ ConnectionId: id, Data: payload }))));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = process.cpuUsage(cpuBefore);
console.log(JSON.stringify({
  posts_per_second: connections / seconds,
  cpu_us_per_post: (cpu.user + cpu.system) / connections,
  peak_rss_mib: process.resourceUsage().maxRSS / 1024,
}));
