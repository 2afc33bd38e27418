//! Resolvers of the read schema: root single and list fields, properties, relations (through the
//! loaders), connections and cursors.

use super::context::{GatewayState, RequestCtx};
use super::cursor::{Cursor, CursorKey, QueryId};
use super::errors::{bad_input, upstream_error};
use super::filter::{compile_filter, compile_order};
use super::loaders::{ChildGroup, ChildKey, ChildLoader, RecordGroup, RecordKey, RecordLoader};
use super::prefetch::{prefetch, Loaders};
use super::types::names;
use crate::model::{model, Entity, LookupSide, PropType, Property, Relation};
use crate::odata::query::ODataQuery;
use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, ResolverContext, TypeRef};
use async_graphql::{ErrorExtensions, Name, SelectionField, Value};
use serde_json::{Map, Value as Json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A record as the upstream returned it, with the entity it belongs to.
#[derive(Clone)]
pub struct Row {
    pub entity: &'static Entity,
    pub record: Arc<Map<String, Json>>,
}

/// The resolved value of a connection field.
pub struct ConnectionValue {
    pub rows: Vec<Row>,
    pub cursors: Vec<String>,
    pub page_info: PageInfoValue,
    pub total_count: Option<u64>,
}

/// `PageInfo` values.
pub struct PageInfoValue {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

impl PageInfoValue {
    pub fn get(&self, key: &str) -> Value {
        match key {
            "hasNextPage" => Value::Boolean(self.has_next_page),
            _ => self.end_cursor.clone().map(Value::String).unwrap_or(Value::Null),
        }
    }
}

struct EdgeValue {
    row: Row,
    cursor: String,
}

/// The OData properties a selection on an entity's object type needs: the selected properties,
/// the lookups of selected to-one relations, the readable keys of selected to-many relations, and
/// always the primary key.
pub fn select_for<'a>(entity: &Entity, fields: impl Iterator<Item = SelectionField<'a>>) -> Vec<String> {
    let mut out = BTreeSet::new();
    out.insert(entity.primary_key.clone());
    for f in fields {
        if let Some(p) = entity.properties.iter().find(|p| p.graphql_field == f.name()) {
            out.insert(p.name.clone());
        } else if let Some(r) = entity.graphql.relations.iter().find(|r| r.field == f.name()) {
            match r.lookup_on {
                LookupSide::This => {
                    out.insert(r.lookup_property.clone());
                }
                LookupSide::Target => {
                    if let Some(k) = &r.parent_readable_key {
                        out.insert(k.clone());
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The selections on the node type under a connection (`nodes { … }` and `edges { node { … } }`).
fn node_selections<'a>(connection: SelectionField<'a>) -> Vec<SelectionField<'a>> {
    let mut out = Vec::new();
    for f in connection.selection_set() {
        match f.name() {
            "nodes" => out.extend(f.selection_set()),
            "edges" => {
                for e in f.selection_set().filter(|e| e.name() == "node") {
                    out.extend(e.selection_set());
                }
            }
            _ => {}
        }
    }
    out
}

fn state<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a Arc<GatewayState>> {
    ctx.data::<Arc<GatewayState>>()
}

fn request<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a RequestCtx> {
    ctx.data::<RequestCtx>()
}

/// `<singleField>(id: ID!): <Type>`: one record by key; null when it does not exist.
pub fn single_field(e: &'static Entity) -> Field {
    Field::new(
        &e.graphql.single_field,
        TypeRef::named(&e.graphql.type_name),
        move |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?;
                let id = crate::odata::escape::guid(id).map_err(|_| {
                    bad_input(format!(
                        "`{id}` is not a valid id: ids are GUIDs such as 00000d6b-0000-0000-0000-005001000000."
                    ))
                })?;
                let select = select_for(e, ctx.field().selection_set());
                let st = state(&ctx)?;
                let rq = request(&ctx)?;
                let mut q = ODataQuery::by_key(e, &id).map_err(|err| bad_input(err.to_string()))?;
                q.select = select;
                match st.fetch_page(e, &q.to_relative_url(), rq, None).await {
                    Ok(page) => {
                        let Some(record) = page.value.into_iter().next().map(Arc::new) else {
                            return Ok(None);
                        };
                        if let Some(loaders) = Loaders::from_context(&ctx) {
                            prefetch(loaders, e, ctx.field().selection_set().collect(), vec![record.clone()]).await;
                        }
                        Ok(Some(FieldValue::owned_any(Row { entity: e, record })))
                    }
                    Err(err) if err.kind == crate::odata::UpstreamErrorKind::NotFound => Ok(None),
                    Err(err) => Err(upstream_error(&err)),
                }
            })
        },
    )
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)).description("The record's GUID."))
    .description(format!("One {} by id; null when there is none.", e.name.to_lowercase()))
}

/// `<listField>(filter, orderBy, first, after): <Type>Connection!`.
pub fn list_field(e: &'static Entity) -> Field {
    let ty = &e.graphql.type_name;
    Field::new(
        &e.graphql.list_field,
        TypeRef::named_nn(names::connection(ty)),
        move |ctx| {
            FieldFuture::new(async move {
                let st = state(&ctx)?;
                let rq = request(&ctx)?;
                let first = match ctx.args.get("first") {
                    Some(v) if !v.is_null() => v.i64()?,
                    _ => st.config.default_first as i64,
                };
                if first < 0 || first as usize > st.config.max_first {
                    return Err(bad_input(format!(
                        "`first` must be between 0 and {} (got {first}); page with `after` for more.",
                        st.config.max_first
                    )));
                }
                let first = first as usize;
                let filter = match ctx.args.get("filter") {
                    Some(v) if !v.is_null() => Some(compile_filter(e, v.as_value(), &st.labels(), st.config.dialect)?),
                    _ => None,
                };
                let orderby = match ctx.args.get("orderBy") {
                    Some(v) if !v.is_null() => compile_order(e, v.as_value())?,
                    _ => Vec::new(),
                };
                let selection = ctx.field();
                let select = select_for(e, node_selections(selection).into_iter());
                let wants_total = selection.selection_set().any(|f| f.name() == "totalCount");
                let query_id = QueryId::of(e, filter.as_deref(), &orderby);
                let key = ctx.data::<Arc<CursorKey>>()?;
                // Checked before anything goes upstream: a cursor this gateway did not issue for
                // this query costs no request.
                let start = match ctx.args.get("after") {
                    Some(v) if !v.is_null() => Some(Cursor::decode(v.string()?, key, &query_id).map_err(bad_input)?),
                    _ => None,
                };
                let q = ODataQuery {
                    entity: e,
                    key: None,
                    select,
                    filter: filter.clone(),
                    orderby: orderby.clone(),
                    top: None,
                    expand: if st.config.expand_pushdown {
                        super::prefetch::pushdown_expands(st, e, &node_selections(selection))
                    } else {
                        Vec::new()
                    },
                    count: wants_total,
                };
                let (token, skip) = match &start {
                    None => (None, 0),
                    Some(c) => c.resume_point(),
                };
                let mut url = q.to_relative_url();
                if let Some(t) = &token {
                    url.push_str(&format!(
                        "&$skiptoken={}",
                        crate::odata::escape::percent_encode_query_value(t)
                    ));
                }
                // `skip` is at most MAX_PAGE_SIZE (see `Cursor::decode`), and no upstream page is
                // larger than that anyway.
                let page_size = skip.saturating_add(first).clamp(1, crate::odata::client::MAX_PAGE_SIZE);
                let page = st
                    .fetch_page(e, &url, rq, Some(page_size))
                    .await
                    .map_err(|err| upstream_error(&err))?;
                let next_token = page.next_link.as_deref().and_then(Cursor::skiptoken_of);
                let total = page.value.len();
                let rows: Vec<Row> = page
                    .value
                    .into_iter()
                    .skip(skip)
                    .take(first)
                    .map(|r| Row {
                        entity: e,
                        record: Arc::new(r),
                    })
                    .collect();
                let has_more_in_page = total > skip.saturating_add(rows.len());
                let cursors: Vec<String> = (0..rows.len())
                    .map(|i| {
                        let last = i + 1 == rows.len();
                        Cursor {
                            token: token.clone(),
                            index: skip.saturating_add(i),
                            next: if last && !has_more_in_page {
                                next_token.clone()
                            } else {
                                None
                            },
                        }
                        .encode(key, &query_id)
                    })
                    .collect();
                let page_info = PageInfoValue {
                    has_next_page: has_more_in_page || next_token.is_some(),
                    end_cursor: cursors.last().cloned(),
                };
                if let Some(loaders) = Loaders::from_context(&ctx) {
                    let records = rows.iter().map(|r| r.record.clone()).collect();
                    prefetch(loaders, e, node_selections(selection), records).await;
                }
                Ok(Some(FieldValue::owned_any(ConnectionValue {
                    rows,
                    cursors,
                    page_info,
                    total_count: page.count,
                })))
            })
        },
    )
    .argument(InputValue::new("filter", TypeRef::named(names::filter(ty))).description("Only the records that match."))
    .argument(
        InputValue::new("orderBy", TypeRef::named_nn_list(names::order_by(ty)))
            .description("Sort keys, most significant first; the id breaks ties."),
    )
    .argument(
        InputValue::new("first", TypeRef::named(TypeRef::INT))
            .description("Page size (default and maximum are settings: 100 and 500)."),
    )
    .argument(
        InputValue::new("after", TypeRef::named(TypeRef::STRING))
            .description("A cursor from a previous page of the same query."),
    )
    .description(format!("{} records, a page at a time.", e.name))
}

pub fn connection_edges(ty: &str) -> Field {
    Field::new("edges", TypeRef::named_nn_list_nn(names::edge(ty)), |ctx| {
        FieldFuture::new(async move {
            let c = ctx.parent_value.try_downcast_ref::<ConnectionValue>()?;
            let edges = c.rows.iter().zip(&c.cursors).map(|(row, cursor)| {
                FieldValue::owned_any(EdgeValue {
                    row: row.clone(),
                    cursor: cursor.clone(),
                })
            });
            Ok(Some(FieldValue::list(edges)))
        })
    })
    .description("The records of this page with their cursors.")
}

pub fn connection_nodes(ty: &str) -> Field {
    Field::new("nodes", TypeRef::named_nn_list_nn(ty), |ctx| {
        FieldFuture::new(async move {
            let c = ctx.parent_value.try_downcast_ref::<ConnectionValue>()?;
            Ok(Some(FieldValue::list(
                c.rows.iter().cloned().map(FieldValue::owned_any),
            )))
        })
    })
    .description("The records of this page.")
}

pub fn connection_page_info() -> Field {
    Field::new("pageInfo", TypeRef::named_nn(names::PAGE_INFO), |ctx| {
        FieldFuture::new(async move {
            let c = ctx.parent_value.try_downcast_ref::<ConnectionValue>()?;
            Ok(Some(FieldValue::borrowed_any(&c.page_info)))
        })
    })
    .description("Whether there is a next page, and its cursor.")
}

pub fn connection_total_count() -> Field {
    Field::new("totalCount", TypeRef::named(TypeRef::INT), |ctx| {
        FieldFuture::new(async move {
            let c = ctx.parent_value.try_downcast_ref::<ConnectionValue>()?;
            Ok(c.total_count.map(|n| FieldValue::value(Value::from(n))))
        })
    })
    .description("How many records match, counted by the upstream (Dataverse caps the count at 5000). Asked of the upstream only when selected.")
}

pub fn edge_cursor() -> Field {
    Field::new("cursor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
        FieldFuture::new(async move {
            let e = ctx.parent_value.try_downcast_ref::<EdgeValue>()?;
            Ok(Some(FieldValue::value(Value::String(e.cursor.clone()))))
        })
    })
    .description("Pass as `after` to continue after this record.")
}

pub fn edge_node(ty: &str) -> Field {
    Field::new("node", TypeRef::named_nn(ty), |ctx| {
        FieldFuture::new(async move {
            let e = ctx.parent_value.try_downcast_ref::<EdgeValue>()?;
            Ok(Some(FieldValue::owned_any(e.row.clone())))
        })
    })
    .description("The record.")
}

/// A property of an entity, converted from its OData wire form.
pub fn property_field(e: &'static Entity, p: &'static Property, ty: TypeRef) -> Field {
    Field::new(&p.graphql_field, ty, move |ctx| {
        FieldFuture::new(async move {
            let row = ctx.parent_value.try_downcast_ref::<Row>()?;
            let raw = row.record.get(&p.name).unwrap_or(&Json::Null);
            // Only option sets need the labels (a lock and a refcount per field otherwise).
            let value = match p.option_set {
                Some(_) => to_graphql(e, p, raw, &state(&ctx)?.labels())?,
                None => to_graphql(e, p, raw, &NO_LABELS)?,
            };
            Ok(value.map(FieldValue::value))
        })
    })
}

/// What `to_graphql` gets for properties that are not option sets.
static NO_LABELS: std::sync::LazyLock<crate::odata::options::OptionSetLabels> =
    std::sync::LazyLock::new(Default::default);

/// Converts a wire value to GraphQL, tolerating the type drift virtual tables are known for
/// (numbers as strings and the like), and refusing values that cannot mean anything (arrays and
/// objects where a property's value belongs, text where a number does).
pub fn to_graphql(
    e: &Entity,
    p: &Property,
    raw: &Json,
    labels: &crate::odata::options::OptionSetLabels,
) -> async_graphql::Result<Option<Value>> {
    if raw.is_null() {
        return Ok(None);
    }
    let text = || match raw {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let bad = |what: &str| {
        async_graphql::Error::new(format!(
            "The upstream returned {raw} for `{}` of {}, which is not {what}.",
            p.graphql_field, e.graphql.type_name
        ))
        .extend_with(|_, x| x.set("code", "UPSTREAM_INVALID_RESPONSE"))
    };
    if matches!(raw, Json::Array(_) | Json::Object(_)) {
        return Err(bad("a single value"));
    }
    Ok(Some(match p.ty {
        PropType::String | PropType::Guid => Value::String(text()),
        PropType::Date => Value::String(text().chars().take(10).collect()),
        PropType::Datetime => Value::String(text()),
        PropType::Int => match raw.as_i64().or_else(|| text().parse().ok()) {
            Some(n) => Value::from(n),
            None => return Err(bad("an integer")),
        },
        PropType::Decimal | PropType::Double => match raw.as_f64().or_else(|| text().parse().ok()) {
            Some(f) => Value::from(f),
            None => return Err(bad("a number")),
        },
        PropType::OptionSet => {
            let set = p.option_set.as_deref().unwrap_or_default();
            let n = raw
                .as_i64()
                .or_else(|| text().parse().ok())
                .ok_or_else(|| bad("an option-set integer"))?;
            let v = labels
                .from_upstream(set, n)
                .ok_or_else(|| bad(&format!("a value of option set {set}")))?;
            match v.graphql_value.as_str() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                "null" => return Ok(None),
                other => Value::Enum(Name::new(other)),
            }
        }
    }))
}

/// A to-one relation: the record its lookup points at, loaded in batches.
pub fn to_one_field(e: &'static Entity, r: &'static Relation, ty: TypeRef) -> Field {
    Field::new(&r.field, ty, move |ctx| {
        FieldFuture::new(async move {
            let row = ctx.parent_value.try_downcast_ref::<Row>()?;
            let Some(id) = row
                .record
                .get(&r.lookup_property)
                .and_then(Json::as_str)
                .map(str::to_ascii_lowercase)
            else {
                return Ok(None);
            };
            let target = model().by_logical_name(&r.target).expect("relation target in model");
            let select = select_for(target, ctx.field().selection_set());
            let loader = ctx.data::<DataLoader<RecordLoader, HashMapCache>>()?;
            let key = RecordKey {
                group: Arc::new(RecordGroup { entity: target, select }),
                id,
            };
            let _ = e;
            match loader.load_one(key).await.map_err(|err| upstream_error(&err))? {
                Some(record) => Ok(Some(FieldValue::owned_any(Row { entity: target, record }))),
                None => Ok(None),
            }
        })
    })
}

/// A to-many relation: the target's records whose readable key holds this record's, loaded for
/// all parents at once.
pub fn to_many_field(e: &'static Entity, r: &'static Relation, ty: TypeRef) -> Field {
    Field::new(&r.field, ty, move |ctx| {
        FieldFuture::new(async move {
            let st = state(&ctx)?;
            let row = ctx.parent_value.try_downcast_ref::<Row>()?;
            let target = model().by_logical_name(&r.target).expect("relation target in model");
            let (Some(child_key), Some(parent_key)) = (&r.child_readable_key, &r.parent_readable_key) else {
                return Err(async_graphql::Error::new(format!(
                    "`{}` has no readable key to join on.",
                    r.field
                )));
            };
            let Some(value) = row
                .record
                .get(parent_key)
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
            else {
                return Ok(Some(FieldValue::list(Vec::<FieldValue>::new())));
            };
            let first = match ctx.args.get("first") {
                Some(v) if !v.is_null() => {
                    let n = v.i64()?;
                    if n < 0 || n as usize > st.config.max_first {
                        return Err(bad_input(format!(
                            "`first` must be between 0 and {} (got {n}).",
                            st.config.max_first
                        )));
                    }
                    Some(n as usize)
                }
                _ => None,
            };
            let filter = match ctx.args.get("filter") {
                Some(v) if !v.is_null() => Some(compile_filter(target, v.as_value(), &st.labels(), st.config.dialect)?),
                _ => None,
            };
            let orderby = match ctx.args.get("orderBy") {
                Some(v) if !v.is_null() => compile_order(target, v.as_value())?,
                _ => Vec::new(),
            };
            let nested: Vec<SelectionField<'_>> = ctx.field().selection_set().collect();
            let select = super::prefetch::child_select(target, child_key, &nested);
            let loader = ctx.data::<DataLoader<ChildLoader, HashMapCache>>()?;
            let group = ChildGroup {
                entity: target,
                key_property: child_key.clone(),
                select,
                filter,
                orderby,
            };
            let rows = loader
                .load_one(ChildKey {
                    group: Arc::new(group),
                    parent: value.to_string(),
                })
                .await
                .map_err(|err| upstream_error(&err))?
                .unwrap_or_default();
            let limit = first.unwrap_or(st.config.max_first);
            if first.is_none() && rows.len() > limit {
                return Err(bad_input(format!(
                    "{} has {} {} records, more than the limit of {limit}; pass `first` to take some of them.",
                    e.graphql.type_name,
                    rows.len(),
                    r.field
                )));
            }
            Ok(Some(FieldValue::list(rows.iter().take(limit).map(|rec| {
                FieldValue::owned_any(Row {
                    entity: target,
                    record: rec.clone(),
                })
            }))))
        })
    })
}
