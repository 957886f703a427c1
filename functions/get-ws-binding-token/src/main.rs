//! Lambda `get-ws-binding-token`: answers `Subscription/$get-ws-binding-token` (type and
//! instance level) and `Subscription/$revoke-ws-binding-token` behind the HTTP API. All
//! logic lives in `fhir_ws_core::ops::binding_token`; this binary only wires
//! configuration and clients.

use fhir_ws_core::config::{BindingTokenConfig, ProcessEnv};
use fhir_ws_core::ops::binding_token::BindingTokenOperation;
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::revocation::Revoker;
use fhir_ws_core::secret::secrets_manager::SecretsManager;
use fhir_ws_core::store::dynamodb::{DynamoBindingStore, DynamoSubscriptionStore, DynamoTokenStore};
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let aws = fhir_ws_core::aws::load_sdk_config().await?;
    let config =
        BindingTokenConfig::load_with_secrets(&ProcessEnv, std::sync::Arc::new(SecretsManager::new(&aws))).await?;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), &config.subscriptions_table);
    let tokens = DynamoTokenStore::new(client.clone(), &config.tokens_table);
    let revoker = Revoker::new(DynamoBindingStore::new(client, &config.bindings_table), ManagementApiPusher::new(&aws));
    let operation = &BindingTokenOperation::new(subscriptions, tokens, std::sync::Arc::new(revoker), &config);
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(operation.handle(&request, chrono::Utc::now()).await)
    }))
    .await
}
