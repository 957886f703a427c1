//! `PostToConnection` as one signed HTTP request, without the SDK's generated operation.
//!
//! Why: the fan-out posts the same frame to thousands of connections, and a profile of the
//! SDK's operation (the guide, docs/src/perf-history.md) showed most of a post's user-space CPU in its
//! per-call machinery, not in HTTP: runtime plugins and configuration layers applied on
//! every call, interceptors (the user-agent header formatted each time), an identity
//! lookup through the resolver chain. This module builds the very request the SDK builds
//! (`POST {callback_url}/@connections/{id}`, the id encoded as a Smithy path label,
//! `Content-Type: application/octet-stream`), signs it with the SDK's own SigV4 signer
//! (`aws-sigv4`, service `execute-api`, the same settings the SDK uses) and sends it on the
//! same hyper/rustls connector the functions use everywhere ([`crate::aws`]). Credentials
//! are resolved through the configuration's provider and kept until five minutes before
//! they expire (Lambda's come from the environment and do not expire while it runs).

use std::sync::{OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::HttpConnector as _;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::http::Request;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{ATTEMPT_TIMEOUT, PushError};

/// The signing name of the Management API.
const SERVICE: &str = "execute-api";
/// Credentials are renewed this long before they expire.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// A Smithy path label keeps only RFC 3986's unreserved characters (API Gateway's
/// connection ids end in `=`, which must travel as `%3D`).
const PATH_LABEL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Posts frames with SigV4-signed requests; one per Lambda instance, shared by every post.
#[derive(Debug)]
pub(super) struct SignedPoster {
    region: Option<String>,
    time: SharedTimeSource,
    provider: Option<SharedCredentialsProvider>,
    identity: RwLock<Option<CachedIdentity>>,
    renewal: tokio::sync::Mutex<()>,
    connector: OnceLock<Result<Connector, String>>,
}

#[derive(Debug, Clone)]
struct CachedIdentity {
    identity: Identity,
    renew_after: Option<SystemTime>,
}

impl SignedPoster {
    /// Region, credentials and clock of `config`. The connector is built on the first post
    /// (as the SDK's client does), so a function that never posts pays nothing for it.
    pub(super) fn new(config: &SdkConfig) -> Self {
        Self {
            region: config.region().map(ToString::to_string),
            time: config.time_source().unwrap_or_else(|| SharedTimeSource::new(SystemTimeSource::new())),
            provider: config.credentials_provider(),
            identity: RwLock::new(None),
            renewal: tokio::sync::Mutex::new(()),
            connector: OnceLock::new(),
        }
    }

    /// Posts `payload` to `connection_id` at the Management API endpoint `callback_url`.
    pub(super) async fn post(&self, callback_url: &str, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        let uri = post_uri(callback_url, connection_id);
        let region = self.region.as_deref().ok_or_else(|| PushError::Failed("no AWS region is configured".into()))?;
        let identity = self.identity().await?;
        let content_length = payload.len().to_string();
        let headers = [("content-type", "application/octet-stream"), ("content-length", content_length.as_str())];
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(self.time.now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| PushError::Failed(format!("cannot sign: {error}")))?
            .into();
        let signable = SignableRequest::new("POST", uri.as_str(), headers.into_iter(), SignableBody::Bytes(payload))
            .map_err(|error| PushError::Failed(format!("cannot sign {uri}: {error}")))?;
        let (instructions, _signature) =
            sign(signable, &params).map_err(|error| PushError::Failed(format!("cannot sign: {error}")))?.into_parts();

        let mut request = Request::new(SdkBody::from(payload.to_vec()));
        request.set_method("POST").map_err(|error| PushError::Failed(error.to_string()))?;
        request.set_uri(uri.as_str()).map_err(|error| PushError::Failed(format!("{uri}: {error}")))?;
        for (name, value) in headers.into_iter().chain(instructions.headers()) {
            request.headers_mut().insert(name.to_owned(), value.to_owned());
        }
        let connector = self.connector()?;
        let exchange = async {
            let response = connector.call(request).await.map_err(|error| PushError::Failed(format!("{error:?}")))?;
            let status = response.status().as_u16();
            // Read to the end, so the connection goes back to the pool.
            let _ = ByteStream::new(response.into_body()).collect().await;
            Ok::<u16, PushError>(status)
        };
        let status = tokio::time::timeout(ATTEMPT_TIMEOUT, exchange)
            .await
            .map_err(|_| PushError::Failed(format!("no answer within {ATTEMPT_TIMEOUT:?}")))??;
        classify(status)
    }

    fn connector(&self) -> Result<&Connector, PushError> {
        let built = self.connector.get_or_init(|| {
            // The roots the SDK configuration was loaded with (read once per process).
            let roots = crate::aws::process_trusted_roots().map_err(|error| error.to_string())?;
            crate::aws::https_connector(roots).map_err(|error| error.to_string())
        });
        built.as_ref().map_err(|error| PushError::Failed(format!("no HTTPS connector: {error}")))
    }

    /// The signing identity, resolved again only when it is about to expire; concurrent
    /// posts wait for one renewal instead of each asking the provider.
    async fn identity(&self) -> Result<Identity, PushError> {
        let now = self.time.now();
        if let Some(fresh) = self.cached(now) {
            return Ok(fresh);
        }
        let _renewing = self.renewal.lock().await;
        if let Some(fresh) = self.cached(now) {
            return Ok(fresh);
        }
        let provider = self.provider.as_ref().ok_or_else(|| PushError::Failed("no AWS credentials provider".into()))?;
        let credentials: Credentials = provider
            .provide_credentials()
            .await
            .map_err(|error| PushError::Failed(format!("no AWS credentials: {error}")))?;
        // Credentials handed out already inside the renewal window are kept until they
        // expire, rather than fetched again for every post.
        let renew_after = credentials
            .expiry()
            .map(|expiry| expiry.checked_sub(RENEW_BEFORE_EXPIRY).filter(|renew| *renew > now).unwrap_or(expiry));
        let identity = Identity::from(credentials);
        *self.identity.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(CachedIdentity { identity: identity.clone(), renew_after });
        Ok(identity)
    }

    fn cached(&self, now: SystemTime) -> Option<Identity> {
        let cached = self.identity.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        cached.as_ref().filter(|c| c.renew_after.is_none_or(|after| now < after)).map(|c| c.identity.clone())
    }
}

/// `{callback_url}/@connections/{id}`, the id encoded as the SDK encodes a path label.
fn post_uri(callback_url: &str, connection_id: &str) -> String {
    format!("{}/@connections/{}", callback_url.trim_end_matches('/'), utf8_percent_encode(connection_id, PATH_LABEL))
}

/// What the Management API's status means (its error bodies add nothing we act on).
fn classify(status: u16) -> Result<(), PushError> {
    match status {
        200..=299 => Ok(()),
        410 => Err(PushError::Gone),
        429 => Err(PushError::Throttled),
        other => Err(PushError::Failed(format!("the Management API answered {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use aws_smithy_async::time::StaticTimeSource;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Hands out credentials that expire `lifetime` after `now`, counting the calls.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        now: SystemTime,
        lifetime: Option<Duration>,
    }

    impl aws_credential_types::provider::ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let expiry = self.lifetime.map(|lifetime| self.now + lifetime);
            future::ProvideCredentials::ready(Ok(Credentials::new("id", "secret", None, expiry, "test")))
        }
    }

    /// How often three identity lookups at `now`, then one at `later`, ask the provider.
    async fn provider_calls(lifetime: Option<Duration>, later: Duration) -> (usize, usize) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let calls = Arc::new(AtomicUsize::new(0));
        let poster_at = |at: SystemTime| {
            let provider = Counting { calls: calls.clone(), now, lifetime };
            let config = SdkConfig::builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .time_source(StaticTimeSource::new(at))
                .build();
            SignedPoster::new(&config)
        };
        let poster = poster_at(now);
        for _ in 0..3 {
            assert!(poster.identity().await.is_ok());
        }
        let first = calls.load(Ordering::SeqCst);
        let mut later_poster = poster_at(now + later);
        later_poster.identity = RwLock::new(poster.identity.read().map(|c| c.clone()).unwrap_or_default());
        assert!(later_poster.identity().await.is_ok());
        (first, calls.load(Ordering::SeqCst) - first)
    }

    #[tokio::test]
    async fn credentials_are_asked_for_once_and_again_only_near_their_expiry() {
        let hour = Duration::from_secs(3600);
        // Lambda's: no expiry, never asked again.
        assert_eq!(provider_calls(None, 10 * hour).await, (1, 0));
        // An hour's credentials: kept for 55 minutes, renewed in the last five.
        assert_eq!(provider_calls(Some(hour), hour - RENEW_BEFORE_EXPIRY - Duration::from_secs(1)).await, (1, 0));
        assert_eq!(provider_calls(Some(hour), hour - RENEW_BEFORE_EXPIRY).await, (1, 1));
        // Handed out inside the renewal window: kept until they expire, not asked per post.
        let minute = Duration::from_secs(60);
        assert_eq!(provider_calls(Some(minute), Duration::from_secs(59)).await, (1, 0));
        assert_eq!(provider_calls(Some(minute), minute).await, (1, 1));
    }

    #[test]
    fn connection_ids_are_encoded_as_path_labels() {
        assert_eq!(
            post_uri("https://abc.execute-api.eu-west-1.amazonaws.com/prod", "L0SM9cOFvHcCIhw="),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections/L0SM9cOFvHcCIhw%3D"
        );
        assert_eq!(
            post_uri("http://127.0.0.1:9/local/", "a+b/c d~_.-"),
            "http://127.0.0.1:9/local/@connections/a%2Bb%2Fc%20d~_.-"
        );
    }

    #[test]
    fn statuses_mean_what_the_management_api_says() {
        assert_eq!(classify(200), Ok(()));
        assert_eq!(classify(410), Err(PushError::Gone));
        assert_eq!(classify(429), Err(PushError::Throttled));
        assert!(matches!(classify(403), Err(PushError::Failed(_))));
        assert!(matches!(classify(500), Err(PushError::Failed(_))));
    }
}
