//! The AWS SDK configuration every function loads once at cold start, with the one HTTP
//! and TLS stack the functions link: hyper 1, rustls 0.23 on ring, and root certificates
//! compiled into the binary.
//!
//! Why not the SDK's defaults: its default features link a second, legacy stack next to
//! this one (hyper 0.14 and rustls 0.21) and a second crypto library (aws-lc-rs next to
//! ring), and its default client reads the system's CA store file by file (`strace` showed
//! every file under `/etc/ssl/certs` opened), which was about half of a function's init
//! under the runtime emulator. The Mozilla roots compiled in (`webpki-root-certs`) cost no
//! file access. `SSL_CERT_FILE`, when set, replaces them with the PEM bundle it names, as
//! it does for OpenSSL and for the SDK's own default client: the way to trust a private CA
//! (a corporate proxy, a local HTTPS endpoint).

use crate::config::{ConfigError, ProcessEnv, Source};
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Connector, HttpClientError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The variable naming a PEM bundle to trust instead of the compiled-in roots.
pub const CERTIFICATE_FILE_VARIABLE: &str = "SSL_CERT_FILE";

/// The SDK configuration from the process environment (region, credentials, endpoints),
/// with the client of [`https_client`] trusting [`process_trusted_roots`].
pub async fn load_sdk_config() -> Result<SdkConfig, ConfigError> {
    Ok(loader_trusting(process_trusted_roots()?)?.load().await)
}

/// A loader for the SDK configuration with the client of [`https_client`] and the
/// trusted roots `source` chooses; callers may override endpoints or the region before
/// loading (the tests and the local stack do).
pub fn sdk_config_loader(source: &impl Source) -> Result<ConfigLoader, ConfigError> {
    loader_trusting(trusted_roots(source)?)
}

fn loader_trusting(roots: TrustedRoots) -> Result<ConfigLoader, ConfigError> {
    let client =
        https_client(roots).map_err(|error| ConfigError::Invalid(CERTIFICATE_FILE_VARIABLE, error.to_string()))?;
    Ok(aws_config::defaults(BehaviorVersion::latest()).http_client(client))
}

/// The roots the process environment asks for, read once per process: the SDK's client
/// and the fan-out's own connector ([`https_connector`]) both trust them, and
/// `SSL_CERT_FILE` is read and checked a single time.
pub fn process_trusted_roots() -> Result<TrustedRoots, ConfigError> {
    static ROOTS: std::sync::OnceLock<Result<TrustedRoots, ConfigError>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| trusted_roots(&ProcessEnv)).clone()
}

/// The SDK's hyper 1 client with rustls on ring, trusting `roots`. Connections are made
/// and the roots parsed by the client on its first request, not here.
pub fn https_client(roots: TrustedRoots) -> Result<SharedHttpClient, HttpClientError> {
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(TLS_PROVIDER)
        .tls_context(tls_context(&roots)?)
        .build_https())
}

/// A connector of the same stack for requests made without an SDK operation (the
/// fan-out's posts, [`crate::push`]): its own connection pool, the same crates and roots.
pub fn https_connector(roots: TrustedRoots) -> Result<Connector, HttpClientError> {
    Ok(Connector::builder().tls_provider(TLS_PROVIDER).tls_context(tls_context(&roots)?).build())
}

/// rustls on ring: the one TLS stack and crypto library the functions link.
const TLS_PROVIDER: tls::Provider = tls::Provider::Rustls(CryptoMode::Ring);

fn tls_context(roots: &TrustedRoots) -> Result<TlsContext, HttpClientError> {
    let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(roots.pem());
    TlsContext::builder().with_trust_store(trust).build()
}

/// Root certificates to trust, every one known to be usable as a trust anchor (the SDK's
/// client would panic on one that is not). Also the roots of the CLI's `wss://` connector.
#[derive(Debug, Clone)]
pub struct TrustedRoots {
    certificates: Vec<CertificateDer<'static>>,
}

impl TrustedRoots {
    /// How many certificates are trusted.
    pub fn count(&self) -> usize {
        self.certificates.len()
    }

    /// The certificates (DER).
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The Mozilla root program's certificates, compiled in. Not checked one by one at
    /// cold start: they are fixed at build time, and a unit test checks every one.
    pub fn compiled_in() -> Self {
        Self { certificates: webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec() }
    }

    /// The certificates of a PEM bundle; refused when one of them is not a usable root or
    /// there are none.
    pub fn from_pem(bundle: &[u8]) -> Result<Self, String> {
        let mut certificates = Vec::new();
        for (position, parsed) in CertificateDer::pem_slice_iter(bundle).enumerate() {
            let certificate =
                parsed.map_err(|error| format!("certificate {} is not valid PEM: {error}", position + 1))?;
            if !is_trust_anchor(&certificate) {
                return Err(format!("certificate {} cannot be used as a trusted root", position + 1));
            }
            certificates.push(certificate);
        }
        if certificates.is_empty() {
            return Err("it holds no PEM certificate".into());
        }
        Ok(Self { certificates })
    }

    /// One PEM bundle of them all, the form the SDK's trust store takes.
    fn pem(&self) -> Vec<u8> {
        let mut pem = Vec::new();
        for certificate in &self.certificates {
            pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
            for line in STANDARD.encode(certificate.as_ref()).as_bytes().chunks(64) {
                pem.extend_from_slice(line);
                pem.push(b'\n');
            }
            pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
        }
        pem
    }
}

/// The roots `source` asks for: the bundle `SSL_CERT_FILE` names, else the compiled-in ones.
pub fn trusted_roots(source: &impl Source) -> Result<TrustedRoots, ConfigError> {
    let Some(path) = source.value(CERTIFICATE_FILE_VARIABLE) else {
        return Ok(TrustedRoots::compiled_in());
    };
    let invalid = |reason: String| ConfigError::Invalid(CERTIFICATE_FILE_VARIABLE, reason);
    let bundle = std::fs::read(&path).map_err(|error| invalid(format!("cannot read {path}: {error}")))?;
    TrustedRoots::from_pem(&bundle).map_err(|reason| invalid(format!("{path}: {reason}")))
}

fn is_trust_anchor(certificate: &CertificateDer<'_>) -> bool {
    webpki::anchor_from_trusted_cert(certificate).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_certificate_file(path: &str) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| (name == CERTIFICATE_FILE_VARIABLE).then(|| path.to_string())
    }

    #[test]
    fn every_compiled_in_root_is_a_usable_trust_anchor() {
        let roots = TrustedRoots::compiled_in();
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().all(is_trust_anchor));
        assert!(roots.count() > 100, "{} roots", roots.count());
        let reparsed = TrustedRoots::from_pem(&roots.pem()).map_err(|e| e.to_string());
        assert_eq!(reparsed.map(|r| r.count()), Ok(roots.count()));
    }

    #[test]
    fn without_ssl_cert_file_the_compiled_in_roots_are_trusted() {
        let roots = trusted_roots(&|_: &str| None);
        assert_eq!(roots.map(|r| r.count()).ok(), Some(TrustedRoots::compiled_in().count()));
    }

    #[test]
    fn a_bundle_named_by_ssl_cert_file_replaces_them() {
        let compiled_in = TrustedRoots::compiled_in();
        let first_two: Vec<u8> = {
            let text = String::from_utf8_lossy(&compiled_in.pem()).into_owned();
            let end = text.match_indices("-----END CERTIFICATE-----\n").nth(1).map(|(at, m)| at + m.len());
            text.as_bytes()[..end.unwrap_or(0)].to_vec()
        };
        let dir = std::env::temp_dir().join(format!("fhir-ws-roots-{}", uuid::Uuid::new_v4()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("bundle.pem");
        let _ = std::fs::write(&path, [b"# two roots\n".as_slice(), &first_two].concat());
        let path = path.to_string_lossy().to_string();
        let roots = trusted_roots(&only_certificate_file(&path));
        assert_eq!(roots.map(|r| r.count()).ok(), Some(2));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unusable_bundles_are_configuration_errors_naming_the_variable() {
        let missing = trusted_roots(&only_certificate_file("/nonexistent/bundle.pem"));
        assert!(matches!(missing, Err(ConfigError::Invalid("SSL_CERT_FILE", ref m)) if m.contains("cannot read")));
        assert!(TrustedRoots::from_pem(b"").is_err());
        assert!(TrustedRoots::from_pem(b"not a certificate at all").is_err());
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(TrustedRoots::from_pem(broken).unwrap_err().contains("certificate 1"));
        let not_a_certificate = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(TrustedRoots::from_pem(not_a_certificate).unwrap_err().contains("trusted root"));
    }
}
