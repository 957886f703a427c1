//! Lambda `get-ws-binding-token`: answers `Subscription/$get-ws-binding-token` (type and
//! instance level) behind the HTTP API. All logic lives in
//! `fhir_ws_core::ops::binding_token`; this binary only wires configuration and clients.

use fhir_ws_core::config::{BindingTokenConfig, ProcessEnv};
use fhir_ws_core::ops::binding_token::BindingTokenOperation;
use fhir_ws_core::store::dynamodb::{DynamoSubscriptionStore, DynamoTokenStore};
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = BindingTokenConfig::load(&ProcessEnv)?;
    let aws = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), &config.subscriptions_table);
    let tokens = DynamoTokenStore::new(client, &config.tokens_table);
    let operation = BindingTokenOperation::new(subscriptions, tokens, &config);
    let operation = &operation;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(operation.handle(&request, chrono::Utc::now()).await)
    }))
    .await
}
