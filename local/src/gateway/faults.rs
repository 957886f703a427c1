//! `POST /local/faults` (only with `fhir-ws serve --fault-injection`): breaks the
//! connections bound to one subscription the way networks and servers do, so client
//! libraries can be tested against the real stack:
//!
//! - `drop`: API Gateway closes the socket (1001, going away), as on an idle timeout;
//! - `freeze`: the socket stays open but goes silent both ways (a half-open TCP
//!   connection, a NAT that forgot it): events and heartbeats posted to it vanish;
//! - `repeat`: the last frame posted is sent again, as a redelivered event would be.
//!
//! The body is `{"fault": "drop" | "freeze" | "repeat", "subscription": "<id>"}`; the
//! answer says how many connections it reached. Local only, and off by default: the
//! route does not exist unless the flag is given.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhir_ws_core::fhir::{IssueType, OperationOutcome};
use fhir_ws_core::store::BindingStore;
use serde_json::json;

use super::{Backend, Gateway};

/// One fault, as the request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Fault {
    /// Close the socket from the server's side.
    Drop,
    /// Make the socket half-open.
    Freeze,
    /// Send the last frame again.
    Repeat,
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct FaultRequest {
    fault: Fault,
    subscription: String,
}

/// Most connections one request reaches: the bindings of one test's subscription.
const MAX_CONNECTIONS: usize = 1000;

fn refused(status: StatusCode, issue: IssueType, message: &str) -> Response {
    let body = serde_json::to_string(&OperationOutcome::error(issue, message)).unwrap_or_default();
    (status, [("content-type", "application/fhir+json")], body).into_response()
}

/// Applies the fault to every open connection bound to the subscription.
pub(crate) async fn inject<K: Backend>(
    State(gateway): State<Arc<Gateway<K>>>,
    request: Result<Json<FaultRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(FaultRequest { fault, subscription })) = request else {
        return refused(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            r#"the body must be {"fault": "drop" | "freeze" | "repeat", "subscription": "<id>"}"#,
        );
    };
    let page = match gateway.bindings.bindings_page(&subscription, None, None, MAX_CONNECTIONS).await {
        Ok(page) => page,
        Err(error) => {
            tracing::warn!(%error, "fault injection could not read the bindings");
            return refused(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, "the bindings could not be read");
        }
    };
    let mut reached = 0;
    for binding in &page.bindings {
        let id = binding.connection_id.as_str();
        let done = match fault {
            Fault::Drop => gateway.connections.drop_connection(id),
            Fault::Freeze => gateway.connections.freeze(id),
            Fault::Repeat => gateway.connections.repeat_last(id),
        };
        reached += usize::from(done);
    }
    tracing::info!(?fault, subscription, reached, "fault injected");
    (StatusCode::OK, Json(json!({ "fault": fault_name(fault), "connections": reached }))).into_response()
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Drop => "drop",
        Fault::Freeze => "freeze",
        Fault::Repeat => "repeat",
    }
}
