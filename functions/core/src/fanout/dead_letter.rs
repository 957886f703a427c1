//! Where the fan-out puts a message it can never deliver (not a valid event): straight
//! into the events queue's dead-letter queue, with the reason attached, instead of
//! having SQS receive it again until the redrive policy moves it there without a word.
//!
//! The message body is kept exactly as it was received. Message attributes:
//! `InvalidReason` (what is wrong, at most [`MAX_REASON_BYTES`]) and `SourceMessageId`
//! (the SQS message id it had on the events queue).

use std::future::Future;
use std::pin::Pin;

use crate::relay::QueueError;

/// Longest reason attached (SQS takes up to 256 KiB of attributes and body together; a
/// reason is a sentence).
pub const MAX_REASON_BYTES: usize = 1024;

/// The reason, cut at a character boundary to at most [`MAX_REASON_BYTES`].
pub fn bounded_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A dead-letter queue the fan-out writes invalid messages to.
pub trait DeadLetterQueue: Send + Sync + std::fmt::Debug {
    /// Puts `body` (message `message_id` of the events queue) into the dead-letter queue
    /// with `reason`; succeeds only when it is durably queued.
    fn dead_letter<'a>(
        &'a self,
        body: &'a str,
        message_id: &'a str,
        reason: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;
}

/// The dead-letter queue on SQS (`DEAD_LETTER_QUEUE_URL`).
#[cfg(feature = "sqs")]
#[derive(Debug, Clone)]
pub struct SqsDeadLetterQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

#[cfg(feature = "sqs")]
impl SqsDeadLetterQueue {
    /// The queue at `queue_url`, through `client` (built once per Lambda instance).
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

#[cfg(feature = "sqs")]
impl DeadLetterQueue for SqsDeadLetterQueue {
    fn dead_letter<'a>(
        &'a self,
        body: &'a str,
        message_id: &'a str,
        reason: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>> {
        use aws_sdk_sqs::error::DisplayErrorContext;
        use aws_sdk_sqs::types::MessageAttributeValue;
        Box::pin(async move {
            let text = |value: &str| {
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))
            };
            let mut request = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .message_attributes("InvalidReason", text(bounded_reason(reason))?);
            if !message_id.is_empty() {
                request = request.message_attributes("SourceMessageId", text(message_id)?);
            }
            request.send().await.map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded_reason(&long);
        assert!(cut.len() <= MAX_REASON_BYTES && cut.len() >= MAX_REASON_BYTES - 1 && cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded_reason("short"), "short");
    }
}
