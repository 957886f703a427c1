//! FHIR `id` datatype: syntax check and generation of server-assigned ids.

/// True when `candidate` matches the FHIR `id` regex `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(candidate: &str) -> bool {
    (1..=64).contains(&candidate.len())
        && candidate.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A new random id (UUID v4, 36 characters), valid as a FHIR `id`.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_fhir_ids_and_rejects_the_rest() {
        assert!(is_valid_id("abc-123.X"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("ünï"));
        assert!(is_valid_id(&new_id()));
    }
}
