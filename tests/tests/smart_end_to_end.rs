//! `fhir-ws serve --authorization smart` end to end, with real HTTP and WebSocket clients,
//! on the embedded store and against moto_server: a patient-level app (SMART scopes
//! `patient/*.rs patient/Subscription.cruds`, launch patient P) and a clinician app
//! (`user/*.rs`) on one topic whose notifications include the patient and practitioner.
//!
//! - The patient app must limit its Subscriptions to P (403 naming the filter otherwise),
//!   in R4, R4B and R5; `full-resource` without read scope is refused.
//! - Events about P and about another patient, on one topic: the patient app receives
//!   P's only, the clinician both; context the patient app's grant does not allow (the
//!   practitioner) never reaches its socket.
//! - Two patients' events in one SQS batch, through the Lambda handlers on both stores:
//!   the patient app's connection gets its patient's only.
//! - At its next token request, narrowing the scopes, or losing the patient claim, stops
//!   delivery to the binding made with that token, and `$events` answers with what the
//!   current grant allows.

use fhir_ws_client::Status;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::http::AuthorizationMode;
use fhir_ws_local::client::{Api, ClientError};
use fhir_ws_local::gateway::{Options, Users};
use fhir_ws_tests::local::LocalStack;
use fhir_ws_tests::sockets::{Socket, bound, next_after_handshakes, nothing_more};
use serde_json::{Value, json};

fn topic_file(url: &str) -> Value {
    json!({"resourceType": "SubscriptionTopic", "url": url, "status": "active",
        "resourceTrigger": [{"resource": "Encounter", "supportedInteraction": ["create", "update"]}],
        "canFilterBy": [{"resource": "Encounter", "filterParameter": "patient"}],
        "notificationShape": [{"resource": "Encounter", "include": ["Encounter:patient", "Encounter:practitioner"]}]})
}

/// An R5 Encounter of `patient` seen by `doctor`, created.
fn encounter_created(id: &str, patient: &str, doctor: &str) -> Value {
    json!({"interaction": "create",
        "resource": {"resourceType": "Encounter", "id": id, "status": "in-progress",
            "class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}]}],
            "subject": {"reference": format!("Patient/{patient}")},
            "participant": [{"actor": {"reference": format!("Practitioner/{doctor}")}}]},
        "additionalContext": [{"resourceType": "Patient", "id": patient, "active": true},
            {"resourceType": "Practitioner", "id": doctor, "active": true}]})
}

/// The types of the resources a frame carries, after its status.
fn carried(frame: &Value) -> Vec<String> {
    frame["entry"]
        .as_array()
        .map(|e| e[1..].to_vec())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str().map(str::to_owned))
        .collect()
}

/// The next event frame of each of `count` subscriptions on `socket`, by subscription.
async fn events(socket: &mut Socket, count: usize) -> Vec<(String, Value)> {
    let mut frames = Vec::new();
    while frames.len() < count {
        let frame = next_after_handshakes(socket).await;
        let view = Status::of_bundle(&frame).unwrap_or_else(|| panic!("not a notification: {frame}"));
        assert_eq!(view.kind, "event-notification", "{frame}");
        frames.push((view.subscription.clone(), frame));
    }
    frames.sort_by(|a, b| a.0.cmp(&b.0));
    frames
}

async fn patient_app_sees_only_its_patient(dynamodb: bool) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("http://example.org/topics/smart-e2e-{run}");
    let folder = std::env::temp_dir().join(format!("fhir-ws-smart-topics-{run}"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("topic.json"), topic_file(&topic).to_string()).unwrap();
    let (patient, other, doctor) = (format!("p-{run}"), format!("q-{run}"), format!("dr-{run}"));
    let app = format!("app-{run}");
    let mut users = Users::default();
    let patient_scopes = "openid launch/patient patient/*.rs patient/Subscription.cruds";
    users
        .add_file(
            &json!({
                format!("app-{run}"): {"sub": app, "scope": patient_scopes, "patient": patient},
                format!("app-narrow-{run}"): {"sub": app, "patient": patient,
                    "scope": "openid launch/patient patient/Observation.rs patient/Subscription.cruds"},
                format!("app-no-patient-{run}"): {"sub": app, "scope": patient_scopes},
                format!("searcher-{run}"): {"sub": format!("searcher-{run}"), "patient": patient,
                    "scope": "patient/*.s patient/Subscription.cruds"},
                format!("doctor-{run}"): {"sub": format!("doctor-{run}"), "scope": "openid user/*.rs user/Subscription.cruds"},
            })
            .to_string(),
        )
        .unwrap();
    let dynamodb_endpoint = dynamodb.then(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap());
    let stack = LocalStack::start(Options {
        dynamodb_endpoint,
        users,
        topics: Some(fhir_ws_core::topics::TopicRegistry::from_folder(&folder, FhirVersion::R5).unwrap()),
        authorization: AuthorizationMode::Smart,
        ..Options::default()
    })
    .await;

    // Subscription time: the launch patient's filter is required, in every version.
    let mine = [format!("Encounter?patient=Patient/{patient}")];
    let mut ids = Vec::new();
    for version in FhirVersion::ALL {
        let api = Api::new(&stack.base, &format!("app-{run}")).in_version(version);
        let refused = api.create_subscription(&topic, "full-resource", None).await;
        assert!(
            matches!(&refused, Err(ClientError::Refused { status: 403, message })
                if message.contains(&format!("Encounter?patient=Patient/{patient}"))),
            "{version:?}: {refused:?}"
        );
        let theirs = [format!("Encounter?patient=Patient/{other}")];
        let refused = api.create_filtered_subscription(&topic, "full-resource", None, &theirs).await;
        assert!(matches!(refused, Err(ClientError::Refused { status: 403, .. })), "{version:?}: another patient");
        ids.push(api.create_filtered_subscription(&topic, "full-resource", None, &mine).await.unwrap());
    }
    let searcher = Api::new(&stack.base, &format!("searcher-{run}"));
    let refused = searcher.create_filtered_subscription(&topic, "full-resource", None, &mine).await;
    assert!(
        matches!(&refused, Err(ClientError::Refused { status: 403, message }) if message.contains("'r' on Encounter")),
        "full-resource needs read: {refused:?}"
    );
    let clinician = Api::new(&stack.base, &format!("doctor-{run}"));
    let clinician_id = clinician.create_subscription(&topic, "full-resource", None).await.unwrap();

    let app_api = Api::new(&stack.base, &format!("app-{run}"));
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let token = app_api.binding_token_for(&id_refs).await.unwrap();
    let mut app_socket = bound(&token.websocket_url, &token.token, 3).await;
    let token = clinician.binding_token(&clinician_id).await.unwrap();
    let mut clinician_socket = bound(&token.websocket_url, &token.token, 1).await;

    // Two events on the topic: one about the launch patient, one about another patient.
    let notify = Api::new(&stack.base, "alice-token");
    notify.notify(&encounter_created(&format!("e1-{run}"), &patient, &doctor)).await.unwrap();
    notify.notify(&encounter_created(&format!("e2-{run}"), &other, &doctor)).await.unwrap();
    for (_, frame) in events(&mut app_socket, 3).await {
        let version = fhir_ws_tests::notification_version(&frame);
        fhir_ws_tests::assert_valid_in(version, std::slice::from_ref(&frame));
        let text = frame.to_string();
        assert!(text.contains(&format!("e1-{run}")) && !text.contains(&format!("e2-{run}")), "{frame}");
        assert_eq!(carried(&frame), ["Encounter", "Patient"], "{version:?}: {frame}");
        // Not even its reference among the event's context (the Encounter's own
        // `participant` is part of the Encounter, which the app may read).
        let context_reference = format!("\"reference\":\"http://localhost:8080/fhir/Practitioner/{doctor}\"");
        assert!(!text.contains(&context_reference), "no practitioner in the context: {frame}");
    }
    nothing_more(&mut app_socket, "another patient's event never reaches the patient app").await;
    let seen: Vec<Value> = events(&mut clinician_socket, 2).await.into_iter().map(|(_, f)| f).collect();
    for frame in &seen {
        assert_eq!(carried(frame), ["Encounter", "Patient", "Practitioner"], "{frame}");
    }

    // The next token: narrowed scopes (no Encounter), then no patient claim. A binding made
    // with it receives nothing more; the clinician still does.
    for bearer in [format!("app-narrow-{run}"), format!("app-no-patient-{run}")] {
        let token = Api::new(&stack.base, &bearer).binding_token_for(&id_refs).await.unwrap();
        drop(app_socket);
        app_socket = bound(&token.websocket_url, &token.token, 3).await;
        notify.notify(&encounter_created(&format!("e3-{run}"), &patient, &doctor)).await.unwrap();
        assert_eq!(events(&mut clinician_socket, 1).await.len(), 1);
        nothing_more(&mut app_socket, &format!("{bearer}: the grant no longer allows it")).await;
    }

    // $events applies the caller's current grant the same way.
    let r5 = ids.last().unwrap();
    let answers = Api::new(&stack.base, &format!("app-{run}")).events(r5, 1, 3).await.unwrap();
    let numbers = |answers: &[Value]| -> Vec<u64> {
        answers.iter().flat_map(|a| Status::of_bundle(a).unwrap().events).filter_map(|e| e.event_number).collect()
    };
    assert_eq!(numbers(&answers), [1, 2, 3], "the grant it was created under: every event");
    let narrowed = Api::new(&stack.base, &format!("app-narrow-{run}")).events(r5, 1, 3).await.unwrap();
    assert_eq!(numbers(&narrowed), Vec::<u64>::new(), "no Encounter scope any more: {narrowed:?}");
    let warning = narrowed[0]["issues"]["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(warning.contains("1, 2, 3") && warning.contains("current grant"), "{warning}");
    fhir_ws_tests::assert_valid_in(FhirVersion::R5, &narrowed);
    stack.stop().await;
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn a_patient_app_sees_only_its_patient_on_the_embedded_store() {
    patient_app_sees_only_its_patient(false).await;
}

#[tokio::test]
async fn a_patient_app_sees_only_its_patient_against_moto_server() {
    patient_app_sees_only_its_patient(true).await;
}

const PATIENT_APP_SCOPES: &str = "openid launch/patient patient/*.rs patient/Subscription.cruds";

/// A request as the patient app's access token (launch patient `patient`, valid for ten
/// more minutes, less than a binding token's 30: binding tokens expire no later than it)
/// makes it.
fn as_patient_app(method: &str, path: &str, owner: &str, patient: &str) -> fhir_ws_tests::HttpEvent {
    let expiry = (chrono::Utc::now().timestamp() + 600).to_string();
    fhir_ws_tests::HttpEvent::new(method, path, Some(owner))
        .claim("scope", PATIENT_APP_SCOPES)
        .claim("patient", patient)
        .claim("exp", &expiry)
}

async fn one_batch<S, T, B, C, E>(
    stores: fhir_ws_tests::Stores<S, T>,
    ws_stores: fhir_ws_tests::websocket::WsStores<B, C, E>,
) where
    S: fhir_ws_tests::Backend,
    T: fhir_ws_tests::TokenBackend,
    B: fhir_ws_core::store::BindingStore + Clone + 'static,
    C: fhir_ws_core::store::CounterStore + Clone,
    E: fhir_ws_core::store::EventStore + Clone,
{
    use fhir_ws_tests::websocket::{SqsBatch, WsHarness};
    let mut ws = WsHarness::new(stores, ws_stores).await;
    let mut config = fhir_ws_tests::binding_token_config(fhir_ws_tests::TEST_SIGNING_KEYS, None);
    config.identity.mode = AuthorizationMode::Smart;
    ws.app = fhir_ws_tests::App::with_revocation(ws.app.stores.clone(), config, fhir_ws_tests::no_connections());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("http://example.org/topics/smart-batch-{run}");
    let (owner, patient, other) = (format!("app-{run}"), format!("p-{run}"), format!("q-{run}"));

    let mut resource = fhir_ws_tests::websocket_subscription(&topic);
    resource["content"] = json!("full-resource");
    resource["filterBy"] = json!([{"filterParameter": "subject", "value": format!("Patient/{patient}")}]);
    let created = ws.app.api(as_patient_app("POST", "/Subscription", &owner, &patient).json(&resource)).await;
    let (status, created) = fhir_ws_tests::status_and_json(&created);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let path = format!("/Subscription/{id}/$get-ws-binding-token");
    let answer = ws.app.operation(as_patient_app("GET", &path, &owner, &patient)).await;
    let (status, parameters) = fhir_ws_tests::status_and_json(&answer);
    assert_eq!(status, 200, "{parameters}");
    let token = fhir_ws_tests::output_values(&parameters, "token")[0]["valueString"].as_str().unwrap().to_owned();
    let expiration = fhir_ws_tests::output_values(&parameters, "expiration")[0]["valueDateTime"].clone();
    let expiration = chrono::DateTime::parse_from_rfc3339(expiration.as_str().unwrap()).unwrap().timestamp();
    let in_seconds = expiration - chrono::Utc::now().timestamp();
    assert!((590..=601).contains(&in_seconds), "the access token's exp, not the 30-minute lifetime: {in_seconds}");
    let connection = ws.bound_connection(&token).await;

    let event = |id: &str, patient: &str| {
        json!({"topic": topic, "focus": {"resourceType": "Encounter", "id": id, "status": "in-progress",
            "subject": {"reference": format!("Patient/{patient}")}}})
    };
    let batch = SqsBatch::default().message("m1", &event("e-mine", &patient)).message("m2", &event("e-theirs", &other));
    assert!(ws.fan_out(&batch).await.is_empty(), "both records handled");
    let events: Vec<Value> = ws
        .frames(&connection)
        .into_iter()
        .filter(|f| f["entry"][0]["resource"]["type"] == "event-notification")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["entry"][1]["resource"]["id"], "e-mine");
    assert_eq!(events[0]["entry"][0]["resource"]["eventsSinceSubscriptionStart"], "1");
}
fhir_ws_tests::all_stores!(two_patients_in_one_batch_reach_only_their_own_app, one_batch);
