//! The cache in front of both API server reviews (TokenReview, SubjectAccessReview): bounded,
//! freshness judged against the [`Clock`] on every read with a TTL that depends on the answer,
//! concurrent misses of one key sharing one call, errors never stored, and — only when
//! configured — an expired answer standing in while the API server cannot be asked.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::k8s::CallError;

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
    at: Instant,
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
    /// every concurrent caller of the same key.
    pub async fn get_or_fetch(
        &self,
        key: K,
        ttl: impl Fn(&V) -> Duration,
        fetch: impl Future<Output = Result<V, CallError>>,
    ) -> Result<V, CallError> {
        let now = self.clock.now();
        let previous = self.cache.get(&key).await;
        if let Some(entry) = &previous {
            if now.saturating_duration_since(entry.at) < ttl(&entry.value) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.value.clone());
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
                })
            })
            .await;
        match fetched {
            Ok(entry) => Ok(entry.value),
            Err(error) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                match previous {
                    Some(entry)
                        if now.saturating_duration_since(entry.at) < ttl(&entry.value) + self.stale_if_error =>
                    {
                        self.stats.stale_uses.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "API server unavailable: using an expired {} (staleIfError)", self.what);
                        Ok(entry.value)
                    }
                    _ => Err((*error).clone()),
                }
            }
        }
    }

    /// Counts a call made without the cache (attributes too large to cache).
    pub fn count_uncached_call(&self) {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
    }
}
