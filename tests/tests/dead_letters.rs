//! Invalid events go to the dead-letter queue once, with their reason; events that fail
//! for a passing reason keep SQS's redelivery. On moto_server's SQS, with the events queue
//! and its dead-letter queue set up as `template.yaml` sets them (its redrive policy), the
//! fan-out driven the way Lambda's SQS event source mapping drives it: receive a batch,
//! hand it over, delete what was not reported failed.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use chrono::Utc;
use fhir_ws_core::fanout::dead_letter::SqsDeadLetterQueue;
use fhir_ws_tests::websocket::WsHarness;
use fhir_ws_tests::{memory_stores, memory_ws_stores, unique_principal, websocket_subscription};
use serde_json::{Value, json};

/// The events queue's `maxReceiveCount` in `template.yaml`.
fn template_max_receive_count() -> u64 {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let template: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    template["Resources"]["EventsQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap()
}

/// The events queue and its dead-letter queue in moto_server, with the template's redrive
/// policy; returns (client, events queue URL, dead-letter queue URL).
async fn queues() -> (aws_sdk_sqs::Client, String, String) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run through infra/test.sh");
    let config = fhir_ws_tests::sdk_loader().endpoint_url(endpoint).load().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let run = uuid::Uuid::new_v4().simple();
    let dead = client.create_queue().queue_name(format!("dead-{run}")).send().await.unwrap().queue_url.unwrap();
    let attributes = client
        .get_queue_attributes()
        .queue_url(&dead)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let arn = attributes.attributes.unwrap()[&QueueAttributeName::QueueArn].clone();
    let redrive = json!({"deadLetterTargetArn": arn, "maxReceiveCount": template_max_receive_count().to_string()});
    let events = client
        .create_queue()
        .queue_name(format!("events-{run}"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (client, events, dead)
}

/// One message as the SQS event source mapping hands it to Lambda.
fn record(message: &aws_sdk_sqs::types::Message) -> Value {
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795586400000"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:events",
        "awsRegion": "us-east-1",
    })
}

#[tokio::test]
async fn invalid_events_are_dead_lettered_once_with_their_reason_and_failures_are_redelivered() {
    let (sqs, events_queue, dead_queue) = queues().await;
    let mut ws = WsHarness::new(memory_stores(), memory_ws_stores()).await;
    ws.fanout = ws.fanout.with_dead_letters(Some(Arc::new(SqsDeadLetterQueue::new(sqs.clone(), &dead_queue))));

    // A subscriber that receives, and one whose connection keeps failing (500).
    let owner = unique_principal("alice");
    let topic = format!("http://example.org/topics/dead-letters-{}", uuid::Uuid::new_v4());
    let (_, receiving) = ws.subscribe(&owner, &websocket_subscription(&topic)).await;
    let failing_topic = format!("{topic}-failing");
    let (_, failing) = ws.subscribe(&owner, &websocket_subscription(&failing_topic)).await;
    ws.management.script(&failing, &[500; 64]);

    let invalid = json!({"topic": topic, "focus": {"resourceType": "Encounter"}}).to_string();
    let valid = json!({"topic": topic, "focus": {"reference": "Encounter/e1"}, "eventId": "valid-1"}).to_string();
    let stuck =
        json!({"topic": failing_topic, "focus": {"reference": "Encounter/e2"}, "eventId": "stuck-1"}).to_string();
    for body in [&invalid, &valid, &stuck] {
        sqs.send_message().queue_url(&events_queue).message_body(body).send().await.unwrap();
    }

    // Lambda's event source mapping: receive, invoke, delete the records not reported
    // failed; a failed record is received again (visibility timeout 0 here, for speed).
    let mut received: HashMap<String, u64> = HashMap::new();
    for _ in 0..20 {
        let output = sqs
            .receive_message()
            .queue_url(&events_queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap();
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in &messages {
            *received.entry(message.body().unwrap_or_default().to_owned()).or_default() += 1;
        }
        let batch = json!({"Records": messages.iter().map(record).collect::<Vec<_>>()});
        let batch: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(batch).unwrap();
        let answer = ws.fanout.handle_batch(&batch, Utc::now()).await;
        let failed: Vec<String> = answer.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        for message in messages.iter().filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id())) {
            let handle = message.receipt_handle().unwrap_or_default();
            sqs.delete_message().queue_url(&events_queue).receipt_handle(handle).send().await.unwrap();
        }
    }

    let max_receive_count = template_max_receive_count();
    assert_eq!(received.get(&invalid), Some(&1), "the invalid event is received once: {received:?}");
    assert_eq!(received.get(&valid), Some(&1), "{received:?}");
    assert_eq!(received.get(&stuck), Some(&max_receive_count), "a failing event keeps SQS's redelivery");
    let delivered: Vec<Value> = ws.frames(&receiving).into_iter().filter(|f| f.get("entry").is_some()).collect();
    let numbers: Vec<&str> = delivered
        .iter()
        .filter_map(|f| f["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"].as_str())
        .collect();
    assert_eq!(numbers, ["1"], "the valid event delivered once, the invalid one never");

    // The dead-letter queue: the invalid event once, as it was sent, with its reason; the
    // failing one moved there by the redrive policy, without one.
    let mut dead: Vec<aws_sdk_sqs::types::Message> = Vec::new();
    for _ in 0..5 {
        let output = sqs
            .receive_message()
            .queue_url(&dead_queue)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        dead.extend(output.messages.unwrap_or_default());
    }
    let bodies: Vec<&str> = dead.iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.iter().filter(|b| **b == invalid).count(), 1, "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| **b == stuck).count(), 1, "{bodies:?}");
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let attribute = |message: &aws_sdk_sqs::types::Message, name: &str| {
        message.message_attributes().and_then(|a| a.get(name)).and_then(|v| v.string_value()).map(str::to_owned)
    };
    let invalid_letter = dead.iter().find(|m| m.body() == Some(invalid.as_str())).unwrap();
    let reason = attribute(invalid_letter, "InvalidReason").unwrap_or_default();
    assert!(reason.contains("focus needs a valid id"), "{reason}");
    assert!(attribute(invalid_letter, "SourceMessageId").is_some_and(|id| !id.is_empty()));
    let stuck_letter = dead.iter().find(|m| m.body() == Some(stuck.as_str())).unwrap();
    assert_eq!(attribute(stuck_letter, "InvalidReason"), None, "a delivery failure is not an invalid event");
}
