//! The functions' Management API client against a real HTTP endpoint that checks SigV4:
//! posts (our own signed request) and closes (the SDK's operation) are accepted, a post
//! travels exactly as the SDK's `PostToConnection` would (path, encoded id, content type,
//! body), a wrong secret key is refused, and statuses map to what they mean.

use aws_credential_types::Credentials;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use fhir_ws_core::push::{ManagementApiPusher, PushError, Pusher as _};
use fhir_ws_tests::management_api::ManagementApiStub;

/// Connection ids as API Gateway makes them (base64, so `+`, `/` and `=` occur).
const IDS: [&str; 3] = ["L0SM9cOFvHcCIhw=", "a+b/cd==", "plain-Id_0.~"];

#[tokio::test]
async fn posts_are_signed_and_travel_as_the_sdks_do() {
    let stub = ManagementApiStub::start().await;
    let endpoint = stub.endpoint("prod");
    let config = fhir_ws_tests::sdk_config().await;
    let pusher = ManagementApiPusher::new(&config);
    let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&config).endpoint_url(&endpoint).build(),
    );
    for id in IDS {
        let frame = format!(r#"{{"to":"{id}","text":"é ✓"}}"#);
        pusher.post(&endpoint, id, frame.as_bytes()).await.unwrap();
        sdk.post_to_connection().connection_id(id).data(Blob::new(frame.as_bytes())).send().await.unwrap();
        let [ours, theirs] = &stub.posts_to(id)[..] else { panic!("two posts to {id}: {:?}", stub.posts()) };
        assert_eq!(ours.path, theirs.path, "{id}");
        assert_eq!(ours.content_type, theirs.content_type);
        assert_eq!(ours.content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!((ours.text(), ours.status, &ours.stage), (frame.clone(), 200, &"prod".to_owned()));
        assert_eq!(ours.body, theirs.body);
    }
    assert_eq!(stub.posts_to("L0SM9cOFvHcCIhw=")[0].path, "/prod/@connections/L0SM9cOFvHcCIhw%3D");
    pusher.close(&endpoint, IDS[0]).await.unwrap();
    assert_eq!(stub.closed(), [IDS[0]]);
    assert_eq!(stub.unsigned_requests(), 0, "every signature checked out");

    // After the close the connection is gone, as API Gateway answers it.
    assert_eq!(pusher.post(&endpoint, IDS[0], b"late").await, Err(PushError::Gone));
    stub.script(IDS[1], &[429, 500]);
    assert_eq!(pusher.post(&endpoint, IDS[1], b"x").await, Err(PushError::Throttled));
    assert!(matches!(pusher.post(&endpoint, IDS[1], b"x").await, Err(PushError::Failed(_))));
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_by_the_signature_check() {
    let stub = ManagementApiStub::start().await;
    let endpoint = stub.endpoint("prod");
    let wrong = Credentials::new("local", "not-the-secret", None, None, "test");
    let config = fhir_ws_tests::sdk_loader().credentials_provider(wrong).load().await;
    let pusher = ManagementApiPusher::new(&config);
    let refused = pusher.post(&endpoint, IDS[0], b"{}").await;
    assert!(matches!(&refused, Err(PushError::Failed(detail)) if detail.contains("403")), "{refused:?}");
    assert!(pusher.close(&endpoint, IDS[0]).await.is_err());
    assert_eq!(stub.unsigned_requests(), 2);
    assert!(stub.posts().is_empty() && stub.closed().is_empty());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_failed_post_not_a_hang() {
    // A port nothing listens on: connection refused, reported as a failure to retry.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/prod", listener.local_addr().unwrap());
    drop(listener);
    let pusher = ManagementApiPusher::new(&fhir_ws_tests::sdk_config().await);
    assert!(matches!(pusher.post(&endpoint, IDS[0], b"{}").await, Err(PushError::Failed(_))));
}
