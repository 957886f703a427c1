//! `GET [base]/SubscriptionTopic[?url=…&status=…&derived-or-self=…]` and
//! `GET [base]/SubscriptionTopic/{id}`: how R5 and R4B clients discover the topics deployed
//! with the stack ([`crate::topics`]); R4B clients get R4B's shape
//! ([`crate::fhir::backport::topic`]).
//!
//! Search matches `url` exactly, `derived-or-self` on `url` or `derivedFrom`, and `status`
//! by code (comma-separated values OR-ed); other parameters are ignored and left out of
//! the `self` link. Reading by id needs the topic file to carry an `id`. Like the
//! Subscription API, it needs an authenticated caller. R4 has no SubscriptionTopic: R4
//! clients find the topics' canonicals in `metadata` (the Backport IG's
//! `capabilitystatement-subscriptiontopic-canonical` extension), and `/R4` answers 404 here
//! saying so.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt as _, Response};

use crate::fhir::backport::topic::topic_to_r4b;
use crate::fhir::version::FhirVersion;
use crate::fhir::{Bundle, BundleEntry, BundleLink, BundleSearch};
use crate::http::{ApiError, IdentityConfig, fhir_response, origin, path_segments, request_version};
use crate::topics::TopicRegistry;

/// The resource's path segment.
pub const SUBSCRIPTION_TOPIC: &str = "SubscriptionTopic";

/// Answers one request. Never fails: errors become `OperationOutcome`s.
pub fn handle(request: &Request, topics: &TopicRegistry, identity: &IdentityConfig) -> Response<Body> {
    respond(request, topics, identity).unwrap_or_else(ApiError::into_response)
}

fn respond(request: &Request, topics: &TopicRegistry, identity: &IdentityConfig) -> Result<Response<Body>, ApiError> {
    let segments = path_segments(request)?;
    let at = segments
        .iter()
        .position(|s| s == SUBSCRIPTION_TOPIC)
        .ok_or_else(|| ApiError::not_found(format!("no route for {}", request.uri().path())))?;
    let version = request_version(request)?;
    if request.method() != Method::GET {
        return Err(ApiError::method_not_allowed(request.method().as_str(), "GET"));
    }
    identity.caller(request)?;
    if version == FhirVersion::R4 {
        return Err(ApiError::not_found(format!(
            "R4 has no SubscriptionTopic resource; FHIR R4 clients find the topics in {}/metadata",
            segments[..at].iter().map(|s| format!("/{s}")).collect::<String>()
        )));
    }
    let shape = |resource: &serde_json::Value| match version {
        FhirVersion::R4B => topic_to_r4b(resource),
        _ => resource.clone(),
    };
    let base = format!("{}{}", origin(request), segments[..at].iter().map(|s| format!("/{s}")).collect::<String>());
    match &segments[at + 1..] {
        [] => Ok(search(request, topics, &base, shape)),
        [id] => {
            let topic = topics
                .topics()
                .iter()
                .find(|t| t.resource.get("id").and_then(serde_json::Value::as_str) == Some(id.as_str()))
                .ok_or_else(|| ApiError::not_found(format!("SubscriptionTopic/{id} is not known")))?;
            Ok(fhir_response(StatusCode::OK, &shape(&topic.resource)))
        }
        _ => Err(ApiError::not_found(format!("no route for {}", request.uri().path()))),
    }
}

fn search(
    request: &Request,
    topics: &TopicRegistry,
    base: &str,
    shape: impl Fn(&serde_json::Value) -> serde_json::Value,
) -> Response<Body> {
    let query = request.query_string_parameters();
    let values = |name: &str| -> Vec<String> {
        query
            .all(name)
            .unwrap_or_default()
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (urls, statuses, derived) = (values("url"), values("status"), values("derived-or-self"));
    let found: Vec<&crate::topics::Topic> = topics
        .topics()
        .iter()
        .filter(|t| urls.is_empty() || urls.contains(&t.url))
        .filter(|t| {
            let parents = t.resource.get("derivedFrom").and_then(serde_json::Value::as_array);
            let derives = |url: &String| parents.into_iter().flatten().any(|p| p.as_str() == Some(url.as_str()));
            derived.is_empty() || derived.iter().any(|url| *url == t.url || derives(url))
        })
        .filter(|t| {
            let status = t.resource.get("status").and_then(serde_json::Value::as_str).unwrap_or_default();
            statuses.is_empty() || statuses.iter().any(|s| s == status)
        })
        .collect();
    let mut bundle = Bundle::new("searchset");
    bundle.total = Some(found.len() as u64);
    let mut applied: Vec<String> = Vec::new();
    let encoded = |values: &[String]| -> String {
        let encoded: Vec<String> = values
            .iter()
            .map(|u| percent_encoding::utf8_percent_encode(u, percent_encoding::NON_ALPHANUMERIC).to_string())
            .collect();
        encoded.join(",")
    };
    if !urls.is_empty() {
        applied.push(format!("url={}", encoded(&urls)));
    }
    if !statuses.is_empty() {
        applied.push(format!("status={}", statuses.join(",")));
    }
    if !derived.is_empty() {
        applied.push(format!("derived-or-self={}", encoded(&derived)));
    }
    let query = if applied.is_empty() { String::new() } else { format!("?{}", applied.join("&")) };
    bundle.link.push(BundleLink { relation: "self".to_owned(), url: format!("{base}/{SUBSCRIPTION_TOPIC}{query}") });
    for topic in found {
        let id = topic.resource.get("id").and_then(serde_json::Value::as_str);
        bundle.entry.push(BundleEntry {
            full_url: Some(id.map_or_else(|| topic.url.clone(), |id| format!("{base}/{SUBSCRIPTION_TOPIC}/{id}"))),
            resource: Some(shape(&topic.resource)),
            search: Some(BundleSearch { mode: "match".to_owned() }),
        });
    }
    fhir_response(StatusCode::OK, &bundle)
}
