//! The DynamoDB tables of `template.yaml`, created in a DynamoDB-compatible server when
//! they are missing, from the template's own definitions (so they cannot drift).
//! Each table is named after its logical id, e.g. `SubscriptionsTable`.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use serde_yaml::Value;

/// The deployable template, compiled in.
const TEMPLATE: &str = include_str!("../../template.yaml");

/// Why the tables could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// The template does not read as expected.
    #[error("template.yaml: {0}")]
    Template(String),
    /// The DynamoDB endpoint refused a call.
    #[error("DynamoDB: {0}")]
    DynamoDb(String),
}

fn text<'a>(value: &'a Value, key: &str) -> Result<&'a str, TablesError> {
    value.get(key).and_then(Value::as_str).ok_or_else(|| TablesError::Template(format!("missing {key}")))
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or_default()
}

fn key_schema(value: &Value) -> Result<Vec<KeySchemaElement>, TablesError> {
    list(value, "KeySchema")
        .iter()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(text(key, "AttributeName")?)
                .key_type(KeyType::from(text(key, "KeyType")?))
                .build()
                .map_err(|e| TablesError::Template(e.to_string()))
        })
        .collect()
}

/// Creates every `AWS::DynamoDB::Table` of the template that does not exist yet, with
/// its TTL setting; returns the names it created.
pub async fn ensure_tables(client: &Client) -> Result<Vec<String>, TablesError> {
    ensure_prefixed_tables(client, "").await
}

/// [`ensure_tables`] with every table name prefixed by `prefix` (e.g. `probe-1-`, giving
/// `probe-1-SubscriptionsTable`): a set of tables of its own for a test that must see
/// every write, on a server other tests share.
pub async fn ensure_prefixed_tables(client: &Client, prefix: &str) -> Result<Vec<String>, TablesError> {
    let template: Value = serde_yaml::from_str(TEMPLATE).map_err(|e| TablesError::Template(e.to_string()))?;
    let existing = client.list_tables().send().await.map_err(|e| TablesError::DynamoDb(e.to_string()))?;
    let existing = existing.table_names();
    let mut created = Vec::new();
    let resources = template.get("Resources").and_then(Value::as_mapping).cloned().unwrap_or_default();
    for (name, resource) in &resources {
        let (Some(logical_id), Some("AWS::DynamoDB::Table")) =
            (name.as_str(), resource.get("Type").and_then(Value::as_str))
        else {
            continue;
        };
        let name = &format!("{prefix}{logical_id}");
        if existing.iter().any(|t| t == name) {
            continue;
        }
        let props = resource.get("Properties").cloned().unwrap_or(Value::Null);
        let mut request = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&props)?));
        for attribute in list(&props, "AttributeDefinitions") {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(text(attribute, "AttributeName")?)
                    .attribute_type(ScalarAttributeType::from(text(attribute, "AttributeType")?))
                    .build()
                    .map_err(|e| TablesError::Template(e.to_string()))?,
            );
        }
        for index in list(&props, "GlobalSecondaryIndexes") {
            let projection = index.get("Projection").map(|p| text(p, "ProjectionType")).transpose()?.unwrap_or("ALL");
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(text(index, "IndexName")?)
                    .set_key_schema(Some(key_schema(index)?))
                    .projection(Projection::builder().projection_type(ProjectionType::from(projection)).build())
                    .build()
                    .map_err(|e| TablesError::Template(e.to_string()))?,
            );
        }
        request.send().await.map_err(|e| TablesError::DynamoDb(format!("creating {name}: {e}")))?;
        if let Some(ttl) = props.get("TimeToLiveSpecification")
            && ttl.get("Enabled").and_then(Value::as_bool) == Some(true)
        {
            let spec = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(text(ttl, "AttributeName")?)
                .build()
                .map_err(|e| TablesError::Template(e.to_string()))?;
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| TablesError::DynamoDb(format!("TTL on {name}: {e}")))?;
        }
        created.push(name.clone());
    }
    Ok(created)
}
