//! Fan-out benchmark: one event to 1,000 and 10,000 bound connections, through the real
//! Management API client (SigV4, HTTP/1.1 pool) against a local HTTP endpoint standing
//! in for API Gateway, which runs in a child process so its CPU is not counted.
//!
//! Run: `cargo bench -p fhir-ws-tests --bench fanout` (release profile). Prints, per
//! size, posts per second, CPU time per post (user + system, this process), and peak
//! resident memory. Bindings and counters are in the in-memory store, so the figures
//! are the fan-out's own cost, not DynamoDB's.
//!
//! With `FANOUT_NODE_BASELINE` naming `node-fanout/fanout.mjs` (the Node.js fan-out
//! written the way the AWS serverless chat sample does it), the same rounds also run that
//! script against the same stand-in with the same frame, and the table gains its figures
//! and the ratio: `infra/fanout_vs_node.sh` does both in one command.

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use fhir_ws_core::fanout::{EventHistory, FanOut};
use fhir_ws_core::fhir::Subscription;
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::store::memory::MemoryStore;
use fhir_ws_core::store::{Binding, BindingStore, StoredSubscription, SubscriptionStore};
use fhir_ws_tests::management_api::{ManagementApiStub, SignatureCheck};
use fhir_ws_tests::websocket::SqsBatch;
use serde_json::json;

const TOPIC: &str = "http://example.org/fhir/SubscriptionTopic/bench";
const ROUNDS: usize = 5;
/// The stand-in credentials' secret key (SigV4 needs credentials and a region).
const BENCH_SECRET: &str = "bench";

/// CPU seconds (user + system) this process has used, from /proc (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Peak resident set size of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    fhir_ws_tests::management_api::serve_if_stub_process();
    // `cargo bench` passes `--bench`; nothing else to parse.
    let (mut child, endpoint) = fhir_ws_tests::management_api::spawn_stub_process();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // SigV4 needs credentials and a region; these are local stand-ins.
        let aws = fhir_ws_tests::sdk_loader()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "bench",
                BENCH_SECRET,
                None,
                None,
                "bench",
            ))
            .load()
            .await;
        let node = match std::env::var("FANOUT_NODE_BASELINE") {
            Ok(script) => Some(NodeBaseline::new(script, &aws).await),
            Err(_) => None,
        };
        println!("fan-out of one event, {ROUNDS} rounds per size: median posts/s, CPU per post over all rounds");
        print!("{:>11} {:>12} {:>16} {:>15}", "connections", "posts/s", "CPU µs per post", "peak RSS MiB");
        if node.is_some() {
            print!(" {:>13} {:>17} {:>16} {:>15}", "Node posts/s", "Node CPU µs/post", "Node RSS MiB", "Rust ÷ Node");
        }
        println!();
        // One client for all rounds, as a Lambda instance keeps one; a round first warms
        // its connections, so warm is compared with warm (the Node script does the same).
        let pusher = Arc::new(ManagementApiPusher::new(&aws));
        Box::pin(round(&pusher, &endpoint, 100)).await;
        for size in [1_000_usize, 10_000] {
            let mut results = Vec::new();
            for _ in 0..ROUNDS {
                results.push(Box::pin(round(&pusher, &endpoint, size)).await);
            }
            // CPU time comes in 10 ms ticks, a few per 1,000-post round: per post it is the
            // mean over all rounds' posts, not one round's count.
            let cpu = results.iter().map(|r| r.1).sum::<f64>() / ROUNDS as f64;
            results.sort_by(|a, b| a.0.total_cmp(&b.0));
            let rate = results[ROUNDS / 2].0;
            print!("{size:>11} {rate:>12.0} {cpu:>16.1} {:>15.1}", peak_rss_mib());
            if let Some(node) = &node {
                let (node_rate, node_cpu, node_rss) = node.median(&endpoint, size);
                print!(" {node_rate:>13.0} {node_cpu:>17.1} {node_rss:>16.1} {:>14.1}×", rate / node_rate);
            }
            println!();
        }
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// One event to `size` connections; returns (posts per second, CPU µs per post).
async fn round(pusher: &Arc<ManagementApiPusher>, endpoint: &str, size: usize) -> (f64, f64) {
    let store = Arc::new(MemoryStore::new());
    let subscription_id = fhir_ws_core::fhir::new_id();
    let resource: Subscription = serde_json::from_value(json!({
        "resourceType": "Subscription", "id": subscription_id, "status": "active", "topic": TOPIC,
        "channelType": {"system": "http://terminology.hl7.org/CodeSystem/subscription-channel-type", "code": "websocket"},
        "content": "id-only"
    }))
    .expect("subscription");
    store.insert(&StoredSubscription::new("bench", 1, Utc::now(), resource)).await.expect("insert");
    let expires = Utc::now().timestamp() + 3600;
    let bindings: Vec<Binding> = (0..size)
        .map(|n| fhir_ws_tests::fanout_binding(&format!("conn-{n:06}="), &subscription_id, endpoint, expires))
        .collect();
    store.put_bindings(&bindings).await.expect("bindings");
    let fanout = FanOut::new(
        store.clone(),
        store.clone(),
        store.clone(),
        EventHistory { store: store.clone(), retention: chrono::TimeDelta::days(7) },
        pusher.clone(),
        "https://fhir.example.org/r5",
    );
    let event = json!({"topic": TOPIC, "focus": {"resourceType": "Encounter", "id": "e1", "status": "finished"}});
    let batch = SqsBatch::default().message(&fhir_ws_core::fhir::new_id(), &event).event();

    let (cpu_before, started) = (cpu_seconds(), Instant::now());
    let response = fanout.handle_batch(&batch, Utc::now()).await;
    let (elapsed, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_before);
    assert!(response.batch_item_failures.is_empty(), "every post must succeed");
    (size as f64 / elapsed, cpu * 1e6 / size as f64)
}

/// The Node.js reference fan-out, run as its own process per round.
struct NodeBaseline {
    script: String,
    payload: FrameFile,
}

impl NodeBaseline {
    /// The script and the frame the Rust fan-out posts (taken from one post to a stand-in
    /// in this process), so both send the same bytes.
    async fn new(script: String, aws: &aws_config::SdkConfig) -> Self {
        let stub = ManagementApiStub::start_checking(SignatureCheck::Recompute(BENCH_SECRET.into())).await;
        // Boxed: the nested round future otherwise exceeds the compiler's layout depth.
        Box::pin(round(&Arc::new(ManagementApiPusher::new(aws)), &stub.endpoint("live"), 1)).await;
        let frame = stub.posts().first().map(|post| post.body.clone()).expect("the fan-out posted a frame");
        Self { script, payload: FrameFile::with(&frame) }
    }

    /// (posts/s, CPU µs per post, peak RSS MiB) of the script: the median posts/s of
    /// [`ROUNDS`] warm rounds in one process (after a round that warms its connections),
    /// CPU per post over those rounds.
    fn median(&self, endpoint: &str, size: usize) -> (f64, f64, f64) {
        let output = Command::new("node")
            .args([&self.script, endpoint, &size.to_string(), self.payload.as_str(), &ROUNDS.to_string()])
            .output()
            .expect("run node");
        assert!(output.status.success(), "node: {}", String::from_utf8_lossy(&output.stderr));
        let figures: serde_json::Value = serde_json::from_slice(&output.stdout).expect("node's JSON line");
        let number = |name: &str| figures[name].as_f64().expect("a number");
        (number("posts_per_second"), number("cpu_us_per_post"), number("peak_rss_mib"))
    }
}

/// The frame in a file for the Node.js script, removed when dropped.
struct FrameFile(std::path::PathBuf);

impl FrameFile {
    fn with(contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("fhir-ws-fanout-frame-{}.json", std::process::id()));
        std::fs::write(&path, contents).expect("write the frame");
        Self(path)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for FrameFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
