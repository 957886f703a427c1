//! Lambda `relay`: `POST [base]/relay`, where other FHIR servers deliver their rest-hook
//! notifications; each event is queued for the fan-out. All logic lives in
//! `fhir_ws_core::relay`; this binary only wires configuration and clients.

use fhir_ws_core::config::{ProcessEnv, RelayConfig};
use fhir_ws_core::relay::sqs::SqsEventQueue;
use fhir_ws_core::relay::{Relay, RelayHandler};
use fhir_ws_core::secret::secrets_manager::SecretsManager;
use fhir_ws_core::store::dynamodb::DynamoUpstreamStore;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fhir_ws_core::logging::init(&fhir_ws_core::config::ProcessEnv);
    let aws = fhir_ws_core::aws::load_sdk_config().await?;
    let config = RelayConfig::load_with_secrets(&ProcessEnv, std::sync::Arc::new(SecretsManager::new(&aws))).await?;
    let ledger = DynamoUpstreamStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.upstream_table);
    let queue = SqsEventQueue::new(aws_sdk_sqs::Client::new(&aws), &config.events_queue_url);
    let handler = &RelayHandler::new(Relay::new(ledger, config.retention), queue, config.secrets);
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handler.handle(&request, chrono::Utc::now()).await)
    }))
    .await
}
