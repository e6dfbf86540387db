//! The cache in front of both API server reviews (TokenReview, SubjectAccessReview): bounded,
//! freshness judged against the [`Clock`] on every read with a TTL that depends on the answer,
//! concurrent misses of one key sharing one call, errors never stored, and — only when
//! configured — an expired answer standing in while the API server cannot be asked.
//!
//! Stale mode (`apiServer.staleIfError`): an expired answer stays in the cache until a fresh
//! one replaces it or the stale window ends. The first caller after the TTL asks the API server
//! while every concurrent caller of that key waits for that one attempt; when it fails, all of
//! them get the expired answer, and the key is not asked again for [`STALE_RETRY_INTERVAL`]:
//! callers in between get the expired answer without a call. The kubelet has no stale mode
//! (kubernetes/apiserver pkg/authentication/token/cache/cached_token_authenticator.go and
//! pkg/authorization/cachingauthorizer drop an expired entry), so this is the gateway's own.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::ops::compute::Op;

use crate::clock::Clock;
use crate::k8s::CallError;

/// While an expired answer stands in, how long after a failed attempt the API server is asked
/// again for the same key. Short enough that a recovered API server is noticed within seconds,
/// long enough that an outage costs one call per key every few seconds, not one per request.
pub const STALE_RETRY_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Calls made to the API server (after coalescing).
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    /// Expired answers used because the API server could not answer (staleIfError).
    pub stale_uses: AtomicU64,
    /// Entries dropped for room or age (the cache's listener counts them).
    pub evictions: AtomicU64,
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// When the API server gave this answer.
    at: Instant,
    /// Set once an attempt to replace the expired answer failed: no new attempt before then.
    retry_at: Option<Instant>,
}

pub struct ReviewCache<K, V> {
    cache: moka::future::Cache<K, Entry<V>>,
    clock: Clock,
    stale_if_error: Duration,
    /// What the cached answers are, for the degraded-mode log line.
    what: &'static str,
    /// Shared with the metrics, which read it at scrape time.
    pub stats: Arc<CacheStats>,
}

impl<K, V> ReviewCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// `longest_ttl` bounds how long any entry can be fresh; entries are dropped after it (plus
    /// the stale window) even if never read again.
    pub fn new(
        max_entries: u64,
        longest_ttl: Duration,
        stale_if_error: Duration,
        clock: Clock,
        what: &'static str,
    ) -> Self {
        let stats = Arc::new(CacheStats::default());
        let cache = moka::future::Cache::builder()
            .max_capacity(max_entries)
            .eviction_listener({
                let stats = stats.clone();
                move |_, _, cause| {
                    if cause.was_evicted() {
                        stats.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .time_to_live(longest_ttl + stale_if_error + Duration::from_secs(1))
            .build();
        ReviewCache {
            cache,
            clock,
            stale_if_error,
            what,
            stats,
        }
    }

    /// The cached answer while it is fresh (`ttl` of the answer), else `fetch`'s, shared with
    /// every concurrent caller of the same key. With a stale window, an expired answer is
    /// refreshed through [`ReviewCache::refresh_stale`] instead, and stands in when that fails.
    pub async fn get_or_fetch(
        &self,
        key: K,
        ttl: impl Fn(&V) -> Duration,
        fetch: impl Future<Output = Result<V, CallError>>,
    ) -> Result<V, CallError> {
        let now = self.clock.now();
        if let Some(entry) = self.cache.get(&key).await {
            let age = now.saturating_duration_since(entry.at);
            if age < ttl(&entry.value) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.value);
            }
            if age < ttl(&entry.value) + self.stale_if_error {
                return self.refresh_stale(key, &ttl, fetch).await;
            }
            self.cache.invalidate(&key).await;
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let fetched = self
            .cache
            .try_get_with(key, async {
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                let value = fetch.await?;
                Ok::<_, CallError>(Entry {
                    value,
                    at: self.clock.now(),
                    retry_at: None,
                })
            })
            .await;
        fetched.map(|entry| entry.value).map_err(|error| {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            (*error).clone()
        })
    }

    /// An expired answer inside the stale window: one caller at a time per key decides (moka's
    /// per-key lock), so concurrent callers wait for the one attempt and then find its result
    /// in the entry, a fresh answer or the expired one with its next attempt time, without a
    /// call of their own.
    async fn refresh_stale(
        &self,
        key: K,
        ttl: &impl Fn(&V) -> Duration,
        fetch: impl Future<Output = Result<V, CallError>>,
    ) -> Result<V, CallError> {
        let mut answer = None;
        let slot = &mut answer;
        self.cache
            .entry(key)
            .and_compute_with(|current| async move {
                let now = self.clock.now();
                let current = current.map(moka::Entry::into_value);
                let usable = current.filter(|c| now.saturating_duration_since(c.at) < ttl(&c.value) + self.stale_if_error);
                if let Some(c) = &usable {
                    let fresh = now.saturating_duration_since(c.at) < ttl(&c.value);
                    if fresh || c.retry_at.is_some_and(|at| now < at) {
                        let counter = if fresh { &self.stats.hits } else { &self.stats.stale_uses };
                        counter.fetch_add(1, Ordering::Relaxed);
                        *slot = Some(Ok(c.value.clone()));
                        return Op::Nop;
                    }
                }
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                match fetch.await {
                    Ok(value) => {
                        *slot = Some(Ok(value.clone()));
                        Op::Put(Entry {
                            value,
                            at: self.clock.now(),
                            retry_at: None,
                        })
                    }
                    Err(error) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        let Some(stale) = usable else {
                            // The window ended while this caller waited: fail closed.
                            *slot = Some(Err(error));
                            return Op::Nop;
                        };
                        self.stats.stale_uses.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "API server unavailable: using an expired {} (staleIfError); next attempt in {STALE_RETRY_INTERVAL:?}", self.what);
                        *slot = Some(Ok(stale.value.clone()));
                        Op::Put(Entry {
                            retry_at: Some(self.clock.now() + STALE_RETRY_INTERVAL),
                            ..stale
                        })
                    }
                }
            })
            .await;
        // The closure always runs once and always fills the slot; this only keeps the types honest.
        answer.unwrap_or_else(|| Err(CallError::Transport("the review cache lost its answer".into())))
    }

    /// Counts a call made without the cache (attributes too large to cache).
    pub fn count_uncached_call(&self) {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);
    const STALE: Duration = Duration::from_secs(600);

    fn cache(stale: Duration) -> (ReviewCache<&'static str, u32>, Clock) {
        let clock = Clock::manual();
        (ReviewCache::new(16, TTL, stale, clock.clone(), "test answer"), clock)
    }

    fn down() -> CallError {
        CallError::Transport("connection refused".into())
    }

    async fn ask(c: &ReviewCache<&'static str, u32>, answer: Result<u32, CallError>) -> Result<u32, CallError> {
        c.get_or_fetch("k", |_| TTL, async { answer }).await
    }

    fn calls(c: &ReviewCache<&'static str, u32>) -> u64 {
        c.stats.calls.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn an_expired_answer_stands_in_for_the_whole_window_with_spaced_attempts() {
        let (c, clock) = cache(STALE);
        assert_eq!(ask(&c, Ok(1)).await, Ok(1));
        clock.advance(Duration::from_secs(3));
        for _ in 0..20 {
            assert_eq!(ask(&c, Err(down())).await, Ok(1), "the expired answer, again and again");
        }
        assert_eq!(
            calls(&c),
            2,
            "one attempt, then none until the retry interval has passed"
        );
        clock.advance(STALE_RETRY_INTERVAL);
        assert_eq!(ask(&c, Err(down())).await, Ok(1));
        assert_eq!(ask(&c, Err(down())).await, Ok(1));
        assert_eq!(calls(&c), 3, "one attempt per interval");
        clock.advance(STALE_RETRY_INTERVAL);
        assert_eq!(ask(&c, Ok(2)).await, Ok(2), "a fresh answer replaces the expired one");
        assert_eq!(ask(&c, Err(down())).await, Ok(2), "and is served from the cache");
        assert_eq!(calls(&c), 4);
        assert_eq!(c.stats.stale_uses.load(Ordering::Relaxed), 22);
        clock.advance(TTL + STALE);
        assert_eq!(ask(&c, Err(down())).await, Err(down()), "past the window: fail closed");
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_attempt_and_all_get_the_expired_answer() {
        let (c, clock) = cache(STALE);
        let c = Arc::new(c);
        assert_eq!(ask(&c, Ok(1)).await, Ok(1));
        clock.advance(Duration::from_secs(3));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.get_or_fetch("k", |_| TTL, async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(down())
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(1));
        }
        assert_eq!(calls(&c), 2, "the first fetch and one shared attempt");
    }

    #[tokio::test]
    async fn without_a_stale_window_an_expired_answer_is_gone() {
        let (c, clock) = cache(Duration::ZERO);
        assert_eq!(ask(&c, Ok(1)).await, Ok(1));
        clock.advance(Duration::from_secs(3));
        assert_eq!(ask(&c, Err(down())).await, Err(down()));
        assert_eq!(ask(&c, Err(down())).await, Err(down()), "errors are never stored");
        assert_eq!(calls(&c), 3);
    }
}
