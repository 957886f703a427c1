//! Lambda `ws-disconnect`: the WebSocket API's `$disconnect` route. Deletes the closed
//! connection's bindings. Logic: `fhir_ws_core::ws::disconnect`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use fhir_ws_core::config::{ProcessEnv, required};
use fhir_ws_core::store::dynamodb::DynamoBindingStore;
use fhir_ws_core::ws::disconnect;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let table = required(&ProcessEnv, "BINDINGS_TABLE")?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&fhir_ws_core::aws::load_sdk_config().await?);
    let bindings = &DynamoBindingStore::new(dynamodb, table);
    run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        Ok::<_, Error>(disconnect(bindings, &event.payload).await)
    }))
    .await
}
