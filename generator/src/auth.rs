//! The token provider shared by every virtual user: one token at a time,
//! refreshed ahead of expiry in the background and at once after a 401, with
//! one refresh in flight however many requests wait for it (single flight).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A fetched token and how long it lives (`None`: the source did not say).
pub type Fetched = Result<(String, Option<Duration>), String>;

/// Fetches a new token (an OAuth2 token request, or the scenario's login request).
pub type Fetch = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Fetched> + Send>> + Send + Sync>;

#[derive(Debug, Clone)]
struct Token {
    value: Arc<str>,
    issued_at: Instant,
    expires_at: Instant,
}

/// Hands out the current token; see the module doc.
pub struct TokenProvider {
    current: RwLock<Option<Token>>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
    fetch: Fetch,
    /// Lifetime assumed when the source does not give one.
    default_ttl: Duration,
    /// Refresh this long before expiry (default: a fifth of the lifetime).
    refresh_before: Option<Duration>,
    refreshes: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("refreshes", &self.refreshes)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    pub fn new(fetch: Fetch, default_ttl: Duration, refresh_before: Option<Duration>) -> Arc<Self> {
        Arc::new(TokenProvider {
            current: RwLock::new(None),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
            fetch,
            default_ttl,
            refresh_before,
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Tokens fetched so far (the first one included).
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Fetches that failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Option<Token> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn margin(&self, token: &Token) -> Duration {
        self.refresh_before
            .unwrap_or_else(|| (token.expires_at - token.issued_at) / 5)
    }

    /// A valid token: the current one, or a fresh one if there is none or it
    /// has expired. Inside the refresh window the current token is returned
    /// and one background refresh starts.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<str>, String> {
        let now = Instant::now();
        if let Some(token) = self.snapshot()
            && now < token.expires_at
        {
            if now + self.margin(&token) >= token.expires_at
                && let Ok(guard) = self.refreshing.clone().try_lock_owned()
            {
                let this = self.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let _ = this.refresh().await;
                });
            }
            return Ok(token.value);
        }
        let _guard = self.refreshing.lock().await;
        if let Some(token) = self.snapshot()
            && Instant::now() < token.expires_at
        {
            return Ok(token.value);
        }
        self.refresh().await
    }

    /// After the target refused `stale` (401): a newer token, fetched once for
    /// all the requests that saw the same refusal.
    pub async fn renew(self: &Arc<Self>, stale: &Arc<str>) -> Result<Arc<str>, String> {
        let _guard = self.refreshing.lock().await;
        if let Some(token) = self.snapshot()
            && token.value != *stale
            && Instant::now() < token.expires_at
        {
            return Ok(token.value);
        }
        self.refresh().await
    }

    /// Fetches and installs a token; the caller holds `refreshing`.
    async fn refresh(&self) -> Result<Arc<str>, String> {
        let issued_at = Instant::now();
        match (self.fetch)().await {
            Ok((value, ttl)) => {
                let value: Arc<str> = value.into();
                let ttl = ttl.unwrap_or(self.default_ttl);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Token {
                    value: value.clone(),
                    issued_at,
                    expires_at: issued_at + ttl,
                });
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting_fetch(ttl: Duration, delay: Duration) -> (Fetch, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let fetch: Fetch = Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok((format!("t{n}"), Some(ttl)))
            })
        });
        (fetch, calls)
    }

    #[tokio::test]
    async fn many_waiters_share_one_fetch() {
        let (fetch, calls) = counting_fetch(Duration::from_secs(60), Duration::from_millis(50));
        let provider = TokenProvider::new(fetch, Duration::from_secs(60), None);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let p = provider.clone();
                tokio::spawn(async move { p.get().await })
            })
            .collect();
        for t in tasks {
            assert_eq!(&*t.await.unwrap().unwrap(), "t0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A 401 seen by many requests with the same stale token: one renewal.
        let stale: Arc<str> = "t0".into();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (p, s) = (provider.clone(), stale.clone());
                tokio::spawn(async move { p.renew(&s).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(&*t.await.unwrap().unwrap(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(provider.refreshes(), 2);
    }

    #[tokio::test]
    async fn tokens_are_refreshed_ahead_of_expiry_without_waiting() {
        let (fetch, calls) = counting_fetch(Duration::from_millis(500), Duration::from_millis(20));
        let provider = TokenProvider::new(fetch, Duration::from_secs(60), None);
        assert_eq!(&*provider.get().await.unwrap(), "t0");
        // Inside the last fifth of its life the old token is still handed out
        // while one refresh runs in the background.
        tokio::time::sleep(Duration::from_millis(420)).await;
        assert_eq!(&*provider.get().await.unwrap(), "t0");
        assert_eq!(&*provider.get().await.unwrap(), "t0");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(&*provider.get().await.unwrap(), "t1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
