//! Real headless browsers for tests, driven over the W3C WebDriver protocol (plain HTTP +
//! JSON, with the tests' reqwest client): Debian's Chromium through ChromeDriver, and
//! Debian's Firefox ESR through geckodriver.
//!
//! `CHROMIUM`/`CHROMEDRIVER` and `FIREFOX`/`GECKODRIVER` name the programs
//! (`infra/test.sh` installs them and sets the variables). Each [`Browser`] starts its own
//! driver on a free port and one session with a fresh profile; [`Browser::close`] ends the
//! session, and dropping it stops the driver and anything left of the browser. Both run
//! with their background networking (updates, telemetry, safe browsing) off, so the only
//! requests they make are the page's own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Which browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Chromium with ChromeDriver.
    Chromium,
    /// Firefox with geckodriver.
    Firefox,
}

/// A WebDriver session in a headless browser.
pub struct Browser {
    engine: Engine,
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
    /// Starts the engine's driver and a headless session with a `width` × `height` window.
    pub async fn start(engine: Engine, width: u32, height: u32) -> Self {
        let port = free_port();
        let (driver_variable, browser_variable) = match engine {
            Engine::Chromium => ("CHROMEDRIVER", "CHROMIUM"),
            Engine::Firefox => ("GECKODRIVER", "FIREFOX"),
        };
        let driver = Command::new(required(driver_variable))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {driver_variable}: {e}"));
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
            assert!(Instant::now() < deadline, "{driver_variable} did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("fhir-ws-browser-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("a profile folder");
        let binary = required(browser_variable);
        if engine == Engine::Firefox {
            // Firefox keeps its window at least 500 pixels wide (its toolbars' minimum
            // widths), so a resize to a phone's 390 would leave the page 500 wide; this
            // style sheet of the profile lifts the minimum.
            std::fs::create_dir_all(profile.join("chrome")).expect("a chrome folder");
            std::fs::write(
                profile.join("chrome/userChrome.css"),
                ":root, #main-window, #navigator-toolbox, #nav-bar, #TabsToolbar, toolbar { min-width: 0 !important; }",
            )
            .expect("userChrome.css");
        }
        let capabilities = match engine {
            Engine::Chromium => json!({
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": binary, "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ]},
                "goog:loggingPrefs": {"browser": "ALL"},
            }),
            Engine::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": binary,
                    "args": ["-headless", "-profile", profile.display().to_string(),
                             format!("--width={width}"), format!("--height={height}")],
                    "prefs": {
                        "app.update.disabledForTesting": true,
                        "toolkit.legacyUserProfileCustomizations.stylesheets": true,
                        "browser.safebrowsing.malware.enabled": false,
                        "browser.safebrowsing.phishing.enabled": false,
                        "browser.shell.checkDefaultBrowser": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "extensions.update.enabled": false,
                        "network.captive-portal-service.enabled": false,
                        "network.connectivity-service.enabled": false,
                        "toolkit.telemetry.enabled": false,
                    },
                },
            }),
        };
        let mut browser = Self { engine, driver, endpoint, http, profile: TempDir(profile) };
        let session =
            browser.call("POST", "/session", Some(json!({"capabilities": {"alwaysMatch": capabilities}}))).await;
        let id = session["sessionId"].as_str().expect("a WebDriver session id").to_owned();
        browser.endpoint = format!("{}/session/{id}", browser.endpoint);
        browser.resize(width, height).await;
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

    /// The browser console's messages so far (errors, warnings, logs), where the driver
    /// gives them (ChromeDriver does, geckodriver does not).
    pub async fn console_messages(&self) -> Option<Vec<Value>> {
        if self.engine != Engine::Chromium {
            return None;
        }
        let logs = self.call("POST", "/se/log", Some(json!({"type": "browser"}))).await;
        Some(logs.as_array().cloned().unwrap_or_default())
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
