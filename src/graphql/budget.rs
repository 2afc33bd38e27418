//! The upstream budget: making every upstream request count (issue #17).
//!
//! Dataverse limits requests per upstream identity (6,000 per 5 minutes per user, application
//! users included; contract §8), and under client credentials every caller of the gateway shares
//! that one identity. So reads are shared as widely as the upstream identity allows:
//!
//! - **Coalescing** ([`crate::odata::shared_reads`]): identical reads in flight at the same time
//!   (same URL, page size, upstream identity and write generation of the entity set) share one
//!   upstream request, across operations and callers. Caller authorization stays the gateway's
//!   job; what Dataverse returns depends only on the identity it sees (the application under
//!   client credentials, each user under on-behalf-of, the token under pass-through), which is
//!   [`crate::odata::auth::TokenSource::identity_of`].
//! - **The read cache** ([`crate::odata::read_cache`]), off by default, keyed the same way: a page
//!   read for one identity is served to that identity only. A write through the gateway clears
//!   the entity sets it touched ([`Reads::write_started`], a guard that bumps the generations when
//!   the write starts and again when it ends or is dropped: a read that overlapped the write is
//!   never served after it). `Cache-Control: no-cache` from the client bypasses the cache (the
//!   read it makes still refreshes it, and may still join a read in flight).
//! - **What a request reused** ([`ReadReuse`]): cache hits, the age of the oldest cached page and
//!   coalesced reads, for the request's log line and the response's `extensions.cache`.
//!
//! Reads outside this path: the reference-data cache keeps its own (caller-keyed) entries in front
//! of it; a mutation's fresh looks (`GatewayState::get_page_fresh`) and the submission's
//! validation `$batch` are never coalesced nor cached, as they must see the upstream as it is now.

use super::context::{GatewayState, RequestCtx};
use crate::batch::BatchRequestItem;
use crate::model::{model, Entity};
use crate::odata::read_cache::{ReadCache, ReadCacheConfig, ReadKey};
use crate::odata::shared_reads::Coalescer;
use crate::odata::{Page, UpstreamError};
use futures::FutureExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The shared read path's state: reads in flight and the read cache.
#[derive(Debug)]
pub struct Reads {
    inflight: Coalescer<ReadKey, Result<Arc<Page>, UpstreamError>>,
    cache: ReadCache,
}

impl Reads {
    pub fn new(config: ReadCacheConfig) -> Self {
        Reads {
            inflight: Coalescer::default(),
            cache: ReadCache::new(config),
        }
    }

    pub fn cache(&self) -> &ReadCache {
        &self.cache
    }

    /// Reads in flight now.
    pub fn in_flight(&self) -> usize {
        self.inflight.in_flight()
    }

    /// A write to the entity sets of `url` (relative, or absolute under `service_root`) and, with a
    /// deep insert or update (`body` holding objects or arrays), to every entity set: clears them
    /// now and once more when the returned guard is dropped (after the write, or when abandoned).
    pub fn write_started(&self, url: &str, service_root: &str, body: &serde_json::Value) -> WriteTouch<'_> {
        WriteTouch::new(&self.cache, sets_written(url, service_root, body))
    }

    /// [`Reads::write_started`] for a `$batch`: every entity set a write part addresses.
    pub fn batch_started(&self, items: &[BatchRequestItem], service_root: &str) -> WriteTouch<'_> {
        let mut sets = Vec::new();
        for item in items {
            let parts = match item {
                BatchRequestItem::Request(p) => std::slice::from_ref(p),
                BatchRequestItem::ChangeSet(ps) => ps.as_slice(),
            };
            for p in parts.iter().filter(|p| !p.method.eq_ignore_ascii_case("GET")) {
                match p.url.starts_with('$') {
                    // A `$n` reference: which set it reaches is not in its URL.
                    true => sets.extend(every_entity_set()),
                    false => {
                        let body = serde_json::from_slice(&p.body).unwrap_or(serde_json::Value::Null);
                        sets.extend(sets_written(&p.url, service_root, &body));
                    }
                }
            }
        }
        sets.sort();
        sets.dedup();
        WriteTouch::new(&self.cache, sets)
    }
}

/// The entity sets a write to `url` with `body` touches: its own, or every one for a deep insert
/// or update (`body` holding objects or arrays), whose nested records may be of any set.
fn sets_written(url: &str, service_root: &str, body: &serde_json::Value) -> Vec<String> {
    let deep = body
        .as_object()
        .is_some_and(|o| o.values().any(|v| v.is_object() || v.is_array()));
    match deep {
        true => every_entity_set().collect(),
        false => entity_set_of(url, service_root).into_iter().collect(),
    }
}

fn every_entity_set() -> impl Iterator<Item = String> {
    model().entities.iter().map(|e| e.entity_set.clone())
}

/// Clears entity sets from the read cache when made and again when dropped (see
/// [`Reads::write_started`]).
pub struct WriteTouch<'a> {
    cache: &'a ReadCache,
    sets: Vec<String>,
}

impl<'a> WriteTouch<'a> {
    fn new(cache: &'a ReadCache, sets: Vec<String>) -> Self {
        for s in &sets {
            cache.touched(s);
        }
        WriteTouch { cache, sets }
    }
}

impl Drop for WriteTouch<'_> {
    fn drop(&mut self) {
        for s in &self.sets {
            self.cache.touched(s);
        }
    }
}

/// The entity set a URL addresses: its first path segment after the service root, when that is
/// an entity set of the model.
fn entity_set_of(url: &str, service_root: &str) -> Option<String> {
    let segment = crate::odata::client::first_segment(service_root, url);
    model().by_entity_set(&segment).map(|e| e.entity_set.clone())
}

/// The records one GraphQL request has read so far, by entity and primary key (lower case): a
/// to-one relation whose target is here with every property its selection needs costs nothing
/// (see `loaders::RecordLoader`). Per request, so per caller: nothing crosses callers. A write
/// through the gateway empties it (the records may have changed).
#[derive(Debug, Default)]
pub struct RecordMemo {
    records: std::sync::Mutex<foldhash::HashMap<(&'static str, String), crate::graphql::loaders::Record>>,
}

impl RecordMemo {
    /// Keeps `records` of `entity` (those with a primary key), replacing older copies.
    pub fn remember<'r>(
        &self,
        entity: &'static Entity,
        records: impl IntoIterator<Item = &'r crate::graphql::loaders::Record>,
    ) {
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            if let Some(id) = r.get(&entity.primary_key).and_then(serde_json::Value::as_str) {
                map.insert((entity.logical_name.as_str(), id.to_ascii_lowercase()), r.clone());
            }
        }
    }

    /// The record of `entity` with primary key `id` (lower case), if it was read with every
    /// property in `select`.
    pub fn find(
        &self,
        entity: &'static Entity,
        id: &str,
        select: &[String],
    ) -> Option<crate::graphql::loaders::Record> {
        let map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let r = map.get(&(entity.logical_name.as_str(), id.to_string()))?;
        select.iter().all(|p| r.contains_key(p)).then(|| r.clone())
    }

    /// Forgets every record (a write may have changed them).
    pub fn clear(&self) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// What one GraphQL request reused instead of asking the upstream.
#[derive(Debug, Default)]
pub struct ReadReuse {
    no_cache: AtomicBool,
    cache_hits: AtomicU64,
    oldest_age_ms: AtomicU64,
    coalesced: AtomicU64,
}

impl ReadReuse {
    /// Reads through the cache when the request's `Cache-Control` values ask for it
    /// ([`asks_no_cache`]).
    pub fn bypass_cache_if<'a>(&self, cache_control: impl Iterator<Item = &'a str>) {
        if asks_no_cache(cache_control) {
            self.no_cache.store(true, Ordering::Relaxed);
        }
    }

    pub fn cache_bypassed(&self) -> bool {
        self.no_cache.load(Ordering::Relaxed)
    }

    fn cache_hit(&self, age: Duration) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self.oldest_age_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn joined(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// Pages served from the read cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Reads that joined another read in flight.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Says in the response's `extensions.cache` that (and how much of) it came from the cache:
    /// `{hits, oldestAgeMs}`, only when something did.
    pub fn annotate(&self, response: &mut async_graphql::Response) {
        let hits = self.cache_hits();
        if hits == 0 {
            return;
        }
        let mut cache = async_graphql::indexmap::IndexMap::new();
        cache.insert(async_graphql::Name::new("hits"), async_graphql::Value::from(hits));
        let age = self.oldest_age_ms.load(Ordering::Relaxed);
        cache.insert(async_graphql::Name::new("oldestAgeMs"), async_graphql::Value::from(age));
        response
            .extensions
            .insert("cache".to_string(), async_graphql::Value::Object(cache));
    }
}

/// Whether a request's `Cache-Control` header values ask to bypass caches (`no-cache`, or
/// `no-store`, `max-age=0`).
pub fn asks_no_cache<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    values
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "no-cache" || d == "no-store" || d == "max-age=0")
}

impl GatewayState {
    /// One page for the caller through the read cache and coalescing (see the module docs);
    /// counted for the request as an upstream request only when it made one.
    pub(super) async fn read_shared(
        self: &Arc<Self>,
        entity: &Entity,
        url: &str,
        rq: &RequestCtx,
        page_size: Option<usize>,
    ) -> Result<Arc<Page>, UpstreamError> {
        let auth = rq.authorization.as_deref();
        let Some(identity) = self.upstream.tokens().identity_of(auth) else {
            return self.get_page_fresh(rq, url, page_size).await.map(Arc::new);
        };
        let set = entity.entity_set.clone();
        let key = ReadKey {
            identity,
            generation: self.reads.cache.generation(&set),
            entity_set: set,
            url: url.to_string(),
            page_size,
        };
        let cached = self.reads.cache.config().ttl_for(&key.entity_set).is_some();
        if cached && !rq.reuse.cache_bypassed() {
            let hit = self.reads.cache.get(&key).await;
            self.metrics.cache_lookup("read", hit.is_some());
            if let Some(hit) = hit {
                rq.reuse.cache_hit(hit.read_at.elapsed());
                super::explain::reused(
                    super::explain::Source::ReadCache,
                    url,
                    page_size,
                    Some(hit.page.value.len()),
                );
                return Ok(hit.page.clone());
            }
        }
        if !self.config.coalesce_reads {
            let page = Arc::new(self.get_page_fresh(rq, url, page_size).await?);
            self.reads.cache.put(key, &page).await;
            return Ok(page);
        }
        let (read, joined) = self.reads.inflight.join_or_start(key.clone(), || {
            let (state, url, auth) = (self.clone(), url.to_string(), rq.authorization.clone());
            // Explained for the operation that started it, whichever waiter polls it.
            super::explain::carry(async move {
                let page = Arc::new(state.upstream.get_page(&url, auth.as_deref(), page_size).await?);
                state.reads.cache.put(key, &page).await;
                Ok(page)
            })
            .boxed()
        });
        self.metrics.cache_lookup("coalesced", joined);
        match joined {
            true => {
                rq.reuse.joined();
                super::explain::reused(super::explain::Source::Coalesced, url, page_size, None);
            }
            false => rq.count_upstream(),
        }
        read.await
    }
}

/// The entity set a `--read-cache-ttl-for` name means: a GraphQL list field
/// (`recruitingRequests`) or an entity set (`mshr_hcmrecruitingrequestentities`).
pub fn entity_set_named(name: &str) -> Option<&'static str> {
    model()
        .entities
        .iter()
        .find(|e| e.graphql.list_field == name || e.entity_set == name)
        .map(|e| e.entity_set.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cache_is_read_from_any_cache_control_value() {
        assert!(asks_no_cache(["no-cache"].into_iter()));
        assert!(asks_no_cache(["max-age=0, No-Cache"].into_iter()));
        assert!(asks_no_cache(["public", "no-store"].into_iter()));
        assert!(!asks_no_cache(["max-age=60"].into_iter()));
        assert!(!asks_no_cache(std::iter::empty()));
    }

    #[test]
    fn list_fields_and_entity_sets_name_entity_sets() {
        let set = entity_set_named("recruitingRequests").expect("a list field");
        assert_eq!(entity_set_named(set), Some(set));
        assert_eq!(entity_set_named("nothing"), None);
    }

    #[test]
    fn writes_touch_the_sets_their_urls_address() {
        let root = "http://h:1/api/data/v9.2/";
        let set = entity_set_named("recruitingRequests").unwrap();
        assert_eq!(entity_set_of(&format!("{set}(abc)"), root).as_deref(), Some(set));
        assert_eq!(
            entity_set_of(&format!("{root}{set}?$top=1"), root).as_deref(),
            Some(set)
        );
        assert_eq!(
            entity_set_of(&format!("/api/data/v9.2/{set}"), root).as_deref(),
            Some(set)
        );
        assert_eq!(entity_set_of("$batch", root), None);
        let reads = Reads::new(ReadCacheConfig::default());
        let before = reads.cache().generation(set);
        let touch = reads.write_started(&format!("{set}(abc)"), root, &serde_json::json!({"a": 1}));
        assert!(reads.cache().generation(set) > before, "cleared when the write starts");
        let during = reads.cache().generation(set);
        drop(touch);
        assert!(reads.cache().generation(set) > during, "and again when it ends");
        let other = model().entities.iter().find(|e| e.entity_set != set).unwrap();
        let before = reads.cache().generation(&other.entity_set);
        drop(reads.write_started(set, root, &serde_json::json!({"nested": {"a": 1}})));
        assert!(
            reads.cache().generation(&other.entity_set) > before,
            "a deep write clears every set"
        );
    }

    #[test]
    fn the_response_says_what_came_from_the_cache() {
        let reuse = ReadReuse::default();
        let mut response = async_graphql::Response::new(async_graphql::Value::Null);
        reuse.annotate(&mut response);
        assert!(response.extensions.is_empty(), "nothing from the cache: nothing said");
        reuse.cache_hit(Duration::from_millis(1200));
        reuse.cache_hit(Duration::from_millis(300));
        reuse.annotate(&mut response);
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(
            json["extensions"]["cache"],
            serde_json::json!({"hits": 2, "oldestAgeMs": 1200})
        );
    }
}
