//! Values kept in a secret store (the token signing keys, the relay secrets): read at cold
//! start, cached, and read again at runtime so that a rotated secret is used without a
//! deploy. Neither ever sits in a function's environment.
//!
//! A [`Refreshing`] value read from a secret is read again (never more than one read at a
//! time):
//! - when the copy is older than its maximum age ([`REFRESH_AFTER`] by default), before
//!   it is used, so an added secret starts and a dropped one stops working within that
//!   time;
//! - when a caller asks for it because the copy could not answer (a token whose key id it
//!   does not know, a relay secret that matches none), at most once per retry interval
//!   ([`RETRY_AFTER`]), so a rotation is seen at once while forged input cannot drive the
//!   secret store.
//!
//! A read that fails keeps the copy in use (and is logged): a passing outage of the secret
//! store never stops anything that worked.

#[cfg(feature = "secrets")]
pub mod secrets_manager;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How old a copy read from a secret may be when it is used.
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);
/// Least time between two reads asked for by input the copy could not answer.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What the age of a copy is measured with: the monotonic clock, or one a test moves.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A secret store: the current text of a secret.
pub trait SecretStore: Send + Sync {
    /// The secret's current string value; the error is for logs (never holds the secret).
    fn secret_string<'a>(
        &'a self,
        secret_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

/// Why a secret could not be used at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The store did not answer (detail for logs; never the secret).
    Unreadable(String),
    /// The secret's text was refused by the parser.
    Invalid(E),
}

/// Where a value read from a secret is read again.
struct Source<T, E> {
    store: Arc<dyn SecretStore>,
    secret_id: String,
    parse: fn(&str) -> Result<T, E>,
    read_at: RwLock<Instant>,
    clock: Clock,
    max_age: Duration,
    retry_after: Duration,
    /// Held while reading, so concurrent requests wait for one read instead of each making one.
    reading: tokio::sync::Mutex<()>,
}

/// A value given once (configuration) or parsed from a secret and kept fresh. Clones
/// share it, so a value read again is seen by every holder.
pub struct Refreshing<T, E> {
    /// Swapped whole on a re-read, so a lookup copies one pointer, not the value.
    current: Arc<RwLock<Arc<T>>>,
    source: Option<Arc<Source<T, E>>>,
}

impl<T, E> Clone for Refreshing<T, E> {
    fn clone(&self) -> Self {
        Self { current: Arc::clone(&self.current), source: self.source.clone() }
    }
}

impl<T, E: fmt::Display> Refreshing<T, E> {
    /// A value that never changes (given in configuration).
    pub fn fixed(value: T) -> Self {
        Self { current: Arc::new(RwLock::new(Arc::new(value))), source: None }
    }

    /// Reads `secret_id` from `store` and parses it with `parse`, to be read again as the
    /// module describes.
    pub async fn read(
        store: Arc<dyn SecretStore>,
        secret_id: &str,
        parse: fn(&str) -> Result<T, E>,
    ) -> Result<Self, ReadError<E>> {
        let text = store.secret_string(secret_id).await.map_err(ReadError::Unreadable)?;
        let value = parse(&text).map_err(ReadError::Invalid)?;
        let clock: Clock = Arc::new(Instant::now);
        let source = Source {
            store,
            secret_id: secret_id.to_owned(),
            parse,
            read_at: RwLock::new(clock()),
            clock,
            max_age: REFRESH_AFTER,
            retry_after: RETRY_AFTER,
            reading: tokio::sync::Mutex::new(()),
        };
        Ok(Self { current: Arc::new(RwLock::new(Arc::new(value))), source: Some(Arc::new(source)) })
    }

    /// The same value read again after `max_age` (instead of [`REFRESH_AFTER`]) and on
    /// request at most once per `retry_after` (instead of [`RETRY_AFTER`]). Only for a
    /// value read from a secret, before it is cloned; otherwise it is returned as is.
    pub fn with_refresh(mut self, max_age: Duration, retry_after: Duration) -> Self {
        if let Some(source) = self.source.as_mut().and_then(Arc::get_mut) {
            source.max_age = max_age;
            source.retry_after = retry_after;
        }
        self
    }

    /// The same value with its age measured by `clock` (a test's, moved by hand) instead
    /// of the monotonic clock, counted from now on that clock. Only before it is cloned,
    /// as [`Self::with_refresh`].
    pub fn with_clock(mut self, clock: Clock) -> Self {
        if let Some(source) = self.source.as_mut().and_then(Arc::get_mut) {
            source.read_at = RwLock::new(clock());
            source.clock = clock;
        }
        self
    }

    /// Whether the value comes from a secret store.
    pub fn is_from_secret(&self) -> bool {
        self.source.is_some()
    }

    /// The value as last read.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Before use: reads the secret again when the copy is older than its maximum age.
    pub async fn refresh_if_old(&self) {
        if let Some(source) = &self.source {
            self.reread_if_older_than(source.max_age).await;
        }
    }

    /// When the copy could not answer: reads the secret again unless it was read within
    /// the retry interval. Whether the copy may have changed.
    pub async fn refresh_on_miss(&self) -> bool {
        match &self.source {
            Some(source) => self.reread_if_older_than(source.retry_after.min(source.max_age)).await,
            None => false,
        }
    }

    /// Re-reads the secret when the copy is older than `max_age`; whether it read.
    async fn reread_if_older_than(&self, max_age: Duration) -> bool {
        let Some(source) = &self.source else { return false };
        let age = |source: &Source<T, E>| {
            let read_at = *source.read_at.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            (source.clock)().saturating_duration_since(read_at)
        };
        if age(source) < max_age {
            return false;
        }
        let _one_reader = source.reading.lock().await;
        if age(source) < max_age {
            return true; // another request read it while this one waited
        }
        *source.read_at.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (source.clock)();
        let text = match source.store.secret_string(&source.secret_id).await {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(%error, "secret not read again; the copy in use stays");
                return false;
            }
        };
        match (source.parse)(&text) {
            Ok(value) => {
                tracing::info!(secret = source.secret_id, "secret read again");
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(value);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "secret read again but refused; the copy in use stays");
                false
            }
        }
    }
}
