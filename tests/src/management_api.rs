//! A real HTTP endpoint standing in for the API Gateway Management API in tests:
//! `POST` and `DELETE /{stage}/@connections/{id}` (connection ids arrive URL-encoded and
//! are decoded), checks each request's SigV4 signature for the `execute-api` service
//! against the secret key in `AWS_SECRET_ACCESS_KEY` (recomputed from the request as it
//! arrived on the wire: method, path, signed headers, body), records every post and close,
//! and answers 200 (204 for a close), or 410 for connections marked gone or closed, or
//! scripted statuses. A request without a valid signature is refused with 403, as API
//! Gateway does, and counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One recorded post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPost {
    /// Stage segment of the URL.
    pub stage: String,
    /// Connection id, decoded.
    pub connection_id: String,
    /// The request's path as it arrived (the id still encoded).
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
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

/// How the stub checks signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Recomputes each signature with this secret key.
    Recompute(String),
    /// Only looks for a SigV4 `Authorization` header for `execute-api` and `x-amz-date`,
    /// and keeps no frames: for the benchmarks, where the stub's own CPU competes with
    /// what is measured.
    Shape,
}

#[derive(Default)]
struct Recorder {
    check: Option<SignatureCheck>,
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
    /// Starts on a free loopback port, checking signatures against the secret key in
    /// `AWS_SECRET_ACCESS_KEY`.
    pub async fn start() -> Self {
        Self::start_checking(SignatureCheck::Recompute(std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default()))
            .await
    }

    /// Starts on a free loopback port, checking signatures as `check` says.
    pub async fn start_checking(check: SignatureCheck) -> Self {
        let state = Arc::new(Mutex::new(Recorder { check: Some(check), ..Recorder::default() }));
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

    /// How many requests arrived without a valid SigV4 signature (they were refused with 403).
    pub fn unsigned_requests(&self) -> usize {
        self.state.lock().expect("recorder").unsigned
    }
}

impl Drop for ManagementApiStub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// True when `Authorization` is a SigV4 signature for `execute-api` (with
/// [`SignatureCheck::Recompute`], one the secret key reproduces from the request as
/// received).
fn is_signed(check: &SignatureCheck, request: &Received<'_>) -> bool {
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(authorization), Some(date)) = (header("authorization"), header("x-amz-date")) else { return false };
    let Some(fields) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else { return false };
    let secret = match check {
        SignatureCheck::Shape => return authorization.contains("/execute-api/aws4_request"),
        SignatureCheck::Recompute(secret) => secret.clone(),
    };
    let field = |name: &str| {
        fields.split(", ").find_map(|part| part.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    };
    let (Some(credential), Some(signed_headers)) = (field("Credential"), field("SignedHeaders")) else { return false };
    // Credential = access key / date / region / service / aws4_request
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, _, region, "execute-api", "aws4_request"] = scope[..] else { return false };
    let Ok(time) = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ") else { return false };
    let token = header("x-amz-security-token").map(str::to_owned);
    let identity = aws_credential_types::Credentials::new(access_key, secret, token, None, "stub").into();
    // The signer adds x-amz-date and the session token itself; the others are passed as
    // they arrived, and only those the client signed.
    let headers = signed_headers
        .split(';')
        .filter(|name| !matches!(*name, "x-amz-date" | "x-amz-security-token"))
        .map(|name| Some((name, header(name)?)))
        .collect::<Option<Vec<_>>>();
    let Some(headers) = headers else { return false };
    let mut settings = aws_sigv4::http_request::SigningSettings::default();
    settings.excluded_headers = None;
    let Ok(params) = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time.and_utc().into())
        .settings(settings)
        .build()
    else {
        return false;
    };
    let params = params.into();
    let uri = format!("http://{}{}", header("host").unwrap_or("localhost"), request.uri);
    let body = aws_sigv4::http_request::SignableBody::Bytes(request.body);
    let Ok(signable) =
        aws_sigv4::http_request::SignableRequest::new(request.method.as_str(), uri, headers.into_iter(), body)
    else {
        return false;
    };
    let Ok(signed) = aws_sigv4::http_request::sign(signable, &params) else { return false };
    let (instructions, _) = signed.into_parts();
    instructions.headers().any(|(name, value)| name == "authorization" && value == authorization)
}

/// A request as it arrived.
struct Received<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// API Gateway's answer to an unsigned request (403) or one for a closed connection (410).
fn refusal(recorder: &mut Recorder, request: &Received<'_>, connection_id: &str) -> Option<Response> {
    let check = recorder.check.clone().unwrap_or(SignatureCheck::Shape);
    if !is_signed(&check, request) {
        recorder.unsigned += 1;
        return Some((StatusCode::FORBIDDEN, r#"{"message":"Missing Authentication Token"}"#).into_response());
    }
    recorder.gone.contains(connection_id).then(|| error(StatusCode::GONE, "GoneException"))
}

async fn close(
    State(state): State<Arc<Mutex<Recorder>>>,
    Path((_stage, connection_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut recorder = state.lock().expect("recorder");
    let received = Received { method: &method, uri: &uri, headers: &headers, body: &[] };
    if let Some(refused) = refusal(&mut recorder, &received, &connection_id) {
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
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut recorder = state.lock().expect("recorder");
    let received = Received { method: &method, uri: &uri, headers: &headers, body: &body };
    if let Some(refused) = refusal(&mut recorder, &received, &connection_id) {
        return refused;
    }
    let scripted = recorder.scripted.get_mut(&connection_id).and_then(VecDeque::pop_front);
    let status = scripted.unwrap_or(200);
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = uri.path().to_owned();
    // The benchmarks' stub (shape checks only) keeps no frames: hundreds of thousands of
    // posts would otherwise hold gigabytes.
    let body = if recorder.check == Some(SignatureCheck::Shape) { Vec::new() } else { body.to_vec() };
    recorder.posts.push(RecordedPost { stage, connection_id, path, content_type, body, status });
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

/// The environment variable that makes a benchmark's executable serve the stand-in.
const STUB_PROCESS: &str = "FHIR_WS_MANAGEMENT_API_STUB";

/// For benchmarks: the Management API stand-in in a child process (this executable run
/// again), so its CPU is not counted as the benchmark's. Returns the child and the
/// endpoint for stage `live`. The child's `main` must call [`serve_if_stub_process`] first.
pub fn spawn_stub_process() -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(STUB_PROCESS, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the stub process");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stub stdout")).read_line(&mut line).expect("stub URL");
    (child, line.trim().to_owned())
}

/// In the child [`spawn_stub_process`] starts: serves the stand-in (shape checks only),
/// prints its endpoint and never returns. Elsewhere returns at once.
pub fn serve_if_stub_process() {
    if std::env::var_os(STUB_PROCESS).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let stub = ManagementApiStub::start_checking(SignatureCheck::Shape).await;
        println!("{}", stub.endpoint("live"));
        std::future::pending::<()>().await;
    });
}
