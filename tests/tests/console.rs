//! The web console of `fhir-ws serve`, driven in headless Chromium and Firefox (Debian's,
//! through ChromeDriver and geckodriver): create a subscription, bind, send events and
//! see their notifications with their numbers, replay them with `$events`, renew the
//! token before it runs out, do the same in R4, stay at phone width, and request nothing
//! but the local stack. The page's WebSocket side is the JavaScript client
//! (`clients/js`): a redelivered frame is shown once, and a socket that goes silent is
//! given up and the event it swallowed replayed, in both browsers.
//!
//! With `CONSOLE_SCREENSHOT=<dir>` the Chromium run also writes `console.png` (desk) and
//! `console-phone.png` there: the pictures in docs/src/images/.

use std::time::{Duration, Instant};

use fhir_ws_local::gateway::Options;
use fhir_ws_tests::browser::{Browser, Engine};
use fhir_ws_tests::local::LocalStack;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
/// The shortest token lifetime the operation allows.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The page's subscriptions beat every 3 s, so its client's watchdog gives a silent
/// socket up after 6 s.
const HEARTBEAT_PERIOD: &str = "3";

/// The stack with the shortest tokens, a heartbeat run every second, and fault injection
/// (the page's client is tested through drops and silences too).
async fn start_stack() -> LocalStack {
    LocalStack::start(Options {
        token_lifetime_seconds: TOKEN_LIFETIME.as_secs() as i64,
        heartbeat_every: Duration::from_secs(1),
        fault_injection: true,
        ..Options::default()
    })
    .await
}

/// How many log entries match `css`.
async fn count(browser: &Browser, css: &str) -> u64 {
    let script = "return document.querySelectorAll(arguments[0]).length";
    browser.execute(script, vec![json!(css)]).await.as_u64().unwrap_or_default()
}

/// Chooses an option of a `<select>` as a user would (click), which fires `change`.
async fn choose(browser: &Browser, select: &str, value: &str) {
    let option = browser.wait_for(&format!("{select} option[value='{value}']"), WAIT).await;
    browser.click(&option).await;
}

/// The id of the newest subscription row that is not in `known`.
async fn new_subscription(browser: &Browser, known: &[String]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        for row in browser.find_all("#subscriptions tr[data-id]").await {
            let id = browser.attribute(&row, "data-id").await.unwrap_or_default();
            if !known.contains(&id) {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no new subscription row appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until some element matching `css` has text containing every one of `parts`.
async fn wait_for_text(browser: &Browser, css: &str, parts: &[&str]) {
    let script = "return [...document.querySelectorAll(arguments[0])]\
                  .some(e => arguments[1].every(p => e.textContent.includes(p)))";
    let deadline = Instant::now() + WAIT;
    while browser.execute(script, vec![json!(css), json!(parts)]).await != json!(true) {
        let log = browser.execute("return document.getElementById('frames').innerText", vec![]).await;
        assert!(Instant::now() < deadline, "no {css} with {parts:?}; the page's log:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first log entry matching `css`, waiting for it. Found and read in
/// one script: the log re-renders, and an element found in one WebDriver call can be
/// gone ("stale") by the next.
async fn entry(browser: &Browser, css: &str) -> String {
    let script = "const found = document.querySelector(arguments[0]); return found ? found.innerText : null";
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(text) = browser.execute(script, vec![json!(css)]).await.as_str() {
            return text.to_owned();
        }
        let log = browser.execute("return document.getElementById('frames').innerText", vec![]).await;
        assert!(Instant::now() < deadline, "nothing matched {css}; the page's log:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_console_creates_binds_and_shows_numbered_notifications_in_chromium() {
    console_flow(Engine::Chromium).await;
}

#[tokio::test]
async fn the_console_creates_binds_and_shows_numbered_notifications_in_firefox() {
    console_flow(Engine::Firefox).await;
}

/// Records, from now on and in both browsers, the page's script errors, unhandled
/// rejections, blocked requests (the Content-Security-Policy's refusals) and whatever its
/// scripts write with `console.error`, in `window.consoleTestErrors`. This is how Firefox's
/// errors are seen at all: geckodriver has no endpoint for the browser's console (the
/// WebDriver standard defines none; ChromeDriver's `/se/log` is its own), so the check of
/// the browser console's own log below runs in Chromium only.
const ERROR_COLLECTOR: &str = "window.consoleTestErrors = [];\
    window.addEventListener('error', e => consoleTestErrors.push('error: ' + e.message));\
    window.addEventListener('unhandledrejection', e => consoleTestErrors.push('rejection: ' + e.reason));\
    document.addEventListener('securitypolicyviolation', e => consoleTestErrors.push('blocked: ' + e.blockedURI));\
    const writeError = console.error.bind(console);\
    console.error = (...parts) => { consoleTestErrors.push('console: ' + parts.join(' ')); writeError(...parts); };";

async fn console_flow(engine: Engine) {
    let stack = start_stack().await;
    let base = stack.base.clone();
    let browser = Browser::start(engine, 1280, 1000).await;
    browser.goto(&format!("{base}/")).await;
    browser.wait_for("body[data-ready='true']", WAIT).await;
    browser.execute(ERROR_COLLECTOR, vec![]).await;
    // The policy refuses a request anywhere else, and the collector sees the refusal.
    browser.execute("fetch('http://example.com/elsewhere').catch(() => {})", vec![]).await;
    let refused = "return window.consoleTestErrors.some(e => e.startsWith('blocked:') && e.includes('example.com'))";
    let deadline = Instant::now() + WAIT;
    while browser.execute(refused, vec![]).await != json!(true) {
        assert!(Instant::now() < deadline, "the page's policy did not block a foreign request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // So does a console error, in both browsers.
    browser.execute("console.error('collector probe')", vec![]).await;
    let probed = browser.execute("return window.consoleTestErrors.includes('console: collector probe')", vec![]).await;
    assert_eq!(probed, json!(true), "the collector did not see console.error");
    browser.execute("window.consoleTestErrors = []; performance.clearResourceTimings()", vec![]).await;
    let _ = browser.console_messages().await; // ChromeDriver hands each message out once
    let users =
        browser.execute("return [...document.querySelectorAll('#user option')].map(o => o.textContent)", vec![]).await;
    assert_eq!(users, json!(["alice", "bob", "patient"]));
    let scopes = browser.execute("return document.getElementById('user-scopes').textContent", vec![]).await;
    assert_eq!(scopes, json!("openid fhirUser user/*.cruds"), "the chosen user's scopes are shown");

    // R5: create, bind, two events, each shown with its number.
    browser.execute(&format!("document.getElementById('heartbeat').value = '{HEARTBEAT_PERIOD}'"), vec![]).await;
    browser.click(&browser.wait_for("#create", WAIT).await).await;
    let r5 = new_subscription(&browser, &[]).await;
    browser.click(&browser.wait_for(&format!("#subscriptions tr[data-id='{r5}'] button.bind"), WAIT).await).await;
    let handshake = entry(&browser, ".frame[data-kind='handshake']").await;
    assert!(handshake.contains(&format!("Subscription/{r5}")), "{handshake}");
    let binding = entry(&browser, &format!("#bindings li[data-id='{r5}']")).await;
    assert!(binding.contains("token expires"), "{binding}");
    let bound_at = Instant::now();

    browser.click(&browser.wait_for("#send-event", WAIT).await).await;
    let first = entry(&browser, ".frame[data-kind='event-notification'][data-events='1']").await;
    assert!(first.contains("#1") && first.contains(&format!("Subscription/{r5}")), "{first}");
    assert!(first.contains("Encounter/example-"), "the pretty view names the focus: {first}");
    browser.click(&browser.wait_for("#send-event", WAIT).await).await;
    let second = entry(&browser, ".frame[data-kind='event-notification'][data-events='2']").await;
    assert!(second.contains("#2"), "{second}");
    // The server sends event 2 again (a redelivery; before the next heartbeat, which an
    // event puts off by a period): the page's client drops the repeat (counted below).
    assert_eq!(stack.fault("repeat", &r5).await, 1);

    // The list's count comes from $status.
    let deadline = Instant::now() + WAIT;
    while entry(&browser, &format!("#subscriptions tr[data-id='{r5}'] td.count")).await != "2" {
        assert!(Instant::now() < deadline, "the subscription's $status count did not reach 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // $events replays both.
    choose(&browser, "#events-subscription", &r5).await;
    browser.click(&browser.wait_for("#replay", WAIT).await).await;
    let replay = entry(&browser, ".frame[data-kind='events-replay'][data-events='1,2']").await;
    assert!(replay.contains("#1 #2"), "{replay}");

    // The socket goes silent (half-open): the event sent meanwhile never reaches it. The
    // page's client gives the socket up after 2 × heartbeatPeriod, reconnects, and
    // fetches the missed event with $events: shown once, marked replayed.
    assert_eq!(stack.fault("freeze", &r5).await, 1);
    let topic = browser.execute("return document.getElementById('topic').value", vec![]).await;
    let away = json!({"resourceType": "Encounter", "id": "example-away", "status": "finished"});
    let sent =
        reqwest::Client::new().post(format!("{base}/local/events")).json(&json!({"topic": topic, "focus": away}));
    assert_eq!(sent.send().await.unwrap().status(), 202);
    let third = entry(&browser, ".frame[data-kind='event-notification'][data-events='3']").await;
    assert!(third.contains("replayed with $events") && third.contains("Encounter/example-away"), "{third}");
    wait_for_text(&browser, ".frame[data-kind='socket']", &["closed (4000"]).await;
    for n in 1..=3 {
        let css = format!(".frame[data-kind='event-notification'][data-events='{n}']");
        assert_eq!(count(&browser, &css).await, 1, "event {n} shown exactly once");
    }

    let screenshots = std::env::var("CONSOLE_SCREENSHOT").ok().filter(|_| engine == Engine::Chromium);
    if let Some(folder) = &screenshots {
        std::fs::create_dir_all(folder).unwrap();
        browser.execute("window.scrollTo(0, 0)", vec![]).await;
        std::fs::write(format!("{folder}/console.png"), browser.screenshot().await).unwrap();
    }

    // At phone width nothing runs off the side.
    browser.resize(390, 844).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let widths = browser.execute("return [window.innerWidth, document.documentElement.clientWidth]", vec![]).await;
        if widths[0] == json!(390) {
            break;
        }
        assert!(Instant::now() < deadline, "the page never became 390 pixels wide: {widths}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let overflow = browser.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await;
    assert!(overflow.as_i64().is_some_and(|o| o <= 0), "wider than the phone by {overflow}");
    if let Some(folder) = &screenshots {
        browser.execute("document.getElementById('list-section').scrollIntoView()", vec![]).await;
        std::fs::write(format!("{folder}/console-phone.png"), browser.screenshot().await).unwrap();
    }
    browser.resize(1280, 1000).await;

    // The token is renewed before it runs out, and the binding outlives the first token.
    let renewal = async {
        loop {
            let script = "return [...document.querySelectorAll(\".frame[data-kind='bind']\")]\
                          .some(f => f.textContent.includes('renewed'))";
            if browser.execute(script, vec![]).await == json!(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(TOKEN_LIFETIME, renewal).await.expect("the token was renewed before it expired");
    let first_token_gone =
        (bound_at + TOKEN_LIFETIME + Duration::from_secs(2)).saturating_duration_since(Instant::now());
    tokio::time::sleep(first_token_gone).await;
    browser.click(&browser.wait_for("#send-event", WAIT).await).await;
    let fourth = entry(&browser, ".frame[data-kind='event-notification'][data-events='4']").await;
    assert!(fourth.contains(&format!("Subscription/{r5}")), "{fourth}");

    // R4: the Backport IG's shapes, on a socket of its own.
    choose(&browser, "#version", "R4").await;
    browser.wait_for(".frame[data-kind='socket']", WAIT).await;
    browser.click(&browser.wait_for("#create", WAIT).await).await;
    let r4 = new_subscription(&browser, &[]).await;
    assert_ne!(r4, r5, "the R4 list holds only R4 subscriptions");
    browser.click(&browser.wait_for(&format!("#subscriptions tr[data-id='{r4}'] button.bind"), WAIT).await).await;
    wait_for_text(&browser, ".frame[data-kind='handshake']", &[&format!("Subscription/{r4}")]).await;
    browser.click(&browser.wait_for("#send-event", WAIT).await).await;
    let event = ".frame[data-kind='event-notification'][data-events='1']";
    wait_for_text(&browser, event, &[&format!("Subscription/{r4}"), "#1"]).await;

    // Only the local stack was asked for anything, and nothing was refused or failed.
    let requested = browser.execute("return performance.getEntriesByType('resource').map(e => e.name)", vec![]).await;
    let requested: Vec<&str> = requested.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(!requested.is_empty() && requested.iter().all(|url| url.starts_with(&base)), "{requested:?}");
    let collected = browser.execute("return window.consoleTestErrors", vec![]).await;
    assert_eq!(collected, json!([]), "script errors or blocked requests");
    if let Some(messages) = browser.console_messages().await {
        let errors: Vec<Value> = messages.into_iter().filter(|m| m["level"] == "SEVERE").collect();
        assert!(errors.is_empty(), "browser console errors: {errors:?}");
    }

    browser.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_policy_that_keeps_it_to_the_stack() {
    let stack = start_stack().await;
    let base = stack.base.clone();
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let websocket_origin = base.replace("http://", "ws://");
    assert!(policy.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"), "{policy}");
    assert!(policy.contains(&format!("connect-src 'self' {websocket_origin};")), "{policy}");
    assert!(page.text().await.unwrap().contains("/console/console.js"));
    for (file, kind) in
        [("console.js", "text/javascript"), ("fhir-ws-client.js", "text/javascript"), ("console.css", "text/css")]
    {
        let asset = http.get(format!("{base}/console/{file}")).send().await.unwrap();
        assert_eq!(asset.status(), 200);
        assert!(asset.headers()["content-type"].to_str().unwrap().starts_with(kind));
        assert_eq!(asset.headers()["x-content-type-options"], "nosniff");
    }
    let missing = http.get(format!("{base}/console/other.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["resourceType"], "OperationOutcome");
    let users: Value = http.get(format!("{base}/console/users")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        users,
        json!([
            {"principal": "alice", "token": "alice-token", "scope": "openid fhirUser user/*.cruds", "patient": null},
            {"principal": "bob", "token": "bob-token", "scope": "openid fhirUser user/*.cruds", "patient": null},
            {"principal": "patient", "token": "patient-token",
             "scope": "openid fhirUser launch/patient patient/*.rs patient/Subscription.cruds", "patient": "example"}
        ])
    );
    stack.stop().await;
}
