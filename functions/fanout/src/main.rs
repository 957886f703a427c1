//! Lambda `fanout`: queued events become notification Bundles on bound connections, invalid
//! ones go to the dead-letter queue (`fhir_ws_core::fanout`); its future nests deeply.
#![recursion_limit = "256"]

use aws_lambda_events::sqs::SqsEvent;
use fhir_ws_core::config::{DeliveryConfig, EventHistoryConfig, EventsConfig, ProcessEnv, fhir_base_url};
use fhir_ws_core::fanout::FanOut;
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::wiring::{configure_fanout, event_history, upstream_relay};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let (config, events) = (DeliveryConfig::load(&ProcessEnv)?, EventsConfig::load(&ProcessEnv)?);
    let aws = fhir_ws_core::aws::load_sdk_config().await?;
    let (dynamodb, history) = (aws_sdk_dynamodb::Client::new(&aws), EventHistoryConfig::load(&ProcessEnv)?);
    let (subscriptions, bindings, counters) = config.dynamodb_stores(&dynamodb);
    let (relay, history) = (upstream_relay(&history, &ProcessEnv, &dynamodb)?, event_history(&history, &dynamodb));
    let (pusher, base) = (ManagementApiPusher::new(&aws), fhir_base_url(&ProcessEnv)?);
    let fanout = FanOut::new(subscriptions, bindings, counters, history, pusher, &base).with_relay(relay);
    let fanout = &configure_fanout(events, fanout, &aws, Some(fhir_ws_fhirpath::FhirPath::shared()));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(fanout.handle_batch(&event.payload, chrono::Utc::now()).await)
    }))
    .await
}
