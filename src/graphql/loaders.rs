//! Batch loaders: no N+1. Every to-one relation resolved for many parents becomes one upstream
//! request per (target, selection) group, filtering the target's key on all the parents' lookups;
//! every to-many relation becomes one request per (target, join key, selection, filter, order)
//! group, filtering the children's readable key on all the parents' values. Requests split only to
//! stay under URL length limits. Loads are cached within a request, so identical loads are fetched
//! once.

use super::context::{GatewayState, RequestCtx};
use crate::model::Entity;
use crate::odata::query::children_of;
use crate::odata::UpstreamError;
use async_graphql::dataloader::Loader;
use futures::future::try_join_all;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub type Record = Arc<Map<String, Value>>;

/// What a batch of to-one loads shares.
#[derive(Debug)]
pub struct RecordGroup {
    pub entity: &'static Entity,
    pub select: Vec<String>,
}

/// What a batch of to-many loads shares.
#[derive(Debug)]
pub struct ChildGroup {
    pub entity: &'static Entity,
    /// The child's property holding the parent's readable key.
    pub key_property: String,
    pub select: Vec<String>,
    pub filter: Option<String>,
    pub orderby: Vec<(String, bool)>,
}

macro_rules! group_identity {
    ($t:ty, $($f:ident),*) => {
        impl PartialEq for $t {
            fn eq(&self, o: &Self) -> bool {
                self.entity.logical_name == o.entity.logical_name $(&& self.$f == o.$f)*
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, h: &mut H) {
                self.entity.logical_name.hash(h);
                $(self.$f.hash(h);)*
            }
        }
    };
}
group_identity!(RecordGroup, select);
group_identity!(ChildGroup, key_property, select, filter, orderby);

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
}

impl PartialEq for ChildKey {
    fn eq(&self, o: &Self) -> bool {
        self.group == o.group && fold(&self.parent) == fold(&o.parent)
    }
}
impl Eq for ChildKey {}
impl Hash for ChildKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.group.hash(h);
        fold(&self.parent).hash(h);
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
}

/// Loads children by their parent's readable key.
pub struct ChildLoader {
    pub state: Arc<GatewayState>,
    pub request: RequestCtx,
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
) -> Result<Vec<Map<String, Value>>, UpstreamError> {
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
        let work = groups.into_iter().map(|(group, keys)| async move {
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
            let rows = run_all(&self.state, &self.request, group.entity, urls).await?;
            let by_id: HashMap<String, Record> = rows
                .into_iter()
                .filter_map(|r| {
                    let id = r
                        .get(&group.entity.primary_key)
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase)?;
                    Some((id, Arc::new(r)))
                })
                .collect();
            Ok::<_, UpstreamError>(
                keys.into_iter()
                    .filter_map(|k| by_id.get(&k.id).cloned().map(|r| (k, r)))
                    .collect::<Vec<_>>(),
            )
        });
        for found in try_join_all(work).await? {
            out.extend(found);
        }
        Ok(out)
    }
}

impl Loader<ChildKey> for ChildLoader {
    type Value = Arc<Vec<Record>>;
    type Error = UpstreamError;

    async fn load(&self, keys: &[ChildKey]) -> Result<HashMap<ChildKey, Arc<Vec<Record>>>, UpstreamError> {
        let mut out = HashMap::new();
        let groups = group_by(keys, |k| k.group.clone());
        let work = groups.into_iter().map(|(group, keys)| async move {
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
            let rows = run_all(&self.state, &self.request, group.entity, urls).await?;
            let mut by_parent: HashMap<String, Vec<Record>> = HashMap::new();
            for r in rows {
                // Dataverse compares strings case-insensitively, so the join does too.
                if let Some(k) = r.get(&group.key_property).and_then(Value::as_str).map(fold) {
                    by_parent.entry(k).or_default().push(Arc::new(r));
                }
            }
            Ok::<_, UpstreamError>(
                keys.into_iter()
                    .map(|k| {
                        let rows = by_parent.get(&fold(&k.parent)).cloned().unwrap_or_default();
                        (k, Arc::new(rows))
                    })
                    .collect::<Vec<_>>(),
            )
        });
        for found in try_join_all(work).await? {
            out.extend(found);
        }
        Ok(out)
    }
}
