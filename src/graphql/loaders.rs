//! Batch loaders: no N+1. Every to-one relation resolved for many parents becomes one upstream
//! request per (target, selection) group, filtering the target's key on all the parents' lookups;
//! every to-many relation becomes one request per (target, join key, selection, filter, order)
//! group, filtering the children's readable key on all the parents' values. Requests split only to
//! stay under URL length limits. Loads are cached within a request, so identical loads are fetched
//! once.
//!
//! Two ways in. Field resolvers enqueue keys one by one through async-graphql's `DataLoader`,
//! which waits `--batch-delay` after the first key of a level for the others. The look-ahead
//! prefetch knows every key of a level at once, so it does not wait: [`load_now`] sends the level
//! straight through the loader's own [`Loader::load`] (the same grouping, so the same requests)
//! and feeds what it found into the `DataLoader`'s cache, where the resolvers find it.
//!
//! A relation field resolves once per parent, but its group is the same for all of them: the
//! first parent plans it ([`Plans`]: arguments checked and compiled, `$select` worked out, the
//! group hashed once) and the others reuse the plan.

use super::context::{GatewayState, RequestCtx};
use crate::model::Entity;
use crate::odata::query::children_of;
use crate::odata::UpstreamError;
use crate::telemetry::otel;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use futures::future::try_join_all;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The loaders' per-request caches. Their keys are a request's own join values, and foldhash
/// (hashbrown's default, seeded per process) hashes them several times cheaper than SipHash:
/// each relation field of an answer looks one up.
pub type Cache = HashMapCache<foldhash::fast::RandomState>;

pub use crate::odata::Record;

/// What a batch of to-one loads shares. Built with `RecordGroup::new`, which hashes it once.
#[derive(Debug)]
pub struct RecordGroup {
    pub entity: &'static Entity,
    pub select: Vec<String>,
    hash: u64,
}

/// What a batch of to-many loads shares. Built with `ChildGroup::new`, which hashes it once.
#[derive(Debug)]
pub struct ChildGroup {
    pub entity: &'static Entity,
    /// The child's property holding the parent's readable key.
    pub key_property: String,
    pub select: Vec<String>,
    pub filter: Option<String>,
    pub orderby: Vec<(String, bool)>,
    hash: u64,
}

/// A group's constructor and identity: its entity and fields. The hash is computed once, in
/// `new`: every parent's load looks its key up, and a group is a dozen strings.
macro_rules! group_identity {
    ($t:ident { $($f:ident: $ty:ty),* }) => {
        impl $t {
            pub fn new(entity: &'static Entity, $($f: $ty),*) -> $t {
                let mut h = std::hash::DefaultHasher::new();
                entity.logical_name.hash(&mut h);
                $($f.hash(&mut h);)*
                $t { entity, $($f,)* hash: h.finish() }
            }
        }
        impl PartialEq for $t {
            fn eq(&self, o: &Self) -> bool {
                std::ptr::eq(self, o)
                    || (self.hash == o.hash && self.entity.logical_name == o.entity.logical_name $(&& self.$f == o.$f)*)
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, h: &mut H) {
                h.write_u64(self.hash);
            }
        }
    };
}
group_identity!(RecordGroup { select: Vec<String> });
group_identity!(ChildGroup { key_property: String, select: Vec<String>, filter: Option<String>, orderby: Vec<(String, bool)> });

/// A to-one load: one record by primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    pub group: Arc<RecordGroup>,
    pub id: String,
}

/// A to-many load: the children of one parent, by its readable key exactly as read (it is sent
/// upstream so). Keys compare and hash case-insensitively, as Dataverse compares strings: two
/// parents whose keys differ only in case are one load, and have the same children.
#[derive(Debug, Clone)]
pub struct ChildKey {
    pub group: Arc<ChildGroup>,
    pub parent: String,
    /// `fold(parent)`, what the key compares and hashes by.
    folded: String,
}

impl ChildKey {
    pub fn new(group: Arc<ChildGroup>, parent: String) -> ChildKey {
        let folded = fold(&parent);
        ChildKey { group, parent, folded }
    }
}

impl PartialEq for ChildKey {
    fn eq(&self, o: &Self) -> bool {
        self.group == o.group && self.folded == o.folded
    }
}
impl Eq for ChildKey {}
impl Hash for ChildKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.group.hash(h);
        self.folded.hash(h);
    }
}

/// The case-folded form of a join key, for matching: Dataverse compares strings (and GUIDs)
/// case-insensitively.
pub fn fold(key: &str) -> String {
    key.to_lowercase()
}

/// Loads records by key.
pub struct RecordLoader {
    pub state: Arc<GatewayState>,
    pub request: RequestCtx,
    /// The group of each to-one field of the operation.
    pub plans: Plans<RecordGroup>,
}

/// Loads children by their parent's readable key.
pub struct ChildLoader {
    pub state: Arc<GatewayState>,
    pub request: RequestCtx,
    /// The plan of each to-many field of the operation (see [`ChildPlan`]).
    pub plans: Plans<ChildPlan>,
}

/// How one to-many field of an operation loads: its arguments checked and compiled, its group
/// built and hashed. The same for every parent (a field's arguments and variables do not change
/// within an operation), so it is made once per field, not once per parent.
#[derive(Debug)]
pub struct ChildPlan {
    pub group: Arc<ChildGroup>,
    pub first: Option<usize>,
}

/// What each relation field of an operation plans, made by the field's first parent and used by
/// the others: a field's arguments and selection are the same for every parent.
pub struct Plans<T>(std::sync::Mutex<foldhash::HashMap<(usize, usize), Arc<T>>>);

impl<T> Default for Plans<T> {
    fn default() -> Self {
        Plans(Default::default())
    }
}

impl<T> Plans<T> {
    /// The plan of the field whose query node is at `node` (its address: the document outlives
    /// the operation) under the relation at `relation`, made by `make` the first time.
    pub fn get_or<E>(&self, node: usize, relation: usize, make: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let key = (node, relation);
        if let Some(p) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let plan = Arc::new(make()?);
        let mut plans = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(plans.entry(key).or_insert(plan).clone())
    }
}

/// Loads a level whose keys are all known now: through `loader`'s own [`Loader::load`], at once
/// (no batch delay: no other key of this level is coming), and feeds what it found into the
/// loader's cache. Keys are sent once each, in their first order, so that two identical levels
/// make identical upstream URLs (which the request memo then shares).
///
/// The load runs in the caller's future, not in a task: an operation that is dropped drops it and
/// its upstream calls with it.
pub async fn load_now<K, L>(
    loader: &DataLoader<L, Cache>,
    keys: impl IntoIterator<Item = K>,
) -> Result<HashMap<K, L::Value>, L::Error>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K>,
{
    let mut seen = HashSet::new();
    let keys: Vec<K> = keys.into_iter().filter(|k| seen.insert(k.clone())).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let found = loader.loader().load(&keys).await?;
    loader
        .feed_many(found.iter().map(|(k, v)| (k.clone(), v.clone())))
        .await;
    Ok(found)
}

fn group_by<K: Clone, G: Hash + Eq + Clone>(keys: &[K], group: impl Fn(&K) -> G) -> HashMap<G, Vec<K>> {
    let mut out: HashMap<G, Vec<K>> = HashMap::new();
    for k in keys {
        out.entry(group(k)).or_default().push(k.clone());
    }
    out
}

fn query_error(e: crate::odata::filter::FilterError) -> UpstreamError {
    UpstreamError::new(
        crate::odata::error::UpstreamErrorKind::BadRequest,
        None,
        format!("The gateway could not build the upstream query: {e}"),
    )
}

/// Runs the queries of one group and returns all rows.
async fn run_all(
    state: &Arc<GatewayState>,
    request: &RequestCtx,
    entity: &'static Entity,
    urls: Vec<String>,
) -> Result<Vec<Record>, UpstreamError> {
    let limit = state.config.max_first.max(5000);
    let pages = try_join_all(urls.iter().map(|u: &String| state.get_all(entity, u, request, limit))).await?;
    Ok(pages.into_iter().flatten().collect())
}

impl Loader<RecordKey> for RecordLoader {
    type Value = Record;
    type Error = UpstreamError;

    async fn load(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, Record>, UpstreamError> {
        let mut out = HashMap::new();
        let groups = group_by(keys, |k| k.group.clone());
        let work = groups.into_iter().map(|(group, keys)| {
            let span = otel::batch_span(
                "record",
                &group.entity.entity_set,
                &group.entity.primary_key,
                keys.len(),
            );
            tracing::Instrument::instrument(self.load_group(group, keys), span)
        });
        for found in try_join_all(work).await? {
            out.extend(found);
        }
        Ok(out)
    }
}

impl RecordLoader {
    /// The records of one group's keys: from the request's memo, else in one request (or a few).
    async fn load_group(
        &self,
        group: Arc<RecordGroup>,
        keys: Vec<RecordKey>,
    ) -> Result<Vec<(RecordKey, Record)>, UpstreamError> {
        // Targets this request has read already, with every property asked for, cost nothing.
        let memo = &self.request.records;
        let (known, keys): (Vec<RecordKey>, Vec<RecordKey>) = keys
            .into_iter()
            .partition(|k| memo.find(group.entity, &k.id, &group.select).is_some());
        let mut found: Vec<(RecordKey, Record)> = known
            .into_iter()
            .filter_map(|k| memo.find(group.entity, &k.id, &group.select).map(|r| (k, r)))
            .collect();
        super::explain::records_known(&group.entity.entity_set, found.len());
        if keys.is_empty() {
            return Ok(found);
        }
        let mut ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        ids.sort_unstable(); // the same keys make the same URL (shared reads, read cache)
        let queries = children_of(
            group.entity,
            &group.entity.primary_key,
            &ids,
            &group.select,
            None,
            self.state.config.dialect,
        )
        .map_err(query_error)?;
        let urls = queries.iter().map(|q| q.to_relative_url()).collect();
        let rows = super::explain::batch(keys.len(), run_all(&self.state, &self.request, group.entity, urls)).await?;
        let by_id: HashMap<String, Record> = rows
            .into_iter()
            .filter_map(|r| {
                let id = r
                    .get(&group.entity.primary_key)
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)?;
                Some((id, r))
            })
            .collect();
        otel::record_rows(by_id.len());
        memo.remember(group.entity, by_id.values());
        found.extend(
            keys.into_iter()
                .filter_map(|k| by_id.get(&k.id).cloned().map(|r| (k, r))),
        );
        Ok(found)
    }
}

impl Loader<ChildKey> for ChildLoader {
    type Value = Arc<Vec<Record>>;
    type Error = UpstreamError;

    async fn load(&self, keys: &[ChildKey]) -> Result<HashMap<ChildKey, Arc<Vec<Record>>>, UpstreamError> {
        let mut out = HashMap::new();
        let groups = group_by(keys, |k| k.group.clone());
        let work = groups.into_iter().map(|(group, keys)| {
            let span = otel::batch_span("children", &group.entity.entity_set, &group.key_property, keys.len());
            tracing::Instrument::instrument(self.load_group(group, keys), span)
        });
        for found in try_join_all(work).await? {
            out.extend(found);
        }
        Ok(out)
    }
}

impl ChildLoader {
    /// The children of one group's parents, in one request (or a few).
    async fn load_group(
        &self,
        group: Arc<ChildGroup>,
        keys: Vec<ChildKey>,
    ) -> Result<Vec<(ChildKey, Arc<Vec<Record>>)>, UpstreamError> {
        // As read: only a case-insensitive upstream would find children by a folded key.
        let mut values: Vec<String> = keys.iter().map(|k| k.parent.clone()).collect();
        values.sort_unstable(); // the same keys make the same URL (shared reads, read cache)
        let mut queries = children_of(
            group.entity,
            &group.key_property,
            &values,
            &group.select,
            group.filter.as_deref(),
            self.state.config.dialect,
        )
        .map_err(query_error)?;
        for q in &mut queries {
            q.orderby = group.orderby.clone();
        }
        let urls = queries.iter().map(|q| q.to_relative_url()).collect();
        let rows = super::explain::batch(keys.len(), run_all(&self.state, &self.request, group.entity, urls)).await?;
        otel::record_rows(rows.len());
        let mut by_parent: HashMap<String, Vec<Record>> = HashMap::new();
        for r in rows {
            // Dataverse compares strings case-insensitively, so the join does too.
            if let Some(k) = r.get(&group.key_property).and_then(Value::as_str).map(fold) {
                by_parent.entry(k).or_default().push(r);
            }
        }
        self.request
            .records
            .remember(group.entity, by_parent.values().flatten());
        Ok(keys
            .into_iter()
            .map(|k| {
                let rows = by_parent.get(&k.folded).cloned().unwrap_or_default();
                (k, Arc::new(rows))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::Mutex;
    use std::time::Duration;

    fn hash_of<T: Hash>(t: &T) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn groups_built_apart_are_one_key_and_keys_match_in_any_case() {
        let e = crate::model::model()
            .by_entity_set("mshr_hcmrecruitingrequestentities")
            .expect("recruiting requests");
        let group = |select: &[&str]| {
            Arc::new(ChildGroup::new(
                e,
                "mshr_recruitingid".into(),
                select.iter().map(|s| s.to_string()).collect(),
                None,
                Vec::new(),
            ))
        };
        let (a, b) = (group(&["mshr_positionid"]), group(&["mshr_positionid"]));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a, b);
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_ne!(a, group(&["mshr_positionid", "mshr_description"]));
        let (k1, k2) = (
            ChildKey::new(a, "USRT-000001".into()),
            ChildKey::new(b, "usrt-000001".into()),
        );
        assert_eq!(k1, k2);
        assert_eq!(hash_of(&k1), hash_of(&k2));
        assert_eq!(k2.parent, "usrt-000001", "the key is kept as read, to be sent so");
    }

    #[test]
    fn a_plan_is_made_once_per_field_and_relation_and_errors_are_not_kept() {
        let plans: Plans<u32> = Plans::default();
        let made = std::sync::atomic::AtomicU32::new(0);
        let make = || {
            made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, ()>(7)
        };
        assert_eq!(*plans.get_or(1, 2, make).unwrap(), 7);
        assert_eq!(*plans.get_or(1, 2, make).unwrap(), 7);
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(*plans.get_or(1, 3, make).unwrap(), 7, "another relation, another plan");
        assert_eq!(plans.get_or(4, 2, || Err::<u32, _>("bad")), Err("bad"));
        assert_eq!(*plans.get_or(4, 2, make).unwrap(), 7, "a failed plan is not kept");
    }

    /// The batches a loader was asked for, in order.
    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    /// Answers every key with itself, writing down the batches it was asked for.
    #[derive(Default)]
    struct Echo {
        batches: Batches,
    }

    impl Loader<u32> for Echo {
        type Value = u32;
        type Error = ();

        async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, u32>, ()> {
            self.batches.lock().unwrap().push(keys.to_vec());
            Ok(keys.iter().map(|k| (*k, *k)).collect())
        }
    }

    /// A loader whose batch delay never ends within a test.
    fn slow_loader() -> (DataLoader<Echo, Cache>, Batches) {
        let echo = Echo::default();
        let batches = echo.batches.clone();
        let loader = DataLoader::with_cache(echo, tokio::spawn, Cache::new()).delay(Duration::from_secs(3600));
        (loader, batches)
    }

    #[tokio::test]
    async fn a_known_level_is_sent_at_once_and_lands_in_the_cache() {
        let (loader, batches) = slow_loader();
        // Ready at its first poll: no batch delay, no task.
        let found = load_now(&loader, [3, 1, 3, 2])
            .now_or_never()
            .expect("loaded without waiting")
            .unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(
            *batches.lock().unwrap(),
            vec![vec![3, 1, 2]],
            "one batch, each key once, in order"
        );
        // The resolvers' loads are cache hits: answered at once, with no second batch.
        let cached = loader
            .load_many([1, 2, 3])
            .now_or_never()
            .expect("served from the cache")
            .unwrap();
        assert_eq!(cached, found);
        assert_eq!(batches.lock().unwrap().len(), 1);
        // A key the level did not have still waits for the batch delay, as before.
        assert!(loader.load_one(4).now_or_never().is_none());
    }

    #[tokio::test]
    async fn an_empty_level_sends_nothing() {
        let (loader, batches) = slow_loader();
        let found = load_now(&loader, Vec::<u32>::new()).now_or_never().unwrap().unwrap();
        assert!(found.is_empty());
        assert!(batches.lock().unwrap().is_empty());
    }
}
