//! Lambda `heartbeat`: on an EventBridge schedule, sends heartbeats where due and
//! handshakes still owed (`fhir_ws_core::heartbeat`).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use fhir_ws_core::config::{DeliveryConfig, ProcessEnv};
use fhir_ws_core::heartbeat::Heartbeat;
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::store::dynamodb::{DynamoBindingStore, DynamoCounterStore, DynamoSubscriptionStore};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = DeliveryConfig::load(&ProcessEnv)?;
    let aws = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let heartbeat = &Heartbeat::new(
        DynamoSubscriptionStore::new(dynamodb.clone(), &config.subscriptions_table),
        DynamoBindingStore::new(dynamodb.clone(), &config.bindings_table),
        DynamoCounterStore::new(dynamodb, &config.counters_table),
        ManagementApiPusher::new(&aws),
    );
    run(service_fn(move |_: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        heartbeat.run(chrono::Utc::now()).await;
        Ok::<_, Error>(())
    }))
    .await
}
