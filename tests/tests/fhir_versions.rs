//! An R4 producer end to end through `fhir-ws serve` (real HTTP and WebSocket clients), on
//! the embedded store and against moto_server: a stack started with
//! `--event-fhir-version R4` and a topic written for R4 resources, R4, R4B and R5
//! `full-resource` subscribers, and
//! - R4 resource changes through the topic's query criteria and FHIRPath, and R4 events
//!   through its `filterBy` (`practitioner`), each next to the same resource read as R5,
//!   where the decision differs (`date` is `period` in R4 and `actualPeriod` in R5; the
//!   FHIRPath reads R4's `hospitalization`; `practitioner` is `participant.individual` in
//!   R4 and `participant.actor` in R5);
//! - relayed R4, R4B and R5 notification Bundles carrying an Encounter in their own shape;
//!
//! every frame checked by the validator of its subscriber's version, and each body in that
//! version: converted where fhir-ws converts the type exactly, a reference otherwise.

use fhir_ws_client::Status;
use fhir_ws_core::fhir::convert::convert;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_local::client::{Api, ClientError};
use fhir_ws_local::gateway::{LOCAL_RELAY_SECRET, Options};
use fhir_ws_tests::local::LocalStack;
use fhir_ws_tests::sockets::{next_after_handshakes, next_json, nothing_more};
use futures::SinkExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The local stack's FHIR base (`Options::default().fhir_base_url`).
const BASE: &str = "http://localhost:8080/fhir";
const UPSTREAM: &str = "https://upstream.example.org/fhir";

/// A topic written for R4 resources: an Encounter dated this year whose `hospitalization`
/// says how the patient was admitted; filterable by practitioner; notifications carry the
/// patient and practitioner from the event's context.
fn r4_topic(url: &str) -> Value {
    json!({
        "resourceType": "SubscriptionTopic",
        "url": url,
        "status": "active",
        "description": "An Encounter with an admission source starts in 2026 or later (R4 producer).",
        "resourceTrigger": [{
            "resource": "Encounter",
            "supportedInteraction": ["create", "update"],
            "queryCriteria": {"current": "date=ge2026-01-01"},
            "fhirPathCriteria": "%current.hospitalization.admitSource.exists()"
        }],
        "canFilterBy": [{"resource": "Encounter", "filterParameter": "practitioner"}],
        "notificationShape": [{"resource": "Encounter", "include": ["Encounter:patient", "Encounter:practitioner"]}]
    })
}

/// An R4 (and R4B) Encounter of `patient` with practitioner `doctor`.
fn r4_encounter(id: &str, patient: &str, doctor: &str) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": "arrived",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{doctor}")}}],
        "period": {"start": "2026-12-03T08:00:00Z"},
        "hospitalization": {"admitSource": {"text": "emergency department"}}})
}

/// The same Encounter as an R5 server writes it (through fhir-ws's own conversion, which
/// the unit tests check element by element).
fn r5_encounter(id: &str, patient: &str, doctor: &str) -> Value {
    let r4 = r4_encounter(id, patient, doctor);
    let converted = convert(r4.as_object().unwrap(), FhirVersion::R4, FhirVersion::R5).unwrap();
    Value::Object(converted)
}

/// The resources after the status entry, by type.
fn bodies(frame: &Value) -> Vec<(String, Value)> {
    frame["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| (e["resource"]["resourceType"].as_str().unwrap_or_default().to_owned(), e["resource"].clone()))
        .collect()
}

/// The event number and the references (focus, then context) of a notification in any
/// version's shape.
fn event_of(frame: &Value) -> (u64, Vec<String>) {
    let view = Status::of_bundle(frame).unwrap_or_else(|| panic!("not a notification: {frame}"));
    assert_eq!(view.kind, "event-notification", "{frame}");
    let status = &frame["entry"][0]["resource"];
    let references: Vec<String> = if status["resourceType"] == "Parameters" {
        let event = status["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "notification-event").unwrap();
        event["part"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "focus" || p["name"] == "additional-context")
            .map(|p| p["valueReference"]["reference"].as_str().unwrap().to_owned())
            .collect()
    } else {
        let event = &status["notificationEvent"][0];
        std::iter::once(&event["focus"])
            .chain(event["additionalContext"].as_array().into_iter().flatten())
            .filter_map(|r| r["reference"].as_str().map(str::to_owned))
            .collect()
    };
    let number =
        view.events.first().and_then(|e| e.event_number).unwrap_or_else(|| panic!("no event number in {frame}"));
    (number, references)
}

/// Checks one subscriber's event: its number, its version's validator, and that the
/// Encounter body it carries is in that version's shape.
fn check_encounter_event(version: FhirVersion, frame: &Value, number: u64) -> Vec<(String, Value)> {
    fhir_ws_tests::assert_valid_in(version, std::slice::from_ref(frame));
    assert_eq!(fhir_ws_tests::notification_version(frame), version, "{frame}");
    assert_eq!(event_of(frame).0, number, "{version:?}: {frame}");
    let bodies = bodies(frame);
    let encounter = &bodies.iter().find(|(kind, _)| kind == "Encounter").unwrap_or_else(|| panic!("{frame}")).1;
    match version {
        FhirVersion::R5 => {
            assert!(encounter["class"].is_array() && encounter.get("period").is_none(), "{encounter}");
            assert!(encounter["participant"][0]["actor"].is_object(), "{encounter}");
        }
        _ => {
            assert!(encounter["class"].is_object() && encounter.get("actualPeriod").is_none(), "{encounter}");
            assert!(encounter["participant"][0]["individual"].is_object(), "{encounter}");
        }
    }
    bodies
}

/// An upstream `full-resource` event-notification in `version`'s shape carrying `encounter`.
fn upstream_bundle(version: FhirVersion, subscription: &str, topic: &str, encounter: &Value) -> Value {
    let focus = format!("{UPSTREAM}/Encounter/{}", encounter["id"].as_str().unwrap());
    let timestamp = "2026-12-03T09:30:00Z";
    let status = match version {
        FhirVersion::R4 => json!({"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": subscription}},
            {"name": "topic", "valueCanonical": topic},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": "1"},
            {"name": "notification-event", "part": [
                {"name": "event-number", "valueString": "1"},
                {"name": "timestamp", "valueInstant": timestamp},
                {"name": "focus", "valueReference": {"reference": focus}}]}]}),
        _ => json!({"resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
            "eventsSinceSubscriptionStart": "1", "subscription": {"reference": subscription}, "topic": topic,
            "notificationEvent": [{"eventNumber": "1", "timestamp": timestamp, "focus": {"reference": focus}}]}),
    };
    let kind = if version == FhirVersion::R5 { "subscription-notification" } else { "history" };
    let bundle = json!({"resourceType": "Bundle", "type": kind, "timestamp": timestamp, "entry": [
        {"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": status,
         "request": {"method": "GET", "url": format!("{subscription}/$status")}, "response": {"status": "200"}},
        {"fullUrl": focus, "resource": encounter,
         "request": {"method": "PUT", "url": "Encounter"}, "response": {"status": "200"}}]});
    fhir_ws_tests::assert_valid_in(version, std::slice::from_ref(&bundle));
    bundle
}

async fn an_r4_producer_end_to_end(dynamodb: bool) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("http://example.org/FHIR/SubscriptionTopic/r4-admission-{run}");
    let folder = std::env::temp_dir().join(format!("fhir-ws-r4-topics-{run}"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("r4-admission.json"), r4_topic(&topic).to_string()).unwrap();
    let topics = fhir_ws_core::topics::TopicRegistry::from_folder(&folder, FhirVersion::R4).unwrap();
    let dynamodb_endpoint = dynamodb.then(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap());
    let stack = LocalStack::start(Options {
        dynamodb_endpoint,
        topics: Some(topics),
        event_fhir_version: FhirVersion::R4,
        ..Options::default()
    })
    .await;
    let (patient, doctor) = (format!("p-{run}"), format!("dr-{run}"));

    // R4, R4B and R5 full-resource subscribers filtered on this run's practitioner, and one
    // filtered on another practitioner.
    let mut subscribers = Vec::new();
    let filter = [format!("Encounter?practitioner=Practitioner/{doctor}")];
    for version in FhirVersion::ALL {
        let api = Api::new(&stack.base, "alice-token").in_version(version);
        let id = api.create_filtered_subscription(&topic, "full-resource", None, &filter).await.unwrap();
        subscribers.push((version, api, id));
    }
    let api = Api::new(&stack.base, "alice-token");
    let other = [format!("Encounter?practitioner=Practitioner/someone-else-{run}")];
    let other_id = api.create_filtered_subscription(&topic, "full-resource", None, &other).await.unwrap();
    let mut sockets = Vec::new();
    let bound: Vec<(&Api, &str)> =
        subscribers.iter().map(|(_, api, id)| (api, id.as_str())).chain([(&api, other_id.as_str())]).collect();
    for (api, id) in bound {
        let token = api.binding_token(id).await.unwrap();
        let (mut socket, _) = tokio_tungstenite::connect_async(token.websocket_url.as_str()).await.unwrap();
        socket.send(Message::text(format!("bind-with-token {}", token.token))).await.unwrap();
        assert_eq!(Status::of_bundle(&next_json(&mut socket).await).map(|v| v.kind), Some("handshake".to_owned()));
        sockets.push(socket);
    }
    let mut other_socket = sockets.pop().unwrap();

    // 1. An R4 resource change (the stack's event version) fires the topic: R4's `date` is
    //    `period`, its FHIRPath finds `hospitalization`, and R4's `practitioner` filter reads
    //    `participant.individual`.
    let encounter = r4_encounter(&format!("enc-{run}"), &patient, &doctor);
    let context = json!([{"resourceType": "Patient", "id": patient, "active": true},
        {"resourceType": "Practitioner", "id": doctor, "active": true}]);
    let change = json!({"interaction": "create", "resource": encounter, "additionalContext": context});
    api.notify(&change).await.unwrap();
    for ((version, _, _), socket) in subscribers.iter().zip(&mut sockets) {
        let frame = next_after_handshakes(socket).await;
        let bodies = check_encounter_event(*version, &frame, 1);
        let kinds: Vec<&str> = bodies.iter().map(|(kind, _)| kind.as_str()).collect();
        let (_, references) = event_of(&frame);
        assert_eq!(references.len(), 3, "focus, patient and practitioner: {frame}");
        match version {
            // The producer's own version: every body as sent.
            FhirVersion::R4 => {
                assert_eq!(kinds, ["Encounter", "Patient", "Practitioner"], "{frame}");
                assert_eq!(bodies[0].1, encounter, "the R4 body unchanged");
            }
            // Patient and Encounter convert exactly; a Practitioner is not converted by
            // fhir-ws, so it comes as its reference only (never in another version).
            _ => {
                assert_eq!(kinds, ["Encounter", "Patient"], "{version:?}: {frame}");
                assert_eq!(references[2], format!("{BASE}/Practitioner/{doctor}"), "{references:?}");
            }
        }
    }
    nothing_more(&mut other_socket, "another practitioner's subscriber gets nothing").await;

    // 2. The same resource read as R5 does not fire: R5's `date` reads `actualPeriod`.
    let mut as_r5 = change.clone();
    as_r5["fhirVersion"] = json!("R5");
    api.notify(&as_r5).await.unwrap();
    // 3. Its R5 rendering passes R5's `date` but not the FHIRPath, which reads R4's
    //    `hospitalization` (R5: `admission`): the expression runs on each resource as it is.
    let r5 = r5_encounter(&format!("enc-{run}"), &patient, &doctor);
    api.notify(&json!({"interaction": "create", "resource": r5, "fhirVersion": "R5"})).await.unwrap();
    // 4. An event naming the topic skips the triggers; its filter matches in R4 ...
    let named = json!({"topic": topic, "focus": encounter});
    api.notify(&named).await.unwrap();
    for ((version, _, _), socket) in subscribers.iter().zip(&mut sockets) {
        let frame = next_after_handshakes(socket).await;
        check_encounter_event(*version, &frame, 2);
    }
    // 5. ... and not when the same resource is read as R5 (`participant.actor`).
    let mut named_r5 = named.clone();
    named_r5["fhirVersion"] = json!("5.0.0");
    api.notify(&named_r5).await.unwrap();

    // 6. Relayed Bundles: R4, R4B and R5 upstream servers, each Encounter in its own shape.
    let upstream = Api::new(&stack.base, LOCAL_RELAY_SECRET);
    let r5_planned = {
        let mut r5 = r5_encounter(&format!("enc-planned-{run}"), &patient, &doctor);
        r5["plannedStartDate"] = json!("2026-12-04T08:00:00Z");
        r5
    };
    let relayed = [
        (FhirVersion::R4, r4_encounter(&format!("enc-r4-{run}"), &patient, &doctor)),
        (FhirVersion::R4B, r4_encounter(&format!("enc-r4b-{run}"), &patient, &doctor)),
        (FhirVersion::R5, r5_encounter(&format!("enc-r5-{run}"), &patient, &doctor)),
        // R4 and R4B have no `plannedStartDate`: they get the reference, not a changed body.
        (FhirVersion::R5, r5_planned),
    ];
    for (index, (upstream_version, encounter)) in relayed.iter().enumerate() {
        let subscription = format!("{UPSTREAM}/Subscription/up-{index}-{run}");
        let bundle = upstream_bundle(*upstream_version, &subscription, &topic, encounter);
        upstream.relay(&bundle, None).await.unwrap();
        let number = 3 + index as u64;
        for ((version, _, _), socket) in subscribers.iter().zip(&mut sockets) {
            let frame = next_after_handshakes(socket).await;
            if index == 3 && *version != FhirVersion::R5 {
                fhir_ws_tests::assert_valid_in(*version, std::slice::from_ref(&frame));
                let (got, references) = event_of(&frame);
                assert_eq!(got, number);
                assert!(bodies(&frame).is_empty(), "no body in another version: {frame}");
                assert_eq!(references, [format!("{UPSTREAM}/Encounter/enc-planned-{run}")]);
            } else {
                let bodies = check_encounter_event(*version, &frame, number);
                if *version == *upstream_version
                    || (*version != FhirVersion::R5 && *upstream_version != FhirVersion::R5)
                {
                    assert_eq!(&bodies[0].1, encounter, "{version:?} from {upstream_version:?}: as sent");
                }
            }
        }
    }
    for socket in &mut sockets {
        nothing_more(socket, "the R5 readings (2, 3, 5) were not delivered").await;
    }
    nothing_more(&mut other_socket, "another practitioner's subscriber gets nothing").await;

    // $events replays what each subscriber got, in its version.
    for (version, api, id) in &subscribers {
        let replayed = api.events(id, 1, 1).await.unwrap();
        assert_eq!(replayed.len(), 1, "{version:?}");
        fhir_ws_tests::assert_valid_in(*version, &replayed);
    }

    // An invalid event is answered 400 with what is wrong.
    let refused = api.notify(&json!({"topic": topic, "focus": encounter, "fhirVersion": "STU3"})).await;
    assert!(
        matches!(&refused, Err(ClientError::Refused { status: 400, message })
            if message.contains("OperationOutcome") && message.contains("fhirVersion")),
        "{refused:?}"
    );
    for mut socket in sockets.into_iter().chain([other_socket]) {
        socket.close(None).await.unwrap();
    }
    stack.stop().await;
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn an_r4_producer_reaches_r4_r4b_and_r5_subscribers_on_the_embedded_store() {
    an_r4_producer_end_to_end(false).await;
}

#[tokio::test]
async fn an_r4_producer_reaches_r4_r4b_and_r5_subscribers_against_moto_server() {
    an_r4_producer_end_to_end(true).await;
}
