//! Lambda `subscription-api`: the Subscription REST API (create, read, update, delete,
//! search) behind the HTTP API. All logic lives in `fhir_ws_core::ops::subscription_api`;
//! this binary only wires configuration and clients.

use fhir_ws_core::config::{ProcessEnv, SubscriptionApiConfig};
use fhir_ws_core::ops::subscription_api::SubscriptionApi;
use fhir_ws_core::store::dynamodb::DynamoSubscriptionStore;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = SubscriptionApiConfig::load(&ProcessEnv)?;
    let aws = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let subscriptions = DynamoSubscriptionStore::new(client, &config.subscriptions_table);
    let api = SubscriptionApi::new(subscriptions, &config);
    let api = &api;
    run(service_fn(
        move |request: Request| async move { Ok::<_, Error>(api.handle(&request, chrono::Utc::now()).await) },
    ))
    .await
}
