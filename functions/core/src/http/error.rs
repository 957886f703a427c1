//! Every HTTP error is an [`ApiError`], answered as an `OperationOutcome`.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};

use super::{fhir_response, set_header};
use crate::access::Unbindable;
use crate::fhir::{IssueType, OperationOutcome};
use crate::store::StoreError;
use crate::token::verify::TokenRejection;

/// An error answer: HTTP status, FHIR issue type and a message safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `OperationOutcome.issue.code`.
    pub code: IssueType,
    /// `OperationOutcome.issue.diagnostics`.
    pub message: String,
    /// Extra header for the answer (`Allow` on 405, `Retry-After` when throttled).
    extra_header: Option<(header::HeaderName, String)>,
}

impl ApiError {
    /// An error with this status, issue type and message.
    pub fn new(status: StatusCode, code: IssueType, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), extra_header: None }
    }

    /// 400 `invalid`: content that breaks the rules.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
    }

    /// 400 `structure`: not parseable JSON.
    pub fn structure(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Structure, message)
    }

    /// 401 `login`: no authenticated caller.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, IssueType::Login, "the request carries no authenticated identity")
    }

    /// 403 `forbidden`: authenticated, but the grant does not allow it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, IssueType::Forbidden, message)
    }

    /// 404 `not-found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueType::NotFound, message)
    }

    /// 405 `not-supported`, with the `Allow` header listing `allowed`.
    pub fn method_not_allowed(method: &str, allowed: &str) -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            format!("method {method} is not supported here; use {allowed}"),
        );
        error.extra_header = Some((header::ALLOW, allowed.to_owned()));
        error
    }

    /// 413 `too-costly`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooCostly, message)
    }

    /// 415 `not-supported`.
    pub fn unsupported_media_type(found: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!("content type '{found}' is not supported; send application/fhir+json"),
        )
    }

    /// 422 `business-rule`.
    pub fn business_rule(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule, message)
    }

    /// 503 `throttled`, retryable after a second.
    pub fn throttled() -> Self {
        let mut error =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Throttled, "the server is busy; retry shortly");
        error.extra_header = Some((header::RETRY_AFTER, "1".to_owned()));
        error
    }

    /// 503 `transient`: something we depend on failed; retryable after a few seconds.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, message);
        error.extra_header = Some((header::RETRY_AFTER, "5".to_owned()));
        error
    }

    /// 500 `exception`. The cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, "internal error; it has been logged")
    }

    /// The response: status, `OperationOutcome` body, extra header.
    pub fn into_response(self) -> Response<Body> {
        let mut response = fhir_response(self.status, &OperationOutcome::error(self.code, self.message));
        if let Some((name, value)) = self.extra_header {
            set_header(&mut response, name, &value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => Self::new(
                StatusCode::CONFLICT,
                IssueType::Conflict,
                "the resource was changed by another request; read it again and retry",
            ),
            StoreError::Throttled => Self::throttled(),
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => Self::internal(&error),
        }
    }
}

impl From<TokenRejection> for ApiError {
    /// A bad token is 401 `login`; a genuine token for subscriptions that cannot be bound
    /// is 403 `forbidden`; a store failure is what the store error says.
    fn from(rejection: TokenRejection) -> Self {
        match rejection {
            TokenRejection::Invalid(_) | TokenRejection::NotIssued | TokenRejection::Revoked => {
                Self::new(StatusCode::UNAUTHORIZED, IssueType::Login, rejection.to_string())
            }
            TokenRejection::Unbindable(inner) => {
                Self::new(StatusCode::FORBIDDEN, IssueType::Forbidden, inner.to_string())
            }
            TokenRejection::Store(inner) => inner.into(),
        }
    }
}

impl From<Unbindable> for ApiError {
    fn from(error: Unbindable) -> Self {
        match error {
            Unbindable::NotFound(_) => Self::not_found(error.to_string()),
            Unbindable::NotWebsocket(_) | Unbindable::Inactive(..) => Self::business_rule(error.to_string()),
        }
    }
}
