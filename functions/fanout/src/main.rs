//! Lambda `fanout`: reads event batches from SQS and posts notification Bundles to every
//! bound connection, reporting failed records for redelivery (`fhir_ws_core::fanout`);
//! its future (a stream of retried posts) nests deeper than the default recursion limit.
#![recursion_limit = "256"]

use aws_lambda_events::sqs::SqsEvent;
use fhir_ws_core::config::{DeliveryConfig, EventHistoryConfig, ProcessEnv, fhir_base_url};
use fhir_ws_core::{fanout::FanOut, push::ManagementApiPusher, topics::TopicRegistry};
use fhir_ws_fhirpath::FhirPath;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let (config, aws) = (DeliveryConfig::load(&ProcessEnv)?, fhir_ws_core::aws::load_sdk_config().await?);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let (subscriptions, bindings, counters) = config.dynamodb_stores(&dynamodb);
    let history_config = EventHistoryConfig::load(&ProcessEnv)?;
    let (history, relay) = (history_config.dynamodb(&dynamodb), history_config.upstream_relay(&ProcessEnv, &dynamodb)?);
    let (pusher, base) = (ManagementApiPusher::new(&aws), fhir_base_url(&ProcessEnv)?);
    let fanout = &FanOut::new(subscriptions, bindings, counters, history, pusher, &base)
        .with_relay(relay)
        .with_topics(TopicRegistry::deployed()?.clone(), Some(FhirPath::shared()));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(fanout.handle_batch(&event.payload, chrono::Utc::now()).await)
    }))
    .await
}
