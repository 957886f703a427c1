//! `fhir-ws serve` inside the test's process, on a free loopback port.

use std::time::Duration;

use fhir_ws_local::gateway::{Options, serve};
use tokio::net::TcpListener;

/// A running local stack; aborted when dropped, [`LocalStack::stop`] for a clean stop.
pub struct LocalStack {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl LocalStack {
    /// Starts the stack with `options`.
    pub async fn start(options: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(listener, options, async {
                let _ = stopped.await;
            })
            .await
            .expect("local stack");
        });
        Self { base, stop: Some(stop), server }
    }

    /// Breaks the connections bound to `subscription` (`POST /local/faults`; the stack
    /// runs with [`Options::fault_injection`]): `drop`, `freeze` or `repeat`. How many
    /// connections it reached.
    pub async fn fault(&self, kind: &str, subscription: &str) -> u64 {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/local/faults", self.base))
            .json(&serde_json::json!({"fault": kind, "subscription": subscription}))
            .send()
            .await
            .expect("the fault endpoint answers")
            .json()
            .await
            .expect("a JSON answer");
        answer["connections"].as_u64().expect("a count of connections")
    }

    /// Stops it as Ctrl-C would, and requires it to finish within 10 s.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .expect("a clean shutdown within 10 s")
            .expect("the server task ended normally");
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.server.abort();
    }
}
