//! TLS for the CLI's WebSocket connections to a deployed stack (`wss://`).
//!
//! The connector is given explicitly rather than left to rustls' process-wide default:
//! the workspace links rustls with two crypto providers (ring for the functions' SDK
//! client, aws-lc-rs through reqwest and tungstenite), and with two rustls cannot pick a
//! default, so an implicit `ClientConfig::builder()` would panic. The roots are the
//! functions' own ([`fhir_ws_core::aws::trusted_roots`]): the compiled-in Mozilla set, or
//! the bundle `SSL_CERT_FILE` names.

use fhir_ws_core::aws::TrustedRoots;
use std::sync::Arc;
use tokio_tungstenite::Connector;

/// The connector for `wss://` URLs: rustls on ring with `roots`.
pub fn websocket_connector(roots: &TrustedRoots) -> Result<Connector, rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(roots.certificates().iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connector_builds_with_the_compiled_in_roots() {
        match websocket_connector(&TrustedRoots::compiled_in()) {
            Ok(Connector::Rustls(config)) => assert!(config.alpn_protocols.is_empty()),
            Ok(_) => panic!("not a rustls connector"),
            Err(error) => panic!("{error}"),
        }
    }
}
