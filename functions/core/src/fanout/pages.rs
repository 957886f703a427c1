//! Delivery in pages, for subscriptions with more connections than one worker should
//! post to: the worker that numbers an event posts to the first page of bindings and
//! puts a page reference for the next on the events queue before it posts (so the next
//! page starts on another worker while this one posts), and so on down the pages.
//!
//! Each page is claimed in the event history's delivery progress
//! ([`crate::store::DeliveryProgress`]) before it is read, records where it ends before
//! the next is queued, and records the connections it still owes (posts that failed
//! after retries) when done. So a page redelivered by SQS, or queued twice, reaches
//! only the connections it owes and queues nothing again; a page being delivered by
//! another worker is reported for redelivery. A connection gets each event once, except
//! when a worker dies mid-page (its page is then posted again after
//! [`crate::store::PAGE_CLAIM_SECONDS`]; clients drop the repeat by its event number).
//!
//! Without a queue (the local stack), or for an event too large to ride in a page
//! reference, one worker delivers every page in turn.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::relay::{EventQueue, MAX_QUEUED_EVENT_BYTES, QueueError};

/// Default bindings per page (`DELIVERY_PAGE_SIZE`).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// The queue that page references go to (the events queue).
pub trait PageQueue: Send + Sync + std::fmt::Debug {
    /// Queues one message body; succeeds only when it is durably queued.
    fn enqueue_page<'a>(&'a self, body: &'a str) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;
}

impl<Q: EventQueue + std::fmt::Debug> PageQueue for Q {
    fn enqueue_page<'a>(&'a self, body: &'a str) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>> {
        Box::pin(async move { self.enqueue(&[body.to_owned()]).await })
    }
}

/// How the fan-out spreads large audiences: the page size, and the queue pages go to.
#[derive(Debug, Clone)]
pub struct Paging {
    /// Bindings per page.
    pub page_size: usize,
    /// Where references to further pages go; `None`: this worker delivers them all.
    pub queue: Option<std::sync::Arc<dyn PageQueue>>,
}

impl Default for Paging {
    fn default() -> Self {
        Self { page_size: DEFAULT_PAGE_SIZE, queue: None }
    }
}

/// A reference to a later page of one event's delivery to one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageReference {
    /// The subscription.
    pub subscription: String,
    /// The event's number in it.
    pub event_number: u64,
    /// The connection id the page starts after.
    pub after: String,
    /// The event's time, as its first page sent it.
    pub timestamp: String,
}

/// A page reference as a queue message: the reference and the event it is about (the
/// body the first worker read, so every page builds the same notification).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PageMessage {
    delivery_page: PageReference,
    event: Value,
}

impl PageReference {
    /// The page after connection `after` of event `event_number` (at `timestamp`) of
    /// `subscription`.
    pub fn new(subscription: &str, event_number: u64, after: &str, timestamp: DateTime<Utc>) -> Self {
        Self {
            subscription: subscription.to_owned(),
            event_number,
            after: after.to_owned(),
            timestamp: timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    /// The queue message for this page of the event whose body is `event_body`; `None`
    /// when the body is not JSON or the message would exceed a queue message.
    pub fn message(&self, event_body: &str) -> Option<String> {
        let event: Value = serde_json::from_str(event_body).ok()?;
        let text = serde_json::to_string(&PageMessage { delivery_page: self.clone(), event }).ok()?;
        (text.len() <= MAX_QUEUED_EVENT_BYTES).then_some(text)
    }

    /// Whether page references to the event whose body is `event_body` fit a queue
    /// message (else one worker delivers all its pages).
    pub fn fits(event_body: &str) -> bool {
        // The longest connection id API Gateway gives is far shorter than this.
        let widest = Self::new("x", u64::MAX, &"x".repeat(128), DateTime::<Utc>::MIN_UTC);
        widest.message(event_body).is_some()
    }

    /// The reference and the event body of a queue message, when it is a page reference.
    pub fn read(body: &str) -> Option<Result<(Self, String), String>> {
        if !body.contains("\"deliveryPage\"") {
            return None;
        }
        let value: Value = serde_json::from_str(body).ok()?;
        value.get("deliveryPage")?;
        Some(
            serde_json::from_value::<PageMessage>(value)
                .map(|message| (message.delivery_page, message.event.to_string()))
                .map_err(|e| format!("a page reference, but not a valid one: {e}")),
        )
    }

    /// The event's time.
    pub fn time(&self) -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(&self.timestamp)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("page reference timestamp: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_references_round_trip_and_refuse_what_they_cannot_carry() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00.123Z").map(|t| t.with_timezone(&Utc));
        let reference = PageReference::new("s1", 7, "conn-42", at.unwrap_or_default());
        let event = r#"{"topic":"http://t","focus":{"reference":"Patient/1"}}"#;
        let message = reference.message(event).unwrap_or_default();
        let read = PageReference::read(&message).and_then(Result::ok);
        assert_eq!(read, Some((reference.clone(), event.to_owned())));
        assert!(PageReference::read(event).is_none(), "an event is not a page reference");
        let broken = r#"{"deliveryPage": {"subscription": "s1"}, "event": {}}"#;
        assert!(PageReference::read(broken).is_some_and(|r| r.is_err()), "a broken one is invalid");
        assert_eq!(reference.message("not json"), None);
        let huge = format!(r#"{{"topic":"{}"}}"#, "x".repeat(MAX_QUEUED_EVENT_BYTES));
        assert_eq!(reference.message(&huge), None, "too large for the queue: delivered inline");
        assert!(PageReference::fits(event) && !PageReference::fits(&huge));
    }
}
