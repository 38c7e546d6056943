//! A token kept fresh in the background.
//!
//! One task per credential fetches a token at start and again at half its lifetime, so the
//! request path only ever reads the cached token and a slow identity endpoint delays nobody. A
//! failed fetch is retried with exponential backoff (1 s doubling to 30 s) while the current
//! token stays in use as long as it is valid. When an upstream rejects a token, requests ask
//! for a forced refresh: however many ask at once, the task runs one fetch (a `Notify` holds at
//! most one permit) and they all wait for its result.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};

use super::{AuthError, BoxFuture};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// How long a request waits for a first (or replacement) token before failing.
const WAIT_FOR_TOKEN: Duration = Duration::from_secs(30);
/// A token this close to expiry counts as expired.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A freshly fetched token.
#[derive(Debug)]
pub struct FreshToken {
    pub value: Secret,
    pub expires_at: SystemTime,
}

impl FreshToken {
    fn valid_at(&self, now: SystemTime) -> bool {
        self.expires_at > now + EXPIRY_MARGIN
    }
}

/// Fetches a new token, bypassing any cache. Errors are messages without secrets.
pub trait TokenSource: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<FreshToken, String>>;
}

#[derive(Debug, Clone)]
pub struct RefreshingToken {
    state: watch::Receiver<Option<Arc<FreshToken>>>,
    force: Arc<Force>,
}

/// A request for a forced refresh, naming the token that was rejected: a request about a token
/// that has already been replaced is dropped, so a burst of rejections costs one fetch.
#[derive(Debug, Default)]
struct Force {
    notify: Notify,
    rejected: std::sync::Mutex<Option<Arc<FreshToken>>>,
}

impl RefreshingToken {
    /// Starts the refresh task for `upstream` (a name for logs). Needs a Tokio runtime.
    pub fn spawn(upstream: String, source: Arc<dyn TokenSource>, metrics: Arc<Metrics>) -> RefreshingToken {
        let (sender, state) = watch::channel(None);
        let force = Arc::new(Force::default());
        tokio::spawn(refresh_loop(upstream, source, sender, force.clone(), metrics));
        RefreshingToken { state, force }
    }

    /// The current token, waiting for one if there is none yet (or it expired).
    pub async fn current(&self) -> Result<Arc<FreshToken>, AuthError> {
        let mut state = self.state.clone();
        let wait = state.wait_for(|t| t.as_ref().is_some_and(|t| t.valid_at(SystemTime::now())));
        match tokio::time::timeout(WAIT_FOR_TOKEN, wait).await {
            Ok(Ok(token)) => Ok(token.clone().expect("waited for a token")),
            _ => Err(AuthError::NoToken),
        }
    }

    /// Whether a valid token is held (readiness).
    pub fn is_ready(&self) -> bool {
        self.state.borrow().as_ref().is_some_and(|t| t.valid_at(SystemTime::now()))
    }

    /// The upstream rejected the current token: ask for a new one and wait for it. Returns
    /// whether a different token arrived.
    pub async fn replace_rejected(&self) -> bool {
        let rejected = self.state.borrow().clone();
        *self.force.rejected.lock().expect("force lock") = rejected.clone();
        self.force.notify.notify_one();
        let mut state = self.state.clone();
        let changed = state.wait_for(|t| match (t, &rejected) {
            (Some(new), Some(old)) => !Arc::ptr_eq(new, old) && new.valid_at(SystemTime::now()),
            (Some(_), None) => true,
            (None, _) => false,
        });
        matches!(tokio::time::timeout(WAIT_FOR_TOKEN, changed).await, Ok(Ok(_)))
    }
}

async fn refresh_loop(
    upstream: String,
    source: Arc<dyn TokenSource>,
    sender: watch::Sender<Option<Arc<FreshToken>>>,
    force: Arc<Force>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match source.fetch().await {
            Ok(token) => {
                let lifetime = token.expires_at.duration_since(SystemTime::now()).unwrap_or_default();
                tracing::info!(%upstream, expires_in_s = lifetime.as_secs(), "upstream token acquired");
                metrics.token_refreshes.with_label_values(&[&upstream, "ok"]).inc();
                metrics.token_expires(&upstream, token.expires_at);
                sender.send_replace(Some(Arc::new(token)));
                backoff = Duration::from_secs(1);
                (lifetime / 2).max(Duration::from_secs(1))
            }
            Err(error) => {
                metrics.token_refreshes.with_label_values(&[&upstream, "error"]).inc();
                let still_valid = sender.borrow().as_ref().is_some_and(|t| t.valid_at(SystemTime::now()));
                tracing::warn!(%upstream, %error, retry_in_s = backoff.as_secs(), still_valid, "upstream token refresh failed");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = force.notify.notified() => {
                    let rejected = force.rejected.lock().expect("force lock").take();
                    let current = sender.borrow().clone();
                    let is_current = match (&rejected, &current) {
                        (Some(rejected), Some(current)) => Arc::ptr_eq(rejected, current),
                        (Some(_), None) | (None, None) => true,
                        // A leftover wake-up whose request an earlier refresh already served.
                        (None, Some(_)) => false,
                    };
                    if is_current {
                        tracing::info!(%upstream, "upstream rejected the token: refreshing now");
                        break;
                    }
                }
                () = sender.closed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting {
        fetches: AtomicUsize,
        lifetime: Duration,
        fail_after: usize,
    }

    impl TokenSource for Counting {
        fn fetch(&self) -> BoxFuture<'_, Result<FreshToken, String>> {
            Box::pin(async move {
                let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                if n > self.fail_after {
                    return Err("identity endpoint down".to_owned());
                }
                Ok(FreshToken {
                    value: Secret::new(format!("t{n}")),
                    expires_at: SystemTime::now() + self.lifetime,
                })
            })
        }
    }

    #[tokio::test]
    async fn many_rejections_at_once_make_one_refresh() {
        let source = Arc::new(Counting {
            fetches: AtomicUsize::new(0),
            lifetime: Duration::from_secs(3600),
            fail_after: 99,
        });
        let token = RefreshingToken::spawn("corp".into(), source.clone(), Arc::new(Metrics::unregistered()));
        assert_eq!(token.current().await.unwrap().value.expose(), "t1");
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let t = token.clone();
                tokio::spawn(async move { t.replace_rejected().await })
            })
            .collect();
        for waiter in waiters {
            assert!(waiter.await.unwrap());
        }
        assert_eq!(token.current().await.unwrap().value.expose(), "t2");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2, "one start-up fetch, one forced refresh");
    }

    #[tokio::test]
    async fn a_failing_source_keeps_the_valid_token() {
        let source = Arc::new(Counting {
            fetches: AtomicUsize::new(0),
            lifetime: Duration::from_secs(3600),
            fail_after: 1,
        });
        let token = RefreshingToken::spawn("corp".into(), source.clone(), Arc::new(Metrics::unregistered()));
        assert_eq!(token.current().await.unwrap().value.expose(), "t1");
        assert!(!token.replace_rejected_quick().await);
        assert_eq!(token.current().await.unwrap().value.expose(), "t1", "the valid token stays in use");
        assert!(token.is_ready());
    }

    impl RefreshingToken {
        async fn replace_rejected_quick(&self) -> bool {
            tokio::time::timeout(Duration::from_millis(500), self.replace_rejected()).await.unwrap_or(false)
        }
    }
}
