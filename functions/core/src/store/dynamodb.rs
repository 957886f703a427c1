//! DynamoDB adapter for the subscriptions and tokens tables.
//!
//! Table layout (the same as `template.yaml`):
//! - subscriptions: key `id` (S); GSI `byOwner` (`owner` S, `id` S, all attributes);
//!   attributes `owner`, `version` (N), `lastUpdated` (N, epoch milliseconds), `status`, `topic`, `channelType`,
//!   `fhirVersion` (`R4`, `R4B` or `R5`; absent means R5), `resource` (the FHIR JSON text, in the R5
//!   model, so unknown elements survive untouched) and, in `smart` mode, `grant` (JSON text: the
//!   SMART scopes and launch patient it was created under).
//! - tokens: key `tokenId` (S); `owner`, `subscriptionIds` (L of S), `keyId`,
//!   `issuedAt` (N), `expiresAt` (N, epoch seconds: the table's TTL attribute), `revoked` (BOOL),
//!   and in `smart` mode `grant` (S, JSON: the scopes and patient presented when it was issued).
//! - bindings: key `connectionId` (S) + `subscriptionId` (S); GSI `bySubscription`
//!   (`subscriptionId`, `connectionId`, all attributes); `tokenId`, `owner`, `callbackUrl`,
//!   `boundAt`, `expiresAt` (TTL), `lastMessageAt` (N, epoch seconds), `handshakePending` (BOOL),
//!   `grant` (S, JSON, `smart` mode: its token's grant snapshot).
//!   Also `heartbeatPeriod` (N), and `dueShard` (S) + `heartbeatDueAt` (N, only while a
//!   heartbeat or handshake is due) keying the sparse GSI `byHeartbeatDue`.
//! - subscriptions also have GSI `byTopic` (`topic`, `id`, all attributes), `routeKey`
//!   (S: its bucket, [`crate::topics::route`]; absent means topic-wide) and, while
//!   `active`, `route` (S, topic + newline + bucket) and `routeUntil` (N, its end or
//!   [`super::ROUTE_FOREVER`]) keying the sparse GSI `byRoute`.
//! - counters: key `subscriptionId` (S); `events` (N), `lastEventAt` (N), and one
//!   `k:<event key>` (N) per recently numbered event, all changed by one conditional
//!   update so numbering is atomic and idempotent.
//! - events: key `subscriptionId` (S) + `eventNumber` (N); `timestamp` (S, FHIR instant),
//!   `focus` (S), `additionalContext` (L of S), `resources` (S, JSON array text, only
//!   when kept), `expiresAt` (N, epoch seconds: the TTL attribute). Written with a
//!   condition so the first record of a number wins.
//! - upstream: key `upstream` (S) + `eventNumber` (N). One row per upstream event claimed
//!   for queueing (`claimedAt` N, `queued` BOOL once confirmed, `expiresAt` TTL), and row
//!   number 0 per upstream subscription: `reference` (S), `reached` (N, highest number
//!   heard of) and `heardAt` (N, epoch seconds).

use crate::smart::subscription::KeptGrant;
use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use chrono::DateTime;

use super::{
    Binding, BindingStore, BindingsPage, CounterStore, DeliveryProgress, EventCounter, EventRecord, EventStore,
    PAGE_CLAIM_SECONDS, PageId, PageProgress, REMEMBERED_EVENT_KEYS, StoreError, StoredSubscription, SubscriptionStore,
    TokenRecord, TokenStore, UPSTREAM_CLAIM_SECONDS, UpstreamStore, heartbeat_shard,
};
use crate::fhir::Subscription;
use crate::fhir::version::FhirVersion;

/// Name of the subscriptions table's owner index.
pub const OWNER_INDEX: &str = "byOwner";
/// Name of the TTL attribute of the tokens and bindings tables (Number, epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// Name of the bindings table's index by subscription.
pub const SUBSCRIPTION_INDEX: &str = "bySubscription";
/// Name of the subscriptions table's index by topic.
pub const TOPIC_INDEX: &str = "byTopic";
/// Name of the subscriptions table's sparse routing index (`route`, `routeUntil`): only
/// `active` subscriptions carry those attributes ([`StoredSubscription::route_index`]).
pub const ROUTE_INDEX: &str = "byRoute";
/// Most items one query page asks for (DynamoDB stops at 1 MB anyway).
const QUERY_PAGE_ITEMS: usize = 1000;
/// Most routing-index queries of one event in flight at once.
const ROUTE_QUERIES_IN_FLIGHT: usize = 8;
/// Name of the bindings table's sparse index of heartbeat times (`dueShard`, `heartbeatDueAt`).
pub const HEARTBEAT_INDEX: &str = "byHeartbeatDue";
/// Prefix of the counter item's attributes that remember numbered event keys.
const EVENT_KEY_PREFIX: &str = "k:";
/// Every this many events, the counter item forgets keys older than the window.
const PRUNE_EVERY: u64 = 50;
/// Most items one BatchWriteItem call takes.
const BATCH_WRITE_LIMIT: usize = 25;
/// Attempts at writing a batch's unprocessed items before giving up as throttled.
const BATCH_WRITE_ATTEMPTS: u32 = 5;

type Item = HashMap<String, AttributeValue>;

/// Maps an SDK error to the domain's error, keeping the detail for logs only.
fn classify<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.code() {
        Some("ConditionalCheckFailedException") => StoreError::Conflict,
        Some("ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded") => {
            StoreError::Throttled
        }
        _ => StoreError::Unavailable(DisplayErrorContext(&error).to_string()),
    }
}

/// Runs a query to the end, following `LastEvaluatedKey` across pages.
async fn query_all(query: QueryFluentBuilder) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    let mut start_key: Option<Item> = None;
    loop {
        let page = query.clone().set_exclusive_start_key(start_key.take()).send().await.map_err(classify)?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start_key = Some(key),
            _ => return Ok(items),
        }
    }
}

fn string(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::Corrupt(format!("attribute {name} is missing or not a string"))),
    }
}

fn number(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => {
            value.parse().map_err(|_| StoreError::Corrupt(format!("attribute {name} is not an integer")))
        }
        _ => Err(StoreError::Corrupt(format!("attribute {name} is missing or not a number"))),
    }
}

fn subscription_to_item(subscription: &StoredSubscription) -> Result<Item, StoreError> {
    let resource = subscription.resource();
    let json = serde_json::to_string(resource).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = Item::from([
        ("id".to_owned(), AttributeValue::S(subscription.id().to_owned())),
        ("owner".to_owned(), AttributeValue::S(subscription.owner().to_owned())),
        ("version".to_owned(), AttributeValue::N(subscription.version().to_string())),
        ("lastUpdated".to_owned(), AttributeValue::N(subscription.last_updated().timestamp_millis().to_string())),
        ("status".to_owned(), AttributeValue::S(subscription.status().code().to_owned())),
        ("resource".to_owned(), AttributeValue::S(json)),
        ("fhirVersion".to_owned(), AttributeValue::S(subscription.fhir_version().path_segment().to_owned())),
    ]);
    if let Some(topic) = &resource.topic {
        item.insert("topic".to_owned(), AttributeValue::S(topic.clone()));
    }
    if let Some(code) = resource.channel_type.as_ref().and_then(|c| c.code.clone()) {
        item.insert("channelType".to_owned(), AttributeValue::S(code));
    }
    if let Some(grant) = subscription.grant() {
        let json = serde_json::to_string(grant).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.insert("grant".to_owned(), AttributeValue::S(json));
    }
    item.insert("routeKey".to_owned(), AttributeValue::S(subscription.route().to_owned()));
    if let Some((key, until)) = subscription.route_index() {
        item.insert("route".to_owned(), AttributeValue::S(key));
        item.insert("routeUntil".to_owned(), AttributeValue::N(until.to_string()));
    }
    Ok(item)
}

fn subscription_from_item(item: &Item) -> Result<StoredSubscription, StoreError> {
    let resource: Subscription =
        serde_json::from_str(&string(item, "resource")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let version =
        u64::try_from(number(item, "version")?).map_err(|_| StoreError::Corrupt("negative version".to_owned()))?;
    let last_updated = DateTime::from_timestamp_millis(number(item, "lastUpdated")?)
        .ok_or_else(|| StoreError::Corrupt("lastUpdated out of range".to_owned()))?;
    // Items written before versions were recorded are R5.
    let fhir_version = match item.get("fhirVersion") {
        None => FhirVersion::R5,
        Some(_) => FhirVersion::from_path_segment(&string(item, "fhirVersion")?)
            .ok_or_else(|| StoreError::Corrupt("fhirVersion is not R4, R4B or R5".to_owned()))?,
    };
    let grant = grant_of(item)?;
    // Items written before routing was recorded are in the topic-wide bucket.
    let route = match item.get("routeKey") {
        None => crate::topics::TOPIC_WIDE.to_owned(),
        Some(_) => string(item, "routeKey")?,
    };
    Ok(StoredSubscription::new(&string(item, "owner")?, version, last_updated, resource)
        .in_fhir_version(fhir_version)
        .with_grant(grant)
        .routed(route))
}

/// The `grant` attribute (JSON text) of an item, when it has one.
fn grant_of(item: &Item) -> Result<Option<KeptGrant>, StoreError> {
    match item.get("grant") {
        None => Ok(None),
        Some(_) => {
            serde_json::from_str(&string(item, "grant")?).map(Some).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
    }
}

/// Adds the `grant` attribute (JSON text) when there is one.
fn put_grant(item: &mut Item, grant: Option<&KeptGrant>) {
    if let Some(json) = grant.and_then(|g| serde_json::to_string(g).ok()) {
        item.insert("grant".to_owned(), AttributeValue::S(json));
    }
}

fn token_to_item(record: &TokenRecord) -> Item {
    let mut item = Item::from([
        ("tokenId".to_owned(), AttributeValue::S(record.token_id.clone())),
        ("owner".to_owned(), AttributeValue::S(record.owner.clone())),
        (
            "subscriptionIds".to_owned(),
            AttributeValue::L(record.subscription_ids.iter().cloned().map(AttributeValue::S).collect()),
        ),
        ("keyId".to_owned(), AttributeValue::S(record.key_id.clone())),
        ("issuedAt".to_owned(), AttributeValue::N(record.issued_at.to_string())),
        (TTL_ATTRIBUTE.to_owned(), AttributeValue::N(record.expires_at.to_string())),
        ("revoked".to_owned(), AttributeValue::Bool(record.revoked)),
    ]);
    put_grant(&mut item, record.grant.as_ref());
    item
}

fn token_from_item(item: &Item) -> Result<TokenRecord, StoreError> {
    let subscription_ids = match item.get("subscriptionIds") {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::S(id) => Ok(id.clone()),
                _ => Err(StoreError::Corrupt("subscriptionIds holds a non-string".to_owned())),
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
        expires_at: number(item, TTL_ATTRIBUTE)?,
        revoked: matches!(item.get("revoked"), Some(AttributeValue::Bool(true))),
        grant: grant_of(item)?,
    })
}

impl DynamoSubscriptionStore {
    /// Puts every subscription into its routing bucket for `topics` (the deployed ones):
    /// for a table written before the routing index, or after the deployed topics'
    /// `canFilterBy` changed. Each item is rewritten as it is (same version), only when
    /// its route or index attributes differ; one that changes meanwhile is left to its
    /// writer (which routes it). Returns (subscriptions read, rewritten). Needs
    /// `dynamodb:Scan` and `dynamodb:PutItem` on the table (an operator's credentials).
    pub async fn reindex(&self, topics: &crate::topics::TopicRegistry) -> Result<(usize, usize), StoreError> {
        let (mut read, mut rewritten) = (0, 0);
        let mut start_key: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(classify)?;
            for item in page.items.unwrap_or_default() {
                read += 1;
                let stored = subscription_from_item(&item)?;
                let routed = stored.clone().routed(topics.route_of(stored.resource()));
                if subscription_to_item(&routed)? == item {
                    continue;
                }
                match self.replace(&routed, stored.version()).await {
                    Ok(()) => rewritten += 1,
                    Err(StoreError::Conflict) => {}
                    Err(other) => return Err(other),
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => return Ok((read, rewritten)),
            }
        }
    }
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

    async fn replace(&self, subscription: &StoredSubscription, expected_version: u64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_to_item(subscription)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
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
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWNER_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()));
        query_all(query).await?.iter().map(subscription_from_item).collect()
    }

    async fn list_by_topic(&self, topic: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TOPIC_INDEX)
            .key_condition_expression("topic = :topic")
            .expression_attribute_values(":topic", AttributeValue::S(topic.to_owned()));
        query_all(query).await?.iter().map(subscription_from_item).collect()
    }

    async fn list_by_route(
        &self,
        topic: &str,
        routes: &[String],
        now: i64,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let mut queries = Vec::with_capacity(routes.len());
        for route in routes {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ROUTE_INDEX)
                .key_condition_expression("#route = :route AND routeUntil > :now")
                .expression_attribute_names("#route", "route")
                .expression_attribute_values(":route", AttributeValue::S(super::route_index_key(topic, route)))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
            queries.push(query_all(query));
        }
        let mut found = std::collections::BTreeMap::new();
        for items in crate::concurrency::bounded(queries, ROUTE_QUERIES_IN_FLIGHT).await {
            for item in items? {
                let subscription = subscription_from_item(&item)?;
                found.insert(subscription.id().to_owned(), subscription);
            }
        }
        Ok(found.into_values().collect())
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

/// Generates a table adapter: a client and a table name, cheap to clone.
macro_rules! table_adapter {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            client: Client,
            table: String,
        }

        impl $name {
            /// The table named `table`, through `client` (built once per Lambda instance).
            pub fn new(client: Client, table: impl Into<String>) -> Self {
                Self {
                    client,
                    table: table.into(),
                }
            }
        }
    };
}

table_adapter!(
    /// The subscriptions table.
    DynamoSubscriptionStore
);
table_adapter!(
    /// The tokens table.
    DynamoTokenStore
);
table_adapter!(
    /// The bindings table.
    DynamoBindingStore
);
table_adapter!(
    /// The counters table.
    DynamoCounterStore
);
table_adapter!(
    /// The events table.
    DynamoEventStore
);
table_adapter!(
    /// The upstream table (the relay's ledger).
    DynamoUpstreamStore
);

fn binding_to_item(binding: &Binding) -> Item {
    let mut item = Item::from([
        ("connectionId".to_owned(), AttributeValue::S(binding.connection_id.clone())),
        ("subscriptionId".to_owned(), AttributeValue::S(binding.subscription_id.clone())),
        ("tokenId".to_owned(), AttributeValue::S(binding.token_id.clone())),
        ("owner".to_owned(), AttributeValue::S(binding.owner.clone())),
        ("callbackUrl".to_owned(), AttributeValue::S(binding.callback_url.clone())),
        ("boundAt".to_owned(), AttributeValue::N(binding.bound_at.to_string())),
        (TTL_ATTRIBUTE.to_owned(), AttributeValue::N(binding.expires_at.to_string())),
        ("lastMessageAt".to_owned(), AttributeValue::N(binding.last_message_at.to_string())),
        ("handshakePending".to_owned(), AttributeValue::Bool(binding.handshake_pending)),
        ("dueShard".to_owned(), AttributeValue::S(heartbeat_shard(&binding.connection_id).to_string())),
    ]);
    if let Some(period) = binding.heartbeat_period {
        item.insert("heartbeatPeriod".to_owned(), AttributeValue::N(period.to_string()));
    }
    if let Some(due) = binding.heartbeat_due_at {
        item.insert("heartbeatDueAt".to_owned(), AttributeValue::N(due.to_string()));
    }
    put_grant(&mut item, binding.grant.as_ref());
    item
}

fn optional_number(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => number(item, name).map(Some),
    }
}

fn binding_from_item(item: &Item) -> Result<Binding, StoreError> {
    Ok(Binding {
        connection_id: string(item, "connectionId")?,
        subscription_id: string(item, "subscriptionId")?,
        token_id: string(item, "tokenId")?,
        owner: string(item, "owner")?,
        callback_url: string(item, "callbackUrl")?,
        bound_at: number(item, "boundAt")?,
        expires_at: number(item, TTL_ATTRIBUTE)?,
        last_message_at: number(item, "lastMessageAt")?,
        handshake_pending: matches!(item.get("handshakePending"), Some(AttributeValue::Bool(true))),
        heartbeat_period: optional_number(item, "heartbeatPeriod")?
            .map(|p| u32::try_from(p).map_err(|_| StoreError::Corrupt("heartbeatPeriod out of range".to_owned())))
            .transpose()?,
        heartbeat_due_at: optional_number(item, "heartbeatDueAt")?,
        grant: grant_of(item)?,
    })
}

impl DynamoBindingStore {
    /// Writes put or delete requests in batches of 25, retrying unprocessed items with
    /// a short growing pause; throttled if some are still unprocessed after that.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE_LIMIT) {
            let mut pending = chunk.to_vec();
            for attempt in 0..BATCH_WRITE_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                }
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(classify)?;
                pending = output.unprocessed_items.and_then(|mut items| items.remove(&self.table)).unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(StoreError::Throttled);
            }
        }
        Ok(())
    }

    fn key(connection_id: &str, subscription_id: &str) -> Item {
        Item::from([
            ("connectionId".to_owned(), AttributeValue::S(connection_id.to_owned())),
            ("subscriptionId".to_owned(), AttributeValue::S(subscription_id.to_owned())),
        ])
    }
}

impl BindingStore for DynamoBindingStore {
    async fn put_bindings(&self, bindings: &[Binding]) -> Result<(), StoreError> {
        let requests = bindings
            .iter()
            .map(|b| {
                PutRequest::builder()
                    .set_item(Some(binding_to_item(b)))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    async fn bindings_of_connection(&self, connection_id: &str) -> Result<Vec<Binding>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("connectionId = :c")
            .expression_attribute_values(":c", AttributeValue::S(connection_id.to_owned()))
            .consistent_read(true);
        query_all(query).await?.iter().map(binding_from_item).collect()
    }

    async fn bindings_of_subscription(&self, subscription_id: &str) -> Result<Vec<Binding>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(SUBSCRIPTION_INDEX)
            .key_condition_expression("subscriptionId = :s")
            .expression_attribute_values(":s", AttributeValue::S(subscription_id.to_owned()));
        query_all(query).await?.iter().map(binding_from_item).collect()
    }

    async fn bindings_page(
        &self,
        subscription_id: &str,
        after: Option<&str>,
        through: Option<&str>,
        limit: usize,
    ) -> Result<BindingsPage, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(SUBSCRIPTION_INDEX)
            .expression_attribute_values(":s", AttributeValue::S(subscription_id.to_owned()))
            .limit(i32::try_from(limit.saturating_add(1).min(QUERY_PAGE_ITEMS)).unwrap_or(i32::MAX));
        query = match through {
            Some(through) => query
                .key_condition_expression("subscriptionId = :s AND connectionId <= :through")
                .expression_attribute_values(":through", AttributeValue::S(through.to_owned())),
            None => query.key_condition_expression("subscriptionId = :s"),
        };
        let mut start_key = after.map(|after| Self::key(after, subscription_id));
        // One more than the page, to know whether another follows.
        let mut bindings = Vec::new();
        loop {
            let page = query.clone().set_exclusive_start_key(start_key.take()).send().await.map_err(classify)?;
            for item in page.items.unwrap_or_default() {
                if bindings.len() <= limit {
                    bindings.push(binding_from_item(&item)?);
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && bindings.len() <= limit => start_key = Some(key),
                _ => break,
            }
        }
        let more = bindings.len() > limit;
        bindings.truncate(limit);
        let next = more.then(|| bindings.last().map(|b: &Binding| b.connection_id.clone())).flatten();
        Ok(BindingsPage { bindings, next })
    }

    async fn delete_bindings(&self, connection_id: &str, token_id: Option<&str>) -> Result<usize, StoreError> {
        let bindings = self.bindings_of_connection(connection_id).await?;
        let Some(token_id) = token_id else {
            let requests = bindings
                .iter()
                .map(|b| {
                    DeleteRequest::builder()
                        .set_key(Some(Self::key(&b.connection_id, &b.subscription_id)))
                        .build()
                        .map(|delete| WriteRequest::builder().delete_request(delete).build())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.batch_write(requests).await?;
            return Ok(bindings.len());
        };
        let mut deleted = 0;
        for binding in bindings.iter().filter(|b| b.token_id == token_id) {
            // Conditional, so a rebind with another token between read and delete survives.
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(&binding.connection_id, &binding.subscription_id)))
                .condition_expression("tokenId = :t")
                .expression_attribute_values(":t", AttributeValue::S(token_id.to_owned()))
                .send()
                .await;
            match result.map_err(classify) {
                Ok(_) => deleted += 1,
                Err(StoreError::Conflict) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(deleted)
    }

    async fn delete_binding(
        &self,
        connection_id: &str,
        subscription_id: &str,
        token_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(connection_id, subscription_id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        if let Some(token_id) = token_id {
            request = request
                .condition_expression("tokenId = :t")
                .expression_attribute_values(":t", AttributeValue::S(token_id.to_owned()));
        }
        match request.send().await.map_err(classify) {
            Ok(output) => Ok(output.attributes().is_some_and(|a| !a.is_empty())),
            Err(StoreError::Conflict) => Ok(false),
            Err(other) => Err(other),
        }
    }

    async fn record_message(
        &self,
        connection_id: &str,
        subscription_id: &str,
        at: i64,
        next_heartbeat_due: Option<i64>,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(connection_id, subscription_id)))
            .condition_expression("attribute_exists(connectionId)")
            .expression_attribute_values(":at", AttributeValue::N(at.to_string()))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        let update = match next_heartbeat_due {
            Some(due) => update
                .update_expression("SET lastMessageAt = :at, handshakePending = :false, heartbeatDueAt = :due")
                .expression_attribute_values(":due", AttributeValue::N(due.to_string())),
            None => {
                update.update_expression("SET lastMessageAt = :at, handshakePending = :false REMOVE heartbeatDueAt")
            }
        };
        existed(update.send().await.map(|_| ()).map_err(classify))
    }

    async fn reschedule_heartbeat(
        &self,
        connection_id: &str,
        subscription_id: &str,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(connection_id, subscription_id)))
            .update_expression("SET heartbeatDueAt = :due")
            .condition_expression("attribute_exists(connectionId)")
            .expression_attribute_values(":due", AttributeValue::N(due_at.to_string()))
            .send()
            .await;
        existed(result.map(|_| ()).map_err(classify))
    }

    async fn due_for_heartbeat(&self, shard: u32, now: i64) -> Result<Vec<Binding>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(HEARTBEAT_INDEX)
            .key_condition_expression("dueShard = :shard AND heartbeatDueAt <= :now")
            .expression_attribute_values(":shard", AttributeValue::S(shard.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        query_all(query).await?.iter().map(binding_from_item).collect()
    }
}

/// A conditional write on an existing item: `Conflict` means the item was gone.
fn existed(result: Result<(), StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(other) => Err(other),
    }
}

impl DynamoCounterStore {
    fn key(subscription_id: &str) -> Item {
        Item::from([("subscriptionId".to_owned(), AttributeValue::S(subscription_id.to_owned()))])
    }

    /// The whole counter item (strongly consistent), if any.
    async fn item(&self, subscription_id: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(subscription_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(output.item)
    }

    /// Removes remembered event keys that fell out of the window ending at `latest`.
    async fn forget_old_keys(&self, subscription_id: &str, latest: u64) -> Result<(), StoreError> {
        let Some(item) = self.item(subscription_id).await? else { return Ok(()) };
        let oldest_kept = latest.saturating_sub(REMEMBERED_EVENT_KEYS);
        let stale: Vec<&String> = item
            .iter()
            .filter(|(name, value)| {
                name.starts_with(EVENT_KEY_PREFIX)
                    && matches!(value, AttributeValue::N(n) if n.parse::<u64>().is_ok_and(|n| n <= oldest_kept))
            })
            .map(|(name, _)| name)
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let mut update = self.client.update_item().table_name(&self.table).set_key(Some(Self::key(subscription_id)));
        let mut placeholders = Vec::with_capacity(stale.len());
        for (index, name) in stale.iter().enumerate() {
            let placeholder = format!("#k{index}");
            update = update.expression_attribute_names(&placeholder, name.as_str());
            placeholders.push(placeholder);
        }
        update.update_expression(format!("REMOVE {}", placeholders.join(", "))).send().await.map_err(classify)?;
        Ok(())
    }
}

impl CounterStore for DynamoCounterStore {
    async fn counter(&self, subscription_id: &str) -> Result<EventCounter, StoreError> {
        let Some(item) = self.item(subscription_id).await? else { return Ok(EventCounter::default()) };
        Ok(EventCounter {
            events: u64::try_from(number(&item, "events")?)
                .map_err(|_| StoreError::Corrupt("negative event count".to_owned()))?,
            last_event_at: optional_number(&item, "lastEventAt")?,
        })
    }

    async fn number_event(&self, subscription_id: &str, event_key: &str, at: i64) -> Result<u64, StoreError> {
        let key_attribute = format!("{EVENT_KEY_PREFIX}{event_key}");
        // One conditional update: count the event, stamp it, and remember its key with
        // its number. SET operands read the item as it was, so both get the same value.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(subscription_id)))
            .update_expression(
                "SET events = if_not_exists(events, :zero) + :one, lastEventAt = :at, \
                 #key = if_not_exists(events, :zero) + :one",
            )
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", &key_attribute)
            .expression_attribute_values(":zero", AttributeValue::N("0".to_owned()))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":at", AttributeValue::N(at.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(classify);
        match result {
            Ok(output) => {
                let attributes = output.attributes.unwrap_or_default();
                let number = u64::try_from(number(&attributes, "events")?)
                    .map_err(|_| StoreError::Corrupt("negative event count".to_owned()))?;
                if number % PRUNE_EVERY == 0 {
                    self.forget_old_keys(subscription_id, number).await?;
                }
                Ok(number)
            }
            // Numbered before (a redelivery): answer the number it got then.
            Err(StoreError::Conflict) => {
                let item = self.item(subscription_id).await?.unwrap_or_default();
                u64::try_from(number(&item, &key_attribute)?)
                    .map_err(|_| StoreError::Corrupt("negative event number".to_owned()))
            }
            Err(other) => Err(other),
        }
    }
}

fn event_to_item(record: &EventRecord) -> Result<Item, StoreError> {
    let mut item = Item::from([
        ("subscriptionId".to_owned(), AttributeValue::S(record.subscription_id.clone())),
        ("eventNumber".to_owned(), AttributeValue::N(record.event_number.to_string())),
        ("timestamp".to_owned(), AttributeValue::S(record.timestamp.clone())),
        (
            "additionalContext".to_owned(),
            AttributeValue::L(record.additional_context.iter().cloned().map(AttributeValue::S).collect()),
        ),
        (TTL_ATTRIBUTE.to_owned(), AttributeValue::N(record.expires_at.to_string())),
    ]);
    if let Some(focus) = &record.focus {
        item.insert("focus".to_owned(), AttributeValue::S(focus.clone()));
    }
    if let Some(resources) = &record.resources {
        let json = serde_json::to_string(resources).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.insert("resources".to_owned(), AttributeValue::S(json));
    }
    Ok(item)
}

fn event_from_item(item: &Item) -> Result<EventRecord, StoreError> {
    let additional_context = match item.get("additionalContext") {
        None => Vec::new(),
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::S(reference) => Ok(reference.clone()),
                _ => Err(StoreError::Corrupt("additionalContext holds a non-string".to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(StoreError::Corrupt("additionalContext is not a list".to_owned())),
    };
    let resources = match item.get("resources") {
        None => None,
        Some(AttributeValue::S(json)) => {
            Some(serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        }
        Some(_) => return Err(StoreError::Corrupt("resources is not a string".to_owned())),
    };
    Ok(EventRecord {
        subscription_id: string(item, "subscriptionId")?,
        event_number: u64::try_from(number(item, "eventNumber")?)
            .map_err(|_| StoreError::Corrupt("negative event number".to_owned()))?,
        timestamp: string(item, "timestamp")?,
        focus: item.get("focus").map(|_| string(item, "focus")).transpose()?,
        additional_context,
        resources,
        expires_at: number(item, TTL_ATTRIBUTE)?,
    })
}

impl EventStore for DynamoEventStore {
    async fn record_event(&self, record: &EventRecord) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(event_to_item(record)?))
            .condition_expression("attribute_not_exists(eventNumber)")
            .send()
            .await;
        match result.map_err(classify) {
            // Recorded before (a redelivery): the first record stands.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(other) => Err(other),
        }
    }

    async fn events(
        &self,
        subscription_id: &str,
        since: u64,
        until: u64,
        limit: usize,
        now: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        if since > until || limit == 0 {
            return Ok(Vec::new());
        }
        let page_size = i32::try_from(limit).unwrap_or(i32::MAX);
        // Strongly consistent (a base-table query), so an event numbered a moment ago is
        // already answered; expired rows TTL has not deleted yet are filtered out.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("subscriptionId = :s AND eventNumber BETWEEN :since AND :until")
            .filter_expression("#expires > :now")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":s", AttributeValue::S(subscription_id.to_owned()))
            .expression_attribute_values(":since", AttributeValue::N(since.to_string()))
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .consistent_read(true)
            .limit(page_size);
        let mut records = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let page = query.clone().set_exclusive_start_key(start_key.take()).send().await.map_err(classify)?;
            for item in page.items.unwrap_or_default() {
                if records.len() == limit {
                    return Ok(records);
                }
                records.push(event_from_item(&item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && records.len() < limit => start_key = Some(key),
                _ => return Ok(records),
            }
        }
    }
}

/// The events table's key of a delivery page's progress row: a partition of its own next
/// to the subscription's records (`<subscription>` newline `page` newline `<after>`), under
/// the event's number.
fn page_key(page: &PageId) -> Item {
    let partition = format!("{}\npage\n{}", page.subscription_id, page.after.as_deref().unwrap_or_default());
    Item::from([
        ("subscriptionId".to_owned(), AttributeValue::S(partition)),
        ("eventNumber".to_owned(), AttributeValue::N(page.event_number.to_string())),
    ])
}

impl DeliveryProgress for DynamoEventStore {
    async fn claim_page(&self, page: &PageId, now: i64, expires_at: i64) -> Result<Option<PageProgress>, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(page_key(page)))
            .update_expression("SET claimedAt = :now, #expires = :expires")
            .condition_expression("attribute_not_exists(eventNumber) OR claimedAt <= :stale")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":stale", AttributeValue::N((now - PAGE_CLAIM_SECONDS).to_string()))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify)?;
        let Some(old) = output.attributes.filter(|a| !a.is_empty()) else { return Ok(None) };
        let owed = match old.get("owed") {
            Some(AttributeValue::L(items)) => {
                items.iter().filter_map(|item| item.as_s().ok().cloned()).collect::<Vec<String>>()
            }
            _ => Vec::new(),
        };
        Ok(Some(PageProgress {
            next: old.get("next").and_then(|n| n.as_s().ok()).cloned(),
            finished: matches!(old.get("finished"), Some(AttributeValue::Bool(true))),
            owed,
        }))
    }

    async fn set_page_next(&self, page: &PageId, next: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(page_key(page)))
            .update_expression("SET #next = :next")
            .condition_expression("attribute_exists(eventNumber)")
            .expression_attribute_names("#next", "next")
            .expression_attribute_values(":next", AttributeValue::S(next.to_owned()))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn finish_page(&self, page: &PageId, owed: &[String]) -> Result<(), StoreError> {
        let owed = owed.iter().map(|c| AttributeValue::S(c.clone())).collect();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(page_key(page)))
            .update_expression("SET #finished = :yes, #owed = :owed, claimedAt = :unclaimed")
            .condition_expression("attribute_exists(eventNumber)")
            .expression_attribute_names("#finished", "finished")
            .expression_attribute_names("#owed", "owed")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":owed", AttributeValue::L(owed))
            .expression_attribute_values(":unclaimed", AttributeValue::N("0".to_owned()))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// The key of an upstream table row.
fn upstream_key(upstream: &str, number: u64) -> Item {
    Item::from([
        ("upstream".to_owned(), AttributeValue::S(upstream.to_owned())),
        ("eventNumber".to_owned(), AttributeValue::N(number.to_string())),
    ])
}

impl UpstreamStore for DynamoUpstreamStore {
    async fn claim_event(&self, upstream: &str, number: u64, now: i64, expires_at: i64) -> Result<bool, StoreError> {
        let mut item = upstream_key(upstream, number);
        item.insert("claimedAt".to_owned(), AttributeValue::N(now.to_string()));
        item.insert(TTL_ATTRIBUTE.to_owned(), AttributeValue::N(expires_at.to_string()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(eventNumber) OR (attribute_not_exists(queued) AND claimedAt < :stale)",
            )
            .expression_attribute_values(":stale", AttributeValue::N((now - UPSTREAM_CLAIM_SECONDS).to_string()))
            .send()
            .await;
        match result.map_err(classify) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(other) => Err(other),
        }
    }

    async fn confirm_event(&self, upstream: &str, number: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(upstream_key(upstream, number)))
            .update_expression("SET queued = :yes")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn release_event(&self, upstream: &str, number: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(upstream_key(upstream, number)))
            .condition_expression("attribute_not_exists(queued)")
            .send()
            .await;
        match result.map_err(classify) {
            // Confirmed meanwhile (a concurrent retry queued it): keep it.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(other) => Err(other),
        }
    }

    async fn heard_from(
        &self,
        upstream: &str,
        reference: &str,
        reached: Option<u64>,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let update = || {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(upstream_key(upstream, 0)))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .expression_attribute_values(":ref", AttributeValue::S(reference.to_owned()))
        };
        let before = |attributes: Option<Item>| -> Result<Option<u64>, StoreError> {
            let attributes = attributes.unwrap_or_default();
            // Upstream numbers span all of u64, past what `number` (i64) reads.
            match attributes.get("reached") {
                None => Ok(None),
                Some(AttributeValue::N(text)) => text
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt("reached is not a whole number".to_owned())),
                Some(_) => Err(StoreError::Corrupt("reached is not a number".to_owned())),
            }
        };
        if let Some(reached) = reached {
            // Raise `reached` only: a late retry of an older event must not lower it.
            let raised = update()
                .update_expression("SET heardAt = :now, #ref = :ref, reached = :reached")
                .condition_expression("attribute_not_exists(reached) OR reached < :reached")
                .expression_attribute_names("#ref", "reference")
                .expression_attribute_values(":reached", AttributeValue::N(reached.to_string()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await
                .map_err(classify);
            match raised {
                Ok(output) => return before(output.attributes),
                Err(StoreError::Conflict) => {}
                Err(other) => return Err(other),
            }
        }
        let output = update()
            .update_expression("SET heardAt = :now, #ref = :ref")
            .expression_attribute_names("#ref", "reference")
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify)?;
        before(output.attributes)
    }
}
