//! `AuthorizationMode=smart`: every route of the Subscription API, `$status`, `$events` and
//! `$get-ws-binding-token` against a table of access tokens' scope strings (SMART v1 and
//! v2, wildcards, `patient`, `user` and `system` contexts, granular, malformed), on both
//! stores. A route the scopes do not grant answers 403 `forbidden` naming the scope
//! needed, and changes nothing; `owner` mode (the default) ignores scopes; `metadata`
//! advertises SMART in every FHIR version.

use std::sync::Arc;

use chrono::Utc;
use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::http::{AuthorizationMode, IdentityConfig};
use fhir_ws_core::ops::SubscriptionService;
use fhir_ws_core::ops::binding_token::BindingTokenOperation;
use fhir_ws_core::store::memory::MemoryStore;
use fhir_ws_core::store::{CounterStore, EventStore, SubscriptionStore, TokenStore};
use fhir_ws_tests::{HttpEvent, status_and_json, unique_principal, websocket_subscription};
use serde_json::Value;

/// What a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Create,
    Search,
    Read,
    Update,
    Delete,
    StatusAll,
    StatusOne,
    Events,
    TokenAll,
    TokenOne,
}

use Route::*;

const EVERY_ROUTE: [Route; 10] =
    [Create, Search, Read, Update, Delete, StatusAll, StatusOne, Events, TokenAll, TokenOne];
/// What `r` and `s` (v1 `read`) open.
const READING: [Route; 7] = [Search, Read, StatusAll, StatusOne, Events, TokenAll, TokenOne];

/// (the token's `scope` claim, the routes it opens).
fn cases() -> Vec<(&'static str, Vec<Route>)> {
    vec![
        ("user/Subscription.cruds", EVERY_ROUTE.to_vec()),
        ("patient/Subscription.cruds launch/patient", EVERY_ROUTE.to_vec()),
        ("system/*.cruds", EVERY_ROUTE.to_vec()),
        ("openid fhirUser user/*.rs", READING.to_vec()),
        ("user/Subscription.read", READING.to_vec()),
        ("user/Subscription.write", vec![Create, Update, Delete]),
        ("user/Subscription.*", EVERY_ROUTE.to_vec()),
        ("user/Subscription.c", vec![Create]),
        ("user/Subscription.r", vec![Read, StatusOne, Events, TokenOne]),
        ("user/Subscription.s", vec![Search, StatusAll, TokenAll]),
        ("user/Subscription.u", vec![Update]),
        ("user/Subscription.d", vec![Delete]),
        // v2 wins over v1 in one token: `.read` does not add to `.c`.
        ("user/Subscription.read user/Subscription.c", vec![Create]),
        // A granular Subscription scope is not evaluated per route: it grants nothing.
        ("user/Subscription.cruds?status=active", vec![]),
        ("patient/Encounter.rs patient/Patient.rs", vec![]),
        ("user/Subscription.sr user/Subscription.rcuds Subscription.cruds", vec![]),
        ("", vec![]),
    ]
}

/// The one topic deployed here: Encounters, nothing included. Every caller below also
/// holds `user/Encounter.rs` (what its notifications carry, which creating needs), and the
/// table is about the Subscription scopes.
const TOPIC: &str = "http://example.org/topics/smart-routes-encounter";
const DATA_SCOPE: &str = "user/Encounter.rs";

/// The data scope in the case's own SMART version: v2 scopes win over v1 in one token, so
/// a v1 case gets the v1 spelling.
fn data_scope(scopes: &str) -> &'static str {
    let v1 = [".read", ".write", ".*"];
    let all_v1 = scopes.split_whitespace().filter(|s| s.contains('/')).all(|s| v1.iter().any(|v| s.ends_with(v)));
    if !scopes.trim().is_empty() && all_v1 { "user/Encounter.read" } else { DATA_SCOPE }
}

fn topics() -> fhir_ws_core::topics::TopicRegistry {
    let topic = serde_json::json!({"resourceType": "SubscriptionTopic", "url": TOPIC, "status": "active",
        "resourceTrigger": [{"resource": "Encounter"}]});
    fhir_ws_core::topics::TopicRegistry::from_files(&[("t.json", &topic.to_string())], FhirVersion::R5).unwrap()
}

use fhir_ws_tests::api_config;

fn smart_identity() -> IdentityConfig {
    IdentityConfig { mode: AuthorizationMode::Smart, ..IdentityConfig::default() }
}

/// The two HTTP functions in `smart` mode over one back end.
struct Functions<S, C, E, T> {
    service: SubscriptionService<S, C, E>,
    operation: BindingTokenOperation<S, T>,
}

fn functions<S, C, E, T>(subscriptions: S, counters: C, events: E, tokens: T) -> Functions<S, C, E, T>
where
    S: SubscriptionStore + Clone + 'static,
    C: CounterStore,
    E: EventStore,
    T: TokenStore + Clone + 'static,
{
    let api_config = api_config(smart_identity(), topics());
    let mut token_config = fhir_ws_tests::binding_token_config(fhir_ws_tests::TEST_SIGNING_KEYS, None);
    token_config.identity = smart_identity();
    let revocation = fhir_ws_tests::no_connections();
    Functions {
        service: SubscriptionService::new(subscriptions.clone(), counters, events, revocation.clone(), &api_config),
        operation: BindingTokenOperation::new(subscriptions, tokens, revocation, &token_config),
    }
}

impl<S, C, E, T> Functions<S, C, E, T>
where
    S: SubscriptionStore + Clone + 'static,
    C: CounterStore,
    E: EventStore,
    T: TokenStore + Clone + 'static,
{
    async fn call(&self, event: HttpEvent) -> (u16, Value) {
        let request = event.request();
        let response = if request.uri().path().contains("get-ws-binding-token") {
            self.operation.handle(&request, Utc::now()).await
        } else {
            self.service.handle(&request, Utc::now()).await
        };
        status_and_json(&response)
    }

    /// A subscription of `owner`, created with every Subscription permission.
    async fn subscription(&self, owner: &str) -> (String, Value) {
        let event = HttpEvent::new("POST", "/Subscription", Some(owner))
            .claim("scope", &format!("user/Subscription.cruds {DATA_SCOPE}"))
            .json(&websocket_subscription(TOPIC));
        let (status, created) = self.call(event).await;
        assert_eq!(status, 201, "{created}");
        (created["id"].as_str().unwrap().to_owned(), created)
    }

    /// The request for `route` by `owner` holding `scopes`.
    fn request(route: Route, owner: &str, scopes: &str, id: &str, resource: &Value) -> HttpEvent {
        let (method, path) = match route {
            Create | Search => (if route == Create { "POST" } else { "GET" }, "/Subscription".to_owned()),
            Read => ("GET", format!("/Subscription/{id}")),
            Update => ("PUT", format!("/Subscription/{id}")),
            Delete => ("DELETE", format!("/Subscription/{id}")),
            StatusAll => ("GET", "/Subscription/$status".to_owned()),
            StatusOne => ("GET", format!("/Subscription/{id}/$status")),
            Events => ("GET", format!("/Subscription/{id}/$events")),
            TokenAll => ("GET", "/Subscription/$get-ws-binding-token".to_owned()),
            TokenOne => ("GET", format!("/Subscription/{id}/$get-ws-binding-token")),
        };
        let event =
            HttpEvent::new(method, &path, Some(owner)).claim("scope", &format!("{scopes} {}", data_scope(scopes)));
        match route {
            Create => event.json(&websocket_subscription(TOPIC)),
            Update => event.json(resource),
            _ => event,
        }
    }
}

async fn every_scope_against_every_route<S, C, E, T>(subscriptions: S, counters: C, events: E, tokens: T)
where
    S: SubscriptionStore + Clone + 'static,
    C: CounterStore,
    E: EventStore,
    T: TokenStore + Clone + 'static,
{
    let functions = functions(subscriptions.clone(), counters, events, tokens);
    for (scopes, allowed) in cases() {
        let owner = unique_principal("smart");
        for route in EVERY_ROUTE {
            let (id, resource) = functions.subscription(&owner).await;
            let before = subscriptions.get(&id).await.unwrap();
            let count = subscriptions.list_by_owner(&owner).await.unwrap().len();
            let (status, body) =
                functions.call(Functions::<S, C, E, T>::request(route, &owner, scopes, &id, &resource)).await;
            if allowed.contains(&route) {
                assert!((200..300).contains(&status), "'{scopes}' {route:?}: {status} {body}");
            } else {
                assert_eq!(status, 403, "'{scopes}' {route:?}: {body}");
                assert_eq!(body["issue"][0]["code"], "forbidden", "{body}");
                let message = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
                assert!(message.contains("on Subscription") && message.contains("user/Subscription."), "{message}");
                // Nothing changed.
                assert_eq!(subscriptions.get(&id).await.unwrap(), before, "'{scopes}' {route:?}");
                assert_eq!(subscriptions.list_by_owner(&owner).await.unwrap().len(), count, "'{scopes}' {route:?}");
            }
        }
    }
}

#[tokio::test]
async fn every_scope_against_every_route_on_the_memory_store() {
    let store = Arc::new(MemoryStore::new());
    every_scope_against_every_route(store.clone(), store.clone(), store.clone(), store).await;
}

#[tokio::test]
async fn every_scope_against_every_route_against_moto_server() {
    let stores = fhir_ws_tests::dynamodb_stores().await;
    let ws = fhir_ws_tests::dynamodb_ws_stores().await;
    every_scope_against_every_route(stores.subscriptions, ws.counters, ws.events, stores.tokens).await;
}

/// Scopes in the shapes API Gateway hands them over: `scp` as its bracketed list.
#[tokio::test]
async fn scp_in_api_gateways_bracket_form_grants_as_scope_does() {
    let store = Arc::new(MemoryStore::new());
    let functions = functions(store.clone(), store.clone(), store.clone(), store);
    let owner = unique_principal("okta");
    let event = HttpEvent::new("POST", "/Subscription", Some(&owner))
        .claim("scope", "openid")
        .claim("scp", &format!("[openid user/Subscription.cruds {DATA_SCOPE}]"))
        .json(&websocket_subscription(TOPIC));
    assert_eq!(functions.call(event).await.0, 201);
    // (The sample event this builds on has a scope claim of its own: replaced by one
    // without resource scopes.)
    let event = HttpEvent::new("GET", "/Subscription", Some(&owner))
        .claim("scope", "openid")
        .claim("scp", "[user/Subscription.c]");
    assert_eq!(functions.call(event).await.0, 403);
}

/// `owner` mode, the default, looks at no scope; `smart` mode says so in `metadata`.
#[tokio::test]
async fn owner_mode_ignores_scopes_and_metadata_advertises_smart_in_every_version() {
    let store = Arc::new(MemoryStore::new());
    let app = fhir_ws_tests::App::new(fhir_ws_tests::memory_stores());
    let owner = unique_principal("owner-mode");
    let event = HttpEvent::new("POST", "/Subscription", Some(&owner))
        .claim("scope", "patient/Encounter.rs")
        .json(&websocket_subscription(fhir_ws_tests::TOPIC));
    assert_eq!(status_and_json(&app.api(event).await).0, 201, "no Subscription scope needed in owner mode");

    let smart = functions(store.clone(), store.clone(), store.clone(), store);
    for version in FhirVersion::ALL {
        let path = format!("/{}/metadata", version.path_segment());
        let (status, statement) = smart.call(HttpEvent::new("GET", &path, None)).await;
        assert_eq!(status, 200);
        let service = &statement["rest"][0]["security"]["service"][0]["coding"][0];
        assert_eq!(
            (service["system"].as_str(), service["code"].as_str()),
            (Some("http://terminology.hl7.org/CodeSystem/restful-security-service"), Some("SMART-on-FHIR")),
            "{statement}"
        );
        fhir_ws_tests::assert_valid_in(version, std::slice::from_ref(&statement));
    }
    let owner_service = SubscriptionService::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        fhir_ws_tests::no_connections(),
        &api_config(IdentityConfig::default(), fhir_ws_core::topics::TopicRegistry::default()),
    );
    let response = owner_service.handle(&HttpEvent::new("GET", "/metadata", None).request(), Utc::now()).await;
    let (_, statement) = status_and_json(&response);
    assert!(statement["rest"][0]["security"].get("service").is_none(), "{statement}");
}
