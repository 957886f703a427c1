//! `GET [base]/metadata`: the `CapabilityStatement` stating what this server does, in the
//! request's FHIR version.
//!
//! Only what is implemented is listed: the Subscription resource with its interactions
//! and the `status`, `topic` and `url` search parameters, the three Subscription operations with their
//! canonical definitions, and the websocket channel (the `websocket` channel type, and
//! the WebSocket URL in the `capabilitystatement-websocket` extension). No
//! authentication is needed, as FHIR asks of `metadata`.
//!
//! At `/R4/metadata` and `/R4B/metadata` the statement is R4 (4.0.1) or R4B (4.3.0): it
//! `instantiates` the Backport IG's server statement for that version
//! (`backport-subscription-server-r4`, `backport-subscription-server`), names the IG in
//! `implementationGuide`, the IG's Subscription profile in `supportedProfile`, and the
//! IG's OperationDefinitions and `topic` search parameter.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::fhir::version::FhirVersion;
use crate::http::{ApiError, AuthorizationMode, fhir_response, origin, request_version};
use crate::topics::TopicRegistry;

/// The path segment.
pub const METADATA: &str = "metadata";
/// When this statement last changed (`CapabilityStatement.date`).
const STATEMENT_DATE: &str = "2026-12-02";
/// The extension (FHIR extensions pack, on `CapabilityStatement.rest`) naming the
/// server's WebSocket endpoint.
pub const WEBSOCKET_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket";

/// Canonical of the Backport IG (`CapabilityStatement.implementationGuide`).
pub const BACKPORT_IG: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/ImplementationGuide/hl7.fhir.uv.subscriptions-backport";
/// Prefix of the Backport IG's canonicals.
const IG_BASE: &str = "http://hl7.org/fhir/uv/subscriptions-backport";

/// Answers `GET [base]/metadata` with the statement for the server at the request's base
/// URL, in the request's FHIR version, whose WebSocket API is at `websocket_url`.
pub fn handle(
    request: &Request,
    websocket_url: &str,
    topics: &TopicRegistry,
    mode: AuthorizationMode,
) -> Response<Body> {
    if request.method() != Method::GET {
        return ApiError::method_not_allowed(request.method().as_str(), "GET").into_response();
    }
    match request_version(request) {
        Ok(version) => {
            let mut statement = statement(&base_url(request), websocket_url, version, topics);
            if mode == AuthorizationMode::Smart {
                advertise_smart(&mut statement);
            }
            fhir_response(StatusCode::OK, &statement)
        }
        Err(error) => error.into_response(),
    }
}

/// `rest.security` of a server in `smart` mode: the SMART-on-FHIR service (the same code in
/// R4, R4B and R5's `restful-security-service` code system).
fn advertise_smart(statement: &mut Value) {
    statement["rest"][0]["security"] = json!({
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}], "text": "SMART-on-FHIR"}],
        "description": "Every interaction but metadata needs a SMART on FHIR access token (JWT). The \
            Subscription API needs Subscription scopes (c to create, r to read, u to update, d to \
            delete, s to search; v1 read and write), subscriptions are limited to what the token's \
            resource scopes and launch patient allow, and a caller sees only the subscriptions it created.",
    });
}

/// The service base: the request URL without its trailing `/metadata`.
fn base_url(request: &Request) -> String {
    let path = request.uri().path().trim_end_matches('/');
    let prefix = path.strip_suffix(METADATA).unwrap_or(path).trim_end_matches('/');
    format!("{}{prefix}", origin(request))
}

/// The canonical of the IG's server CapabilityStatement a version's statement
/// instantiates (none for R5, whose core defines the operations).
pub fn instantiated_statement(version: FhirVersion) -> Option<String> {
    match version {
        FhirVersion::R4 => Some(format!("{IG_BASE}/CapabilityStatement/backport-subscription-server-r4")),
        FhirVersion::R4B => Some(format!("{IG_BASE}/CapabilityStatement/backport-subscription-server")),
        FhirVersion::R5 => None,
    }
}

/// The Backport IG's extension on `CapabilityStatement.rest.resource` naming a topic.
pub const TOPIC_CANONICAL_EXTENSION: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical";

/// The statement itself, for a client of `version`, listing the deployed `topics`.
pub fn statement(base: &str, websocket_url: &str, version: FhirVersion, topics: &TopicRegistry) -> Value {
    let backport = version != FhirVersion::R5;
    let operation = |code: &str, r5_id: &str, documentation: &str| {
        let definition = if backport {
            format!("{IG_BASE}/OperationDefinition/backport-subscription-{code}")
        } else {
            format!("http://hl7.org/fhir/OperationDefinition/{r5_id}")
        };
        json!({"name": code, "definition": definition, "documentation": documentation})
    };
    let search_parameter = |name: &str, kind: &str| {
        let definition = if backport && name == "topic" {
            format!("{IG_BASE}/SearchParameter/Subscription-topic")
        } else {
            format!("http://hl7.org/fhir/SearchParameter/Subscription-{name}")
        };
        json!({"name": name, "definition": definition, "type": kind})
    };
    let mut subscription = json!({
        "type": "Subscription",
        "documentation": "Websocket subscriptions are active from creation; other channel types \
            are stored but not delivered by this server. A subscription is served at the base of \
            the FHIR version it was created in.",
        "interaction": [
            {"code": "read"}, {"code": "update"}, {"code": "delete"},
            {"code": "create"}, {"code": "search-type"},
        ],
        "versioning": "versioned-update",
        "readHistory": false,
        "updateCreate": false,
        "conditionalCreate": false,
        "conditionalUpdate": false,
        "conditionalDelete": "not-supported",
        "searchParam": [
            search_parameter("status", "token"),
            search_parameter("topic", "uri"),
            search_parameter("url", "uri"),
        ],
        "operation": [
            operation("get-ws-binding-token", "Subscription-get-ws-binding-token",
                "Type and instance level, GET and POST."),
            operation("status", "Subscription-status", "Type and instance level, GET and POST."),
            operation("events", "Subscription-events",
                "Instance level, GET and POST; events are retained for a configured time."),
            json!({"name": "revoke-ws-binding-token",
                "definition": format!("{base}/OperationDefinition/Subscription-revoke-ws-binding-token"),
                "documentation": "This server's own operation: POST at type level with a 'token' \
                    (valueString) issued to the caller. The token never binds again, its bindings are \
                    removed and connections left with none are closed after a last OperationOutcome frame."}),
        ],
    });
    if backport {
        subscription["supportedProfile"] = json!([format!("{IG_BASE}/StructureDefinition/backport-subscription")]);
        if !topics.is_empty() {
            let canonicals: Vec<Value> = topics
                .topics()
                .iter()
                .map(|t| json!({"url": TOPIC_CANONICAL_EXTENSION, "valueCanonical": t.url}))
                .collect();
            subscription["extension"] = Value::Array(canonicals);
        }
    }
    let mut resources = vec![subscription];
    // R4 has no SubscriptionTopic resource: its clients read the canonicals above.
    if version != FhirVersion::R4 && !topics.is_empty() {
        resources.push(json!({
            "type": "SubscriptionTopic",
            "documentation": "The topics deployed with this server (read-only).",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "url", "definition": "http://hl7.org/fhir/SearchParameter/SubscriptionTopic-url", "type": "uri"},
                {"name": "status", "definition": "http://hl7.org/fhir/SearchParameter/SubscriptionTopic-status", "type": "token"},
                {"name": "derived-or-self", "definition": "http://hl7.org/fhir/SearchParameter/SubscriptionTopic-derived-or-self", "type": "uri"},
            ],
        }));
    }
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "fhir-ws",
        "kind": "instance",
        "software": {"name": "fhir-ws", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "fhir-ws: FHIR topic-based Subscriptions over WebSockets",
            "url": base,
        },
        "fhirVersion": version.full_version(),
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Topic-based Subscriptions delivered on the websocket channel \
                (channelType http://terminology.hl7.org/CodeSystem/subscription-channel-type#websocket). \
                Clients get a binding token with $get-ws-binding-token, open the WebSocket at the URL in \
                the websocket extension and send bind-with-token <token>. R4 clients use the /R4 base, \
                R4B clients /R4B, R5 clients the unversioned base or /R5.",
            "extension": [{"url": WEBSOCKET_EXTENSION, "valueUri": websocket_url}],
            "security": {
                "description": "Every interaction but metadata needs a bearer token (JWT); a caller sees \
                    only the subscriptions it created.",
            },
            "resource": resources,
        }],
    });
    if let Some(instantiated) = instantiated_statement(version) {
        statement["instantiates"] = json!([instantiated]);
        statement["implementationGuide"] = json!([BACKPORT_IG]);
    }
    statement
}
