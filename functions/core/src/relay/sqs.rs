//! The SQS adapter of [`EventQueue`]: `SendMessageBatch`, ten messages per call, with the
//! entries SQS reports failed sent once more before the whole call counts as failed.
//! Built only with the `sqs` feature (the `relay` function and the tests).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::{EventQueue, QueueError};

/// Most entries one `SendMessageBatch` call takes.
const BATCH_LIMIT: usize = 10;
/// Calls per batch: the first, and one more for entries SQS reported failed.
const ATTEMPTS: usize = 2;

/// The events queue on SQS.
#[derive(Debug, Clone)]
pub struct SqsEventQueue {
    client: Client,
    queue_url: String,
}

impl SqsEventQueue {
    /// The queue at `queue_url`, through `client` (built once per Lambda instance).
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    /// Sends one batch; returns the bodies SQS reported failed.
    async fn send<'a>(&self, bodies: Vec<&'a String>) -> Result<Vec<&'a String>, QueueError> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(index, body)| {
                SendMessageBatchRequestEntry::builder().id(format!("e{index}")).message_body(*body).build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError(e.to_string()))?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
        let failed: Vec<&'a String> = output
            .failed
            .iter()
            .filter_map(|entry| entry.id.strip_prefix('e').and_then(|i| i.parse::<usize>().ok()))
            .filter_map(|index| bodies.get(index).copied())
            .collect();
        Ok(failed)
    }
}

impl EventQueue for SqsEventQueue {
    async fn enqueue(&self, bodies: &[String]) -> Result<(), QueueError> {
        for chunk in bodies.chunks(BATCH_LIMIT) {
            let mut pending: Vec<&String> = chunk.iter().collect();
            for _ in 0..ATTEMPTS {
                pending = self.send(pending).await?;
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(QueueError(format!("SQS refused {} message(s)", pending.len())));
            }
        }
        Ok(())
    }
}
