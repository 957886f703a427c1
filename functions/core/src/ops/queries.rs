//! `Subscription/$status` and `Subscription/{id}/$events`: what the caller may ask about
//! the state and the past events of their own subscriptions.
//!
//! - `$status` (`OperationDefinition/Subscription-status`), type and instance level, GET
//!   and POST. In: `id` 0..* and `status` 0..* (type level only; values OR-ed). Out: a
//!   `searchset` Bundle with one `SubscriptionStatus` (`query-status`) per subscription.
//! - `$events` (`OperationDefinition/Subscription-events`), instance level, GET and POST.
//!   In: `eventsSinceNumber`, `eventsUntilNumber` (inclusive, integer64) and `content`
//!   (a hint). Out: a `subscription-notification` Bundle whose `SubscriptionStatus` has
//!   type `query-event`, one `notificationEvent` per retained event.
//!
//! At the `/R4` and `/R4B` bases both answer in the Backport IG's shapes
//! (`backport-subscription-status`, `backport-subscription-events`): `$status` a
//! `searchset` of R4 `Parameters` (profile `backport-subscription-status-r4`) or R4B
//! `SubscriptionStatus` resources; `$events` takes its bounds as strings (`valueString`, or
//! the query string) and answers a `history` Bundle whose first entry is that status
//! resource. R4 and R4B Bundles have no `issues`, so there the retention warning is the
//! first entry's `response.outcome`. Only subscriptions created in the request's version
//! are seen (a subscription keeps its version).
//!
//! `$events` defaults: `eventsUntilNumber` = the subscription's event count (larger
//! values are clamped to it), `eventsSinceNumber` = 1. One answer holds at most
//! [`MAX_EVENTS_PER_ANSWER`] events (fewer if the subscription's `maxCount` is smaller,
//! or if the resources would pass [`MAX_ANSWER_RESOURCE_BYTES`]); the rest of the range
//! is behind a `next` link. Numbers in the range that are no longer retained are
//! skipped and named in `Bundle.issues` (a warning `OperationOutcome`). The `content`
//! hint may lower the subscription's own level, never raise it. Someone else's
//! subscription answers 404, exactly like a missing one.

use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::fhir::Subject;
use crate::fhir::backport::{render_notification, render_status};
use crate::fhir::version::FhirVersion;
use crate::fhir::{
    Bundle, BundleEntry, BundleLink, BundleSearch, ContentLevel, IssueSeverity, IssueType, NotificationType,
    OperationOutcome, SubscriptionState, new_id,
};
use crate::http::{ApiError, FhirPath, IdentityConfig, fhir_path, fhir_response, operation_inputs, request_version};
use crate::notification::{content_level, query_event_bundle, subscription_status};
use crate::smart::subscription::KeptGrant;
use crate::smart::{Grant, Permission};
use crate::store::{CounterStore, EventRecord, EventStore, StoredSubscription, SubscriptionStore};

/// The `$status` path segment.
pub const STATUS: &str = "$status";
/// The `$events` path segment.
pub const EVENTS: &str = "$events";
/// Most events in one `$events` answer.
pub const MAX_EVENTS_PER_ANSWER: usize = 100;
/// Most resource JSON in one `$events` answer (Lambda answers at most 6 MB).
pub const MAX_ANSWER_RESOURCE_BYTES: usize = 4 * 1024 * 1024;
/// Most subscriptions named in one `$status` call.
pub const MAX_STATUS_IDS: usize = 100;

/// `$status` and `$events` over the caller's subscriptions; built once per Lambda instance.
#[derive(Debug)]
pub struct SubscriptionQueries<S, C, E> {
    subscriptions: S,
    counters: C,
    events: E,
    identity: IdentityConfig,
}

impl<S: SubscriptionStore, C: CounterStore, E: EventStore> SubscriptionQueries<S, C, E> {
    /// The operations over these stores, identifying callers with `identity`.
    pub fn new(subscriptions: S, counters: C, events: E, identity: IdentityConfig) -> Self {
        Self { subscriptions, counters, events, identity }
    }

    /// Answers a `$status` or `$events` request at `now`. Never fails: errors become
    /// `OperationOutcome`s.
    pub async fn handle(&self, request: &Request, now: DateTime<Utc>) -> Response<Body> {
        self.respond(request, now).await.unwrap_or_else(ApiError::into_response)
    }

    async fn respond(&self, request: &Request, now: DateTime<Utc>) -> Result<Response<Body>, ApiError> {
        let path = fhir_path(request)?;
        let method = request.method();
        if method != Method::GET && method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str(), "GET, POST"));
        }
        let version = request_version(request)?;
        let owner = self.identity.caller(request)?;
        // `$status` over the caller's subscriptions searches them; the rest read one.
        let type_level = matches!(path.rest.as_slice(), [operation] if operation == STATUS);
        let grant = self.identity.authorize(request, if type_level { Permission::Search } else { Permission::Read })?;
        let bundle = match path.rest.as_slice() {
            [operation] if operation == STATUS => {
                let inputs = operation_inputs(request, &["id", "status"])?;
                self.status(&owner, version, inputs, now).await?
            }
            [id, operation] if operation == STATUS => {
                // `id` and `status` are ignored at instance level, but must still be valid names.
                operation_inputs(request, &["id", "status"])?;
                let subscription = self.owned(id, &owner, version).await?;
                self.status_bundle(vec![subscription], version, now).await?
            }
            [id, operation] if operation == EVENTS => {
                let inputs = operation_inputs(request, &["eventsSinceNumber", "eventsUntilNumber", "content"])?;
                let subscription = self.owned(id, &owner, version).await?;
                self.replay(&path, &subscription, (&inputs, grant.as_ref()), now).await?
            }
            [operation] if operation == EVENTS => {
                return Err(ApiError::invalid("$events is an instance-level operation: Subscription/{id}/$events"));
            }
            _ => return Err(ApiError::not_found(format!("no route for {}", request.uri().path()))),
        };
        Ok(fhir_response(StatusCode::OK, &bundle))
    }

    /// The subscription if it exists and belongs to `owner`; 404 (same answer) otherwise.
    async fn owned(&self, id: &str, owner: &str, version: FhirVersion) -> Result<StoredSubscription, ApiError> {
        super::owned(&self.subscriptions, id, owner, version).await
    }

    /// Type-level `$status`: the named subscriptions (each must be the caller's, in
    /// `version`), or all of the caller's in `version`, kept when their status is one of
    /// those asked for.
    async fn status(
        &self,
        owner: &str,
        version: FhirVersion,
        inputs: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let mut ids: Vec<String> = Vec::new();
        let mut statuses: Vec<SubscriptionState> = Vec::new();
        for (name, value) in inputs {
            // Repeated parameters and comma-separated values are both OR-ed.
            for item in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                if name == "id" {
                    if !ids.iter().any(|id| id == item) {
                        ids.push(item.to_owned());
                    }
                } else {
                    let status = SubscriptionState::from_code(item)
                        .ok_or_else(|| ApiError::invalid(format!("'{item}' is not a Subscription status code")))?;
                    statuses.push(status);
                }
            }
        }
        if ids.len() > MAX_STATUS_IDS {
            return Err(ApiError::too_large(format!(
                "at most {MAX_STATUS_IDS} ids per $status call; {} were given",
                ids.len()
            )));
        }
        let found = if ids.is_empty() {
            self.subscriptions.list_by_owner(owner).await?.into_iter().filter(|s| s.fhir_version() == version).collect()
        } else {
            let mut found = Vec::with_capacity(ids.len());
            for id in &ids {
                found.push(self.owned(id, owner, version).await?);
            }
            found
        };
        let kept = found.into_iter().filter(|s| statuses.is_empty() || statuses.contains(&s.status_at(now))).collect();
        self.status_bundle(kept, version, now).await
    }

    /// A `searchset` Bundle with one `query-status` status resource per subscription, in
    /// `version`'s shape.
    async fn status_bundle(
        &self,
        subscriptions: Vec<StoredSubscription>,
        version: FhirVersion,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let mut bundle = Bundle::new("searchset");
        bundle.id = Some(new_id());
        bundle.timestamp = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        bundle.total = Some(subscriptions.len() as u64);
        for subscription in &subscriptions {
            let counter = self.counters.counter(subscription.id()).await?;
            let status =
                subscription_status(subscription, NotificationType::QueryStatus, counter.events, Vec::new(), now);
            let resource =
                render_status(version, &status, content_level(subscription)).map_err(|e| ApiError::internal(&e))?;
            bundle.entry.push(BundleEntry {
                full_url: Some(format!("urn:uuid:{}", new_id())),
                resource: Some(resource),
                search: Some(BundleSearch { mode: "match".to_owned() }),
            });
        }
        serde_json::to_value(&bundle).map_err(|e| ApiError::internal(&e))
    }

    /// `$events` for one subscription, in its FHIR version.
    async fn replay(
        &self,
        path: &FhirPath,
        subscription: &StoredSubscription,
        (inputs, grant): (&[(String, String)], Option<&Grant>),
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let request = EventsRequest::read(inputs)?;
        let count = self.counters.counter(subscription.id()).await?.events;
        let until = request.until.unwrap_or(count).min(count);
        let since = request.since.unwrap_or(1).max(1);
        let page = subscription.resource().max_count.map_or(MAX_EVENTS_PER_ANSWER, |m| {
            usize::try_from(m).unwrap_or(MAX_EVENTS_PER_ANSWER).clamp(1, MAX_EVENTS_PER_ANSWER)
        });
        // One more than a page, to learn whether the range goes on.
        let mut records = self.events.events(subscription.id(), since, until, page + 1, now.timestamp()).await?;
        let mut more = records.len() > page;
        records.truncate(page);
        if fit_resources(&mut records) {
            more = true;
        }
        let level = request.content.map_or(content_level(subscription), |hint| hint.min(content_level(subscription)));
        // The range covered and what is no longer retained, before the caller's grant
        // takes out what it does not allow (that is not a retention gap).
        let (covered_until, missing) = coverage(since, until, more, &records);
        let withheld = match grant.map(Grant::kept) {
            Some(current) if Some(&current) != subscription.grant() => {
                narrow_to(&current, &mut records, level, subscription.fhir_version(), now)
            }
            _ => Vec::new(),
        };
        let mut bundle = query_event_bundle(subscription, &records, count, level, now);
        let events_url = format!("{}/Subscription/{}/{EVENTS}", path.base, subscription.id());
        let hint = request.content.map(|c| format!("&content={}", content_code(c))).unwrap_or_default();
        bundle.link.push(BundleLink {
            relation: "self".to_owned(),
            url: format!("{events_url}?eventsSinceNumber={since}&eventsUntilNumber={until}{hint}"),
        });
        if more {
            let next = covered_until + 1;
            bundle.link.push(BundleLink {
                relation: "next".to_owned(),
                url: format!("{events_url}?eventsSinceNumber={next}&eventsUntilNumber={until}{hint}"),
            });
        }
        let mut notes = Vec::new();
        if !missing.is_empty() {
            notes.push(format!(
                "events {} of Subscription/{} are no longer retained and were left out",
                missing.join(", "),
                subscription.id()
            ));
        }
        if !withheld.is_empty() {
            let numbers: Vec<String> = withheld.iter().map(u64::to_string).collect();
            notes.push(format!(
                "events {} of Subscription/{} are not allowed by the access token's current grant and were left out",
                numbers.join(", "),
                subscription.id()
            ));
        }
        let warning = (!notes.is_empty())
            .then(|| OperationOutcome::single(IssueSeverity::Warning, IssueType::NotFound, notes.join("; ")));
        let version = subscription.fhir_version();
        if version == FhirVersion::R5 {
            bundle.issues = warning.as_ref().and_then(|w| serde_json::to_value(w).ok());
        }
        let mut answer = render_notification(version, &bundle, level).map_err(|e| ApiError::internal(&e))?;
        if version != FhirVersion::R5
            && let Some(warning) = warning
            && let Some(response) = answer.pointer_mut("/entry/0/response").and_then(Value::as_object_mut)
        {
            response.insert("outcome".to_owned(), serde_json::to_value(warning).map_err(|e| ApiError::internal(&e))?);
        }
        Ok(answer)
    }
}

/// The inputs of `$events`, checked.
struct EventsRequest {
    since: Option<u64>,
    until: Option<u64>,
    content: Option<ContentLevel>,
}

impl EventsRequest {
    fn read(inputs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut request = Self { since: None, until: None, content: None };
        for (name, value) in inputs {
            let once = |slot: bool| {
                if slot { Err(ApiError::invalid(format!("'{name}' may be given only once"))) } else { Ok(()) }
            };
            let number = || {
                value.trim().parse::<u64>().map_err(|_| {
                    ApiError::invalid(format!("'{name}' must be a non-negative whole number, not '{value}'"))
                })
            };
            match name.as_str() {
                "eventsSinceNumber" => {
                    once(request.since.is_some())?;
                    request.since = Some(number()?);
                }
                "eventsUntilNumber" => {
                    once(request.until.is_some())?;
                    request.until = Some(number()?);
                }
                _ => {
                    once(request.content.is_some())?;
                    request.content = Some(parse_content(value)?);
                }
            }
        }
        if let (Some(since), Some(until)) = (request.since, request.until)
            && since > until
        {
            return Err(ApiError::invalid(format!(
                "eventsSinceNumber ({since}) is greater than eventsUntilNumber ({until})"
            )));
        }
        Ok(request)
    }
}

fn parse_content(code: &str) -> Result<ContentLevel, ApiError> {
    match code.trim() {
        "empty" => Ok(ContentLevel::Empty),
        "id-only" => Ok(ContentLevel::IdOnly),
        "full-resource" => Ok(ContentLevel::FullResource),
        other => Err(ApiError::invalid(format!("content '{other}' is not one of empty, id-only, full-resource"))),
    }
}

fn content_code(level: ContentLevel) -> &'static str {
    match level {
        ContentLevel::Empty => "empty",
        ContentLevel::IdOnly => "id-only",
        ContentLevel::FullResource => "full-resource",
    }
}

/// The last event number this answer covers (up to the last record returned when the
/// range goes on) and the ranges no longer retained within it.
fn coverage(since: u64, until: u64, more: bool, records: &[EventRecord]) -> (u64, Vec<String>) {
    let covered_until = match (more, records.last()) {
        (true, Some(last)) => last.event_number,
        _ => until,
    };
    (covered_until, missing_ranges(since, covered_until, records))
}

/// Applies the caller's current `grant` to `records` (as delivery applies a binding's):
/// a record whose focus it does not allow is taken out (its number returned), context it
/// does not allow is left out of the rest. A subject without a recorded body is checked
/// by its type only, so a grant that needs its body does not allow it.
fn narrow_to(
    grant: &KeptGrant,
    records: &mut Vec<EventRecord>,
    level: ContentLevel,
    version: FhirVersion,
    now: DateTime<Utc>,
) -> Vec<u64> {
    let allows = |url: &str, body: Option<&Value>| {
        let kind = Subject::Reference(url.to_owned()).resource_type();
        grant.permits(body.and_then(Value::as_object), kind.as_deref(), level, version, now)
    };
    let mut withheld = Vec::new();
    let mut kept = Vec::with_capacity(records.len());
    for record in records.drain(..) {
        let bodies: Vec<Option<&Value>> = match &record.resources {
            Some(resources) => resources.iter().map(|r| Some(r).filter(|r| r.is_object())).collect(),
            None => Vec::new(),
        };
        let body = |index: usize| bodies.get(index).copied().flatten();
        let offset = usize::from(record.focus.is_some());
        if let Some(focus) = &record.focus
            && !allows(focus, body(0))
        {
            withheld.push(record.event_number);
            continue;
        }
        let keep: Vec<bool> =
            record.additional_context.iter().enumerate().map(|(i, url)| allows(url, body(offset + i))).collect();
        kept.push(record.without_context(&keep));
    }
    *records = kept;
    withheld
}

/// Drops events from the end of `records` until their resources fit one answer (at least
/// one event always stays); returns whether any were dropped.
fn fit_resources(records: &mut Vec<EventRecord>) -> bool {
    let mut total = 0;
    for (index, record) in records.iter().enumerate() {
        let size = record.resources.as_ref().and_then(|r| serde_json::to_vec(r).ok()).map_or(0, |json| json.len());
        total += size;
        if total > MAX_ANSWER_RESOURCE_BYTES && index > 0 {
            records.truncate(index);
            return true;
        }
    }
    false
}

/// The numbers in `since..=until` that `records` (ascending) lack, as ranges (`3`, `5–9`).
fn missing_ranges(since: u64, until: u64, records: &[EventRecord]) -> Vec<String> {
    let mut ranges = Vec::new();
    let mut expected = since;
    let mut push = |from: u64, to: u64| {
        if from == to {
            ranges.push(from.to_string());
        } else if from < to {
            ranges.push(format!("{from}–{to}"));
        }
    };
    for record in records {
        if record.event_number > expected {
            push(expected, record.event_number - 1);
        }
        expected = record.event_number + 1;
    }
    if expected <= until {
        push(expected, until);
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(number: u64) -> EventRecord {
        EventRecord {
            subscription_id: "s".to_owned(),
            event_number: number,
            timestamp: "2027-01-15T08:00:00.000Z".to_owned(),
            focus: None,
            additional_context: Vec::new(),
            resources: None,
            expires_at: 0,
        }
    }

    #[test]
    fn missing_numbers_are_named_as_ranges() {
        let records: Vec<EventRecord> = [4, 5, 8].into_iter().map(record).collect();
        assert_eq!(missing_ranges(1, 10, &records), ["1–3", "6–7", "9–10"]);
        assert_eq!(missing_ranges(4, 5, &records[..2]), Vec::<String>::new());
        assert_eq!(missing_ranges(3, 3, &[]), ["3"]);
        assert_eq!(missing_ranges(1, 0, &[]), Vec::<String>::new(), "an empty range misses nothing");
    }

    #[test]
    fn inputs_are_checked() {
        let read = |pairs: &[(&str, &str)]| {
            let inputs: Vec<(String, String)> = pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
            EventsRequest::read(&inputs)
        };
        assert!(read(&[("eventsSinceNumber", "3"), ("eventsUntilNumber", "3"), ("content", "empty")]).is_ok());
        for bad in [
            vec![("eventsSinceNumber", "-1")],
            vec![("eventsSinceNumber", "x")],
            vec![("eventsSinceNumber", "5"), ("eventsUntilNumber", "4")],
            vec![("eventsSinceNumber", "1"), ("eventsSinceNumber", "2")],
            vec![("content", "everything")],
        ] {
            assert!(read(&bad).is_err(), "{bad:?}");
        }
    }
}
