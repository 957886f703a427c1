//! A real HTTP endpoint standing in for the API Gateway Management API in tests:
//! `POST` and `DELETE /{stage}/@connections/{id}` (connection ids arrive URL-encoded and
//! are decoded), requires a SigV4 `Authorization` header for the `execute-api` service,
//! records every post and close, and answers 200 (204 for a close), or 410 for
//! connections marked gone or closed, or scripted statuses.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One recorded post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPost {
    /// Stage segment of the URL.
    pub stage: String,
    /// Connection id, decoded.
    pub connection_id: String,
    /// The frame.
    pub body: Vec<u8>,
    /// The status the stub answered.
    pub status: u16,
}

impl RecordedPost {
    /// The frame as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The frame as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Recorder {
    posts: Vec<RecordedPost>,
    gone: HashSet<String>,
    scripted: HashMap<String, VecDeque<u16>>,
    unsigned: usize,
    closed: Vec<String>,
}

/// The running endpoint; stops when dropped.
pub struct ManagementApiStub {
    url: String,
    state: Arc<Mutex<Recorder>>,
    server: tokio::task::JoinHandle<()>,
}

impl ManagementApiStub {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Recorder::default()));
        let app =
            Router::new().route("/{stage}/@connections/{id}", post(record).delete(close)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("stub server");
        });
        Self { url, state, server }
    }

    /// The Management API endpoint for `stage`, as the functions are configured with it.
    pub fn endpoint(&self, stage: &str) -> String {
        format!("{}/{stage}", self.url)
    }

    /// Every post so far.
    pub fn posts(&self) -> Vec<RecordedPost> {
        self.state.lock().expect("recorder").posts.clone()
    }

    /// Posts to one connection (every attempt, whatever it was answered).
    pub fn posts_to(&self, connection_id: &str) -> Vec<RecordedPost> {
        self.posts().into_iter().filter(|p| p.connection_id == connection_id).collect()
    }

    /// Posts to one connection that were accepted (200): what the client received.
    pub fn delivered_to(&self, connection_id: &str) -> Vec<RecordedPost> {
        self.posts_to(connection_id).into_iter().filter(|p| p.status == 200).collect()
    }

    /// From now on, posts to this connection answer 410 Gone.
    pub fn mark_gone(&self, connection_id: &str) {
        self.state.lock().expect("recorder").gone.insert(connection_id.to_owned());
    }

    /// The next posts to this connection answer these statuses, in order.
    pub fn script(&self, connection_id: &str, statuses: &[u16]) {
        self.state.lock().expect("recorder").scripted.entry(connection_id.to_owned()).or_default().extend(statuses);
    }

    /// The connections closed (`DeleteConnection`), in order.
    pub fn closed(&self) -> Vec<String> {
        self.state.lock().expect("recorder").closed.clone()
    }

    /// How many requests arrived without a SigV4 signature (they were refused with 403).
    pub fn unsigned_requests(&self) -> usize {
        self.state.lock().expect("recorder").unsigned
    }
}

impl Drop for ManagementApiStub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn is_signed(headers: &HeaderMap) -> bool {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    authorization.starts_with("AWS4-HMAC-SHA256 Credential=")
        && authorization.contains("/execute-api/aws4_request")
        && headers.contains_key("x-amz-date")
}

/// API Gateway's answer to an unsigned request (403) or one for a closed connection (410).
fn refusal(recorder: &mut Recorder, headers: &HeaderMap, connection_id: &str) -> Option<Response> {
    if !is_signed(headers) {
        recorder.unsigned += 1;
        return Some((StatusCode::FORBIDDEN, r#"{"message":"Missing Authentication Token"}"#).into_response());
    }
    recorder.gone.contains(connection_id).then(|| error(StatusCode::GONE, "GoneException"))
}

async fn close(
    State(state): State<Arc<Mutex<Recorder>>>,
    Path((_stage, connection_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut recorder = state.lock().expect("recorder");
    if let Some(refused) = refusal(&mut recorder, &headers, &connection_id) {
        return refused;
    }
    // Closed connections are gone from then on, as on API Gateway.
    recorder.gone.insert(connection_id.clone());
    recorder.closed.push(connection_id);
    StatusCode::NO_CONTENT.into_response()
}

async fn record(
    State(state): State<Arc<Mutex<Recorder>>>,
    Path((stage, connection_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut recorder = state.lock().expect("recorder");
    if let Some(refused) = refusal(&mut recorder, &headers, &connection_id) {
        return refused;
    }
    let scripted = recorder.scripted.get_mut(&connection_id).and_then(VecDeque::pop_front);
    let status = scripted.unwrap_or(200);
    recorder.posts.push(RecordedPost { stage, connection_id, body: body.to_vec(), status });
    match StatusCode::from_u16(status).ok() {
        Some(StatusCode::TOO_MANY_REQUESTS) => error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException"),
        Some(status) if !status.is_success() => error(status, "InternalServerErrorException"),
        _ => StatusCode::OK.into_response(),
    }
}

/// An error in the shape API Gateway uses: status, `x-amzn-ErrorType`, JSON message.
fn error(status: StatusCode, kind: &'static str) -> Response {
    (status, [("x-amzn-errortype", kind)], format!(r#"{{"message":"{kind}"}}"#)).into_response()
}
