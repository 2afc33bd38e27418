//! Reads: collections and single records with `$select`, `$filter`, `$orderby`, `$top`, `$count`,
//! `$expand` and server-driven paging, as Dataverse answers them.

use super::error::ODataError;
use super::query::{self, ExpandItem, Expr, OrderBy, SqlFragment};
use super::store::{self, quote, table, Record};
use crate::model::{model, Cardinality, Entity, LookupSide, PropType};
use base64::Engine;
use hmac::{Hmac, Mac};
use rusqlite::Connection;
use serde_json::Value;
use sha2::Sha256;

/// Dataverse's largest page and the cap on `$count`.
pub const MAX_PAGE: usize = 5000;

/// The parsed system query options of a GET.
#[derive(Default)]
pub struct QueryOptions {
    pub select: Option<Vec<String>>,
    pub filter: Option<Expr>,
    pub orderby: Vec<OrderBy>,
    pub top: Option<usize>,
    pub expand: Vec<ExpandItem>,
    pub count: bool,
    /// The `$skiptoken` as sent, checked by [`SkipTokens::verify`] against the query and page size.
    pub skiptoken: Option<String>,
    /// Offset carried by a verified `$skiptoken` (0 without one), counted from `skip`.
    pub skip_offset: usize,
    /// `$skip` (plain OData v4 only, see [`parse_collection_options`]; 0 without one).
    pub skip: usize,
    /// Whether `$top` limits a paged read too (a plain OData service paging by its own page size,
    /// see [`ServerPaging`]); Dataverse ignores `$top` when it pages by `odata.maxpagesize`.
    pub top_limits_pages: bool,
    /// The raw options other than `$skiptoken`, to rebuild `@odata.nextLink`.
    pub raw_without_skiptoken: Vec<(String, String)>,
}

/// Splits and percent-decodes a query string (`+` reads as a space, as Dataverse does).
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses the system query options of a request against an entity. `$skip` is refused, as the
/// Dataverse Web API refuses it.
pub fn parse_options(entity: &Entity, raw: &str) -> Result<QueryOptions, ODataError> {
    parse_collection_options(entity, raw, false)
}

/// [`parse_options`] for a collection read, where a plain OData v4 service (`allow_skip`) also
/// takes `$skip`.
pub fn parse_collection_options(entity: &Entity, raw: &str, allow_skip: bool) -> Result<QueryOptions, ODataError> {
    let mut o = QueryOptions::default();
    let q = |e: query::QueryError| ODataError::bad_query(e.message);
    for (k, v) in decode_query(raw) {
        match k.as_str() {
            "$select" => o.select = Some(query::parse_select(&v, entity).map_err(q)?),
            "$filter" => o.filter = Some(query::parse_filter(&v).map_err(q)?),
            "$orderby" => o.orderby = query::parse_orderby(&v, entity).map_err(q)?,
            "$top" => {
                o.top = Some(v.trim().parse::<usize>().map_err(|_| {
                    ODataError::bad_query(format!("Invalid value '{v}' for $top query option found. The $top query option requires a non-negative integer value."))
                })?)
            }
            "$expand" => o.expand = query::parse_expand(&v, entity).map_err(q)?,
            "$count" => {
                o.count = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ODataError::bad_query(format!("'{v}' is not a valid count option."))),
                }
            }
            "$skiptoken" => o.skiptoken = Some(v.clone()),
            "$skip" if allow_skip => {
                o.skip = v.trim().parse::<usize>().map_err(|_| {
                    ODataError::bad_query(format!("Invalid value '{v}' for $skip query option found. The $skip query option requires a non-negative integer value."))
                })?
            }
            "$skip" | "$search" | "$format" => {
                return Err(ODataError::bad_query(format!(
                    "The query parameter {k} is not supported by the Dataverse Web API."
                )))
            }
            "$apply" => return Err(ODataError::new(501, super::error::codes::QUERY, "The emulator does not implement $apply.")),
            other if other.starts_with('$') => {
                return Err(ODataError::bad_query(format!("The query parameter {other} is not supported.")))
            }
            _ => {}
        }
        if k != "$skiptoken" {
            o.raw_without_skiptoken.push((k, v));
        }
    }
    if let Some(f) = &o.filter {
        // Validate property names and literal types now, so the error is a 400 before any work.
        query::compile_filter(f, entity).map_err(q)?;
    }
    check_expand_rules(entity, &o.expand)?;
    Ok(o)
}

/// Dataverse's rule: with a nested expand anywhere, or on a many-to-one relation, only `$select`
/// and `$filter` may appear inside `$expand`.
fn check_expand_rules(entity: &Entity, items: &[ExpandItem]) -> Result<(), ODataError> {
    let nested = items.iter().any(|i| !i.expand.is_empty());
    for item in items {
        let rel = entity.navigation(&item.navigation).ok_or_else(|| {
            ODataError::bad_query(format!(
                "Could not find a property named '{}' on type 'Microsoft.Dynamics.CRM.{}'.",
                item.navigation, entity.logical_name
            ))
        })?;
        let restricted = rel.kind == Cardinality::One || nested;
        if restricted && (item.top.is_some() || !item.orderby.is_empty()) {
            return Err(ODataError::bad_query(
                "Only $select and $filter clause can be provided while doing $expand on many-to-one relationship or nested one-to-many relationship.",
            ));
        }
        let target = model().by_logical_name(&rel.target).expect("relation target in model");
        if let Some(f) = &item.filter {
            query::compile_filter(f, target).map_err(|e| ODataError::bad_query(e.message))?;
        }
        check_expand_rules(target, &item.expand)?;
    }
    Ok(())
}

impl QueryOptions {
    /// For reads that never page (a record, a single-valued navigation, a write's representation):
    /// no `$skiptoken` was ever issued for them, so any is refused.
    pub fn without_skiptoken(self) -> Result<Self, ODataError> {
        match self.skiptoken {
            Some(_) => Err(bad_skiptoken()),
            None => Ok(self),
        }
    }
}

/// The 400 for a `$skiptoken` that this emulator did not issue for this query and page size.
/// Dataverse answers a paging cookie it cannot use with a 400; its message is not documented.
fn bad_skiptoken() -> ODataError {
    ODataError::bad_query(
        "The $skiptoken is not valid for this query and page size: follow @odata.nextLink unchanged and send the same Prefer: odata.maxpagesize.",
    )
}

/// Bytes of HMAC-SHA256 kept in a skip token.
const SKIPTOKEN_TAG_LEN: usize = 16;

/// Skip tokens as strict as Dataverse's paging cookies: opaque, and valid only for the query they
/// were issued for (the path and every option other than `$skiptoken`, decoded and sorted) with
/// the same page size (`odata.maxpagesize` in effect). The wire form is base64url of the row
/// offset (8 bytes, big-endian) and a truncated HMAC-SHA256 over the query, the page size and the
/// offset, with a key that is random per emulator.
pub struct SkipTokens {
    key: [u8; 32],
}

impl Default for SkipTokens {
    fn default() -> Self {
        SkipTokens {
            key: rand::random::<[u8; 32]>(),
        }
    }
}

impl SkipTokens {
    fn tag(&self, path: &str, options: &[(String, String)], page_size: usize, offset: u64) -> Hmac<Sha256> {
        fn field(mac: &mut Hmac<Sha256>, bytes: &[u8]) {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"emulator skiptoken v1\0");
        field(&mut mac, path.as_bytes());
        let mut sorted: Vec<&(String, String)> = options.iter().filter(|(k, _)| k != "$skiptoken").collect();
        sorted.sort();
        mac.update(&(sorted.len() as u64).to_be_bytes());
        for (k, v) in sorted {
            field(&mut mac, k.as_bytes());
            field(&mut mac, v.as_bytes());
        }
        mac.update(&(page_size as u64).to_be_bytes());
        mac.update(&offset.to_be_bytes());
        mac
    }

    /// The token for the rows from `offset` on, of the query `path` + `options` paged by `page_size`.
    pub fn issue(&self, path: &str, options: &[(String, String)], page_size: usize, offset: usize) -> String {
        let offset = offset as u64;
        let mut bytes = offset.to_be_bytes().to_vec();
        let tag = self.tag(path, options, page_size, offset).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..SKIPTOKEN_TAG_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The offset of a token issued by [`SkipTokens::issue`] for this very query and page size;
    /// anything else is the 400 Dataverse gives for a paging cookie it cannot use.
    pub fn verify(
        &self,
        token: &str,
        path: &str,
        options: &[(String, String)],
        page_size: usize,
    ) -> Result<usize, ODataError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad_skiptoken())?;
        if bytes.len() != 8 + SKIPTOKEN_TAG_LEN {
            return Err(bad_skiptoken());
        }
        let (offset, tag) = bytes.split_at(8);
        let offset = u64::from_be_bytes(offset.try_into().expect("8 bytes"));
        self.tag(path, options, page_size, offset)
            .verify_truncated_left(tag)
            .map_err(|_| bad_skiptoken())?;
        usize::try_from(offset).map_err(|_| bad_skiptoken())
    }
}

/// How the emulator pages collections: as Dataverse (by the client's `odata.maxpagesize`), or as
/// a plain OData service that ignores the preference (`--ignore-maxpagesize`) and serves every
/// row, or pages of its own size (`--server-page-size`), with strict skip tokens in its
/// `nextLink`s either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerPaging {
    /// Ignore `Prefer: odata.maxpagesize` (and never answer `Preference-Applied` for it).
    pub ignore_maxpagesize: bool,
    /// With `ignore_maxpagesize`: the service's own page size (`None`: no paging).
    pub server_page_size: Option<usize>,
}

impl ServerPaging {
    /// The page size in effect for a request that prefers `preferred`.
    pub fn page_size(&self, preferred: Option<usize>) -> Option<usize> {
        match self.ignore_maxpagesize {
            true => self.server_page_size.map(|n| n.max(1)),
            false => preferred,
        }
    }
}

/// How many rows a page holds and whether the rest of the result is paged, for the page size in
/// effect and the query's `$top` (and the rows already served before this page).
fn page_limits(page_size: Option<usize>, o: &QueryOptions) -> (usize, bool) {
    if o.top_limits_pages {
        let left = o.top.map_or(usize::MAX, |t| t.saturating_sub(o.skip_offset));
        return match page_size {
            Some(p) => (p.min(left), p < left),
            None => (left, false),
        };
    }
    // Dataverse: $top is ignored when paging is requested, as documented.
    match (page_size, o.top) {
        (Some(p), _) => (p, true),
        (None, Some(t)) => (t.min(MAX_PAGE), false),
        (None, None) => (MAX_PAGE, true),
    }
}

/// One page of a collection.
pub struct Page {
    pub rows: Vec<Record>,
    pub count: Option<u64>,
    /// Offset of the next page, when there is one.
    pub next_offset: Option<usize>,
}

/// Queries a collection. `scope` narrows it (a navigation path such as `set(id)/nav`);
/// `page_size` is the `odata.maxpagesize` preference, already capped.
pub fn query_collection(
    conn: &Connection,
    entity: &Entity,
    o: &QueryOptions,
    scope: Option<SqlFragment>,
    page_size: Option<usize>,
) -> Result<Page, ODataError> {
    let mut wheres = Vec::new();
    let mut params = Vec::new();
    if let Some(s) = scope {
        wheres.push(s.sql);
        params.extend(s.params);
    }
    if let Some(f) = &o.filter {
        let frag = query::compile_filter(f, entity).map_err(|e| ODataError::bad_query(e.message))?;
        wheres.push(format!("({})", frag.sql));
        params.extend(frag.params);
    }
    let where_sql = if wheres.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", wheres.join(" AND "))
    };
    let count = if o.count {
        let sql = format!("SELECT COUNT(*) FROM {}{where_sql}", table(entity));
        let n: i64 = conn
            .prepare_cached(&sql)?
            .query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
        Some((n as u64).min(MAX_PAGE as u64))
    } else {
        None
    };
    let (limit, paged) = page_limits(page_size, o);
    let rows = fetch(
        conn,
        entity,
        o.select.as_deref(),
        &where_sql,
        &params,
        &o.orderby,
        limit.saturating_add(1),
        o.skip.saturating_add(o.skip_offset),
    )?;
    let more = rows.len() > limit;
    let mut rows = rows;
    rows.truncate(limit);
    expand_rows(conn, entity, &mut rows, &o.expand)?;
    strip_unselected(entity, &mut rows, o.select.as_deref());
    Ok(Page {
        rows,
        count,
        next_offset: (more && paged).then_some(o.skip_offset + limit),
    })
}

/// Runs a SELECT for an entity. Lookups used by relations are always read (expansion needs
/// them); `strip_unselected` removes what the client did not ask for.
#[allow(clippy::too_many_arguments)]
fn fetch(
    conn: &Connection,
    entity: &Entity,
    select: Option<&[String]>,
    where_sql: &str,
    params: &[rusqlite::types::Value],
    orderby: &[OrderBy],
    limit: usize,
    offset: usize,
) -> Result<Vec<Record>, ODataError> {
    let mut props = store::selected_properties(entity, select);
    for r in entity
        .graphql
        .relations
        .iter()
        .filter(|r| r.lookup_on == LookupSide::This)
    {
        if let Some(p) = entity.property(&r.lookup_property) {
            if !props.iter().any(|x| x.name == p.name) {
                props.push(p);
            }
        }
    }
    let cols: Vec<String> = props.iter().map(|p| quote(&p.name)).collect();
    // SQLite's LIMIT is a signed 64-bit integer ("every row" is usize::MAX here).
    let limit = limit.min(i64::MAX as usize);
    let mut order: Vec<String> = orderby
        .iter()
        .map(|ob| format!("{} {}", quote(&ob.property), if ob.descending { "DESC" } else { "ASC" }))
        .collect();
    order.push(format!("{} ASC", quote(&entity.primary_key)));
    let sql = format!(
        "SELECT {} FROM {}{where_sql} ORDER BY {} LIMIT {limit} OFFSET {offset}",
        cols.join(", "),
        table(entity),
        order.join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(store::read_row(row, &props)?);
    }
    Ok(out)
}

fn strip_unselected(entity: &Entity, rows: &mut [Record], select: Option<&[String]>) {
    let Some(select) = select else { return };
    for row in rows {
        row.retain(|k, _| k == &entity.primary_key || select.iter().any(|s| s == k) || entity.navigation(k).is_some());
    }
}

/// Adds the expanded navigation properties to each row.
pub fn expand_rows(
    conn: &Connection,
    entity: &Entity,
    rows: &mut [Record],
    items: &[ExpandItem],
) -> Result<(), ODataError> {
    for item in items {
        let rel = entity.navigation(&item.navigation).expect("validated navigation");
        let target = model().by_logical_name(&rel.target).expect("relation target in model");
        let nested = QueryOptions {
            select: item.select.clone(),
            filter: item.filter.clone(),
            orderby: item.orderby.clone(),
            top: item.top.map(|t| t as usize),
            expand: item.expand.clone(),
            ..QueryOptions::default()
        };
        for row in rows.iter_mut() {
            let value = match rel.lookup_on {
                LookupSide::This => {
                    let key = row.get(&rel.lookup_property).and_then(Value::as_str).map(str::to_owned);
                    match key {
                        None => Value::Null,
                        Some(id) => {
                            let scope = SqlFragment {
                                sql: format!("{} = ?", quote(&target.primary_key)),
                                params: vec![rusqlite::types::Value::Text(id)],
                            };
                            let page = query_collection(conn, target, &nested, Some(scope), Some(1))?;
                            page.rows.into_iter().next().map(Value::Object).unwrap_or(Value::Null)
                        }
                    }
                }
                LookupSide::Target => {
                    let id = row
                        .get(&entity.primary_key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let scope = SqlFragment {
                        sql: format!("{} = ?", quote(&rel.lookup_property)),
                        params: vec![rusqlite::types::Value::Text(id)],
                    };
                    let size = if nested.top.is_some() { None } else { Some(MAX_PAGE) };
                    let page = query_collection(conn, target, &nested, Some(scope), size)?;
                    Value::Array(page.rows.into_iter().map(Value::Object).collect())
                }
            };
            row.insert(rel.navigation_property.clone(), value);
        }
    }
    Ok(())
}

/// Adds `@OData.Community.Display.V1.FormattedValue` annotations for option sets, in place.
pub fn annotate_formatted_values(entity: &Entity, row: &mut Record) {
    let keys: Vec<String> = row.keys().cloned().collect();
    let mut out = Record::new();
    for k in keys {
        let v = row.remove(&k).unwrap_or(Value::Null);
        if let Some(p) = entity.property(&k) {
            if p.ty == PropType::OptionSet {
                let label = p
                    .option_set
                    .as_deref()
                    .and_then(|s| model().option_set(s))
                    .and_then(|s| s.values.iter().find(|o| Some(o.value) == v.as_i64()))
                    .map(|o| o.label.clone());
                if let Some(label) = label {
                    out.insert(
                        format!("{k}@OData.Community.Display.V1.FormattedValue"),
                        Value::String(label),
                    );
                }
            }
        } else if let (Some(rel), Value::Object(mut child)) = (entity.navigation(&k), v.clone()) {
            let target = model().by_logical_name(&rel.target).expect("relation target in model");
            annotate_formatted_values(target, &mut child);
            out.insert(k, Value::Object(child));
            continue;
        } else if let (Some(rel), Value::Array(children)) = (entity.navigation(&k), v.clone()) {
            let target = model().by_logical_name(&rel.target).expect("relation target in model");
            let children = children
                .into_iter()
                .map(|c| match c {
                    Value::Object(mut m) => {
                        annotate_formatted_values(target, &mut m);
                        Value::Object(m)
                    }
                    other => other,
                })
                .collect();
            out.insert(k, Value::Array(children));
            continue;
        }
        out.insert(k, v);
    }
    *row = out;
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    fn options(top: Option<usize>, top_limits_pages: bool, served: usize) -> QueryOptions {
        QueryOptions {
            top,
            top_limits_pages,
            skip_offset: served,
            ..QueryOptions::default()
        }
    }

    #[test]
    fn dataverse_ignores_top_when_paging_and_a_plain_service_honours_it() {
        // Dataverse: a page size wins over $top; without one $top limits and nothing pages.
        assert_eq!(page_limits(Some(10), &options(Some(3), false, 0)), (10, true));
        assert_eq!(page_limits(None, &options(Some(3), false, 0)), (3, false));
        assert_eq!(page_limits(None, &options(None, false, 0)), (MAX_PAGE, true));
        // A plain service: $top limits its own pages too, counting the rows already served.
        assert_eq!(page_limits(Some(10), &options(Some(3), true, 0)), (3, false));
        assert_eq!(page_limits(Some(2), &options(Some(5), true, 0)), (2, true));
        assert_eq!(page_limits(Some(2), &options(Some(5), true, 4)), (1, false));
        assert_eq!(page_limits(None, &options(None, true, 0)), (usize::MAX, false));
    }

    #[test]
    fn an_ignored_preference_gives_the_service_page_size() {
        let dataverse = ServerPaging::default();
        assert_eq!(dataverse.page_size(Some(3)), Some(3));
        let plain = ServerPaging {
            ignore_maxpagesize: true,
            server_page_size: None,
        };
        assert_eq!(plain.page_size(Some(3)), None);
        let paged = ServerPaging {
            server_page_size: Some(7),
            ..plain
        };
        assert_eq!(paged.page_size(Some(3)), Some(7));
    }
}
