//! Lambda `heartbeat`: on an EventBridge schedule, sends heartbeats where due and
//! handshakes still owed (`fhir_ws_core::heartbeat`).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use fhir_ws_core::config::{DeliveryConfig, ProcessEnv};
use fhir_ws_core::heartbeat::Heartbeat;
use fhir_ws_core::push::ManagementApiPusher;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let config = DeliveryConfig::load(&ProcessEnv)?;
    let aws = fhir_ws_core::aws::load_sdk_config().await?;
    let (subscriptions, bindings, counters) = config.dynamodb_stores(&aws_sdk_dynamodb::Client::new(&aws));
    let heartbeat = &Heartbeat::new(subscriptions, bindings, counters, ManagementApiPusher::new(&aws));
    run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        heartbeat.handle(&event.payload, chrono::Utc::now()).await;
        Ok::<_, Error>(())
    }))
    .await
}
