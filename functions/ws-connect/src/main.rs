//! Lambda `ws-connect`: the WebSocket API's `$connect` route. Accepts connections, and
//! with `?token=` verifies the token and binds before the upgrade completes. Logic:
//! `fhir_ws_core::ws::ConnectHandler`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use fhir_ws_core::config::{ProcessEnv, WebSocketConfig};
use fhir_ws_core::secret::secrets_manager::SecretsManager;
use fhir_ws_core::ws::{Binder, ConnectHandler};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let aws = fhir_ws_core::aws::load_sdk_config().await?;
    let config =
        WebSocketConfig::load_with_secrets(&ProcessEnv, std::sync::Arc::new(SecretsManager::new(&aws))).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let binder = Binder::on_dynamodb(&dynamodb, &config);
    let handler = &ConnectHandler::new(binder, config.management_endpoint, config.subprotocols)
        .with_allowed_origins(config.allowed_origins);
    run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        Ok::<_, Error>(handler.handle(&event.payload, chrono::Utc::now()).await)
    }))
    .await
}
