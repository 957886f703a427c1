//! [`SecretStore`] over AWS Secrets Manager (`GetSecretValue`), for the signing keys and
//! relay secrets read at runtime. Built only into the functions that read one (feature
//! `secrets`).

use std::future::Future;
use std::pin::Pin;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use super::SecretStore;

/// Reads secrets with one SDK client, built once per Lambda instance.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    /// A store using the shared SDK configuration (`AWS_ENDPOINT_URL_SECRETS_MANAGER`
    /// points it elsewhere, as in the emulator check).
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self { client: Client::new(config) }
    }
}

impl SecretStore for SecretsManager {
    fn secret_string<'a>(
        &'a self,
        secret_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let output = self
                .client
                .get_secret_value()
                .secret_id(secret_id)
                .send()
                .await
                .map_err(|e| DisplayErrorContext(&e).to_string())?;
            output.secret_string().map(str::to_owned).ok_or_else(|| format!("secret {secret_id} has no string value"))
        })
    }
}
