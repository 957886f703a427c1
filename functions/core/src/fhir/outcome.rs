//! `OperationOutcome`: the body of every error response and socket error frame.

use serde::{Deserialize, Serialize};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueSeverity {
    /// The action failed and nothing was changed.
    Error,
    /// The server could not continue at all.
    Fatal,
    /// Something worth knowing; the action succeeded.
    Warning,
    /// Information only.
    Information,
}

/// `OperationOutcome.issue.code` (value set `issue-type`), the codes this project uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A structural issue in the content (e.g. not JSON).
    Structure,
    /// An element or header value is invalid.
    Value,
    /// A required element is missing.
    Required,
    /// The client needs to authenticate.
    Login,
    /// The caller is known but not allowed to do this.
    Forbidden,
    /// The resource or route does not exist.
    NotFound,
    /// The method, content type or feature is not supported.
    NotSupported,
    /// The request asks for more than the server will do.
    TooCostly,
    /// The content is valid but breaks a business rule.
    BusinessRule,
    /// A security problem (e.g. a token that cannot be used).
    Security,
    /// An edit conflict (version mismatch).
    Conflict,
    /// What was referred to has been deleted.
    Deleted,
    /// The server is throttled; retry later.
    Throttled,
    /// A passing failure (a queue or store unavailable); retry later.
    Transient,
    /// An unexpected internal error.
    Exception,
    /// Information only (not an error).
    Informational,
}

/// One issue of an `OperationOutcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationOutcomeIssue {
    /// How bad the issue is.
    pub severity: IssueSeverity,
    /// What kind of issue it is.
    pub code: IssueType,
    /// A human-readable explanation, safe to show to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
}

/// A FHIR `OperationOutcome` resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    /// Always `OperationOutcome`.
    pub resource_type: String,
    /// At least one issue.
    pub issue: Vec<OperationOutcomeIssue>,
}

impl OperationOutcome {
    /// An outcome with a single `error` issue.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::single(IssueSeverity::Error, code, diagnostics)
    }

    /// An outcome with one issue of the given severity.
    pub fn single(severity: IssueSeverity, code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self {
            resource_type: "OperationOutcome".to_owned(),
            issue: vec![OperationOutcomeIssue { severity, code, diagnostics: Some(diagnostics.into()) }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_fhir_json() -> Result<(), serde_json::Error> {
        let outcome = OperationOutcome::error(IssueType::NotFound, "no such thing");
        assert_eq!(
            serde_json::to_value(&outcome)?,
            serde_json::json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "not-found", "diagnostics": "no such thing"}]
            })
        );
        Ok(())
    }
}
