//! The HTTP side: `metadata`, creating and reading a Subscription,
//! `$get-ws-binding-token` (instance and type level) and `$events`, each with the bearer
//! token the caller's [`TokenSource`] gives at that moment.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::Error;
use crate::shapes::{FhirVersion, Notification, bundle_warning};

/// A function returning the bearer token for the next request (any OAuth or SMART
/// library's refresh fits here).
pub type TokenSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, Error>> + Send>> + Send + Sync + 'static>;

/// A token from `$get-ws-binding-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingToken {
    /// The token.
    pub token: String,
    /// When it expires.
    pub expiration: DateTime<Utc>,
    /// Where to connect.
    pub websocket_url: String,
}

impl BindingToken {
    /// Reads the operation's output Parameters (`token`, `expiration`, `websocket-url`).
    pub fn from_parameters(answer: &Value) -> Result<Self, Error> {
        let value = |name: &str, key: &str| {
            answer["parameter"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == name))
                .and_then(|p| p[key].as_str())
                .map(str::to_owned)
                .ok_or_else(|| Error::Protocol(format!("$get-ws-binding-token answered without {name}")))
        };
        let expiration = value("expiration", "valueDateTime")?;
        Ok(Self {
            token: value("token", "valueString")?,
            expiration: DateTime::parse_from_rfc3339(&expiration)
                .map_err(|_| Error::Protocol(format!("expiration {expiration} is not a dateTime")))?
                .with_timezone(&Utc),
            websocket_url: value("websocket-url", "valueUrl")?,
        })
    }
}

/// One FHIR base, spoken to with a token source.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) token: TokenSource,
}

/// `$events` pages for a range: the notifications read and the server's warning.
pub(crate) struct EventsAnswer {
    pub(crate) notifications: Vec<Notification>,
    pub(crate) warning: Option<Value>,
}

impl Api {
    async fn send(&self, method: &'static str, url: String, body: Option<&Value>) -> Result<Value, Error> {
        let token = (self.token)().await?;
        let mut request = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        }
        .bearer_auth(token)
        .header("accept", "application/fhir+json");
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let outcome = (parsed["resourceType"] == "OperationOutcome").then_some(parsed);
            return Err(Error::Http { method, url, status: status.as_u16(), outcome });
        }
        Ok(parsed)
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// The base's FHIR version, from its CapabilityStatement.
    pub(crate) async fn version(&self) -> Result<FhirVersion, Error> {
        let capability = self.send("GET", self.url("/metadata"), None).await?;
        capability["fhirVersion"].as_str().and_then(FhirVersion::from_fhir_version).ok_or_else(|| {
            Error::Protocol(format!("the server's fhirVersion {} is not R4, R4B or R5", capability["fhirVersion"]))
        })
    }

    /// Creates a Subscription; returns the resource the server stored.
    pub(crate) async fn create(&self, resource: &Value) -> Result<Value, Error> {
        let created = self.send("POST", self.url("/Subscription"), Some(resource)).await?;
        if created["id"].as_str().is_none() {
            return Err(Error::Protocol("the created Subscription has no id".to_owned()));
        }
        Ok(created)
    }

    /// Reads a Subscription.
    pub(crate) async fn read(&self, id: &str) -> Result<Value, Error> {
        self.send("GET", self.url(&format!("/Subscription/{id}")), None).await
    }

    /// `$get-ws-binding-token`: instance level for one id, type level for several.
    pub(crate) async fn binding_token(&self, ids: &[String]) -> Result<BindingToken, Error> {
        let answer = match ids {
            [one] => self.send("POST", self.url(&format!("/Subscription/{one}/$get-ws-binding-token")), None).await?,
            many => {
                let parameters = json!({"resourceType": "Parameters",
                    "parameter": many.iter().map(|id| json!({"name": "id", "valueId": id})).collect::<Vec<_>>()});
                self.send("POST", self.url("/Subscription/$get-ws-binding-token"), Some(&parameters)).await?
            }
        };
        BindingToken::from_parameters(&answer)
    }

    /// `$events` for `since..=until`, following `next` links.
    pub(crate) async fn events(&self, id: &str, since: u64, until: u64) -> Result<EventsAnswer, Error> {
        let mut next =
            Some(self.url(&format!("/Subscription/{id}/$events?eventsSinceNumber={since}&eventsUntilNumber={until}")));
        let mut answer = EventsAnswer { notifications: Vec::new(), warning: None };
        while let Some(url) = next.take() {
            let page = self.send("GET", url, None).await?;
            next = page["link"]
                .as_array()
                .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
                .and_then(|l| l["url"].as_str())
                .map(|url| self.url(url));
            if answer.warning.is_none() {
                answer.warning = bundle_warning(&page);
            }
            answer.notifications.extend(Notification::from_bundle(page));
        }
        Ok(answer)
    }
}
