//! `GET [base]/SubscriptionTopic[?url=…&status=…]` and `GET [base]/SubscriptionTopic/{id}`:
//! how R5 clients discover the topics deployed with the stack ([`crate::topics`]).
//!
//! Search matches `url` exactly and `status` by code (comma-separated values OR-ed); other
//! parameters are ignored and left out of the `self` link. Reading by id needs the topic
//! file to carry an `id`. Like the Subscription API, it needs an authenticated caller.
//! R4 and R4B clients find the topics' canonicals in `metadata` (the Backport IG's
//! `capabilitystatement-subscriptiontopic-canonical` extension); the R4B
//! `SubscriptionTopic` shape is not served yet, so `/R4` and `/R4B` answer 404 here.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt as _, Response};

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
    if version != FhirVersion::R5 {
        return Err(ApiError::not_found(format!(
            "SubscriptionTopic is served in R5 only; FHIR {} clients find the topics in {}/metadata",
            version.path_segment(),
            segments[..at].iter().map(|s| format!("/{s}")).collect::<String>()
        )));
    }
    let base = format!("{}{}", origin(request), segments[..at].iter().map(|s| format!("/{s}")).collect::<String>());
    match &segments[at + 1..] {
        [] => Ok(search(request, topics, &base)),
        [id] => {
            let topic = topics
                .topics()
                .iter()
                .find(|t| t.resource.get("id").and_then(serde_json::Value::as_str) == Some(id.as_str()))
                .ok_or_else(|| ApiError::not_found(format!("SubscriptionTopic/{id} is not known")))?;
            Ok(fhir_response(StatusCode::OK, &topic.resource))
        }
        _ => Err(ApiError::not_found(format!("no route for {}", request.uri().path()))),
    }
}

fn search(request: &Request, topics: &TopicRegistry, base: &str) -> Response<Body> {
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
    let (urls, statuses) = (values("url"), values("status"));
    let found: Vec<&crate::topics::Topic> = topics
        .topics()
        .iter()
        .filter(|t| urls.is_empty() || urls.contains(&t.url))
        .filter(|t| {
            let status = t.resource.get("status").and_then(serde_json::Value::as_str).unwrap_or_default();
            statuses.is_empty() || statuses.iter().any(|s| s == status)
        })
        .collect();
    let mut bundle = Bundle::new("searchset");
    bundle.total = Some(found.len() as u64);
    let mut applied: Vec<String> = Vec::new();
    if !urls.is_empty() {
        let encoded: Vec<String> = urls
            .iter()
            .map(|u| percent_encoding::utf8_percent_encode(u, percent_encoding::NON_ALPHANUMERIC).to_string())
            .collect();
        applied.push(format!("url={}", encoded.join(",")));
    }
    if !statuses.is_empty() {
        applied.push(format!("status={}", statuses.join(",")));
    }
    let query = if applied.is_empty() { String::new() } else { format!("?{}", applied.join("&")) };
    bundle.link.push(BundleLink { relation: "self".to_owned(), url: format!("{base}/{SUBSCRIPTION_TOPIC}{query}") });
    for topic in found {
        let id = topic.resource.get("id").and_then(serde_json::Value::as_str);
        bundle.entry.push(BundleEntry {
            full_url: Some(id.map_or_else(|| topic.url.clone(), |id| format!("{base}/{SUBSCRIPTION_TOPIC}/{id}"))),
            resource: Some(topic.resource.clone()),
            search: Some(BundleSearch { mode: "match".to_owned() }),
        });
    }
    fhir_response(StatusCode::OK, &bundle)
}
