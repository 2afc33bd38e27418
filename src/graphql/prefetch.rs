//! Look-ahead prefetching of relations.
//!
//! async-graphql's dynamic schema resolves the fields of a nested object one after another, so
//! without help a page of parents would enqueue its `location` keys, wait for them, and only then
//! enqueue its `recruiter` keys: batches split, and relations load in sequence. Once a page of
//! records is known, the gateway therefore walks the selection set and loads every selected relation
//! for all records at once, concurrently, level by level. The loaders cache what they load, so when
//! the field resolvers run they find the records already there. The keys are built exactly as the
//! resolvers build them (same selection, same compiled filter and order), or the cache would miss.

use super::context::GatewayState;
use super::filter::{compile_filter, compile_order};
use super::loaders::{ChildGroup, ChildKey, ChildLoader, Record, RecordGroup, RecordKey, RecordLoader};
use super::resolve::select_for;
use crate::model::{model, Entity, LookupSide, Relation};
use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::{Context, SelectionField};
use futures::future::{join_all, BoxFuture, FutureExt};
use serde_json::Value as Json;
use std::sync::Arc;

/// What prefetching needs from the request.
#[derive(Clone, Copy)]
pub struct Loaders<'a> {
    pub state: &'a Arc<GatewayState>,
    pub records: &'a DataLoader<RecordLoader, HashMapCache>,
    pub children: &'a DataLoader<ChildLoader, HashMapCache>,
}

impl<'a> Loaders<'a> {
    pub fn from_context(ctx: &'a Context<'a>) -> Option<Loaders<'a>> {
        Some(Loaders {
            state: ctx.data::<Arc<GatewayState>>().ok()?,
            records: ctx.data::<DataLoader<RecordLoader, HashMapCache>>().ok()?,
            children: ctx.data::<DataLoader<ChildLoader, HashMapCache>>().ok()?,
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
        if records.is_empty() {
            return;
        }
        let work = selection.into_iter().filter_map(|f| {
            let r = entity.graphql.relations.iter().find(|r| r.field == f.name())?;
            Some(prefetch_relation(loaders, entity, r, f, &records))
        });
        join_all(work.collect::<Vec<_>>()).await;
    }
    .boxed()
}

fn prefetch_relation<'a>(
    loaders: Loaders<'a>,
    entity: &'static Entity,
    r: &'static Relation,
    field: SelectionField<'a>,
    records: &[Record],
) -> BoxFuture<'a, ()> {
    let target = model().by_logical_name(&r.target).expect("relation target in model");
    let nested: Vec<SelectionField<'a>> = field.selection_set().collect();
    match r.lookup_on {
        LookupSide::This => {
            let group = Arc::new(RecordGroup {
                entity: target,
                select: select_for(target, nested.iter().copied()),
            });
            let keys: Vec<RecordKey> = records
                .iter()
                .filter_map(|rec| rec.get(&r.lookup_property).and_then(Json::as_str))
                .map(|id| RecordKey {
                    group: group.clone(),
                    id: id.to_ascii_lowercase(),
                })
                .collect();
            let inline = expanded(records, &r.navigation_property);
            let records_owned: Vec<Record> = if inline { records.to_vec() } else { Vec::new() };
            async move {
                if inline {
                    // The upstream already sent them ($expand pushdown): feed the loader's cache.
                    let found = records_of(&records_owned, r, &group);
                    let rows: Vec<Record> = found.iter().map(|(_, v)| v.clone()).collect();
                    loaders.records.feed_many(found).await;
                    prefetch(loaders, target, nested, rows).await;
                } else if let Ok(found) = loaders.records.load_many(keys).await {
                    prefetch(loaders, target, nested, found.into_values().collect()).await;
                }
            }
            .boxed()
        }
        LookupSide::Target => {
            let Some(group) = child_group(loaders.state, target, r, &field, &nested) else {
                return async {}.boxed();
            };
            let parent_key = r.parent_readable_key.clone().unwrap_or_default();
            let keys: Vec<ChildKey> = records
                .iter()
                .filter_map(|rec| rec.get(&parent_key).and_then(Json::as_str).filter(|s| !s.is_empty()))
                .map(|v| ChildKey {
                    group: group.clone(),
                    parent: v.to_string(),
                })
                .collect();
            let _ = entity;
            let inline = expanded(records, &r.navigation_property) && group.orderby.is_empty();
            let fed: Vec<(ChildKey, Arc<Vec<Record>>)> = if inline {
                children_of_expanded(records, r, &parent_key, &group)
            } else {
                Vec::new()
            };
            async move {
                if inline {
                    let rows: Vec<Record> = fed.iter().flat_map(|(_, v)| v.as_ref().clone()).collect();
                    loaders.children.feed_many(fed).await;
                    prefetch(loaders, target, nested, rows).await;
                } else if let Ok(found) = loaders.children.load_many(keys).await {
                    let rows: Vec<Record> = found.into_values().flat_map(|v| v.as_ref().clone()).collect();
                    prefetch(loaders, target, nested, rows).await;
                }
            }
            .boxed()
        }
    }
}

/// Whether every record carries the navigation property inline (an `$expand` answer).
fn expanded(records: &[Record], navigation: &str) -> bool {
    !records.is_empty() && records.iter().all(|r| r.contains_key(navigation))
}

/// The to-one records an `$expand` brought, under the keys the loader would use.
fn records_of(records: &[Record], r: &Relation, group: &Arc<RecordGroup>) -> Vec<(RecordKey, Record)> {
    records
        .iter()
        .filter_map(|rec| {
            let id = rec.get(&r.lookup_property).and_then(Json::as_str)?;
            let child = rec.get(&r.navigation_property).and_then(Json::as_object)?;
            Some((
                RecordKey {
                    group: group.clone(),
                    id: id.to_ascii_lowercase(),
                },
                Arc::new(child.clone()),
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
    // Keyed by the folded key (the loader's matching), holding the first key as read.
    let mut out: std::collections::HashMap<String, (String, Vec<Record>)> = std::collections::HashMap::new();
    for rec in records {
        let Some(parent) = rec.get(parent_key).and_then(Json::as_str).filter(|s| !s.is_empty()) else {
            continue;
        };
        let folded = super::loaders::fold(parent);
        if out.contains_key(&folded) {
            continue; // the same parent key (in any case) brought the same children
        }
        let rows = match rec.get(&r.navigation_property) {
            Some(Json::Array(children)) => children
                .iter()
                .filter_map(|c| c.as_object().cloned())
                .map(Arc::new)
                .collect(),
            _ => Vec::new(),
        };
        out.insert(folded, (parent.to_string(), rows));
    }
    out.into_values()
        .map(|(parent, rows)| {
            (
                ChildKey {
                    group: group.clone(),
                    parent,
                },
                Arc::new(rows),
            )
        })
        .collect()
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
    Some(Arc::new(ChildGroup {
        entity: target,
        key_property: child_key.clone(),
        select: child_select(target, &child_key, nested),
        filter,
        orderby,
    }))
}

/// The `$select` of a to-many load: the selection plus the join key.
pub fn child_select(target: &Entity, child_key: &str, nested: &[SelectionField<'_>]) -> Vec<String> {
    let mut select = select_for(target, nested.iter().copied());
    if !select.iter().any(|s| s == child_key) {
        select.push(child_key.to_string());
    }
    select
}
