//! The R4 and R4B (Subscriptions Backport IG) edges of the core: notification Bundles in
//! the IG's shapes and the IG's Subscription profile to and from the R5 model. Checked by
//! the independent R4 (fhir.resources 6.1.0) and R4B validators, by explicit assertions
//! for the IG's rules (which the models do not check: codes, profiles, parameter names and
//! value types, `request` on every entry), and against the IG's own examples
//! (`r4-notification-handshake`, `subscription-admission`).

use chrono::{DateTime, Utc};
use fhir_ws_core::fhir::Subject;
use fhir_ws_core::fhir::backport::{to_r4, to_r4b};
use fhir_ws_core::fhir::{ContentLevel, NotificationType, Subscription};
use fhir_ws_core::notification::{EventContent, event_notification, event_record, status_notification};
use fhir_ws_core::store::StoredSubscription;
use fhir_ws_tests::ig::{R4_NOTIFICATION_PROFILE, R4_STATUS_PROFILE, R4B_NOTIFICATION_PROFILE};
use fhir_ws_tests::{assert_valid_r4, assert_valid_r4b, websocket_subscription};
use serde_json::{Map, Value, json};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn stored(status: &str) -> StoredSubscription {
    let mut resource = websocket_subscription("http://hl7.org/SubscriptionTopic/admission");
    resource["id"] = json!("admission");
    resource["status"] = json!(status);
    let resource: Subscription = serde_json::from_value(resource).unwrap();
    StoredSubscription::new("alice", 1, now(), resource)
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

/// An event-notification Bundle for event 2 at `level`. The focus is an R4/R4B Encounter
/// (`class` is a required Coding there): producers feeding R4 clients send R4 resources.
fn event_bundle(level: ContentLevel) -> fhir_ws_core::fhir::Bundle {
    let focus = Subject::Resource(object(json!({"resourceType": "Encounter", "id": "86009987",
        "status": "in-progress", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}})));
    let context = [Subject::Resource(object(json!({"resourceType": "Patient", "id": "p1"})))];
    let content = EventContent {
        focus: Some(&focus),
        additional_context: &context,
        timestamp: now(),
        fhir_base_url: "https://example.org/fhir",
    };
    let record = event_record("admission", 2, content, 0);
    event_notification(&stored("active"), &record, level, now())
}

/// `(name, value[x] key)` of each parameter (or part), in order.
fn shape(parameters: &Value) -> Vec<(String, String)> {
    parameters
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            let key = p.as_object().and_then(|o| o.keys().find(|k| *k != "name").cloned()).unwrap_or_default();
            (name, key)
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(n, k)| ((*n).to_owned(), (*k).to_owned())).collect()
}

/// The IG's rules for every R4 notification Bundle.
fn assert_r4_notification(bundle: &Value) {
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["meta"]["profile"][0], R4_NOTIFICATION_PROFILE);
    let status = &bundle["entry"][0]["resource"];
    assert_eq!(status["resourceType"], "Parameters", "backport-notification-bundle-r4-1");
    assert_eq!(status["meta"]["profile"][0], R4_STATUS_PROFILE);
    assert_eq!(bundle["entry"][0]["request"], json!({"method": "GET", "url": "Subscription/admission/$status"}));
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        assert!(entry["request"]["method"].is_string() && entry["request"]["url"].is_string(), "bdl-3: {entry}");
        assert!(entry["response"]["status"].is_string(), "bdl-4: {entry}");
    }
}

#[test]
fn an_r4_handshake_has_the_shape_of_the_igs_example() {
    // The IG's example `r4-notification-handshake` (digest 2.4), as published.
    let example = json!({"resourceType": "Bundle", "id": "r4-notification-handshake",
      "meta": {"profile": [R4_NOTIFICATION_PROFILE]}, "type": "history", "timestamp": "2020-05-29T11:44:13.1882432-05:00",
      "entry": [{"fullUrl": "urn:uuid:63c28e8a-0000-0000-0000-000000000000",
        "resource": {"resourceType": "Parameters", "id": "63c28e8a", "meta": {"profile": [R4_STATUS_PROFILE]},
          "parameter": [
            {"name": "subscription", "valueReference": {"reference": "https://example.org/fhir/Subscription/admission"}},
            {"name": "topic", "valueCanonical": "http://hl7.org/SubscriptionTopic/admission"},
            {"name": "status", "valueCode": "requested"},
            {"name": "type", "valueCode": "handshake"},
            {"name": "events-since-subscription-start", "valueString": "0"}]},
        "request": {"method": "GET", "url": "https://example.org/fhir/Subscription/admission/$status"},
        "response": {"status": "200"}}]});
    let ours =
        to_r4(&status_notification(NotificationType::Handshake, &stored("active"), 0, now()), ContentLevel::IdOnly)
            .unwrap();
    assert_r4_notification(&ours);
    let parameters = &ours["entry"][0]["resource"]["parameter"];
    assert_eq!(shape(parameters), shape(&example["entry"][0]["resource"]["parameter"]));
    assert_eq!(parameters[2]["valueCode"], "active", "websocket subscriptions are active when bound");
    assert_eq!(parameters[3]["valueCode"], "handshake");
    assert_eq!(parameters[4]["valueString"], "0");
    assert_eq!(ours["entry"][0]["response"], example["entry"][0]["response"]);
    assert_valid_r4(&[example, ours]);
}

#[test]
fn r4_event_notifications_follow_the_payload_rules() {
    let full = to_r4(&event_bundle(ContentLevel::FullResource), ContentLevel::FullResource).unwrap();
    let id_only = to_r4(&event_bundle(ContentLevel::IdOnly), ContentLevel::IdOnly).unwrap();
    let empty = to_r4(&event_bundle(ContentLevel::Empty), ContentLevel::Empty).unwrap();
    for bundle in [&full, &id_only, &empty] {
        assert_r4_notification(bundle);
    }
    let parameters = &full["entry"][0]["resource"]["parameter"];
    assert_eq!(
        shape(parameters),
        pairs(&[
            ("subscription", "valueReference"),
            ("topic", "valueCanonical"),
            ("status", "valueCode"),
            ("type", "valueCode"),
            ("events-since-subscription-start", "valueString"),
            ("notification-event", "part"),
        ])
    );
    assert_eq!(parameters[3]["valueCode"], "event-notification");
    assert_eq!(parameters[4]["valueString"], "2");
    let parts = &parameters[5]["part"];
    assert_eq!(
        shape(parts),
        pairs(&[
            ("event-number", "valueString"),
            ("timestamp", "valueInstant"),
            ("focus", "valueReference"),
            ("additional-context", "valueReference"),
        ])
    );
    assert_eq!(parts[0]["valueString"], "2");
    assert_eq!(parts[2]["valueReference"]["reference"], "https://example.org/fhir/Encounter/86009987");
    // full-resource: the resources follow, each with fullUrl, request and response.
    let entries = full["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1]["fullUrl"], "https://example.org/fhir/Encounter/86009987");
    assert_eq!(entries[1]["resource"]["resourceType"], "Encounter");
    // id-only: focus set, no resource entries. empty: no topic, no focus or context.
    assert_eq!(id_only["entry"].as_array().map(Vec::len), Some(1));
    assert!(shape(&id_only["entry"][0]["resource"]["parameter"][5]["part"]).iter().any(|(n, _)| n == "focus"));
    let empty_parameters = &empty["entry"][0]["resource"]["parameter"];
    assert!(shape(empty_parameters).iter().all(|(n, _)| n != "topic"), "topic SHOULD NOT appear for empty");
    assert_eq!(
        shape(&empty_parameters[4]["part"]),
        pairs(&[("event-number", "valueString"), ("timestamp", "valueInstant")])
    );
    assert_valid_r4(&[full, id_only, empty]);
}

#[test]
fn r4b_notifications_carry_an_r4b_subscription_status() {
    let handshake =
        to_r4b(&status_notification(NotificationType::Handshake, &stored("active"), 3, now()), ContentLevel::IdOnly)
            .unwrap();
    let event = to_r4b(&event_bundle(ContentLevel::FullResource), ContentLevel::FullResource).unwrap();
    for bundle in [&handshake, &event] {
        assert_eq!(bundle["type"], "history");
        assert_eq!(bundle["meta"]["profile"][0], R4B_NOTIFICATION_PROFILE);
        assert_eq!(
            bundle["entry"][0]["resource"]["resourceType"], "SubscriptionStatus",
            "backport-notification-bundle-1"
        );
        assert!(
            bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| e["request"].is_object() && e["response"].is_object())
        );
    }
    assert_eq!(handshake["entry"][0]["resource"]["eventsSinceSubscriptionStart"], "3");
    let status = &event["entry"][0]["resource"];
    assert_eq!(status["type"], "event-notification");
    assert_eq!(status["notificationEvent"][0]["eventNumber"], "2", "a string in R4B");
    assert_eq!(event["entry"].as_array().map(Vec::len), Some(3));
    assert_valid_r4b(&[handshake, event]);
}

#[test]
fn statuses_r4_and_r4b_lack_are_shown_as_off() {
    let bundle = status_notification(NotificationType::Heartbeat, &stored("entered-in-error"), 0, now());
    let r4 = to_r4(&bundle, ContentLevel::IdOnly).unwrap();
    assert_eq!(r4["entry"][0]["resource"]["parameter"][2], json!({"name": "status", "valueCode": "off"}));
    assert_eq!(to_r4b(&bundle, ContentLevel::IdOnly).unwrap()["entry"][0]["resource"]["status"], "off");
    let mut not_a_notification = bundle.clone();
    not_a_notification.entry.clear();
    assert!(to_r4(&not_a_notification, ContentLevel::IdOnly).is_err());
}

/// The IG's example Subscription `subscription-admission` on the websocket channel (digest
/// 2.2), plus elements this server does not model, which must come back unchanged.
fn r4_websocket_subscription() -> Value {
    let ig = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
    json!({
        "resourceType": "Subscription",
        "id": "admission",
        "status": "requested",
        "reason": "Patient admissions",
        "contact": [{"system": "email", "value": "ward4@example.org"}],
        "end": "2027-01-01T00:00:00Z",
        "criteria": "http://hl7.org/SubscriptionTopic/admission",
        "_criteria": {"extension": [
            {"url": format!("{ig}/backport-filter-criteria"), "valueString": "Encounter?patient=Patient/123"}]},
        "channel": {
            "extension": [
                {"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "kept"},
                {"url": format!("{ig}/backport-heartbeat-period"), "valueUnsignedInt": 60},
                {"url": format!("{ig}/backport-timeout"), "valueUnsignedInt": 60},
                {"url": format!("{ig}/backport-max-count"), "valuePositiveInt": 20}],
            "type": "websocket",
            "header": ["X-Ward: 4"],
            "payload": "application/fhir+json;fhirVersion=4.0",
            "_payload": {"extension": [{"url": format!("{ig}/backport-payload-content"), "valueCode": "id-only"}]}
        }
    })
}

#[test]
fn r4_subscriptions_map_to_the_r5_model_and_back_unchanged() {
    use fhir_ws_core::fhir::backport::subscription::{subscription_from_r4, subscription_to_r4};
    let sent = r4_websocket_subscription();
    let model = subscription_from_r4(sent.clone()).unwrap();
    assert!(model.is_websocket());
    assert_eq!(model.validate(), Ok(()), "what the R5 rules check holds for it too");
    assert_eq!(model.topic.as_deref(), Some("http://hl7.org/SubscriptionTopic/admission"));
    assert_eq!(model.filter_by.len(), 1);
    assert_eq!(model.filter_by[0].resource_type.as_deref(), Some("Encounter"));
    assert_eq!(model.filter_by[0].filter_parameter.as_deref(), Some("patient"));
    assert_eq!(model.filter_by[0].value.as_deref(), Some("Patient/123"));
    assert_eq!(model.content, Some(ContentLevel::IdOnly));
    assert_eq!((model.heartbeat_period, model.timeout, model.max_count), (Some(60), Some(60), Some(20)));
    assert_eq!(model.content_type.as_deref(), Some("application/fhir+json;fhirVersion=4.0"));
    assert_eq!(model.end.as_deref(), Some("2027-01-01T00:00:00Z"));
    let back = subscription_to_r4(&model);
    assert_eq!(back, sent, "a round trip changes nothing");
    assert_valid_r4(&[sent.clone(), back.clone()]);
    assert_valid_r4b(&[back]);

    // What R4 requires, and what the IG's extensions must hold, is checked.
    for (broken, expected) in [("reason", "reason"), ("criteria", "criteria"), ("channel", "channel")] {
        let mut resource = sent.clone();
        resource.as_object_mut().unwrap().remove(broken);
        let error = subscription_from_r4(resource).err().unwrap_or_default();
        assert!(error.contains(expected), "{broken}: {error}");
    }
    let mut bad_content = sent.clone();
    bad_content["channel"]["_payload"]["extension"][0]["valueCode"] = json!("everything");
    assert!(subscription_from_r4(bad_content).is_err());
    let mut bad_filter = sent.clone();
    bad_filter["_criteria"]["extension"][0]["valueString"] = json!("patient=123");
    assert!(subscription_from_r4(bad_filter).is_err());
    let mut no_type = sent;
    no_type["channel"].as_object_mut().unwrap().remove("type");
    assert!(subscription_from_r4(no_type).err().unwrap_or_default().contains("channel.type"));
}

/// One connection bound to subscriptions created in R4, R4B and R5: every frame comes in
/// its subscription's version (the handshakes and one event), whatever the store.
async fn one_socket_three_versions<
    S: fhir_ws_tests::Backend,
    T: fhir_ws_tests::TokenBackend,
    B: fhir_ws_core::store::BindingStore + Clone + 'static,
    C: fhir_ws_core::store::CounterStore + Clone,
    E: fhir_ws_core::store::EventStore + Clone,
>(
    stores: fhir_ws_tests::Stores<S, T>,
    ws_stores: fhir_ws_tests::websocket::WsStores<B, C, E>,
) {
    use fhir_ws_core::fhir::backport::subscription::subscription_from_r4;
    use fhir_ws_core::fhir::version::FhirVersion;
    use fhir_ws_tests::websocket::{SqsBatch, WsHarness};

    let ws = WsHarness::new(stores, ws_stores).await;
    let owner = fhir_ws_tests::unique_principal("alice");
    let topic = format!("http://example.org/fhir/SubscriptionTopic/versions-{}", uuid::Uuid::new_v4());
    let mut ids = Vec::new();
    for version in [FhirVersion::R4, FhirVersion::R4B] {
        let mut resource = r4_websocket_subscription();
        resource["criteria"] = json!(topic);
        resource["_criteria"] = json!({});
        resource["channel"]["_payload"]["extension"][0]["valueCode"] = json!("full-resource");
        let mut model = subscription_from_r4(resource).unwrap();
        let id = fhir_ws_core::fhir::new_id();
        model.id = Some(id.clone());
        model.status = Some(fhir_ws_core::fhir::SubscriptionState::Active);
        model.end = None;
        let stored = StoredSubscription::new(&owner, 1, Utc::now(), model).in_fhir_version(version);
        ws.app.stores.subscriptions.insert(&stored).await.unwrap();
        assert_eq!(ws.app.stores.subscriptions.get(&id).await.unwrap().map(|s| s.fhir_version()), Some(version));
        ids.push(id);
    }
    let mut r5 = websocket_subscription(&topic);
    r5["content"] = json!("full-resource");
    ids.push(ws.app.create(&owner, &r5).await);
    let token = ws.token(&owner, &ids).await;
    let connection = ws.bound_connection(&token).await;
    let patient = json!({"resourceType": "Patient", "id": "p1", "active": true});
    let event = json!({"topic": topic, "focus": patient, "timestamp": "2026-11-27T06:30:00Z"});
    assert!(ws.fan_out(&SqsBatch::default().message("versions-1", &event)).await.is_empty());

    let frames = ws.frames(&connection);
    assert_eq!(frames.len(), 6, "three handshakes and three events: {frames:#?}");
    let subject = |frame: &Value| -> String {
        let status = &frame["entry"][0]["resource"];
        let reference = match status["resourceType"].as_str() {
            Some("Parameters") => status["parameter"][0]["valueReference"]["reference"].clone(),
            _ => status["subscription"]["reference"].clone(),
        };
        reference.as_str().unwrap_or_default().replace("Subscription/", "")
    };
    for (id, version) in ids.iter().zip([FhirVersion::R4, FhirVersion::R4B, FhirVersion::R5]) {
        let mine: Vec<Value> = frames.iter().filter(|f| subject(f) == *id).cloned().collect();
        assert_eq!(mine.len(), 2, "{version:?}: {frames:#?}");
        match version {
            FhirVersion::R4 => {
                mine.iter().for_each(|f| {
                    assert_eq!(f["meta"]["profile"][0], R4_NOTIFICATION_PROFILE);
                    assert_eq!(f["entry"][0]["request"]["url"], format!("Subscription/{id}/$status"));
                });
                let types: Vec<&Value> =
                    mine.iter().map(|f| &f["entry"][0]["resource"]["parameter"][3]["valueCode"]).collect();
                assert_eq!(types, [&json!("handshake"), &json!("event-notification")]);
                assert_eq!(mine[1]["entry"][1]["resource"], patient, "full-resource");
                assert_valid_r4(&mine);
            }
            FhirVersion::R4B => {
                mine.iter().for_each(|f| assert_eq!(f["meta"]["profile"][0], R4B_NOTIFICATION_PROFILE));
                assert_eq!(mine[1]["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"], "1");
                assert_valid_r4b(&mine);
            }
            FhirVersion::R5 => {
                mine.iter().for_each(|f| assert_eq!(f["type"], "subscription-notification"));
                fhir_ws_tests::assert_valid_r5(&mine);
            }
        }
    }
}
fhir_ws_tests::all_stores!(one_socket_carries_each_subscription_in_its_own_fhir_version, one_socket_three_versions);
