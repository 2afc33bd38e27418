//! Resolvers of the read schema: root single and list fields, properties, relations (through the
//! loaders), connections and cursors.

use super::context::{GatewayState, RequestCtx};
use super::cursor::{Cursor, CursorKey, QueryId};
use super::errors::{bad_input, upstream_error};
use super::filter::{compile_filter, compile_order};
use super::loaders::{ChildGroup, ChildKey, ChildLoader, ChildPlan, RecordGroup, RecordKey, RecordLoader};
use super::prefetch::{prefetch, Loaders};
use super::types::names;
use crate::graphql::loaders::Cache;
use crate::model::{model, Entity, LookupSide, PropType, Property, Relation};
use crate::odata::calls::{with_top_skip, Paging};
use crate::odata::client::MAX_PAGE_SIZE;
use crate::odata::query::ODataQuery;
use async_graphql::dataloader::DataLoader;
use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, ResolverContext, TypeRef};
use async_graphql::{ErrorExtensions, Name, SelectionField, Value};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A record as the upstream returned it, with the entity it belongs to.
#[derive(Clone)]
pub struct Row {
    pub entity: &'static Entity,
    pub record: crate::odata::Record,
}

/// The resolved value of a connection field.
pub struct ConnectionValue {
    edges: Vec<EdgeValue>,
    pub page_info: PageInfoValue,
    pub total_count: Option<u64>,
}

/// `PageInfo` values.
pub struct PageInfoValue {
    pub has_next_page: bool,
    end_cursor: Option<Position>,
}

impl PageInfoValue {
    pub fn get(&self, key: &str) -> Value {
        match key {
            "hasNextPage" => Value::Boolean(self.has_next_page),
            _ => self
                .end_cursor
                .as_ref()
                .map_or(Value::Null, |p| Value::String(p.encode())),
        }
    }
}

/// A row's place in the upstream's paging, signed into a cursor only when a cursor is selected
/// (signing costs an HMAC per row, and most reads select no cursor).
#[derive(Clone)]
struct Position {
    cursor: Cursor,
    key: Arc<CursorKey>,
    query: QueryId,
}

impl Position {
    fn encode(&self) -> String {
        self.cursor.encode(&self.key, &self.query)
    }
}

struct EdgeValue {
    row: Row,
    position: Position,
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
                        let Some(record) = page.value.into_iter().next() else {
                            return Ok(None);
                        };
                        rq.records.remember(e, [&record]);
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
        move |ctx| FieldFuture::new(async move { resolve_list(&ctx, e).await.map(Some) }),
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

/// A list field's arguments, checked and compiled, and what its selection needs.
struct ListArgs {
    first: usize,
    filter: Option<String>,
    orderby: Vec<(String, bool)>,
    select: Vec<String>,
    wants_total: bool,
    query_id: QueryId,
    /// The position to continue after (`after`), checked before anything goes upstream.
    start: Option<Cursor>,
}

/// The rows of one page of a list field: read upstream, continued where a cursor says, completed
/// (columns and count a continuation's chain did not ask for), then prefetched for the relations.
async fn resolve_list<'a>(ctx: &ResolverContext<'a>, e: &'static Entity) -> async_graphql::Result<FieldValue<'a>> {
    let st = state(ctx)?;
    let rq = request(ctx)?;
    let key = ctx.data::<Arc<CursorKey>>()?;
    let args = list_args(ctx, st, e, key)?;
    let selection = ctx.field();
    let q = list_query(st, e, &args, selection);
    let read = read_list(st, rq, e, &q, &args)
        .await
        .map_err(|err| upstream_error(&err))?;
    let mut rows: Vec<Row> = Vec::with_capacity(read.rows.len());
    let mut positions = Vec::with_capacity(read.rows.len());
    for (record, cursor) in read.rows {
        rows.push(Row { entity: e, record });
        positions.push(Position {
            cursor,
            key: key.clone(),
            query: args.query_id,
        });
    }
    // A continuation follows the link of its chain's first query, whose `$select` may be
    // narrower than this selection: what is missing is read again by id (one request).
    if args.start.is_some() {
        let linked = link_select(read.first_link.as_str());
        let missing = args.select.iter().any(|p| !linked.iter().any(|l| l == p));
        if missing && !rows.is_empty() {
            rows = reread_by_id(ctx, e, &args.select, rows).await?;
        }
    }
    rq.records.remember(e, rows.iter().map(|r| &r.record));
    let total_count = match (args.wants_total, read.count) {
        (true, None) => count_only(st, rq, e, &q).await?,
        (_, count) => count,
    };
    let page_info = PageInfoValue {
        has_next_page: read.has_next_page,
        end_cursor: positions.last().cloned(),
    };
    if let Some(loaders) = Loaders::from_context(ctx) {
        let records = rows.iter().map(|r| r.record.clone()).collect();
        prefetch(loaders, e, node_selections(selection), records).await;
    }
    let edges = rows
        .into_iter()
        .zip(positions)
        .map(|(row, position)| EdgeValue { row, position })
        .collect();
    Ok(FieldValue::owned_any(ConnectionValue {
        edges,
        page_info,
        total_count,
    }))
}

/// Checks and compiles a list field's arguments. A cursor this gateway did not issue for this
/// query is refused here, so it costs no upstream request.
fn list_args(
    ctx: &ResolverContext<'_>,
    st: &GatewayState,
    e: &'static Entity,
    key: &CursorKey,
) -> async_graphql::Result<ListArgs> {
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
    let filter = match ctx.args.get("filter") {
        Some(v) if !v.is_null() => Some(compile_filter(e, v.as_value(), &st.labels(), st.config.dialect)?),
        _ => None,
    };
    let orderby = match ctx.args.get("orderBy") {
        Some(v) if !v.is_null() => compile_order(e, v.as_value())?,
        _ => Vec::new(),
    };
    super::warnings::refuse_missing(&st.upstream.naming(), e, filter.as_deref(), &orderby)?;
    let orderby = with_id_tiebreak(e, orderby);
    let selection = ctx.field();
    let query_id = QueryId::of(e, filter.as_deref(), &orderby);
    let start = match ctx.args.get("after") {
        Some(v) if !v.is_null() => Some(Cursor::decode(v.string()?, key, &query_id, &e.entity_set).map_err(bad_input)?),
        _ => None,
    };
    let select = select_for(e, node_selections(selection).into_iter());
    let wants_total = selection.selection_set().any(|f| f.name() == "totalCount");
    Ok(ListArgs {
        first: first as usize,
        filter,
        orderby,
        select,
        wants_total,
        query_id,
        start,
    })
}

/// The upstream query of a list field's first page.
fn list_query(st: &GatewayState, e: &'static Entity, args: &ListArgs, selection: SelectionField<'_>) -> ODataQuery {
    ODataQuery {
        entity: e,
        key: None,
        select: args.select.clone(),
        filter: args.filter.clone(),
        orderby: args.orderby.clone(),
        top: None,
        expand: if st.config.pushdown.any() {
            super::prefetch::pushdown_expands(st, e, &node_selections(selection))
        } else {
            Vec::new()
        },
        count: args.wants_total,
    }
}

/// Reads a list field's rows: from the first page, or from where the cursor says, by next links
/// with the chain's page size, or (a service that ignores `odata.maxpagesize`, or a cursor made
/// against one) by `$top` and `$skip`.
async fn read_list(
    st: &Arc<GatewayState>,
    rq: &RequestCtx,
    e: &'static Entity,
    q: &ODataQuery,
    args: &ListArgs,
) -> Result<ReadRows, crate::odata::UpstreamError> {
    let first = args.first;
    match &args.start {
        None if st.config.paging == Paging::Top => read_rows_top(st, rq, e, q.to_relative_url(), 0, first).await,
        // The page size is chosen once per chain (by its first page) and travels in the
        // cursors: every link of the chain is requested with the size it was made with.
        None => read_rows(st, rq, e, q.to_relative_url(), first.clamp(1, MAX_PAGE_SIZE), 0, first).await,
        Some(c) => match c.offset {
            Some(offset) => read_rows_top(st, rq, e, c.link.clone(), offset, first).await,
            None => read_rows(st, rq, e, c.link.clone(), c.size, c.resume_skip(), first).await,
        },
    }
}

/// `@odata.count` of a list query, asked separately (a continuation whose chain did not count).
async fn count_only(
    st: &Arc<GatewayState>,
    rq: &RequestCtx,
    e: &'static Entity,
    q: &ODataQuery,
) -> async_graphql::Result<Option<u64>> {
    let counted = ODataQuery {
        select: vec![e.primary_key.clone()],
        expand: Vec::new(),
        count: true,
        ..q.clone()
    };
    let (link, size) = st.config.paging.first_rows(&counted.to_relative_url(), 1);
    Ok(st
        .fetch_page(e, &link, rq, size)
        .await
        .map_err(|err| upstream_error(&err))?
        .count)
}

/// The client's order with the primary key added as the last sort key, unless it is already one.
///
/// Dataverse pages with a cookie that remembers where the last page ended; on a sort key that is
/// not unique, rows that tie across a page boundary can be skipped or repeated ("for stable paging,
/// order on unique columns", contract §2). The primary key makes the order total. Without an
/// order, Dataverse orders by the primary key, which is documented for Dataverse tables but not
/// for F&O virtual tables: the key is sent explicitly then too, so paging never depends on a
/// default.
pub fn with_id_tiebreak(e: &Entity, mut orderby: Vec<(String, bool)>) -> Vec<(String, bool)> {
    if !orderby.iter().any(|(p, _)| p == &e.primary_key) {
        orderby.push((e.primary_key.clone(), false));
    }
    orderby
}

/// What [`read_rows`] read: up to `first` rows with their positions, and what comes after.
struct ReadRows {
    rows: Vec<(super::loaders::Record, Cursor)>,
    has_next_page: bool,
    /// `@odata.count` of the first page read.
    count: Option<u64>,
    /// The first link requested (the chain's links share its query options).
    first_link: String,
}

/// Reads `first` rows from row `skip` of the upstream page at `link` (relative to the service
/// root) on, following each `@odata.nextLink` unchanged with the same page size `size`, and tells
/// whether more rows follow. Each row comes with its cursor: its page's link and index, or, for
/// the last row of a page that has a next link, the start of that next page (so that continuing
/// after a whole page costs one request).
async fn read_rows(
    st: &Arc<GatewayState>,
    rq: &RequestCtx,
    e: &'static Entity,
    link: String,
    size: usize,
    mut skip: usize,
    first: usize,
) -> Result<ReadRows, crate::odata::UpstreamError> {
    let root = st.upstream.config().service_root.clone();
    let mut out = ReadRows {
        rows: Vec::new(),
        has_next_page: false,
        count: None,
        first_link: link.clone(),
    };
    let mut link = link;
    let mut seen = std::collections::HashSet::new();
    // Every page but an empty last one yields a row: more pages than rows wanted means a
    // upstream whose paging does not end.
    for page_no in 0..=first.saturating_add(1) {
        if !seen.insert(link.clone()) {
            break;
        }
        let page = st.fetch_page(e, &link, rq, Some(size)).await?;
        if page_no == 0 {
            out.count = page.count;
        }
        let next = page.next_link.as_deref().map(|n| relative_next(&root, n)).transpose()?;
        let len = page.value.len();
        let wanted = first - out.rows.len();
        for (index, record) in page.value.into_iter().enumerate().skip(skip).take(wanted) {
            let position = match &next {
                Some(n) if index + 1 == len => Cursor {
                    link: n.clone(),
                    size,
                    index: None,
                    offset: None,
                },
                _ => Cursor {
                    link: link.clone(),
                    size,
                    index: Some(index),
                    offset: None,
                },
            };
            out.rows.push((record, position));
        }
        let consumed = skip.saturating_add(wanted).min(len.max(skip));
        if out.rows.len() == first {
            out.has_next_page = consumed < len || next.is_some();
            return Ok(out);
        }
        match next {
            None => return Ok(out),
            Some(n) => {
                link = n;
                skip = 0;
            }
        }
    }
    Err(paging_does_not_end())
}

fn paging_does_not_end() -> crate::odata::UpstreamError {
    crate::odata::UpstreamError::new(
        crate::odata::UpstreamErrorKind::InvalidResponse,
        None,
        "upstream paging does not end (a next link repeats or pages never run out)",
    )
}

/// An upstream `@odata.nextLink` relative to the service root `root`; one elsewhere is not
/// followed.
fn relative_next(root: &str, next: &str) -> Result<String, crate::odata::UpstreamError> {
    Cursor::relative_link(root, next).ok_or_else(|| {
        crate::odata::UpstreamError::new(
            crate::odata::UpstreamErrorKind::InvalidResponse,
            None,
            "the upstream's @odata.nextLink is not under its service root; not following it",
        )
    })
}

/// Reads `first` rows of the query `query` (relative to the service root, without paging
/// options) after its first `offset` rows, from a service that ignores `odata.maxpagesize`: one
/// request with `$top` = `first + 1` (the extra row tells whether more follow) and `$skip` =
/// `offset`, then the service's own next links if it pages by itself. Each row's cursor is the
/// query and the number of rows up to and including it, so continuing costs one request again.
async fn read_rows_top(
    st: &Arc<GatewayState>,
    rq: &RequestCtx,
    e: &'static Entity,
    query: String,
    offset: usize,
    first: usize,
) -> Result<ReadRows, crate::odata::UpstreamError> {
    let root = st.upstream.config().service_root.clone();
    let top = first.saturating_add(1);
    let mut link = with_top_skip(&query, top, offset);
    let (mut records, mut count, mut seen) = (Vec::new(), None, std::collections::HashSet::new());
    // Every page but an empty last one yields a row: more pages than rows is paging that does not end.
    for page_no in 0..=top {
        if !seen.insert(link.clone()) {
            break;
        }
        let page = st.fetch_page(e, &link, rq, None).await?;
        if page_no == 0 {
            count = page.count;
        }
        records.extend(page.value);
        match page.next_link {
            Some(n) if records.len() < top => link = relative_next(&root, &n)?,
            _ => {
                let has_next_page = records.len() > first;
                records.truncate(first);
                let rows = records.into_iter().enumerate().map(|(i, record)| {
                    let position = Cursor {
                        link: query.clone(),
                        size: top.clamp(1, MAX_PAGE_SIZE),
                        index: None,
                        offset: Some(offset + i + 1),
                    };
                    (record, position)
                });
                return Ok(ReadRows {
                    rows: rows.collect(),
                    has_next_page,
                    count,
                    first_link: query,
                });
            }
        }
    }
    Err(paging_does_not_end())
}

/// The `$select` of a relative link, decoded (empty without one).
fn link_select(link: &str) -> Vec<String> {
    let Some((_, query)) = link.split_once('?') else {
        return Vec::new();
    };
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

/// The rows again, read by id with `select` (batched by the record loader), in the same order;
/// properties the first read brought (expanded relations) are kept.
async fn reread_by_id(
    ctx: &ResolverContext<'_>,
    e: &'static Entity,
    select: &[String],
    rows: Vec<Row>,
) -> async_graphql::Result<Vec<Row>> {
    let loader = ctx.data::<DataLoader<RecordLoader, Cache>>()?;
    let group = Arc::new(RecordGroup::new(e, select.to_vec()));
    let key_of = |row: &Row| {
        row.record
            .get(&e.primary_key)
            .and_then(Json::as_str)
            .map(|id| RecordKey {
                group: group.clone(),
                id: id.to_ascii_lowercase(),
            })
    };
    let keys: Vec<RecordKey> = rows.iter().filter_map(key_of).collect();
    let found = loader.load_many(keys).await.map_err(|err| upstream_error(&err))?;
    Ok(rows
        .into_iter()
        .map(|row| match key_of(&row).and_then(|k| found.get(&k)) {
            Some(fresh) => {
                let mut record = (*row.record).clone();
                record.extend(fresh.iter().map(|(k, v)| (k.to_string(), v.clone())));
                Row {
                    entity: e,
                    record: Arc::new(record),
                }
            }
            None => row,
        })
        .collect())
}

pub fn connection_edges(ty: &str) -> Field {
    Field::new("edges", TypeRef::named_nn_list_nn(names::edge(ty)), |ctx| {
        FieldFuture::new(async move {
            let c = ctx.parent_value.try_downcast_ref::<ConnectionValue>()?;
            Ok(Some(FieldValue::list(
                c.edges.iter().map(|edge| FieldValue::borrowed_any(edge)),
            )))
        })
    })
    .description("The records of this page with their cursors.")
}

pub fn connection_nodes(ty: &str) -> Field {
    Field::new("nodes", TypeRef::named_nn_list_nn(ty), |ctx| {
        FieldFuture::new(async move {
            let c = ctx.parent_value.try_downcast_ref::<ConnectionValue>()?;
            Ok(Some(FieldValue::list(
                c.edges.iter().map(|edge| FieldValue::borrowed_any(&edge.row)),
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
            Ok(Some(FieldValue::value(Value::String(e.position.encode()))))
        })
    })
    .description("Pass as `after` to continue after this record.")
}

pub fn edge_node(ty: &str) -> Field {
    Field::new("node", TypeRef::named_nn(ty), |ctx| {
        FieldFuture::new(async move {
            let e = ctx.parent_value.try_downcast_ref::<EdgeValue>()?;
            Ok(Some(FieldValue::borrowed_any(&e.row)))
        })
    })
    .description("The record.")
}

/// A property of an entity, converted from its OData wire form.
pub fn property_field(e: &'static Entity, p: &'static Property, ty: TypeRef) -> Field {
    // Resolved without a future (most of a large answer's fields are properties): only an
    // error is wrapped in one, ready at once. `immediate` lets async-graphql resolve it while
    // the selection is collected, without a future of its own either.
    Field::new(&p.graphql_field, ty, move |ctx| match property_value(&ctx, e, p) {
        Ok(value) => FieldFuture::Value(value.map(FieldValue::value)),
        Err(err) => FieldFuture::new(async move { Err::<Option<Value>, _>(err) }),
    })
    .immediate()
}

fn property_value(ctx: &ResolverContext<'_>, e: &Entity, p: &Property) -> async_graphql::Result<Option<Value>> {
    let row = ctx.parent_value.try_downcast_ref::<Row>()?;
    let Some(raw) = row.record.get(&p.name) else {
        note_if_missing_upstream(ctx, e, p)?;
        return Ok(None);
    };
    // Only option sets need the labels (a lock and a refcount per field otherwise).
    match p.option_set {
        Some(_) => to_graphql(e, p, raw, &state(ctx)?.labels()),
        None => to_graphql(e, p, raw, &NO_LABELS),
    }
}

/// Notes a field whose property the upstream lacks, for the operation's one warning.
fn note_if_missing_upstream(ctx: &ResolverContext<'_>, e: &Entity, p: &Property) -> async_graphql::Result<()> {
    if state(ctx)?.upstream.naming().is_missing(e, &p.name) {
        if let Some(fields) = ctx.data_opt::<super::warnings::MissingFields>() {
            fields.note(&e.graphql.type_name, &p.graphql_field);
        }
    }
    Ok(())
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
        .extend_with(|_, x| x.set("code", super::errors::ErrorCode::UpstreamInvalidResponse.as_str()))
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
    // Looked up once, when the schema is built, not for every field resolved.
    let target = model().by_logical_name(&r.target).expect("relation target in model");
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
            let loader = ctx.data::<DataLoader<RecordLoader, Cache>>()?;
            let (node, relation) = (ctx.item as *const _ as usize, r as *const Relation as usize);
            let group = loader.loader().plans.get_or(node, relation, || {
                Ok::<_, async_graphql::Error>(RecordGroup::new(
                    target,
                    select_for(target, ctx.field().selection_set()),
                ))
            })?;
            let key = RecordKey { group, id };
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
    // Looked up once, when the schema is built, not for every field resolved.
    let target = model().by_logical_name(&r.target).expect("relation target in model");
    Field::new(&r.field, ty, move |ctx| {
        FieldFuture::new(async move {
            let st = state(&ctx)?;
            let row = ctx.parent_value.try_downcast_ref::<Row>()?;
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
            let loader = ctx.data::<DataLoader<ChildLoader, Cache>>()?;
            let node = ctx.item as *const _ as usize;
            let relation = r as *const Relation as usize;
            let plan = loader
                .loader()
                .plans
                .get_or(node, relation, || child_plan(&ctx, st, target, child_key))?;
            let rows = loader
                .load_one(ChildKey::new(plan.group.clone(), value.to_string()))
                .await
                .map_err(|err| upstream_error(&err))?
                .unwrap_or_default();
            let first = plan.first;
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

/// A to-many field's arguments, checked and compiled, and its loader group.
fn child_plan(
    ctx: &ResolverContext<'_>,
    st: &GatewayState,
    target: &'static Entity,
    child_key: &str,
) -> async_graphql::Result<ChildPlan> {
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
    super::warnings::refuse_missing(&st.upstream.naming(), target, filter.as_deref(), &orderby)?;
    let nested: Vec<SelectionField<'_>> = ctx.field().selection_set().collect();
    let select = super::prefetch::child_select(target, child_key, &nested);
    Ok(ChildPlan {
        group: Arc::new(ChildGroup::new(target, child_key.to_string(), select, filter, orderby)),
        first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_key_breaks_ties_once_and_last() {
        let e = model()
            .by_entity_set("mshr_hcmrecruitingrequestentities")
            .expect("recruiting requests");
        let pk = e.primary_key.clone();
        assert_eq!(with_id_tiebreak(e, Vec::new()), vec![(pk.clone(), false)]);
        assert_eq!(
            with_id_tiebreak(e, vec![("mshr_status".into(), true)]),
            vec![("mshr_status".into(), true), (pk.clone(), false)]
        );
        // Already a sort key (in any direction, at any place): left as the client put it.
        let ordered = vec![(pk.clone(), true), ("mshr_status".into(), false)];
        assert_eq!(with_id_tiebreak(e, ordered.clone()), ordered);
    }

    #[test]
    fn the_select_of_a_link_is_read_decoded() {
        assert_eq!(link_select("s?$select=a,b&$skiptoken=x"), vec!["a", "b"]);
        assert_eq!(link_select("s?%24select=a%2Cb"), vec!["a", "b"]);
        assert!(link_select("s").is_empty() && link_select("s?$top=1").is_empty());
    }
}
