//! The JavaScript client (`clients/js`) in Node's test runner against `fhir-ws serve`
//! started here with fault injection, the shortest token lifetime and event retention,
//! and a heartbeat run every second: its fault tests (`clients/js/test/`) for R5, R4B and R4, the relay path,
//! and the reading of each version's shapes. `infra/test.sh` installs its pinned dev
//! packages (`npm ci`); this test does the same when they are missing.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fhir_ws_local::gateway::Options;
use fhir_ws_tests::local::LocalStack;

/// The client package's folder.
fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/js")
}

async fn ensure_node_packages() {
    if package().join("node_modules/ws/package.json").exists() {
        return;
    }
    let status = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(package())
        .status()
        .await
        .expect("npm (Node 20 with npm is needed for the JavaScript client's tests)");
    assert!(status.success(), "npm ci in clients/js failed");
}

#[tokio::test]
async fn the_javascript_client_delivers_each_event_once_in_order_through_faults() {
    ensure_node_packages().await;
    let stack = LocalStack::start(Options {
        fault_injection: true,
        token_lifetime_seconds: 60,
        event_retention_seconds: 60,
        heartbeat_every: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let output = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "test/"])
        .current_dir(package())
        .env("FHIR_WS_BASE", &stack.base)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), output)
        .await
        .expect("the Node tests finished within 4 minutes")
        .expect("node (Node 20 is needed for the JavaScript client's tests)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the JavaScript client's tests failed:\n{report}");
    // The run really ran the fault tests of all three versions.
    for version in ["R5", "R4B", "R4"] {
        for case in [
            "drops the socket",
            "while the client is disconnected",
            "redelivered",
            "heartbeats stop",
            "renewed",
            "past the server's retention",
        ] {
            assert!(
                report.lines().any(|l| l.contains(&format!("{version}:")) && l.contains(case) && l.contains('✔')),
                "no passing {version} test for {case:?}"
            );
        }
    }
    stack.stop().await;
}
