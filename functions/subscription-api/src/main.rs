//! Lambda `subscription-api`: the Subscription REST API (create, read, update, delete,
//! search), `$status`, `$events` and `metadata` behind the HTTP API. All logic lives in
//! `fhir_ws_core::ops`; this binary only wires configuration and clients.

use fhir_ws_core::config::{ProcessEnv, SubscriptionApiConfig};
use fhir_ws_core::ops::SubscriptionService;
use fhir_ws_core::push::ManagementApiPusher;
use fhir_ws_core::revocation::Revoker;
use fhir_ws_core::store::dynamodb::{
    DynamoBindingStore, DynamoCounterStore, DynamoEventStore, DynamoSubscriptionStore,
};
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let config = SubscriptionApiConfig::load(&ProcessEnv)?;
    let aws = fhir_ws_core::aws::load_sdk_config().await?;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let subscriptions = DynamoSubscriptionStore::new(client.clone(), &config.subscriptions_table);
    let counters = DynamoCounterStore::new(client.clone(), &config.counters_table);
    let events = DynamoEventStore::new(client.clone(), &config.events_table);
    let revoker = Revoker::new(DynamoBindingStore::new(client, &config.bindings_table), ManagementApiPusher::new(&aws));
    let service = &SubscriptionService::new(subscriptions, counters, events, std::sync::Arc::new(revoker), &config);
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(service.handle(&request, chrono::Utc::now()).await)
    }))
    .await
}
