//! Lambda `ws-default`: the WebSocket API's `$default` route. Reads client frames (bind,
//! unbind, ping) and answers through the Management API (`fhir_ws_core::ws::MessageHandler`).

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use fhir_ws_core::config::{ProcessEnv, WebSocketConfig, required};
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::secret::secrets_manager::SecretsManager;
use fhir_ws_core::store::dynamodb::DynamoCounterStore;
use fhir_ws_core::ws::{Binder, MessageHandler};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let aws = fhir_ws_core::aws::load_sdk_config().await?;
    let config =
        WebSocketConfig::load_with_secrets(&ProcessEnv, std::sync::Arc::new(SecretsManager::new(&aws))).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let counters = DynamoCounterStore::new(dynamodb.clone(), required(&ProcessEnv, "COUNTERS_TABLE")?);
    let binder = Binder::on_dynamodb(&dynamodb, &config);
    let handler = &MessageHandler::new(binder, counters, ManagementApiPusher::new(&aws), config.management_endpoint);
    run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        Ok::<_, Error>(handler.handle(&event.payload, chrono::Utc::now()).await)
    }))
    .await
}
