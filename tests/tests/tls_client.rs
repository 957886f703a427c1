//! The functions' one HTTP client (`fhir_ws_core::aws`: hyper 1, rustls on ring, compiled-in
//! roots) over real TLS. A local HTTPS server with a certificate issued by a private CA
//! answers a DynamoDB `ListTables`: trusted when `SSL_CERT_FILE` names the CA, refused with
//! the compiled-in roots (the handshake fails before any request is read).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A CA, and a server certificate for `localhost` it issued: (CA PEM, server config).
fn private_ca_and_server() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&server_key, &issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server.der().clone()], key)
        .unwrap();
    (ca.pem(), config)
}

/// Serves HTTPS on a loopback port: every request read completely gets a `ListTables`
/// answer naming one table. Returns the URL and the count of requests answered.
async fn https_server(config: rustls::ServerConfig) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let answered = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(read) = tls.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|value| value.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let body = r#"{"TableNames":["OverTls"]}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                if tls.write_all(answer.as_bytes()).await.is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, answered)
}

async fn list_tables(url: &str, certificate_file: Option<&str>) -> Result<Vec<String>, String> {
    let source = |name: &str| match name {
        "SSL_CERT_FILE" => certificate_file.map(str::to_owned),
        _ => None,
    };
    let config = fhir_ws_core::aws::sdk_config_loader(&source)
        .unwrap()
        .endpoint_url(url)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("tls", "tls", None, None, "tls"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    client
        .list_tables()
        .send()
        .await
        .map(|answer| answer.table_names.unwrap_or_default())
        .map_err(|error| format!("{:?}", aws_sdk_dynamodb::error::DisplayErrorContext(error)))
}

#[tokio::test]
async fn a_private_ca_named_by_ssl_cert_file_is_trusted() {
    let (ca_pem, server_config) = private_ca_and_server();
    let (url, answered) = https_server(server_config).await;
    let file = std::env::temp_dir().join(format!("fhir-ws-ca-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&file, ca_pem).unwrap();
    let tables = list_tables(&url, Some(file.to_str().unwrap())).await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(tables, Ok(vec!["OverTls".to_owned()]));
    assert_eq!(answered.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_compiled_in_roots_refuse_a_private_ca() {
    let (_, server_config) = private_ca_and_server();
    let (url, answered) = https_server(server_config).await;
    let refused = list_tables(&url, None).await.unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    assert_eq!(answered.load(Ordering::SeqCst), 0, "no request may reach an untrusted server");
}
