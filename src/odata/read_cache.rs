//! The short-lived read cache: upstream pages kept for a few seconds, per upstream identity, so
//! that a dashboard refreshed by many users costs the upstream budget once per time-to-live.
//! Off unless a time-to-live is set (`--read-cache-ttl`, per entity set with
//! `--read-cache-ttl-for`).
//!
//! - **Keys** are [`ReadKey`]s: the upstream identity (never shared between identities), the entity
//!   set with its write generation, the URL and the page size.
//! - **Writes clear** an entity set by bumping its generation ([`ReadCache::touched`]): keys made
//!   before no longer match, and their entries age out. A read in flight while a write ran keeps
//!   the generation it started with, so what it brings back is never served after the write.
//! - **Bounded by bytes**: a moka weigher weighs each page by an estimate of its JSON size.
//! - **Time-to-live per entry** (moka's `Expiry`), the entity set's own or the default.

use super::response::Page;
use moka::future::Cache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What identifies one upstream read (for the cache and for coalescing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadKey {
    /// The upstream identity the read is made as (`app:…`, `user:<fingerprint>`, …).
    pub identity: String,
    pub entity_set: String,
    /// The entity set's write generation when the read started.
    pub generation: u64,
    pub url: String,
    pub page_size: Option<usize>,
}

/// The cache's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCacheConfig {
    /// Time-to-live of every entity set without one of its own (`None`: not cached).
    pub ttl: Option<Duration>,
    /// Time-to-live by entity set.
    pub ttl_by_set: HashMap<String, Duration>,
    /// Most bytes of pages kept (estimated JSON size).
    pub max_bytes: u64,
}

impl ReadCacheConfig {
    /// Default size bound: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

    /// The time-to-live for `entity_set`, `None` when it is not cached.
    pub fn ttl_for(&self, entity_set: &str) -> Option<Duration> {
        self.ttl_by_set
            .get(entity_set)
            .copied()
            .or(self.ttl)
            .filter(|t| !t.is_zero())
    }

    pub fn enabled(&self) -> bool {
        self.ttl_for("").is_some() || self.ttl_by_set.values().any(|t| !t.is_zero())
    }
}

/// A cached page and when it was read.
#[derive(Debug)]
pub struct Cached {
    /// Shared with the read that put it and every hit: never copied into the cache.
    pub page: Arc<Page>,
    pub read_at: Instant,
    ttl: Duration,
    weight: u32,
}

struct PerEntry;

impl moka::Expiry<ReadKey, Arc<Cached>> for PerEntry {
    fn expire_after_create(&self, _: &ReadKey, value: &Arc<Cached>, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The cache and the write generations of the entity sets (see the module docs).
pub struct ReadCache {
    config: ReadCacheConfig,
    pages: Cache<ReadKey, Arc<Cached>>,
    generations: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").field("config", &self.config).finish()
    }
}

impl ReadCache {
    pub fn new(config: ReadCacheConfig) -> Self {
        let max_bytes = if config.max_bytes == 0 {
            ReadCacheConfig::DEFAULT_MAX_BYTES
        } else {
            config.max_bytes
        };
        let pages = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &ReadKey, v: &Arc<Cached>| v.weight)
            .expire_after(PerEntry)
            .build();
        ReadCache {
            config,
            pages,
            generations: Mutex::default(),
        }
    }

    pub fn config(&self) -> &ReadCacheConfig {
        &self.config
    }

    /// The write generation of `entity_set` now (for a new key).
    pub fn generation(&self, entity_set: &str) -> u64 {
        let map = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        map.get(entity_set).copied().unwrap_or(0)
    }

    /// A write through the gateway touched `entity_set`: nothing read before is served again.
    pub fn touched(&self, entity_set: &str) {
        let mut map = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(entity_set.to_string()).or_default() += 1;
    }

    /// The cached page of `key`, if its entity set is cached and the page is still fresh.
    pub async fn get(&self, key: &ReadKey) -> Option<Arc<Cached>> {
        self.config.ttl_for(&key.entity_set)?;
        self.pages.get(key).await
    }

    /// Keeps `page` under `key` for its entity set's time-to-live (nothing when it has none).
    pub async fn put(&self, key: ReadKey, page: &Arc<Page>) {
        let Some(ttl) = self.config.ttl_for(&key.entity_set) else {
            return;
        };
        let weight = page_weight(&key, page);
        let cached = Cached {
            page: Arc::clone(page),
            read_at: Instant::now(),
            ttl,
            weight,
        };
        self.pages.insert(key, Arc::new(cached)).await;
    }

    /// Pages held and their estimated bytes (for `/metrics`).
    pub async fn usage(&self) -> (u64, u64) {
        self.pages.run_pending_tasks().await;
        (self.pages.entry_count(), self.pages.weighted_size())
    }
}

/// Estimated bytes of a cached page: its JSON, the URL and a fixed overhead per value.
fn page_weight(key: &ReadKey, page: &Page) -> u32 {
    let rows: usize = page.value.iter().map(|r| 16 + entries_weight(r.iter())).sum();
    let total = 128 + key.url.len() + key.identity.len() + page.next_link.as_ref().map_or(0, String::len) + rows;
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// The weight of an object's entries (a JSON object's, or a record's properties).
fn entries_weight<'a>(entries: impl Iterator<Item = (&'a str, &'a serde_json::Value)>) -> usize {
    entries.map(|(k, v)| k.len() + json_weight(v)).sum()
}

fn json_weight(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    16 + match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(json_weight).sum(),
        Value::Object(map) => entries_weight(map.iter().map(|(k, v)| (k.as_str(), v))),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(identity: &str, set: &str, generation: u64) -> ReadKey {
        ReadKey {
            identity: identity.into(),
            entity_set: set.into(),
            generation,
            url: format!("{set}?$select=a"),
            page_size: Some(10),
        }
    }

    fn page(n: usize) -> Arc<Page> {
        let row = json!({"a": "x".repeat(n)});
        Arc::new(Page {
            value: vec![crate::odata::UpstreamRecord::new(row.as_object().unwrap().clone())],
            next_link: None,
            count: None,
        })
    }

    fn cache(ttl: Option<u64>, by_set: &[(&str, u64)], max_bytes: u64) -> ReadCache {
        ReadCache::new(ReadCacheConfig {
            ttl: ttl.map(Duration::from_secs),
            ttl_by_set: by_set
                .iter()
                .map(|(s, t)| (s.to_string(), Duration::from_secs(*t)))
                .collect(),
            max_bytes,
        })
    }

    #[tokio::test]
    async fn pages_are_kept_per_identity_and_generation() {
        let c = cache(Some(60), &[], 0);
        c.put(key("app", "s", 0), &page(3)).await;
        assert!(c.get(&key("app", "s", 0)).await.is_some());
        assert!(
            c.get(&key("user:abc", "s", 0)).await.is_none(),
            "never across identities"
        );
        c.touched("s");
        assert_eq!(c.generation("s"), 1);
        assert_eq!(c.generation("other"), 0);
        assert!(
            c.get(&key("app", "s", c.generation("s"))).await.is_none(),
            "a write clears the set"
        );
    }

    #[tokio::test]
    async fn only_sets_with_a_ttl_are_cached() {
        let c = cache(None, &[("hot", 30)], 0);
        assert!(c.config().enabled());
        c.put(key("app", "cold", 0), &page(3)).await;
        c.put(key("app", "hot", 0), &page(3)).await;
        assert!(c.get(&key("app", "cold", 0)).await.is_none());
        assert!(c.get(&key("app", "hot", 0)).await.is_some());
        let off = cache(None, &[], 0);
        assert!(!off.config().enabled());
        let zero = cache(Some(0), &[], 0);
        assert!(!zero.config().enabled(), "a zero TTL is off");
    }

    #[tokio::test]
    async fn the_cache_is_bounded_by_bytes() {
        let c = cache(Some(60), &[], 50_000);
        for i in 0..100 {
            let mut k = key("app", "s", 0);
            k.url = format!("s?n={i}");
            c.put(k, &page(5_000)).await;
        }
        let (entries, bytes) = c.usage().await;
        assert!(bytes <= 50_000, "{bytes} bytes in {entries} entries");
        assert!(entries < 100);
    }
}
