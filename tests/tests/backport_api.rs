//! R4 and R4B clients at the `/R4` and `/R4B` bases (Subscriptions Backport IG): the
//! Subscription API, `$status`, `$events`, the token operation and `metadata`, through the
//! real handlers on both back ends (moto_server for DynamoDB), events numbered and recorded
//! by the real fan-out. Every resource answered is checked by the independent validator of
//! its version (`fhir.resources` 6.1.0 for R4, `fhir.resources.R4B` 8.x for R4B), and the
//! IG's rules by explicit assertions.

use chrono::Utc;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::store::{BindingStore, CounterStore, EventStore};
use fhir_ws_tests::ig::{R4_NOTIFICATION_PROFILE, R4_STATUS_PROFILE, R4B_NOTIFICATION_PROFILE};
use fhir_ws_tests::websocket::{SqsBatch, WsHarness, WsStores};
use fhir_ws_tests::{
    Backend, HttpEvent, Stores, TokenBackend, all_stores, assert_outcome, assert_valid_r4,
    backport_websocket_subscription, header, output_values, status_and_json, unique_principal, websocket_subscription,
};
use serde_json::{Value, json};

const IG: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";

fn topic() -> String {
    format!("http://example.org/fhir/SubscriptionTopic/backport-{}", uuid::Uuid::new_v4())
}

/// The `(name, value)` of each R4 status parameter whose value is a primitive.
fn parameter(parameters: &Value, name: &str) -> Value {
    parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p.as_object()?.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v.clone()))
        .unwrap_or(Value::Null)
}

/// The event numbers of an R4 `Parameters` or R4B `SubscriptionStatus`.
fn event_numbers(status: &Value) -> Vec<String> {
    let texts = |values: Vec<&Value>| values.into_iter().map(|v| v.as_str().unwrap_or("?").to_owned()).collect();
    if status["resourceType"] == "Parameters" {
        let events = status["parameter"].as_array().into_iter().flatten().filter(|p| p["name"] == "notification-event");
        texts(events.map(|e| &e["part"][0]["valueString"]).collect())
    } else {
        texts(status["notificationEvent"].as_array().into_iter().flatten().map(|e| &e["eventNumber"]).collect())
    }
}

async fn subscription_crud_and_search<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let (alice, bob) = (unique_principal("alice"), unique_principal("bob"));
    let topic = topic();
    for version in [FhirVersion::R4, FhirVersion::R4B] {
        let base = format!("/{}", version.path_segment());
        let mut sent = backport_websocket_subscription(&topic);
        sent["_criteria"] = json!({"extension": [
            {"url": format!("{IG}/backport-filter-criteria"), "valueString": "Encounter?patient=Patient/123"}]});
        let response =
            ws.app.api(HttpEvent::new("POST", &format!("{base}/Subscription"), Some(&alice)).json(&sent)).await;
        let (status, created) = status_and_json(&response);
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        let location = header(&response, "location").unwrap_or_default();
        assert!(location.ends_with(&format!("{base}/Subscription/{id}/_history/1")), "{location}");
        // The IG's shape comes back: topic in criteria, filters, channel extensions; active
        // at once, as websocket subscriptions are.
        assert_eq!(created["criteria"], topic.as_str());
        assert_eq!(created["status"], "active");
        assert_eq!(created["reason"], sent["reason"]);
        assert_eq!(created["_criteria"], sent["_criteria"]);
        assert_eq!(created["channel"], sent["channel"]);
        assert!(created.get("topic").is_none() && created.get("channelType").is_none(), "no R5 elements: {created}");
        fhir_ws_tests::assert_valid_in(version, std::slice::from_ref(&created));

        let read =
            ws.service_json(HttpEvent::new("GET", &format!("{base}/Subscription/{id}"), Some(&alice)), 200).await;
        assert_eq!(read, created);

        // The subscription lives at its own version's base; its owner is told where.
        for other in FhirVersion::ALL.into_iter().filter(|v| *v != version) {
            let path = format!("/{}/Subscription/{id}", other.path_segment());
            let outcome =
                assert_outcome(&ws.service_call(HttpEvent::new("GET", &path, Some(&alice))).await, 404, "not-found");
            assert!(outcome.to_string().contains(&format!("/{} base", version.path_segment())), "{outcome}");
        }
        let unversioned = ws.service_call(HttpEvent::new("GET", &format!("/Subscription/{id}"), Some(&alice))).await;
        assert_outcome(&unversioned, 404, "not-found");
        let bobs = ws.service_call(HttpEvent::new("GET", &format!("{base}/Subscription/{id}"), Some(&bob))).await;
        let bobs = assert_outcome(&bobs, 404, "not-found");
        assert!(!bobs.to_string().contains("base"), "nothing about someone else's subscription: {bobs}");

        // Search by topic, status and url (the channel endpoint), at this base only.
        let mut hook = backport_websocket_subscription(&topic);
        hook["channel"]["type"] = json!("rest-hook");
        hook["channel"]["endpoint"] = json!("https://client.example.org/hook");
        let hook = ws
            .service_json(HttpEvent::new("POST", &format!("{base}/Subscription"), Some(&alice)).json(&hook), 201)
            .await;
        assert_eq!(hook["status"], "requested", "rest-hook is stored, not delivered");
        let search = |query: &str| HttpEvent::new("GET", &format!("{base}/Subscription?{query}"), Some(&alice));
        let ids = |bundle: &Value| -> Vec<String> {
            let mut ids: Vec<String> = bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            ids.sort();
            ids
        };
        let encoded = topic.replace(':', "%3A").replace('/', "%2F");
        let by_topic = ws.service_json(search(&format!("topic={encoded}")), 200).await;
        let mut both = vec![id.clone(), hook["id"].as_str().unwrap_or_default().to_owned()];
        both.sort();
        assert_eq!(ids(&by_topic), both);
        assert!(by_topic["link"][0]["url"].as_str().is_some_and(|u| u.contains("topic=")), "{by_topic}");
        fhir_ws_tests::assert_valid_in(version, std::slice::from_ref(&by_topic));
        let by_url = ws.service_json(search("url=https%3A%2F%2Fclient.example.org%2Fhook"), 200).await;
        assert_eq!(ids(&by_url), [hook["id"].as_str().unwrap_or_default()]);
        let active = ws.service_json(search(&format!("status=active&topic={encoded}")), 200).await;
        assert_eq!(ids(&active), [id.as_str()]);
        assert_eq!(ws.service_json(search("topic=http%3A%2F%2Fexample.org%2Fnone"), 200).await["total"], 0);
        assert_outcome(&ws.service_call(search("topic:below=http%3A%2F%2Fexample.org")).await, 400, "not-supported");
        let everything =
            ws.service_json(HttpEvent::new("GET", &format!("{base}/Subscription"), Some(&alice)), 200).await;
        assert_eq!(ids(&everything), both, "only this version's subscriptions");
        for entry in everything["entry"].as_array().into_iter().flatten() {
            assert!(entry["fullUrl"].as_str().is_some_and(|u| u.contains(&format!("{base}/Subscription/"))));
            assert!(entry["resource"]["criteria"].is_string(), "{entry}");
        }

        // Update: R4 has no entered-in-error; off is the client's to set.
        let path = format!("{base}/Subscription/{id}");
        let mut wrong = read.clone();
        wrong["status"] = json!("entered-in-error");
        let refused = ws.service_call(HttpEvent::new("PUT", &path, Some(&alice)).json(&wrong)).await;
        let refused = assert_outcome(&refused, 400, "invalid");
        assert!(refused.to_string().contains("entered-in-error"), "{refused}");
        let mut off = read.clone();
        off["status"] = json!("off");
        let updated = ws.service_json(HttpEvent::new("PUT", &path, Some(&alice)).json(&off), 200).await;
        assert_eq!((updated["status"].as_str(), updated["meta"]["versionId"].as_str()), (Some("off"), Some("2")));
        assert_eq!(updated["channel"], sent["channel"], "the IG's extensions survive an update");
        fhir_ws_tests::assert_valid_in(version, &[updated]);

        // What R4 and the IG require is checked, with a clear OperationOutcome.
        let create = |body: &Value| HttpEvent::new("POST", &format!("{base}/Subscription"), Some(&alice)).json(body);
        let mut no_reason = sent.clone();
        no_reason.as_object_mut().map(|o| o.remove("reason"));
        let outcome = assert_outcome(&ws.service_call(create(&no_reason)).await, 400, "invalid");
        assert!(outcome.to_string().contains("reason"), "{outcome}");
        let mut r5_payload = sent.clone();
        r5_payload["channel"]["payload"] = json!("application/fhir+json;fhirVersion=5.0");
        let outcome = assert_outcome(&ws.service_call(create(&r5_payload)).await, 400, "invalid");
        assert!(outcome.to_string().contains("fhirVersion=5.0"), "{outcome}");
        let mut own_payload = sent.clone();
        own_payload["channel"]["payload"] =
            json!(format!("application/fhir+json; fhirVersion={}", version.mime_version()));
        ws.service_json(create(&own_payload), 201).await;
        let outcome = assert_outcome(&ws.service_call(create(&websocket_subscription(&topic))).await, 400, "invalid");
        assert!(outcome.to_string().contains("criteria"), "an R5 body at an R4 base: {outcome}");

        assert_eq!(ws.app.api(HttpEvent::new("DELETE", &path, Some(&alice))).await.status().as_u16(), 204);
        assert_outcome(&ws.service_call(HttpEvent::new("GET", &path, Some(&alice))).await, 404, "not-found");
    }

    // The version can come from the media type instead of the path.
    let r4_media = "application/fhir+json; fhirVersion=4.0";
    let by_media = HttpEvent::new("POST", "/Subscription", Some(&alice))
        .body(r4_media, &backport_websocket_subscription(&topic).to_string())
        .header("accept", r4_media);
    let created = ws.service_json(by_media, 201).await;
    let id = created["id"].as_str().unwrap_or_default();
    ws.service_json(HttpEvent::new("GET", &format!("/R4/Subscription/{id}"), Some(&alice)), 200).await;
    // Versions not served, and requests that contradict themselves, are refused.
    let get = |path: &str| HttpEvent::new("GET", path, Some(&alice));
    assert_outcome(&ws.service_call(get("/R6/Subscription")).await, 404, "not-found");
    assert_outcome(&ws.service_call(get("/STU3/Subscription")).await, 404, "not-found");
    assert_outcome(&ws.service_call(get("/X1/Subscription")).await, 404, "not-found");
    let stu3 = get("/Subscription").header("accept", "application/fhir+json; fhirVersion=3.0");
    let outcome = assert_outcome(&ws.service_call(stu3).await, 406, "not-supported");
    assert!(outcome.to_string().contains("R4"), "names what is served: {outcome}");
    let mixed = get("/R4/Subscription").header("accept", "application/fhir+json; fhirVersion=5.0");
    assert_outcome(&ws.service_call(mixed).await, 400, "invalid");
}
all_stores!(
    r4_and_r4b_subscriptions_are_created_read_searched_and_updated_in_their_own_shape,
    subscription_crud_and_search
);

async fn status_events_and_token<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let alice = unique_principal("alice");
    let topic = topic();
    let mut ids = Vec::new();
    for version in [FhirVersion::R4, FhirVersion::R4B] {
        let path = format!("/{}/Subscription", version.path_segment());
        let body = backport_websocket_subscription(&topic);
        let created = ws.service_json(HttpEvent::new("POST", &path, Some(&alice)).json(&body), 201).await;
        ids.push(created["id"].as_str().unwrap_or_default().to_owned());
    }
    ids.push(ws.app.create(&alice, &websocket_subscription(&topic)).await);

    // The token operation: without ids, the caller's subscriptions of the base's version.
    for (version, id) in [FhirVersion::R4, FhirVersion::R4B, FhirVersion::R5].into_iter().zip(&ids) {
        let path = format!("/{}/Subscription/$get-ws-binding-token", version.path_segment());
        let response = ws.app.operation(HttpEvent::new("GET", &path, Some(&alice))).await;
        let (status, parameters) = status_and_json(&response);
        assert_eq!(status, 200, "{parameters}");
        assert_eq!(output_values(&parameters, "subscription"), [json!({"valueString": id})], "{version:?}");
        assert_eq!(output_values(&parameters, "websocket-url").len(), 1);
        fhir_ws_tests::assert_valid_in(version, &[parameters]);
    }
    // Named ids may be of every version: one socket carries all three.
    let token = ws.token(&alice, &ids).await;
    let connection = ws.bound_connection(&token).await;
    for n in 1..=3 {
        let focus = json!({"resourceType": "Encounter", "id": format!("enc-{n}"), "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "meta": {"versionId": "1"}});
        // An R4 Encounter (`class` a Coding): the event says so.
        let event = json!({"topic": topic, "focus": focus, "timestamp": "2026-12-02T08:00:00Z", "fhirVersion": "R4"});
        assert!(ws.fan_out(&SqsBatch::default().message(&format!("m{n}"), &event)).await.is_empty());
    }
    assert_eq!(ws.frames(&connection).len(), 12, "a handshake and three events for each of three subscriptions");

    for (version, id) in [FhirVersion::R4, FhirVersion::R4B].into_iter().zip(&ids) {
        let base = format!("/{}/Subscription", version.path_segment());
        // $status, type and instance level: a searchset of the version's status resources.
        for path in [format!("{base}/$status"), format!("{base}/{id}/$status")] {
            let bundle = ws.service_json(HttpEvent::new("GET", &path, Some(&alice)), 200).await;
            assert_eq!((bundle["type"].as_str(), bundle["total"].as_u64()), (Some("searchset"), Some(1)), "{bundle}");
            let status = &bundle["entry"][0]["resource"];
            match version {
                FhirVersion::R4 => {
                    assert_eq!(status["resourceType"], "Parameters");
                    assert_eq!(status["meta"]["profile"][0], R4_STATUS_PROFILE);
                    assert_eq!(parameter(status, "subscription")["reference"], format!("Subscription/{id}"));
                    assert_eq!(parameter(status, "topic"), json!(topic));
                    assert_eq!(parameter(status, "status"), "active");
                    assert_eq!(parameter(status, "type"), "query-status");
                    assert_eq!(parameter(status, "events-since-subscription-start"), "3", "a string in R4");
                }
                _ => {
                    assert_eq!(status["resourceType"], "SubscriptionStatus");
                    assert_eq!(
                        (status["type"].as_str(), status["status"].as_str()),
                        (Some("query-status"), Some("active"))
                    );
                    assert_eq!(status["eventsSinceSubscriptionStart"], "3");
                }
            }
            fhir_ws_tests::assert_valid_in(version, &[bundle]);
        }
        let others = ws.service_json(HttpEvent::new("GET", "/Subscription/$status", Some(&alice)), 200).await;
        assert_eq!(others["total"], 1, "the R5 base sees only the R5 subscription: {others}");
        let elsewhere = format!("/Subscription/$status?id={id}");
        assert_outcome(&ws.service_call(HttpEvent::new("GET", &elsewhere, Some(&alice))).await, 404, "not-found");

        // $events with string bounds (the IG's valueString): a history Bundle whose first
        // entry is the status resource, request/response on every entry.
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "eventsSinceNumber", "valueString": "2"}, {"name": "eventsUntilNumber", "valueString": "3"}]});
        let events_path = format!("{base}/{id}/$events");
        let bundle = ws.service_json(HttpEvent::new("POST", &events_path, Some(&alice)).json(&body), 200).await;
        assert_eq!(bundle["type"], "history");
        let profile = if version == FhirVersion::R4 { R4_NOTIFICATION_PROFILE } else { R4B_NOTIFICATION_PROFILE };
        assert_eq!(bundle["meta"]["profile"][0], profile);
        let status = &bundle["entry"][0]["resource"];
        assert_eq!(event_numbers(status), ["2", "3"]);
        if version == FhirVersion::R4 {
            assert_eq!(parameter(status, "type"), "query-event");
        } else {
            assert_eq!(status["type"], "query-event");
        }
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 3, "the status and the two focus resources (full-resource)");
        assert!(entries.iter().all(|e| e["request"]["method"].is_string() && e["response"]["status"].is_string()));
        assert_eq!(entries[1]["resource"]["id"], "enc-2");
        fhir_ws_tests::assert_valid_in(version, &[bundle]);
        let by_query = ws
            .service_json(HttpEvent::new("GET", &format!("{events_path}?eventsSinceNumber=3"), Some(&alice)), 200)
            .await;
        assert_eq!(event_numbers(&by_query["entry"][0]["resource"]), ["3"]);
        let hint =
            ws.service_json(HttpEvent::new("GET", &format!("{events_path}?content=empty"), Some(&alice)), 200).await;
        assert_eq!(hint["entry"].as_array().map(Vec::len), Some(1), "empty: the status entry only");
        fhir_ws_tests::assert_valid_in(version, &[hint]);
        let bad = HttpEvent::new("GET", &format!("{events_path}?eventsSinceNumber=two"), Some(&alice));
        assert_outcome(&ws.service_call(bad).await, 400, "invalid");
    }
}
all_stores!(r4_and_r4b_status_events_and_tokens_answer_in_the_igs_shapes, status_events_and_token);

async fn retention_warning<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let alice = unique_principal("alice");
    let topic = topic();
    let body = backport_websocket_subscription(&topic);
    let created = ws.service_json(HttpEvent::new("POST", "/R4/Subscription", Some(&alice)).json(&body), 201).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    // Event 1 is recorded two hours ago, past the harness's one-hour retention.
    let event = |n: u32| json!({"topic": topic, "focus": {"resourceType": "Patient", "id": format!("p{n}")}});
    let long_ago = Utc::now() - chrono::TimeDelta::hours(2);
    assert!(ws.fan_out_at(&SqsBatch::default().message("old", &event(1)), long_ago).await.is_empty());
    assert!(ws.fan_out(&SqsBatch::default().message("new", &event(2))).await.is_empty());
    let path = format!("/R4/Subscription/{id}/$events");
    let bundle = ws.service_json(HttpEvent::new("GET", &path, Some(&alice)), 200).await;
    assert_eq!(event_numbers(&bundle["entry"][0]["resource"]), ["2"]);
    // R4 Bundles have no `issues`: the warning is the status entry's response outcome.
    assert!(bundle.get("issues").is_none());
    let outcome = &bundle["entry"][0]["response"]["outcome"];
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{bundle}");
    assert_eq!(outcome["issue"][0]["severity"], "warning");
    assert!(outcome["issue"][0]["diagnostics"].as_str().is_some_and(|d| d.contains("events 1 ")), "{outcome}");
    assert_valid_r4(&[bundle]);
}
all_stores!(r4_events_report_what_is_no_longer_retained_in_the_response_outcome, retention_warning);

async fn metadata_per_version<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
>(
    stores: Stores<S, T>,
    ws_stores: WsStores<B, C, E>,
) {
    let ws = WsHarness::new(stores, ws_stores).await;
    let cases = [
        (FhirVersion::R4, "4.0.1", Some("backport-subscription-server-r4")),
        (FhirVersion::R4B, "4.3.0", Some("backport-subscription-server")),
        (FhirVersion::R5, "5.0.0", None),
    ];
    for (version, full, instantiated) in cases {
        let path = format!("/{}/metadata", version.path_segment());
        let statement = ws.service_json(HttpEvent::new("GET", &path, None), 200).await;
        assert_eq!(statement["fhirVersion"], full);
        assert!(
            statement["implementation"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("/{}", version.path_segment())))
        );
        let resource = &statement["rest"][0]["resource"][0];
        let mut operations: Vec<&str> =
            resource["operation"].as_array().into_iter().flatten().filter_map(|o| o["definition"].as_str()).collect();
        // This server's own operation comes last, defined under its base.
        let own = operations.pop().unwrap_or_default();
        assert!(own.ends_with("/OperationDefinition/Subscription-revoke-ws-binding-token"), "{own}");
        let searches: Vec<&str> =
            resource["searchParam"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(searches, ["status", "topic", "url"]);
        match instantiated {
            Some(id) => {
                let canonical = format!("http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/{id}");
                assert_eq!(statement["instantiates"], json!([canonical]));
                assert!(
                    statement["implementationGuide"][0].as_str().is_some_and(|g| g.contains("subscriptions-backport"))
                );
                assert_eq!(resource["supportedProfile"][0], format!("{IG}/backport-subscription"));
                assert_eq!(
                    operations,
                    ["get-ws-binding-token", "status", "events"].map(|code| format!(
                        "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-{code}"
                    ))
                );
            }
            None => {
                assert!(statement.get("instantiates").is_none());
                assert!(operations.iter().all(|o| o.starts_with("http://hl7.org/fhir/OperationDefinition/")));
            }
        }
        fhir_ws_tests::assert_valid_in(version, &[statement]);
    }
    let by_media = HttpEvent::new("GET", "/metadata", None).header("accept", "application/fhir+json; fhirVersion=4.3");
    assert_eq!(ws.service_json(by_media, 200).await["fhirVersion"], "4.3.0");
    assert_outcome(&ws.service_call(HttpEvent::new("GET", "/R3/metadata", None)).await, 404, "not-found");
}
all_stores!(metadata_answers_in_each_version_and_names_the_igs_statements, metadata_per_version);
