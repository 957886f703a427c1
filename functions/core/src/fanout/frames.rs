//! What one event is for one subscription: its numbered record (as the event history
//! keeps it) and the frames its bindings get, one per SMART grant among them.
//!
//! Built the same way by the worker that numbers the event and by every worker that
//! delivers a later page of it ([`super::pages`]), so all of a subscription's
//! connections get the same notification.

use chrono::{DateTime, Utc};

use super::event::Event;
use super::{FanOutError, in_version};
use crate::fhir::ContentLevel;
use crate::fhir::Subject;
use crate::fhir::version::FhirVersion;
use crate::metrics::Metrics;
use crate::notification::{EventContent, content_level, event_frame, event_record};
use crate::smart::subscription::KeptGrant;
use crate::store::{Binding, EventRecord, StoredSubscription};
use crate::topics::TopicRegistry;

/// One event for one subscription.
#[derive(Debug)]
pub(super) struct Frames<'a> {
    subscription: &'a StoredSubscription,
    /// The record under its number, as sent (the history keeps [`Self::history_record`]).
    pub record: EventRecord,
    keep_resources: bool,
    focus: Option<Subject>,
    context: Vec<Subject>,
    /// The FHIR version the resources are in now (the subscriber's at `full-resource`).
    shown: FhirVersion,
    /// The frame for bindings without a grant.
    plain: Vec<u8>,
    /// Whether the frame had to be cut to `id-only` to fit a WebSocket message.
    pub downgraded: bool,
    /// The frame each grant seen so far allows (`None`: it does not allow the focus).
    by_grant: Vec<(KeptGrant, Option<Vec<u8>>)>,
}

/// Where the resources of an event are, and how long its record is kept.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setting<'a> {
    pub topics: &'a TopicRegistry,
    pub fhir_base_url: &'a str,
    pub expires_at: i64,
}

impl<'a> Frames<'a> {
    /// Event `event`, numbered `number` for `subscription`.
    pub fn build(
        subscription: &'a StoredSubscription,
        event: &Event,
        number: u64,
        setting: Setting<'_>,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<Self, FanOutError> {
        let topic = subscription.resource().topic.as_deref().and_then(|url| setting.topics.get(url));
        let focus = event.focus.as_ref().and_then(Subject::resource);
        let shaped = topic.and_then(|topic| topic.shaped_context(focus, &event.additional_context, event.fhir_version));
        let context = shaped.as_deref().unwrap_or(&event.additional_context);
        // Bodies are sent only at full-resource: only then are they given in the
        // subscriber's version (or left out).
        let keep_resources = content_level(subscription) == ContentLevel::FullResource;
        let (to, from) = (subscription.fhir_version(), event.fhir_version);
        let for_subscriber = |subject: &Subject| {
            if keep_resources { in_version(subject, from, to, subscription.id(), metrics) } else { subject.clone() }
        };
        let focus = event.focus.as_ref().map(for_subscriber);
        let context: Vec<Subject> = context.iter().map(for_subscriber).collect();
        let content = EventContent {
            focus: focus.as_ref(),
            additional_context: &context,
            timestamp: event.timestamp,
            fhir_base_url: setting.fhir_base_url,
        };
        let record = event_record(subscription.id(), number, content, setting.expires_at);
        let (plain, downgraded) =
            event_frame(subscription, &record, now).map_err(|e| FanOutError::Invalid(e.to_string()))?;
        let shown = if keep_resources { to } else { from };
        Ok(Self {
            subscription,
            record,
            keep_resources,
            focus,
            context,
            shown,
            plain,
            downgraded,
            by_grant: Vec::new(),
        })
    }

    /// The record the event history keeps (resources only at `full-resource`, and only
    /// when they fit).
    pub fn history_record(&self) -> EventRecord {
        self.record.for_history(self.keep_resources)
    }

    /// Builds the frames of the grants among `bindings` not seen yet: a binding made in
    /// `smart` mode carries its token's grant, and gets nothing when the focus is not
    /// allowed, and the event without the context it does not allow otherwise (checked
    /// in the version the resources are now in).
    pub fn prepare(&mut self, bindings: &[Binding], now: DateTime<Utc>, metrics: &Metrics) -> Result<(), FanOutError> {
        let level = content_level(self.subscription);
        for grant in bindings.iter().filter_map(|b| b.grant.as_ref()) {
            if self.by_grant.iter().any(|(known, _)| known == grant) {
                continue;
            }
            let allowed = |subject: &Subject| {
                grant.permits(subject.resource(), subject.resource_type().as_deref(), level, self.shown, now)
            };
            let frame = match &self.focus {
                Some(focus) if !allowed(focus) => {
                    metrics.add("GrantWithheld", 1);
                    None
                }
                _ => {
                    let keep: Vec<bool> = self.context.iter().map(allowed).collect();
                    let narrowed = self.record.without_context(&keep);
                    let (frame, _) = event_frame(self.subscription, &narrowed, now)
                        .map_err(|e| FanOutError::Invalid(e.to_string()))?;
                    Some(frame)
                }
            };
            self.by_grant.push((grant.clone(), frame));
        }
        Ok(())
    }

    /// The frame for `binding` (after [`Self::prepare`] saw it); `None` when its grant
    /// withholds the event.
    pub fn for_binding(&self, binding: &Binding) -> Option<&[u8]> {
        match &binding.grant {
            None => Some(&self.plain),
            Some(grant) => self.by_grant.iter().find(|(known, _)| known == grant).and_then(|(_, f)| f.as_deref()),
        }
    }
}
