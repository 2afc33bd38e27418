//! Look-ahead prefetching of relations.
//!
//! async-graphql's dynamic schema resolves the fields of a nested object one after another, so
//! without help a page of parents would enqueue its `location` keys, wait for them, and only then
//! enqueue its `recruiter` keys: batches split, and relations load in sequence. Once a page of
//! records is known, the gateway therefore walks the selection set and loads every selected relation
//! for all records at once, concurrently, level by level. The loaders cache what they load, so when
//! the field resolvers run they find the records already there. The keys are built exactly as the
//! resolvers build them (same selection, same compiled filter and order), or the cache would miss.
//!
//! A level is sent as soon as its parents are known. By then every key of the level is known too
//! (the keys of all its relations, under all its parents), so nothing is gained by the loaders'
//! batch delay: the level's to-one keys go out in one [`load_now`] through the record loader and
//! its to-many keys in one through the child loader, concurrently. That is one upstream request
//! per group of the level (split only by URL length), as the delayed batches would make, without
//! the wait. The next level is the records the level brought, with the selections under its
//! relations (relations at the same depth share their loads). Relations the upstream already
//! brought inline (`$expand` pushdown) are fed to the caches and cost no load at all.

use super::context::GatewayState;
use super::filter::{compile_filter, compile_order};
use super::loaders::{load_now, ChildGroup, ChildKey, ChildLoader, Record, RecordGroup, RecordKey, RecordLoader};
use super::resolve::select_for;
use crate::graphql::loaders::Cache;
use crate::model::{model, Entity, LookupSide, Relation};
use crate::odata::Expanded;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, SelectionField};
use futures::future::{BoxFuture, FutureExt};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// What prefetching needs from the request.
#[derive(Clone, Copy)]
pub struct Loaders<'a> {
    pub state: &'a Arc<GatewayState>,
    pub records: &'a DataLoader<RecordLoader, Cache>,
    pub children: &'a DataLoader<ChildLoader, Cache>,
}

impl<'a> Loaders<'a> {
    pub fn from_context(ctx: &'a Context<'a>) -> Option<Loaders<'a>> {
        Some(Loaders {
            state: ctx.data::<Arc<GatewayState>>().ok()?,
            records: ctx.data::<DataLoader<RecordLoader, Cache>>().ok()?,
            children: ctx.data::<DataLoader<ChildLoader, Cache>>().ok()?,
        })
    }
}

/// Loads every relation selected on `records` (of `entity`), and theirs, before the resolvers ask.
/// Failures are left to the resolvers, which load again and report them where they belong.
pub fn prefetch<'a>(
    loaders: Loaders<'a>,
    entity: &'static Entity,
    selection: Vec<SelectionField<'a>>,
    records: Vec<Record>,
) -> BoxFuture<'a, ()> {
    async move {
        let mut level = vec![Parents {
            entity,
            selection,
            records,
        }];
        while !level.is_empty() {
            level = load_level(loaders, level).await;
        }
    }
    .boxed()
}

/// Records of one entity whose selected relations are to be loaded.
struct Parents<'a> {
    entity: &'static Entity,
    selection: Vec<SelectionField<'a>>,
    records: Vec<Record>,
}

/// One selected relation of a level: where its records come from, and what is selected on them.
struct Step<'a> {
    target: &'static Entity,
    nested: Vec<SelectionField<'a>>,
    source: Source,
}

/// Where a relation's records come from.
enum Source {
    /// Brought inline by an `$expand` (already fed to the loader's cache).
    Inline(Vec<Record>),
    /// To-one records, by key.
    Records(Vec<RecordKey>),
    /// To-many children, by their parents' keys.
    Children(Vec<ChildKey>),
}

/// Loads one level (all of it at once) and returns the next one.
async fn load_level<'a>(loaders: Loaders<'a>, level: Vec<Parents<'a>>) -> Vec<Parents<'a>> {
    let mut steps: Vec<Step<'a>> = Vec::new();
    for parents in level.into_iter().filter(|p| !p.records.is_empty()) {
        steps.extend(steps_of(loaders, parents).await);
    }
    let record_keys = steps.iter().flat_map(|s| match &s.source {
        Source::Records(keys) => keys.clone(),
        _ => Vec::new(),
    });
    let child_keys = steps.iter().flat_map(|s| match &s.source {
        Source::Children(keys) => keys.clone(),
        _ => Vec::new(),
    });
    let (records, children) = futures::join!(
        load_now(loaders.records, record_keys.collect::<Vec<_>>()),
        load_now(loaders.children, child_keys.collect::<Vec<_>>()),
    );
    // A failed load leaves its relations to the resolvers (and their levels unloaded).
    let (records, children) = (records.unwrap_or_default(), children.unwrap_or_default());
    steps
        .into_iter()
        .map(|s| {
            let rows = rows_of(s.source, &records, &children);
            Parents {
                entity: s.target,
                selection: s.nested,
                records: rows,
            }
        })
        .filter(|p| !p.records.is_empty())
        .collect()
}

/// The records a relation brought, from the level's loads.
fn rows_of(
    source: Source,
    records: &HashMap<RecordKey, Record>,
    children: &HashMap<ChildKey, Arc<Vec<Record>>>,
) -> Vec<Record> {
    match source {
        Source::Inline(rows) => rows,
        Source::Records(keys) => keys.iter().filter_map(|k| records.get(k).cloned()).collect(),
        Source::Children(keys) => keys
            .iter()
            .filter_map(|k| children.get(k))
            .flat_map(|rows| rows.iter().cloned())
            .collect(),
    }
}

/// The relations selected on `parents`, each with the keys it needs (or fed from an `$expand`).
async fn steps_of<'a>(loaders: Loaders<'a>, parents: Parents<'a>) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for field in parents.selection {
        let Some(r) = parents
            .entity
            .graphql
            .relations
            .iter()
            .find(|r| r.field == field.name())
        else {
            continue;
        };
        let target = model().by_logical_name(&r.target).expect("relation target in model");
        let nested: Vec<SelectionField<'a>> = field.selection_set().collect();
        let source = match r.lookup_on {
            LookupSide::This => to_one(loaders, r, target, &nested, &parents.records).await,
            LookupSide::Target => {
                let Some(group) = child_group(loaders.state, target, r, &field, &nested) else {
                    continue; // arguments the resolver will refuse, with its own error
                };
                to_many(loaders, r, group, &parents.records).await
            }
        };
        steps.push(Step { target, nested, source });
    }
    steps
}

/// A to-one relation's keys under `records`, or its records when the upstream sent them inline.
async fn to_one(
    loaders: Loaders<'_>,
    r: &'static Relation,
    target: &'static Entity,
    nested: &[SelectionField<'_>],
    records: &[Record],
) -> Source {
    let group = Arc::new(RecordGroup::new(target, select_for(target, nested.iter().copied())));
    if expanded(records, &r.navigation_property) {
        // The upstream already sent them ($expand pushdown): feed the loader's cache.
        let found = records_of(records, r, &group);
        let rows = found.iter().map(|(_, v)| v.clone()).collect();
        loaders.records.feed_many(found).await;
        return Source::Inline(rows);
    }
    let keys = records
        .iter()
        .filter_map(|rec| rec.get(&r.lookup_property).and_then(Json::as_str))
        .map(|id| RecordKey {
            group: group.clone(),
            id: id.to_ascii_lowercase(),
        })
        .collect();
    Source::Records(keys)
}

/// A to-many relation's parent keys under `records`, or its children when the upstream sent them
/// inline (never with an order: an `$expand` is not asked for then).
async fn to_many(loaders: Loaders<'_>, r: &'static Relation, group: Arc<ChildGroup>, records: &[Record]) -> Source {
    let parent_key = r.parent_readable_key.clone().unwrap_or_default();
    if expanded(records, &r.navigation_property) && group.orderby.is_empty() {
        let fed = children_of_expanded(records, r, &parent_key, &group);
        let rows = fed.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
        loaders.children.feed_many(fed).await;
        return Source::Inline(rows);
    }
    let keys = records
        .iter()
        .filter_map(|rec| rec.get(&parent_key).and_then(Json::as_str).filter(|s| !s.is_empty()))
        .map(|v| ChildKey::new(group.clone(), v.to_string()))
        .collect();
    Source::Children(keys)
}

/// Whether every record carries the navigation property inline (an `$expand` answer).
fn expanded(records: &[Record], navigation: &str) -> bool {
    !records.is_empty() && records.iter().all(|r| r.expanded(navigation).is_some())
}

/// The to-one records an `$expand` brought, under the keys the loader would use.
fn records_of(records: &[Record], r: &Relation, group: &Arc<RecordGroup>) -> Vec<(RecordKey, Record)> {
    records
        .iter()
        .filter_map(|rec| {
            let id = rec.get(&r.lookup_property).and_then(Json::as_str)?;
            let Some(Expanded::One(Some(child))) = rec.expanded(&r.navigation_property) else {
                return None;
            };
            Some((
                RecordKey {
                    group: group.clone(),
                    id: id.to_ascii_lowercase(),
                },
                child.clone(),
            ))
        })
        .collect()
}

/// The `$expand` options that bring a page's first-level relations along with it, as the
/// pushdown plan decided at start allows (`ReadConfig::pushdown`) and only through navigation
/// properties the upstream has: to-one relations, and to-many ones without `orderBy` (Dataverse
/// allows `$select` and `$filter` inside a collection expand).
pub fn pushdown_expands(
    state: &GatewayState,
    entity: &'static Entity,
    selection: &[SelectionField<'_>],
) -> Vec<crate::odata::Expand> {
    let mut out: Vec<crate::odata::Expand> = Vec::new();
    for f in selection {
        let Some(r) = entity.graphql.relations.iter().find(|r| r.field == f.name()) else {
            continue;
        };
        if out.iter().any(|e| e.navigation == r.navigation_property) {
            continue; // the same relation twice (aliases): the loader serves the second
        }
        let planned = match r.kind {
            crate::model::Cardinality::One => state.config.pushdown.to_one,
            crate::model::Cardinality::Many => state.config.pushdown.to_many,
        };
        if !planned || !state.upstream.naming().has_navigation(entity, &r.navigation_property) {
            continue;
        }
        let target = model().by_logical_name(&r.target).expect("relation target in model");
        let nested: Vec<SelectionField<'_>> = f.selection_set().collect();
        let expand = match r.lookup_on {
            LookupSide::This => crate::odata::Expand {
                navigation: r.navigation_property.clone(),
                select: select_for(target, nested.iter().copied()),
                filter: None,
                expand: Vec::new(),
            },
            LookupSide::Target => {
                let Some(group) = child_group(state, target, r, f, &nested) else {
                    continue;
                };
                if !group.orderby.is_empty() {
                    continue;
                }
                crate::odata::Expand {
                    navigation: r.navigation_property.clone(),
                    select: group.select.clone(),
                    filter: group.filter.clone(),
                    expand: Vec::new(),
                }
            }
        };
        out.push(expand);
    }
    out
}

/// The children an `$expand` brought, grouped as the loader would group them.
fn children_of_expanded(
    records: &[Record],
    r: &Relation,
    parent_key: &str,
    group: &Arc<ChildGroup>,
) -> Vec<(ChildKey, Arc<Vec<Record>>)> {
    // Keyed as the loader matches keys (case-insensitively), holding the first key as read.
    let mut out =
        foldhash::HashMap::<ChildKey, Arc<Vec<Record>>>::with_capacity_and_hasher(records.len(), Default::default());
    for rec in records {
        let Some(parent) = rec.get(parent_key).and_then(Json::as_str).filter(|s| !s.is_empty()) else {
            continue;
        };
        let key = ChildKey::new(group.clone(), parent.to_string());
        if out.contains_key(&key) {
            continue; // the same parent key (in any case) brought the same children
        }
        let rows = match rec.expanded(&r.navigation_property) {
            Some(Expanded::Many(children)) => children.clone(),
            _ => Arc::default(),
        };
        out.insert(key, rows);
    }
    out.into_iter().collect()
}

/// The loader group of a to-many relation field, as `resolve::to_many_field` builds it.
fn child_group(
    state: &GatewayState,
    target: &'static Entity,
    r: &Relation,
    field: &SelectionField<'_>,
    nested: &[SelectionField<'_>],
) -> Option<Arc<ChildGroup>> {
    let child_key = r.child_readable_key.clone()?;
    let args = field.arguments().ok()?;
    let arg = |name: &str| {
        args.iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, async_graphql::Value::Null))
    };
    let filter = match arg("filter") {
        Some(v) => Some(compile_filter(target, v, &state.labels(), state.config.dialect).ok()?),
        None => None,
    };
    let orderby = match arg("orderBy") {
        Some(v) => compile_order(target, v).ok()?,
        None => Vec::new(),
    };
    Some(Arc::new(ChildGroup::new(
        target,
        child_key.clone(),
        child_select(target, &child_key, nested),
        filter,
        orderby,
    )))
}

/// The `$select` of a to-many load: the selection plus the join key.
pub fn child_select(target: &Entity, child_key: &str, nested: &[SelectionField<'_>]) -> Vec<String> {
    let mut select = select_for(target, nested.iter().copied());
    if !select.iter().any(|s| s == child_key) {
        select.push(child_key.to_string());
    }
    select
}
