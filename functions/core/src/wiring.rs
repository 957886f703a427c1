//! Building each function's parts from its configuration: the composition root above
//! [`crate::config`] (which only reads values) and the parts it wires (the fan-out, its
//! event history, the relay's ledger, the SQS queues). The function binaries call these;
//! nothing in the core imports this module, so configuration never depends on what it
//! configures.

use std::sync::Arc;

use crate::config::{ConfigError, EventHistoryConfig, EventsConfig, Source};
use crate::fanout::EventHistory;
#[cfg(feature = "sqs")]
use crate::fanout::FanOut;
#[cfg(feature = "sqs")]
use crate::fanout::pages::{DEFAULT_PAGE_SIZE, PageQueue, Paging};
use crate::relay::Relay;
use crate::store::dynamodb::{DynamoEventStore, DynamoUpstreamStore};

/// `fanout` configured with all of `events`: the events' version, the dead-letter queue,
/// paging and pacing, and the topics (their FHIRPath evaluated by `fhirpath`).
#[cfg(feature = "sqs")]
pub fn configure_fanout<S, B, C, E, P, U>(
    events: EventsConfig,
    fanout: FanOut<S, B, C, E, P, U>,
    aws: &aws_config::SdkConfig,
    fhirpath: Option<Arc<dyn crate::topics::FhirPathCriteria>>,
) -> FanOut<S, B, C, E, P, U>
where
    S: crate::store::SubscriptionStore,
    B: crate::store::BindingStore,
    C: crate::store::CounterStore,
    E: crate::store::EventStore,
    P: crate::push::Pusher,
    U: crate::store::UpstreamStore,
{
    let (dead_letters, paging, pacer) =
        (sqs_dead_letter_queue(&events, aws), sqs_paging(&events, aws), fanout_pacer(&events));
    fanout
        .with_event_version(events.fhir_version)
        .with_dead_letters(dead_letters)
        .with_paging(paging)
        .with_pacer(pacer)
        .with_topics(events.topics, fhirpath)
}

/// This instance's share of the account-wide Management API rate: `MANAGEMENT_API_RATE` /
/// `FANOUT_CONCURRENCY` a second, with a second's worth as its burst; `None` unpaced.
pub fn fanout_pacer(events: &EventsConfig) -> Option<Arc<crate::push::Pacer>> {
    let share = events.management_api_rate / f64::from(events.concurrency);
    crate::push::Pacer::new(share, std::time::Duration::from_secs(1)).map(Arc::new)
}

/// Delivery in pages of `DELIVERY_PAGE_SIZE`, references to later pages going to the
/// events queue on SQS when `EVENTS_QUEUE_URL` is set.
#[cfg(feature = "sqs")]
pub fn sqs_paging(events: &EventsConfig, aws: &aws_config::SdkConfig) -> Paging {
    let queue = events.events_queue_url.as_ref().map(|url| {
        let queue = crate::relay::sqs::SqsEventQueue::new(aws_sdk_sqs::Client::new(aws), url);
        Arc::new(queue) as Arc<dyn PageQueue>
    });
    Paging { page_size: events.page_size.unwrap_or(DEFAULT_PAGE_SIZE), queue }
}

/// The dead-letter queue on SQS, when `DEAD_LETTER_QUEUE_URL` is set.
#[cfg(feature = "sqs")]
pub fn sqs_dead_letter_queue(
    events: &EventsConfig,
    aws: &aws_config::SdkConfig,
) -> Option<Arc<dyn crate::fanout::dead_letter::DeadLetterQueue>> {
    let url = events.dead_letter_queue_url.as_ref()?;
    let client = aws_sdk_sqs::Client::new(aws);
    Some(Arc::new(crate::fanout::dead_letter::SqsDeadLetterQueue::new(client, url)))
}

/// The relay's ledger on the upstream table (`UPSTREAM_TABLE`), for notification Bundles
/// the fan-out finds on its queue; claims are kept as long as events.
pub fn upstream_relay(
    history: &EventHistoryConfig,
    source: &impl Source,
    client: &aws_sdk_dynamodb::Client,
) -> Result<Relay<DynamoUpstreamStore>, ConfigError> {
    let table = crate::config::required(source, "UPSTREAM_TABLE")?;
    Ok(Relay::new(DynamoUpstreamStore::new(client.clone(), table), history.retention))
}

/// The event history on its DynamoDB table, through `client`.
pub fn event_history(
    history: &EventHistoryConfig,
    client: &aws_sdk_dynamodb::Client,
) -> EventHistory<DynamoEventStore> {
    EventHistory { store: DynamoEventStore::new(client.clone(), &history.events_table), retention: history.retention }
}
