//! DynamoDB adapter for the subscriptions and tokens tables.
//!
//! Table layout (the same as `template.yaml`):
//! - subscriptions: key `id` (S); GSI `byOwner` (`owner` S, `id` S, all attributes);
//!   attributes `owner`, `version` (N), `lastUpdated` (N, epoch milliseconds), `status`, `topic`, `channelType`
//!   and `resource` (the FHIR JSON text, so unknown elements survive untouched).
//! - tokens: key `tokenId` (S); `owner`, `subscriptionIds` (L of S), `keyId`,
//!   `issuedAt` (N), `expiresAt` (N, epoch seconds: the table's TTL attribute), `revoked` (BOOL).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::DateTime;

use super::{StoreError, StoredSubscription, SubscriptionStore, TokenRecord, TokenStore};
use crate::fhir::Subscription;

/// Name of the subscriptions table's owner index.
pub const OWNER_INDEX: &str = "byOwner";
/// Name of the tokens table's TTL attribute (Number, epoch seconds).
pub const TOKEN_TTL_ATTRIBUTE: &str = "expiresAt";

type Item = HashMap<String, AttributeValue>;

/// The subscriptions table. Cloning is cheap (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoSubscriptionStore {
    client: Client,
    table: String,
}

impl DynamoSubscriptionStore {
    /// The table named `table`, through `client` (built once per Lambda instance).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// The tokens table. Cloning is cheap (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoTokenStore {
    client: Client,
    table: String,
}

impl DynamoTokenStore {
    /// The table named `table`, through `client` (built once per Lambda instance).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// Maps an SDK error to the domain's error, keeping the detail for logs only.
fn classify<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.code() {
        Some("ConditionalCheckFailedException") => StoreError::Conflict,
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => StoreError::Throttled,
        _ => StoreError::Unavailable(DisplayErrorContext(&error).to_string()),
    }
}

fn string(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::Corrupt(format!(
            "attribute {name} is missing or not a string"
        ))),
    }
}

fn number(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not an integer"))),
        _ => Err(StoreError::Corrupt(format!(
            "attribute {name} is missing or not a number"
        ))),
    }
}

fn subscription_to_item(subscription: &StoredSubscription) -> Result<Item, StoreError> {
    let resource = subscription.resource();
    let json = serde_json::to_string(resource).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = Item::from([
        (
            "id".to_owned(),
            AttributeValue::S(subscription.id().to_owned()),
        ),
        (
            "owner".to_owned(),
            AttributeValue::S(subscription.owner().to_owned()),
        ),
        (
            "version".to_owned(),
            AttributeValue::N(subscription.version().to_string()),
        ),
        (
            "lastUpdated".to_owned(),
            AttributeValue::N(subscription.last_updated().timestamp_millis().to_string()),
        ),
        (
            "status".to_owned(),
            AttributeValue::S(subscription.status().code().to_owned()),
        ),
        ("resource".to_owned(), AttributeValue::S(json)),
    ]);
    if let Some(topic) = &resource.topic {
        item.insert("topic".to_owned(), AttributeValue::S(topic.clone()));
    }
    if let Some(code) = resource.channel_type.as_ref().and_then(|c| c.code.clone()) {
        item.insert("channelType".to_owned(), AttributeValue::S(code));
    }
    Ok(item)
}

fn subscription_from_item(item: &Item) -> Result<StoredSubscription, StoreError> {
    let resource: Subscription = serde_json::from_str(&string(item, "resource")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let version = u64::try_from(number(item, "version")?)
        .map_err(|_| StoreError::Corrupt("negative version".to_owned()))?;
    let last_updated = DateTime::from_timestamp_millis(number(item, "lastUpdated")?)
        .ok_or_else(|| StoreError::Corrupt("lastUpdated out of range".to_owned()))?;
    Ok(StoredSubscription::new(
        &string(item, "owner")?,
        version,
        last_updated,
        resource,
    ))
}

fn token_to_item(record: &TokenRecord) -> Item {
    Item::from([
        (
            "tokenId".to_owned(),
            AttributeValue::S(record.token_id.clone()),
        ),
        ("owner".to_owned(), AttributeValue::S(record.owner.clone())),
        (
            "subscriptionIds".to_owned(),
            AttributeValue::L(
                record
                    .subscription_ids
                    .iter()
                    .cloned()
                    .map(AttributeValue::S)
                    .collect(),
            ),
        ),
        ("keyId".to_owned(), AttributeValue::S(record.key_id.clone())),
        (
            "issuedAt".to_owned(),
            AttributeValue::N(record.issued_at.to_string()),
        ),
        (
            TOKEN_TTL_ATTRIBUTE.to_owned(),
            AttributeValue::N(record.expires_at.to_string()),
        ),
        ("revoked".to_owned(), AttributeValue::Bool(record.revoked)),
    ])
}

fn token_from_item(item: &Item) -> Result<TokenRecord, StoreError> {
    let subscription_ids = match item.get("subscriptionIds") {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::S(id) => Ok(id.clone()),
                _ => Err(StoreError::Corrupt(
                    "subscriptionIds holds a non-string".to_owned(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(StoreError::Corrupt("subscriptionIds is missing".to_owned())),
    };
    Ok(TokenRecord {
        token_id: string(item, "tokenId")?,
        owner: string(item, "owner")?,
        subscription_ids,
        key_id: string(item, "keyId")?,
        issued_at: number(item, "issuedAt")?,
        expires_at: number(item, TOKEN_TTL_ATTRIBUTE)?,
        revoked: matches!(item.get("revoked"), Some(AttributeValue::Bool(true))),
    })
}

impl SubscriptionStore for DynamoSubscriptionStore {
    async fn insert(&self, subscription: &StoredSubscription) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_to_item(subscription)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredSubscription>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        output.item.as_ref().map(subscription_from_item).transpose()
    }

    async fn replace(
        &self,
        subscription: &StoredSubscription,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_to_item(subscription)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify)?;
        Ok(output.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        let mut found = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(classify)?;
            for item in page.items() {
                found.push(subscription_from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }
}

impl TokenStore for DynamoTokenStore {
    async fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(token_to_item(record)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get_token(&self, token_id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("tokenId", AttributeValue::S(token_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        output.item.as_ref().map(token_from_item).transpose()
    }

    async fn revoke_token(&self, token_id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("tokenId", AttributeValue::S(token_id.to_owned()))
            .update_expression("SET revoked = :true")
            .condition_expression("attribute_exists(tokenId)")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await;
        match result.map_err(classify) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(other) => Err(other),
        }
    }
}
