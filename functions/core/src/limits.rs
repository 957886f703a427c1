//! The sizes of client-supplied values that this server stores or uses as a table key,
//! checked before any write, so that going over one is a 4xx answer naming the value
//! and never a DynamoDB refusal (a 500) half-way through.
//!
//! DynamoDB's own limits: a partition key (also of an index) at most 2,048 bytes, a
//! sort key at most 1,024 bytes, an item at most 400 KB. Ours are lower, so that every
//! key fits with room to spare and every item stays small:
//!
//! | value | limit | where it goes |
//! |---|---:|---|
//! | `Subscription.topic` (R4/R4B `criteria`), an upstream notification's topic | 1,024 bytes | partition key of the subscriptions table's topic index |
//! | the caller's principal claim | 256 bytes | the owner: partition key of the owner index |
//! | the caller's tenant claim | 256 bytes | part of the owner |
//! | `Subscription.endpoint`, upstream references | 2,048 bytes | stored |
//! | `filterBy` entries per Subscription | 50 | stored, evaluated per event |
//! | `filterBy.value` | 1,024 bytes | stored, compared per event |
//! | `filterBy.resourceType`, `filterParameter`, `modifier`, `comparator` | 128 bytes | stored |
//! | WebSocket connection id | 128 bytes | partition key of the bindings table (API Gateway's are 16) |
//!
//! Other limits live with what they guard: request bodies
//! ([`crate::http::MAX_BODY_BYTES`]), ids (FHIR's 64 characters, [`crate::fhir::is_valid_id`]),
//! event ids ([`crate::fanout`]), tokens ([`crate::token::MAX_TOKEN_LENGTH`]), subscriptions
//! per token ([`crate::ops::binding_token::MAX_SUBSCRIPTIONS_PER_TOKEN`]), WebSocket frames
//! ([`crate::ws::protocol::MAX_MESSAGE_BYTES`]) and recorded event resources
//! ([`crate::store::MAX_RECORDED_RESOURCE_BYTES`]).

/// Longest topic canonical URL, in bytes.
pub const MAX_TOPIC_BYTES: usize = 1024;
/// Longest principal claim, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 256;
/// Longest tenant claim, in bytes.
pub const MAX_TENANT_BYTES: usize = 256;
/// Longest endpoint URL or reference, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Most `filterBy` entries on one Subscription.
pub const MAX_FILTERS: usize = 50;
/// Longest `filterBy.value`, in bytes.
pub const MAX_FILTER_VALUE_BYTES: usize = 1024;
/// Longest `filterBy` name (`resourceType`, `filterParameter`, `modifier`, `comparator`), in bytes.
pub const MAX_FILTER_NAME_BYTES: usize = 128;
/// Longest WebSocket connection id, in bytes.
pub const MAX_CONNECTION_ID_BYTES: usize = 128;

// The owner (`<tenant length>:<tenant>/<principal>`) must stay a valid index key: checked
// when compiling, so a change to either limit cannot break it unnoticed.
const _: () = assert!(3 + 1 + MAX_TENANT_BYTES + 1 + MAX_PRINCIPAL_BYTES <= 2048);

/// `Ok` when `value` is at most `limit` bytes; else a message naming `what`.
pub fn within(what: &str, value: &str, limit: usize) -> Result<(), String> {
    if value.len() <= limit {
        Ok(())
    } else {
        Err(format!("{what} is {} bytes long; the limit is {limit}", value.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive_and_fit_dynamodb_keys() {
        assert_eq!(within("x", &"a".repeat(MAX_TOPIC_BYTES), MAX_TOPIC_BYTES), Ok(()));
        assert_eq!(
            within("Subscription.topic", &"a".repeat(MAX_TOPIC_BYTES + 1), MAX_TOPIC_BYTES),
            Err("Subscription.topic is 1025 bytes long; the limit is 1024".to_owned())
        );
        // Bytes, not characters: 600 two-byte characters are 1,200 bytes.
        assert!(within("x", &"é".repeat(600), MAX_TOPIC_BYTES).is_err());
    }
}
