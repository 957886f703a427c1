//! Notification Bundles (R5 shape): `Bundle.type = subscription-notification` whose first
//! entry is a `SubscriptionStatus` (`handshake`, `heartbeat`, `event-notification`, or
//! `query-event` for `$events`).
//!
//! An event is first turned into an [`EventRecord`] (its number, timestamp, references
//! and resources); the live notification and a later `$events` replay are both built
//! from such a record, so the two cannot drift apart. Bundles are built in R5 shape and
//! become a WebSocket frame in the FHIR version of their subscription ([`frame`]: the
//! Backport IG's R4 or R4B shape for subscriptions created in those versions).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::fhir::Subject;
use crate::fhir::backport::{NotANotification, render_notification};
use crate::fhir::version::FhirVersion;
use crate::fhir::{
    Bundle, BundleEntry, ContentLevel, NotificationEvent, NotificationType, Reference, SubscriptionStatus, new_id,
};
use crate::store::{EventRecord, MAX_RECORDED_RESOURCE_BYTES, StoredSubscription};

/// A notification without events (`handshake` or `heartbeat`) for `subscription`,
/// reporting `events_since_start` (handshakes and heartbeats do not advance it).
pub fn status_notification(
    kind: NotificationType,
    subscription: &StoredSubscription,
    events_since_start: u64,
    now: DateTime<Utc>,
) -> Bundle {
    notification_bundle(subscription, kind, events_since_start, Vec::new(), now)
}

/// The `SubscriptionStatus` of `subscription` at `now` for a notification or query.
pub fn subscription_status(
    subscription: &StoredSubscription,
    kind: NotificationType,
    events_since_start: u64,
    notification_event: Vec<NotificationEvent>,
    now: DateTime<Utc>,
) -> SubscriptionStatus {
    SubscriptionStatus {
        resource_type: "SubscriptionStatus".to_owned(),
        status: Some(subscription.status_at(now)),
        notification_type: kind,
        events_since_subscription_start: Some(events_since_start.to_string()),
        notification_event,
        subscription: Reference::to(format!("Subscription/{}", subscription.id())),
        topic: subscription.resource().topic.clone(),
        other: Map::new(),
    }
}

/// A `subscription-notification` Bundle whose first entry is the `SubscriptionStatus`.
fn notification_bundle(
    subscription: &StoredSubscription,
    kind: NotificationType,
    events_since_start: u64,
    notification_event: Vec<NotificationEvent>,
    now: DateTime<Utc>,
) -> Bundle {
    let status = subscription_status(subscription, kind, events_since_start, notification_event, now);
    let mut bundle = Bundle::new("subscription-notification");
    bundle.id = Some(new_id());
    bundle.timestamp = Some(now.to_rfc3339_opts(SecondsFormat::Millis, true));
    bundle.entry.push(BundleEntry {
        full_url: Some(format!("urn:uuid:{}", new_id())),
        resource: serde_json::to_value(&status).ok(),
        search: None,
    });
    bundle
}

/// Largest message API Gateway delivers on a WebSocket (128 KiB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// What an event notification is about.
#[derive(Debug, Clone, Copy)]
pub struct EventContent<'a> {
    /// The focus: a resource (with `resourceType` and `id`) or a reference; none when the
    /// producer did not say.
    pub focus: Option<&'a Subject>,
    /// Further resources (or references).
    pub additional_context: &'a [Subject],
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
    /// Base URL of the FHIR server the resources live on, for references and `fullUrl`s.
    pub fhir_base_url: &'a str,
}

/// Event number `event_number` of `subscription_id` as a record holding everything the
/// notification shows: the references, and the resources that came as resources (a
/// `full-resource` notification carries those as entries, and only the reference of a
/// subject that came as one); `expires_at` is when it leaves the history.
pub fn event_record(
    subscription_id: &str,
    event_number: u64,
    content: EventContent<'_>,
    expires_at: i64,
) -> EventRecord {
    let base = content.fhir_base_url;
    let resources: Vec<Value> = content
        .focus
        .into_iter()
        .chain(content.additional_context)
        .map(|subject| subject.resource().cloned().map_or(Value::Null, Value::Object))
        .collect();
    EventRecord {
        subscription_id: subscription_id.to_owned(),
        event_number,
        timestamp: content.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        focus: content.focus.map(|subject| subject.url(base)),
        additional_context: content.additional_context.iter().map(|subject| subject.url(base)).collect(),
        resources: Some(resources).filter(|resources| resources.iter().any(Value::is_object)),
        expires_at,
    }
}

impl EventRecord {
    /// The record as the event history keeps it: the resources only when `keep_resources`
    /// (the subscription asked for `full-resource`) and they fit
    /// [`MAX_RECORDED_RESOURCE_BYTES`]; references always.
    pub fn for_history(&self, keep_resources: bool) -> Self {
        let fits = |resources: &Vec<Value>| {
            serde_json::to_vec(resources).is_ok_and(|json| json.len() <= MAX_RECORDED_RESOURCE_BYTES)
        };
        Self {
            subscription_id: self.subscription_id.clone(),
            event_number: self.event_number,
            timestamp: self.timestamp.clone(),
            focus: self.focus.clone(),
            additional_context: self.additional_context.clone(),
            resources: self.resources.as_ref().filter(|r| keep_resources && fits(r)).cloned(),
            expires_at: self.expires_at,
        }
    }

    /// The record without the additional-context subjects whose `keep` is false (their
    /// references and resources both), for a connection whose grant does not allow them.
    pub fn without_context(&self, keep: &[bool]) -> Self {
        let kept = |index: usize| keep.get(index).copied().unwrap_or(false);
        let focus_count = usize::from(self.focus.is_some());
        Self {
            subscription_id: self.subscription_id.clone(),
            event_number: self.event_number,
            timestamp: self.timestamp.clone(),
            focus: self.focus.clone(),
            additional_context: self
                .additional_context
                .iter()
                .enumerate()
                .filter(|(index, _)| kept(*index))
                .map(|(_, url)| url.clone())
                .collect(),
            resources: self.resources.as_ref().map(|resources| {
                resources
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| *index < focus_count || kept(index - focus_count))
                    .map(|(_, resource)| resource.clone())
                    .collect()
            }),
            expires_at: self.expires_at,
        }
    }

    /// `notificationEvent` for this event at content level `level` (`empty`: no
    /// references).
    fn notification_event(&self, level: ContentLevel) -> NotificationEvent {
        let with_references = level != ContentLevel::Empty;
        NotificationEvent {
            event_number: self.event_number.to_string(),
            timestamp: Some(self.timestamp.clone()),
            focus: self.focus.clone().filter(|_| with_references).map(Reference::to),
            additional_context: if with_references {
                self.additional_context.iter().cloned().map(Reference::to).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The resource entries (`fullUrl` + resource) a `full-resource` notification adds;
    /// none when the resources were not kept, and none for a subject kept as a reference
    /// only (`null` in [`EventRecord::resources`]).
    fn resource_entries(&self) -> Vec<BundleEntry> {
        let urls = self.focus.iter().chain(&self.additional_context);
        let resources = self.resources.iter().flatten();
        urls.zip(resources)
            .filter(|(_, resource)| resource.is_object())
            .map(|(url, resource)| BundleEntry {
                full_url: Some(url.clone()),
                resource: Some(resource.clone()),
                search: None,
            })
            .collect()
    }
}

/// An `event-notification` for `record` of `subscription`, at content level `level`:
/// `empty` carries no references or resources, `id-only` the focus and context
/// references, `full-resource` those plus the resources as entries.
pub fn event_notification(
    subscription: &StoredSubscription,
    record: &EventRecord,
    level: ContentLevel,
    now: DateTime<Utc>,
) -> Bundle {
    let event = record.notification_event(level);
    let mut bundle =
        notification_bundle(subscription, NotificationType::EventNotification, record.event_number, vec![event], now);
    if level == ContentLevel::FullResource {
        bundle.entry.extend(record.resource_entries());
    }
    bundle
}

/// The content level a subscription's notifications use (R5 leaves the default open;
/// `id-only` tells the client what changed without shipping data it may not be allowed
/// to cache).
pub fn content_level(subscription: &StoredSubscription) -> ContentLevel {
    subscription.resource().content.unwrap_or(ContentLevel::IdOnly)
}

/// Why a notification could not become a frame (a bug, never the client's input).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Serializing failed.
    #[error("cannot serialize the notification: {0}")]
    Json(#[from] serde_json::Error),
    /// The Bundle was not a notification.
    #[error(transparent)]
    NotANotification(#[from] NotANotification),
}

/// A notification Bundle (R5 shape, sent at content level `level`) as the frame
/// `subscription` receives: JSON in the FHIR version it was created in.
pub fn frame(subscription: &StoredSubscription, bundle: &Bundle, level: ContentLevel) -> Result<Vec<u8>, FrameError> {
    Ok(match subscription.fhir_version() {
        FhirVersion::R5 => serde_json::to_vec(bundle)?,
        version => serde_json::to_vec(&render_notification(version, bundle, level)?)?,
    })
}

/// The notification as one WebSocket frame, in the subscription's FHIR version. A
/// `full-resource` notification larger than API Gateway accepts is sent `id-only`
/// instead (never dropped); the flag says so.
pub fn event_frame(
    subscription: &StoredSubscription,
    record: &EventRecord,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, bool), FrameError> {
    let level = content_level(subscription);
    let bytes = frame(subscription, &event_notification(subscription, record, level, now), level)?;
    if bytes.len() <= MAX_MESSAGE_BYTES || level != ContentLevel::FullResource {
        return Ok((bytes, false));
    }
    let smaller = event_notification(subscription, record, ContentLevel::IdOnly, now);
    Ok((frame(subscription, &smaller, ContentLevel::IdOnly)?, true))
}

/// The `$events` answer: a `subscription-notification` Bundle whose `SubscriptionStatus`
/// has type `query-event` and one `notificationEvent` per record (in the order given),
/// then, at `full-resource`, the recorded resources. A resource recorded by several events
/// appears once per distinct `meta.versionId` (the last copy wins), as FHIR allows a
/// `fullUrl` only once per version in a Bundle. With no records the status has type
/// `query-status` instead, since `query-event` requires at least one event (sst-1).
pub fn query_event_bundle(
    subscription: &StoredSubscription,
    records: &[EventRecord],
    events_since_start: u64,
    level: ContentLevel,
    now: DateTime<Utc>,
) -> Bundle {
    let kind = if records.is_empty() { NotificationType::QueryStatus } else { NotificationType::QueryEvent };
    let events = records.iter().map(|r| r.notification_event(level)).collect();
    let mut bundle = notification_bundle(subscription, kind, events_since_start, events, now);
    if level == ContentLevel::FullResource {
        let mut entries: Vec<BundleEntry> = Vec::new();
        for entry in records.iter().flat_map(EventRecord::resource_entries) {
            let version = |e: &BundleEntry| e.resource.as_ref().map(|r| r["meta"]["versionId"].clone());
            match entries.iter_mut().find(|e| e.full_url == entry.full_url && version(e) == version(&entry)) {
                Some(existing) => *existing = entry,
                None => entries.push(entry),
            }
        }
        bundle.entry.extend(entries);
    }
    bundle
}
