//! Browser apps on other origins: the template's CORS configuration is the one the code
//! and the guide describe; `fhir-ws serve` answers preflights and marks every answer to an
//! allowed origin (errors included) on every HTTP route, and nothing for other origins;
//! its WebSocket API checks `Origin` when told to; and in a real headless browser a page
//! from an allowed origin creates a subscription, gets a binding token, binds and shows an
//! event, while the same page from another origin fails at its first request.

use std::time::{Duration, Instant};

use fhir_ws_core::http::cors::{AllowedOrigins, DEFAULT_MAX_AGE_SECONDS};
use fhir_ws_local::gateway::{CorsPolicy, Options};
use fhir_ws_tests::browser::{Browser, Engine};
use fhir_ws_tests::local::LocalStack;
use reqwest::Method;
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;
use tokio::net::TcpListener;

/// The methods the HTTP API's routes use (read, search, create, update, delete, operations),
/// written out here rather than taken from the code's list, so that a method dropped from
/// the code or the template fails.
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
/// The request headers a browser app sends: the bearer token, a body's media type, the
/// version an update expects (`If-Match`), and the FHIR version it accepts (`Accept`).
const HEADERS: [&str; 4] = ["Authorization", "Content-Type", "If-Match", "Accept"];
/// The answer headers a browser app reads: `ETag` (for `If-Match`), `Location` (of a
/// created Subscription) and `Retry-After` (of a 503).
const EXPOSED: [&str; 3] = ["ETag", "Location", "Retry-After"];

/// The items of a comma-separated header, lower-cased.
fn listed(value: Option<String>) -> Vec<String> {
    value.unwrap_or_default().split(',').map(|item| item.trim().to_ascii_lowercase()).collect()
}

const APP: &str = "https://app.example.org";
const OTHER: &str = "https://elsewhere.example.org";

/// The local stack with these CORS origins and WebSocket origins.
async fn start_stack(cors: &str, websocket_origins: &str) -> LocalStack {
    LocalStack::start(Options {
        cors: CorsPolicy { origins: AllowedOrigins::parse(cors).unwrap(), max_age_seconds: 321 },
        websocket_origins: websocket_origins.to_owned(),
        ..Options::default()
    })
    .await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// An R5 websocket Subscription for alice; returns its id.
async fn create_subscription(http: &reqwest::Client, base: &str) -> String {
    let body = json!({
        "resourceType": "Subscription", "status": "requested",
        "topic": "http://example.org/FHIR/SubscriptionTopic/encounter-complete",
        "channelType": {"system": "http://terminology.hl7.org/CodeSystem/subscription-channel-type", "code": "websocket"},
        "content": "id-only"
    });
    let created: Value = http
        .post(format!("{base}/Subscription"))
        .bearer_auth("alice-token")
        .header("content-type", "application/fhir+json")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_route_answers_preflights_and_marks_answers_for_allowed_origins_only() {
    let stack = start_stack(APP, "").await;
    let http = reqwest::Client::new();
    let id = create_subscription(&http, &stack.base).await;
    let routes = [
        (Method::GET, "/metadata".to_owned()),
        (Method::GET, "/Subscription".to_owned()),
        (Method::POST, "/Subscription".to_owned()),
        (Method::GET, format!("/Subscription/{id}")),
        (Method::PUT, format!("/Subscription/{id}")),
        (Method::GET, format!("/Subscription/{id}/$status")),
        (Method::GET, "/Subscription/$status".to_owned()),
        (Method::GET, format!("/Subscription/{id}/$events")),
        (Method::POST, format!("/Subscription/{id}/$get-ws-binding-token")),
        (Method::POST, "/Subscription/$get-ws-binding-token".to_owned()),
        (Method::POST, "/Subscription/$revoke-ws-binding-token".to_owned()),
        (Method::GET, "/SubscriptionTopic".to_owned()),
        (Method::GET, "/R4/Subscription".to_owned()),
        (Method::GET, "/R4B/metadata".to_owned()),
        (Method::POST, "/relay".to_owned()),
        (Method::GET, "/NoSuchThing".to_owned()),
        (Method::DELETE, format!("/Subscription/{id}")),
    ];
    for (method, path) in &routes {
        let url = format!("{}{path}", stack.base);
        // The preflight a browser sends before a request with these headers: it goes ahead
        // only if the answer lists the method and every header asked for.
        let preflight = http
            .request(Method::OPTIONS, &url)
            .header("origin", APP)
            .header("access-control-request-method", method.as_str())
            .header("access-control-request-headers", HEADERS.join(",").to_ascii_lowercase())
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204, "{method} {path}");
        assert_eq!(header(&preflight, "access-control-allow-origin").as_deref(), Some(APP), "{path}");
        let methods = listed(header(&preflight, "access-control-allow-methods"));
        assert!(methods.contains(&method.as_str().to_ascii_lowercase()), "{method} {path}: {methods:?}");
        let headers = listed(header(&preflight, "access-control-allow-headers"));
        for wanted in HEADERS {
            assert!(headers.contains(&wanted.to_ascii_lowercase()), "{method} {path}: {wanted} not in {headers:?}");
        }
        assert_eq!(header(&preflight, "access-control-max-age").as_deref(), Some("321"));
        assert_eq!(header(&preflight, "vary").as_deref(), Some("Origin"));

        let refused = http
            .request(Method::OPTIONS, &url)
            .header("origin", OTHER)
            .header("access-control-request-method", method.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{method} {path}");
        assert_eq!(header(&refused, "access-control-allow-origin"), None);

        // The actual request, with and without a token: successes and errors alike.
        for token in [Some("alice-token"), None] {
            let mut request = http.request(method.clone(), &url).header("origin", APP);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let answer = request.send().await.unwrap();
            let status = answer.status();
            assert_eq!(
                header(&answer, "access-control-allow-origin").as_deref(),
                Some(APP),
                "{method} {path} {status}"
            );
            let exposed = listed(header(&answer, "access-control-expose-headers"));
            for wanted in EXPOSED {
                assert!(exposed.contains(&wanted.to_ascii_lowercase()), "{method} {path}: {wanted} not exposed");
            }
            if !status.is_success() {
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                assert_eq!(body["resourceType"], "OperationOutcome", "{method} {path} {status}: readable error");
            }
        }
        let other = http.request(method.clone(), &url).header("origin", OTHER).bearer_auth("alice-token");
        let other = other.send().await.unwrap();
        assert_eq!(header(&other, "access-control-allow-origin"), None, "{method} {path}");
    }
    // Without Origin (not a browser) nothing changes.
    let plain = http.get(format!("{}/metadata", stack.base)).send().await.unwrap();
    assert_eq!((plain.status().as_u16(), header(&plain, "access-control-allow-origin")), (200, None));
    stack.stop().await;
}

#[tokio::test]
async fn the_development_default_allows_pages_of_this_machine_and_star_allows_any() {
    let http = reqwest::Client::new();
    let loopback = start_stack(fhir_ws_local::gateway::DEFAULT_CORS_ORIGINS, "").await;
    for (origin, allowed) in [("http://localhost:5173", true), ("http://127.0.0.1:3000", true), (APP, false)] {
        let answer = http.get(format!("{}/metadata", loopback.base)).header("origin", origin).send().await.unwrap();
        assert_eq!(header(&answer, "access-control-allow-origin").is_some(), allowed, "{origin}");
    }
    loopback.stop().await;
    let any = start_stack("*", "").await;
    let answer = http.get(format!("{}/metadata", any.base)).header("origin", OTHER).send().await.unwrap();
    assert_eq!(header(&answer, "access-control-allow-origin").as_deref(), Some("*"));
    any.stop().await;
}

#[tokio::test]
async fn the_websocket_api_checks_origin_only_when_told_to() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    async fn upgrade(base: &str, origin: Option<&str>) -> u16 {
        let mut request = format!("{}/ws", base.replace("http://", "ws://")).into_client_request().unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((_, response)) => response.status().as_u16(),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
            Err(error) => panic!("{error}"),
        }
    }
    let checked = start_stack("", APP).await;
    assert_eq!(upgrade(&checked.base, Some(APP)).await, 101);
    assert_eq!(upgrade(&checked.base, Some(OTHER)).await, 403);
    assert_eq!(upgrade(&checked.base, None).await, 101, "no Origin: not a browser, tokens decide");
    checked.stop().await;
    let unchecked = start_stack("", "").await;
    assert_eq!(upgrade(&unchecked.base, Some(OTHER)).await, 101, "off by default");
    unchecked.stop().await;
}

/// The page of a browser app on another origin, using every method and header the API
/// allows: creates a subscription (POST, `Content-Type`) and reads `Location`; reads it
/// (GET, `Accept`) and its `ETag`; updates it (PUT, `If-Match`); gets a binding token,
/// opens the WebSocket and binds; after an event, deletes it (DELETE). Each step (and an
/// event's number) is shown in `#out` and `body[data-state]`.
const APP_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>cross-origin app</title></head>
<body data-state="starting"><pre id="out"></pre>
<script>
const api = new URLSearchParams(location.search).get("api");
const out = document.getElementById("out");
let finished = false; // once deleting, the socket's close is expected, not a failure
function show(step) { out.textContent += step + "\n"; document.body.dataset.state = step.split(":")[0]; }
(async () => {
  try {
    const auth = { Authorization: "Bearer alice-token" };
    const created = await fetch(api + "/Subscription", {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/fhir+json" },
      body: JSON.stringify({ resourceType: "Subscription", status: "requested",
        topic: "http://example.org/FHIR/SubscriptionTopic/encounter-complete",
        channelType: { system: "http://terminology.hl7.org/CodeSystem/subscription-channel-type", code: "websocket" },
        content: "id-only" }),
    });
    const subscription = await created.json();
    show("created:" + subscription.id + " location " + created.headers.get("Location"));
    const at = api + "/Subscription/" + subscription.id;
    const read = await fetch(at, { headers: { ...auth, Accept: "application/fhir+json; fhirVersion=5.0" } });
    const etag = read.headers.get("ETag");
    show("read:" + read.status + " etag " + etag);
    const updated = await fetch(at, {
      method: "PUT",
      headers: { ...auth, "Content-Type": "application/fhir+json", "If-Match": etag },
      body: JSON.stringify({ ...(await read.json()), status: "requested", reason: "watched" }),
    });
    show("updated:" + updated.status + " etag " + updated.headers.get("ETag"));
    window.deleteSubscription = async () => {
      finished = true;
      show("deleted:" + (await fetch(at, { method: "DELETE", headers: auth })).status);
    };
    const answer = await fetch(api + "/Subscription/" + subscription.id + "/$get-ws-binding-token", { method: "POST", headers: auth });
    const parameters = await answer.json();
    const value = (name) => parameters.parameter.find((p) => p.name === name) || {};
    const token = value("token").valueString, url = value("websocket-url").valueUrl;
    show("token:" + (token ? "yes" : "no"));
    const socket = new WebSocket(url);
    socket.onopen = () => socket.send("bind-with-token " + token);
    socket.onerror = () => { if (!finished) show("failed:websocket"); };
    socket.onmessage = (message) => {
      const status = JSON.parse(message.data).entry?.[0]?.resource;
      if (status?.type === "handshake") show("bound:" + subscription.id);
      if (status?.type === "event-notification") show("event:" + status.notificationEvent[0].eventNumber);
    };
  } catch (error) {
    show("failed:" + error);
  }
})();
</script></body></html>"#;

/// How many subscriptions alice has.
async fn subscription_count(http: &reqwest::Client, base: &str) -> Value {
    let bundle: Value =
        http.get(format!("{base}/Subscription")).bearer_auth("alice-token").send().await.unwrap().json().await.unwrap();
    bundle["total"].clone()
}

/// Serves [`APP_PAGE`] at `/` on a port of its own: another origin than the stack's.
async fn serve_app() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/", axum::routing::get(|| async { axum::response::Html(APP_PAGE) }));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (origin, server)
}

async fn wait_for_state(browser: &Browser, state: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let current = browser.execute("return document.body.dataset.state", vec![]).await;
        let log = browser.execute("return document.getElementById('out').textContent", vec![]).await;
        if current == json!(state) {
            return log.as_str().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "the page did not reach {state}: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cross_origin_flow(engine: Engine) {
    let (allowed_origin, allowed_server) = serve_app().await;
    let (other_origin, other_server) = serve_app().await;
    // Both the HTTP API and the WebSocket API allow the app's origin only.
    let stack = start_stack(&allowed_origin, &allowed_origin).await;
    let http = reqwest::Client::new();
    let browser = Browser::start(engine, 1024, 768).await;

    browser.goto(&format!("{allowed_origin}/?api={}", stack.base)).await;
    let log = wait_for_state(&browser, "bound").await;
    assert!(log.contains("location http://") && log.contains("token:yes"), "Location readable: {log}");
    let event = json!({"topic": "http://example.org/FHIR/SubscriptionTopic/encounter-complete",
                       "focus": {"resourceType": "Encounter", "id": "e1", "status": "finished"}});
    let sent = http.post(format!("{}/local/events", stack.base)).json(&event).send().await.unwrap();
    assert_eq!(sent.status(), 202);
    let log = wait_for_state(&browser, "event").await;
    assert!(log.contains("event:1"), "{log}");
    assert!(log.contains("read:200 etag W/\"1\"") && log.contains("updated:200 etag W/\"2\""), "{log}");
    browser.execute("window.deleteSubscription()", vec![]).await;
    let log = wait_for_state(&browser, "deleted").await;
    assert!(log.contains("deleted:204"), "{log}");

    // The same page from another origin: its first request is refused, nothing created.
    let before = subscription_count(&http, &stack.base).await;
    browser.goto(&format!("{other_origin}/?api={}", stack.base)).await;
    let log = wait_for_state(&browser, "failed").await;
    assert!(!log.contains("created:"), "{log}");
    let after = subscription_count(&http, &stack.base).await;
    assert_eq!(before, after, "the refused page created nothing");

    browser.close().await;
    stack.stop().await;
    allowed_server.abort();
    other_server.abort();
}

#[tokio::test]
async fn a_page_from_an_allowed_origin_subscribes_binds_and_receives_in_chromium() {
    cross_origin_flow(Engine::Chromium).await;
}

#[tokio::test]
async fn a_page_from_an_allowed_origin_subscribes_binds_and_receives_in_firefox() {
    cross_origin_flow(Engine::Firefox).await;
}

/// The template's `CorsConfiguration`, parameters and WebSocket setting, against the
/// methods and headers the API uses and what the guide's CORS chapter says.
#[test]
fn the_template_declares_the_cors_configuration_the_readme_describes() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let template: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{root}/template.yaml")).unwrap()).unwrap();
    let tagged = |value: &Yaml, tag: &str| -> Yaml {
        match value {
            Yaml::Tagged(t) if t.tag == tag => t.value.clone(),
            other => panic!("expected {tag}, found {other:?}"),
        }
    };
    let strings = |value: &Yaml| -> Vec<String> {
        value.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let parameters = &template["Parameters"];
    assert_eq!(parameters["CorsAllowedOrigins"]["Default"], Yaml::from(""), "no origin unless chosen");
    assert_eq!(parameters["CorsMaxAge"]["Default"].as_u64(), Some(u64::from(DEFAULT_MAX_AGE_SECONDS)));
    assert_eq!(parameters["WebSocketAllowedOrigins"]["Default"], Yaml::from(""));
    let pattern = regex_lite_match(parameters["CorsAllowedOrigins"]["AllowedPattern"].as_str().unwrap());
    for accepted in ["", "*", "https://app.example.org", "https://a.example.org,http://localhost:3000"] {
        assert!(pattern(accepted), "{accepted}");
    }
    for refused in ["app.example.org", "https://a.example.org/path", "*,https://a.example.org", "https://a b"] {
        assert!(!pattern(refused), "{refused}");
    }

    let cors = tagged(&template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"], "!If");
    assert_eq!(cors[0], Yaml::from("HasCors"));
    assert_eq!(tagged(&cors[2], "!Ref"), Yaml::from("AWS::NoValue"), "no CorsConfiguration at all by default");
    let configuration = &cors[1];
    let split = tagged(&configuration["AllowOrigins"], "!Split");
    assert_eq!((split[0].clone(), tagged(&split[1], "!Ref")), (Yaml::from(","), Yaml::from("CorsAllowedOrigins")));
    // Header names are case-insensitive; the template writes them in lower case.
    let lower = |names: Vec<String>| names.into_iter().map(|n| n.to_ascii_lowercase()).collect::<Vec<_>>();
    let written = |names: &[&str]| lower(names.iter().map(|n| (*n).to_owned()).collect());
    assert_eq!(strings(&configuration["AllowMethods"]), METHODS);
    assert_eq!(lower(strings(&configuration["AllowHeaders"])), written(&HEADERS));
    assert_eq!(lower(strings(&configuration["ExposeHeaders"])), written(&EXPOSED));
    assert_eq!(tagged(&configuration["MaxAge"], "!Ref"), Yaml::from("CorsMaxAge"));
    assert_eq!(configuration["AllowCredentials"], Yaml::from(false));
    // No route answers OPTIONS itself: API Gateway answers preflights, without the authorizer.
    let template_text = std::fs::read_to_string(format!("{root}/template.yaml")).unwrap();
    assert!(!template_text.contains("Method: OPTIONS") && !template_text.contains("Method: ANY"));
    let connect_environment = &template["Resources"]["WsConnectFunction"]["Properties"]["Environment"]["Variables"];
    let origins = tagged(&connect_environment["WEBSOCKET_ALLOWED_ORIGINS"], "!If");
    assert_eq!(tagged(&origins[1], "!Ref"), Yaml::from("WebSocketAllowedOrigins"));

    let section = std::fs::read_to_string(format!("{root}/docs/src/cors.md")).expect("the guide's CORS chapter");
    for expected in
        ["CorsAllowedOrigins", "CorsMaxAge", "WebSocketAllowedOrigins", "--cors-origin", "--websocket-origin"]
            .into_iter()
            .chain(METHODS)
            .chain(HEADERS)
            .chain(EXPOSED)
    {
        assert!(section.to_lowercase().contains(&expected.to_lowercase()), "the guide's CORS chapter names {expected}");
    }
    assert!(section.contains(&format!("{DEFAULT_MAX_AGE_SECONDS} s")), "the guide gives the default max age");
}

/// A matcher for the template's `AllowedPattern` (CloudFormation's Java regex syntax,
/// here only anchors, classes, groups, `+`, `*`, `?` and `|`), through Python's `re`.
fn regex_lite_match(pattern: &str) -> impl Fn(&str) -> bool {
    let pattern = pattern.to_owned();
    move |value: &str| {
        let python = fhir_ws_tests::python();
        let output = std::process::Command::new(python)
            .args([
                "-c",
                "import re,sys; sys.exit(0 if re.fullmatch(sys.argv[1], sys.argv[2]) else 1)",
                &pattern,
                value,
            ])
            .status()
            .unwrap();
        output.success()
    }
}
