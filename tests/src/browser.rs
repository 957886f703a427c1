//! A real headless browser for tests: Debian's Chromium driven through ChromeDriver over
//! the W3C WebDriver protocol (plain HTTP + JSON, with the tests' reqwest client).
//!
//! `CHROMEDRIVER` and `CHROMIUM` name the two programs (`infra/test.sh` installs Debian's
//! `chromium` and `chromium-driver` and sets them). Each [`Browser`] starts its own
//! ChromeDriver on a free port and one session with a fresh profile; dropping it ends the
//! session and stops the driver. Chromium runs with background networking off, so the
//! only requests it makes are the page's own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session in headless Chromium.
pub struct Browser {
    driver: Child,
    endpoint: String,
    http: reqwest::Client,
    profile: TempDir,
}

/// A directory removed when dropped (Chromium's profile).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the browser tests through infra/test.sh"))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("local address").port()
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session with a `width` × `height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new(required("CHROMEDRIVER"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{endpoint}/status")).send().await.ok();
            if let Some(status) = ready
                && let Ok(body) = status.json::<Value>().await
                && body["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("fhir-ws-chromium-{}", uuid::Uuid::new_v4().simple()));
        let arguments = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": required("CHROMIUM"), "args": arguments},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Self { driver, endpoint, http, profile: TempDir(profile) };
        let session = browser.call("POST", "/session", Some(capabilities)).await;
        let id = session["sessionId"].as_str().expect("a WebDriver session id").to_owned();
        browser.endpoint = format!("{}/session/{id}", browser.endpoint);
        browser
    }

    /// One WebDriver command; panics on an error answer (a test step that failed).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.endpoint);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let answer: Value = request.send().await.expect("WebDriver request").json().await.expect("WebDriver JSON");
        assert!(answer["value"]["error"].is_null(), "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Sets the window's size (CSS pixels).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call("POST", "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// The elements matching a CSS selector now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned())))
            .collect()
    }

    /// The first element matching `css`, waiting up to `timeout` for one to appear.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.find_all(css).await.into_iter().next() {
                return found;
            }
            if Instant::now() > deadline {
                let log = self.execute("return document.getElementById('frames')?.innerText ?? ''", vec![]).await;
                panic!("nothing matched {css} within {timeout:?}; the page's log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks an element.
    pub async fn click(&self, element: &Element) {
        self.call("POST", &format!("/element/{}/click", element.0), None).await;
    }

    /// Replaces an input's text by typing `text` into it.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.call("POST", &format!("/element/{}/clear", element.0), None).await;
        self.call("POST", &format!("/element/{}/value", element.0), Some(json!({"text": text}))).await;
    }

    /// An element's rendered text.
    pub async fn text(&self, element: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", element.0), None).await.as_str().unwrap_or_default().to_owned()
    }

    /// An attribute of an element.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.call("GET", &format!("/element/{}/attribute/{name}", element.0), None).await.as_str().map(str::to_owned)
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap_or_default()).expect("PNG")
    }

    /// The browser console's messages so far (errors, warnings, logs).
    pub async fn console_messages(&self) -> Vec<Value> {
        let logs = self.call("POST", "/se/log", Some(json!({"type": "browser"}))).await;
        logs.as_array().cloned().unwrap_or_default()
    }
}

impl Browser {
    /// Ends the session (Chromium exits with it) and stops the driver.
    pub async fn close(self) {
        let _ = self.http.delete(&self.endpoint).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A session not closed (a failed test) leaves Chromium running: its processes are
        // the ones started with this profile.
        let _ = Command::new("pkill").arg("-f").arg(self.profile.0.as_os_str()).status();
    }
}
