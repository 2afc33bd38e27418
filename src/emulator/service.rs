//! Request dispatch: one OData request (from HTTP or from a `$batch` part) in, one response out.
//!
//! The HTTP layer (`http.rs`) and the `$batch` executor both call [`Service::handle`], so a part
//! inside a batch behaves exactly like the same request on its own.

use super::error::ODataError;
use super::metadata;
use super::query::SqlFragment;
use super::read::{self, QueryOptions, SkipTokens, MAX_PAGE};
use super::store::{self, quote, Store};
use super::write::{self, ContentIds};
use crate::model::{model, Entity, LookupSide};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::sync::Arc;

/// The emulator's OData service root path.
pub const SERVICE_ROOT: &str = "/api/data/v9.2/";

/// A request addressed to the service root.
#[derive(Debug, Clone)]
pub struct ODataRequest {
    pub method: String,
    /// The path after the service root, percent-decoded (`mshr_x(<guid>)/nav`).
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response, before it becomes HTTP or a `$batch` part.
#[derive(Debug, Clone)]
pub struct ODataResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ODataRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All `Prefer` preferences, from repeated headers or one comma-separated header.
    pub fn preferences(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("prefer"))
            .flat_map(|(_, v)| split_preferences(v))
            .collect()
    }

    fn max_page_size(&self) -> Option<usize> {
        self.preferences()
            .iter()
            .find_map(|p| {
                p.strip_prefix("odata.maxpagesize=")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
            .map(|n| n.clamp(1, MAX_PAGE))
    }
}

fn split_preferences(v: &str) -> Vec<String> {
    // Commas inside quoted values (include-annotations="a,b") do not split.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in v.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c)
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

impl ODataResponse {
    pub fn json(status: u16, body: &Value) -> Self {
        ODataResponse {
            status,
            headers: vec![
                ("Content-Type".into(), "application/json; odata.metadata=minimal".into()),
                ("OData-Version".into(), "4.0".into()),
            ],
            body: serde_json::to_vec(body).expect("JSON serialises"),
        }
    }

    pub fn error(e: &ODataError) -> Self {
        Self::json(e.status, &e.body())
    }

    pub fn no_content() -> Self {
        ODataResponse {
            status: 204,
            headers: vec![("OData-Version".into(), "4.0".into())],
            body: Vec::new(),
        }
    }

    fn with_header(mut self, k: &str, v: String) -> Self {
        self.headers.push((k.to_string(), v));
        self
    }
}

/// What a path addresses.
pub enum Target {
    ServiceDocument,
    Metadata,
    Batch,
    OptionSets(Option<String>),
    Collection(&'static Entity),
    Count(&'static Entity),
    Record(&'static Entity, String),
    /// `set(<id>)/<property>`
    Property(&'static Entity, String, String),
    /// `set(<id>)/<navigation>`
    Navigation(&'static Entity, String, String),
}

fn parse_key(entity: &Entity, key: &str) -> Result<String, ODataError> {
    if key.contains('=') {
        return Err(ODataError::bad_query(format!(
            "Alternate keys are not supported on virtual table '{}'; address records by their GUID.",
            entity.logical_name
        )));
    }
    store::normalize_guid(key).ok_or_else(|| {
        ODataError::bad_query(format!(
            "Bad Request - Error in query syntax: '{key}' is not a valid GUID key."
        ))
    })
}

/// Parses the path after the service root.
pub fn parse_target(path: &str) -> Result<Target, ODataError> {
    let path = path.trim_end_matches('/');
    match path {
        "" => return Ok(Target::ServiceDocument),
        "$metadata" => return Ok(Target::Metadata),
        "$batch" => return Ok(Target::Batch),
        "GlobalOptionSetDefinitions" => return Ok(Target::OptionSets(None)),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("GlobalOptionSetDefinitions(") {
        let name = rest
            .strip_suffix(')')
            .and_then(|r| r.strip_prefix("Name='"))
            .and_then(|r| r.strip_suffix('\''))
            .ok_or_else(|| ODataError::bad_query("Use GlobalOptionSetDefinitions(Name='<option set name>')."))?;
        return Ok(Target::OptionSets(Some(name.to_string())));
    }
    let mut segments = path.splitn(2, '/');
    let first = segments.next().unwrap_or_default();
    let rest = segments.next();
    let (set, key) = match first.split_once('(') {
        Some((s, k)) => (
            s,
            Some(k.strip_suffix(')').ok_or_else(|| {
                ODataError::bad_query(format!(
                    "Bad Request - Error in query syntax: unbalanced key in '{first}'."
                ))
            })?),
        ),
        None => (first, None),
    };
    let entity = model()
        .by_entity_set(set)
        .ok_or_else(|| ODataError::segment_not_found(set))?;
    match (key, rest) {
        (None, None) => Ok(Target::Collection(entity)),
        (None, Some("$count")) => Ok(Target::Count(entity)),
        (None, Some(seg)) => Err(ODataError::segment_not_found(seg)),
        (Some(k), None) => Ok(Target::Record(entity, parse_key(entity, k)?)),
        (Some(k), Some(seg)) => {
            let id = parse_key(entity, k)?;
            if entity.navigation(seg).is_some() {
                Ok(Target::Navigation(entity, id, seg.to_string()))
            } else if entity.property(seg).is_some() {
                Ok(Target::Property(entity, id, seg.to_string()))
            } else {
                Err(ODataError::segment_not_found(seg))
            }
        }
    }
}

/// The emulator's OData service over its store.
pub struct Service {
    pub store: Arc<Store>,
    /// Write transactions committed (a change set or a single write each), for tests that count
    /// how many upstream requests wrote.
    pub writes: std::sync::atomic::AtomicU64,
    /// The key of the skip tokens this emulator issues (random per emulator).
    pub skip_tokens: SkipTokens,
    /// Whether `odata.maxpagesize` is honoured (Dataverse) or ignored (a plain OData service).
    pub paging: read::ServerPaging,
    /// Rows served and `$top` reads, for `/_emulator/stats`.
    pub paging_stats: PagingStats,
    /// What is refused beyond Dataverse's rules (plain OData v4, no collection expands).
    pub profile: super::dialect::Profile,
    /// Whether a change set is one transaction (Dataverse's documented behaviour). Off, each part
    /// is its own write and a failing part leaves the parts before it committed, as an F&O
    /// virtual table (whose rollback is not documented) may.
    pub atomic_change_sets: bool,
    /// Whether `$batch` takes change sets (Dataverse does). Off, a batch holding a change set is
    /// refused whole with 501, as a service without change-set support answers; batches of
    /// requests outside change sets still run.
    pub change_sets: bool,
    /// How the upstream this emulator plays spells the model (see [`super::spelling`]).
    pub naming: Arc<crate::model::naming::Naming>,
    /// Whether `GET $metadata` answers 500 (see [`super::spelling::SpellingSettings`]).
    pub metadata_fails: bool,
}

impl Service {
    /// What a GET needs besides the store.
    fn reads(&self) -> Reads<'_> {
        Reads {
            tokens: &self.skip_tokens,
            paging: self.paging,
            stats: &self.paging_stats,
            allow_skip: self.profile.dialect == super::dialect::Dialect::Odata4,
        }
    }

    /// Handles one request outside a change set, in the upstream's spelling.
    pub fn handle(&self, req: &ODataRequest, base: &str) -> ODataResponse {
        if let Some(metadata) = self.spelled_metadata(req) {
            return metadata;
        }
        match self.spell(req) {
            Ok(spelled) => {
                let resp = self.handle_model(&spelled.request, base);
                self.unspell(&spelled, resp)
            }
            Err(e) => ODataResponse::error(&e),
        }
    }

    /// Handles one request in the model's spelling.
    fn handle_model(&self, req: &ODataRequest, base: &str) -> ODataResponse {
        let target = parse_target(&req.path).and_then(|t| self.profile.check(&t, &req.query).map(|()| t));
        let result = match target {
            Err(e) => Err(e),
            Ok(Target::Batch) => return super::batch_exec::execute(self, req, base),
            Ok(target) => match req.method.as_str() {
                "GET" => self.store.read(|c| get(c, &self.reads(), &target, req, base)),
                "POST" | "PATCH" | "DELETE" | "PUT" => {
                    let r = self
                        .store
                        .transaction(|c| write_request(c, &target, req, base, &ContentIds::new()).map(|(r, _)| r));
                    if r.is_ok() {
                        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    r
                }
                m => Err(ODataError::new(
                    405,
                    "",
                    format!("The HTTP method '{m}' is not allowed here."),
                )),
            },
        };
        result.unwrap_or_else(|e| ODataResponse::error(&e))
    }
}

fn context_url(base: &str, entity: &Entity, select: Option<&[String]>, single: bool) -> String {
    let sel = select.map(|s| format!("({})", s.join(","))).unwrap_or_default();
    format!(
        "{base}$metadata#{}{sel}{}",
        entity.entity_set,
        if single { "/$entity" } else { "" }
    )
}

fn wants_annotations(req: &ODataRequest) -> bool {
    req.preferences()
        .iter()
        .any(|p| p.starts_with("odata.include-annotations=") && (p.contains('*') || p.contains("FormattedValue")))
}

/// What a GET needs besides the store: the skip-token key, how collections are paged, and the
/// paging counters.
pub struct Reads<'a> {
    pub tokens: &'a SkipTokens,
    pub paging: read::ServerPaging,
    pub stats: &'a PagingStats,
    /// Whether `$skip` is served (plain OData v4; Dataverse refuses it).
    pub allow_skip: bool,
}

/// Counters of collection reads, for tests that check how much a client read
/// (`/_emulator/stats`: `rowsServed`, `topReads`).
#[derive(Debug, Default)]
pub struct PagingStats {
    /// Rows returned by collection reads (top level, not expanded children).
    pub rows_served: std::sync::atomic::AtomicU64,
    /// Collection reads that carried `$top`.
    pub top_reads: std::sync::atomic::AtomicU64,
}

impl PagingStats {
    pub fn reset(&self) {
        self.rows_served.store(0, std::sync::atomic::Ordering::Relaxed);
        self.top_reads.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Answers a GET.
pub fn get(
    c: &Connection,
    reads: &Reads<'_>,
    target: &Target,
    req: &ODataRequest,
    base: &str,
) -> Result<ODataResponse, ODataError> {
    match target {
        Target::ServiceDocument => Ok(ODataResponse::json(200, &metadata::service_document(base))),
        Target::Metadata => Ok(ODataResponse {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/xml".into()),
                ("OData-Version".into(), "4.0".into()),
            ],
            body: metadata::csdl().into_bytes(),
        }),
        Target::OptionSets(name) => get_option_sets(name.as_deref(), base),
        Target::Batch => Err(ODataError::new(405, "", "$batch accepts POST only.")),
        Target::Count(entity) => get_count(c, entity),
        Target::Collection(entity) => collection(c, reads, entity, req, base, None, &entity.entity_set),
        Target::Record(entity, id) => get_record(c, entity, id, req, base),
        Target::Property(entity, id, prop) => get_property(c, entity, id, prop, base),
        Target::Navigation(entity, id, nav) => get_navigation(c, reads, entity, id, nav, req, base),
    }
}

/// `GlobalOptionSetDefinitions`, or one of them by name.
fn get_option_sets(name: Option<&str>, base: &str) -> Result<ODataResponse, ODataError> {
    let Some(name) = name else {
        return Ok(ODataResponse::json(200, &metadata::option_set_definitions(base)));
    };
    let set = model().option_set(name).ok_or_else(|| {
        ODataError::new(
            404,
            super::error::codes::NOT_FOUND,
            format!("Could not find optionset with name: {name}"),
        )
    })?;
    Ok(ODataResponse::json(200, &metadata::option_set_definition(base, set)))
}

/// `set/$count`: a plain-text number after a UTF-8 BOM, as Dataverse writes it.
fn get_count(c: &Connection, entity: &Entity) -> Result<ODataResponse, ODataError> {
    let n = store_count(c, entity)?;
    Ok(ODataResponse {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/plain".into()),
            ("OData-Version".into(), "4.0".into()),
        ],
        body: format!("\u{feff}{n}").into_bytes(),
    })
}

/// `set(id)`: one record with `$select` and `$expand`.
fn get_record(
    c: &Connection,
    entity: &Entity,
    id: &str,
    req: &ODataRequest,
    base: &str,
) -> Result<ODataResponse, ODataError> {
    let o = read::parse_options(entity, &req.query)?.without_skiptoken()?;
    let scope = SqlFragment {
        sql: format!("{} = ?", quote(&entity.primary_key)),
        params: vec![id.to_string().into()],
    };
    let page = read::query_collection(c, entity, &o, Some(scope), Some(1))?;
    let mut row = page
        .rows
        .into_iter()
        .next()
        .ok_or_else(|| ODataError::record_not_found(&entity.logical_name, id))?;
    if wants_annotations(req) {
        read::annotate_formatted_values(entity, &mut row);
    }
    let mut out = serde_json::Map::new();
    out.insert(
        "@odata.context".into(),
        Value::String(context_url(base, entity, o.select.as_deref(), true)),
    );
    out.extend(row);
    Ok(ODataResponse::json(200, &Value::Object(out)))
}

/// `set(id)/property`: one property's value.
fn get_property(
    c: &Connection,
    entity: &Entity,
    id: &str,
    prop: &str,
    base: &str,
) -> Result<ODataResponse, ODataError> {
    let row = store::get_by_key(c, entity, id, Some(&[prop.to_string()]))?
        .ok_or_else(|| ODataError::record_not_found(&entity.logical_name, id))?;
    Ok(ODataResponse::json(
        200,
        &json!({
            "@odata.context": format!("{base}$metadata#{}({id})/{prop}", entity.entity_set),
            "value": row.get(prop).cloned().unwrap_or(Value::Null),
        }),
    ))
}

/// `set(id)/navigation`: the linked record (single-valued) or a collection of children.
fn get_navigation(
    c: &Connection,
    reads: &Reads<'_>,
    entity: &Entity,
    id: &str,
    nav: &str,
    req: &ODataRequest,
    base: &str,
) -> Result<ODataResponse, ODataError> {
    let rel = entity.navigation(nav).expect("parsed navigation");
    let target = model().by_logical_name(&rel.target).expect("relation target in model");
    let parent = store::get_by_key(c, entity, id, None)?
        .ok_or_else(|| ODataError::record_not_found(&entity.logical_name, id))?;
    let scope = match rel.lookup_on {
        LookupSide::Target => SqlFragment {
            sql: format!("{} = ?", quote(&rel.lookup_property)),
            params: vec![id.to_string().into()],
        },
        LookupSide::This => {
            let fk = parent
                .get(&rel.lookup_property)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            SqlFragment {
                sql: format!("{} = ?", quote(&target.primary_key)),
                params: vec![fk.into()],
            }
        }
    };
    if rel.lookup_on == LookupSide::Target {
        let path = format!("{}({id})/{nav}", entity.entity_set);
        return collection(c, reads, target, req, base, Some(scope), &path);
    }
    let o = read::parse_options(target, &req.query)?.without_skiptoken()?;
    let page = read::query_collection(c, target, &o, Some(scope), Some(1))?;
    let row = page.rows.into_iter().next().ok_or_else(|| {
        ODataError::new(
            404,
            super::error::codes::NOT_FOUND,
            format!("No record is linked through '{nav}'."),
        )
    })?;
    let mut out = serde_json::Map::new();
    out.insert(
        "@odata.context".into(),
        Value::String(context_url(base, target, o.select.as_deref(), true)),
    );
    out.extend(row);
    Ok(ODataResponse::json(200, &Value::Object(out)))
}

fn store_count(c: &Connection, entity: &Entity) -> Result<u64, ODataError> {
    let n: i64 = c.query_row(&format!("SELECT COUNT(*) FROM {}", store::table(entity)), [], |r| {
        r.get(0)
    })?;
    Ok(n as u64)
}

fn collection(
    c: &Connection,
    reads: &Reads<'_>,
    entity: &Entity,
    req: &ODataRequest,
    base: &str,
    scope: Option<SqlFragment>,
    path: &str,
) -> Result<ODataResponse, ODataError> {
    let mut o: QueryOptions = read::parse_collection_options(entity, &req.query, reads.allow_skip)?;
    o.top_limits_pages = reads.paging.ignore_maxpagesize;
    let preferred = req.max_page_size();
    let page_size = reads.paging.page_size(preferred);
    // Tokens are bound to the page size in effect: the preference (or the service's own), or
    // Dataverse's default.
    let effective_page_size = page_size.unwrap_or(MAX_PAGE);
    if let Some(token) = &o.skiptoken {
        o.skip_offset = reads
            .tokens
            .verify(token, path, &o.raw_without_skiptoken, effective_page_size)?;
    }
    let page = read::query_collection(c, entity, &o, scope, page_size)?;
    count_read(reads.stats, &o, page.rows.len());
    let annotate = wants_annotations(req);
    let mut out = serde_json::Map::new();
    out.insert(
        "@odata.context".into(),
        Value::String(context_url(base, entity, o.select.as_deref(), false)),
    );
    if let Some(n) = page.count {
        out.insert("@odata.count".into(), Value::from(n));
    }
    let rows: Vec<Value> = page
        .rows
        .into_iter()
        .map(|mut r| {
            if annotate {
                read::annotate_formatted_values(entity, &mut r);
            }
            Value::Object(r)
        })
        .collect();
    out.insert("value".into(), Value::Array(rows));
    if let Some(offset) = page.next_offset {
        let link = next_link(reads.tokens, &o, base, path, effective_page_size, offset);
        out.insert("@odata.nextLink".into(), Value::String(link));
    }
    let resp = ODataResponse::json(200, &Value::Object(out));
    // An ignored preference is not reported as applied.
    let applied = page_size.filter(|_| !reads.paging.ignore_maxpagesize);
    Ok(with_preferences_applied(resp, applied, annotate))
}

/// Counts a collection read in the paging counters.
fn count_read(stats: &PagingStats, o: &QueryOptions, rows: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    stats.rows_served.fetch_add(rows as u64, Relaxed);
    if o.top.is_some() {
        stats.top_reads.fetch_add(1, Relaxed);
    }
}

/// The `@odata.nextLink` of the rows from `offset` on: the query's own options and a skip token
/// bound to them and to the page size.
fn next_link(tokens: &SkipTokens, o: &QueryOptions, base: &str, path: &str, page_size: usize, offset: usize) -> String {
    let mut q: Vec<String> = o
        .raw_without_skiptoken
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let token = tokens.issue(path, &o.raw_without_skiptoken, page_size, offset);
    q.push(format!("$skiptoken={token}"));
    format!("{base}{path}?{}", q.join("&"))
}

/// Adds `Preference-Applied` for the page size and the annotations that were honoured.
fn with_preferences_applied(resp: ODataResponse, page_size: Option<usize>, annotate: bool) -> ODataResponse {
    let mut applied = Vec::new();
    if let Some(n) = page_size {
        applied.push(format!("odata.maxpagesize={n}"));
    }
    if annotate {
        applied.push("odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\"".to_string());
    }
    match applied.is_empty() {
        true => resp,
        false => resp.with_header("Preference-Applied", applied.join(",")),
    }
}

fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'$')
        .remove(b'_')
        .remove(b'-')
        .remove(b'.')
        .remove(b',')
        .remove(b'(')
        .remove(b')')
        .remove(b'\'');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// A record a write created: its entity and key (for `Content-ID` references).
pub type Created = (&'static Entity, String);

/// Executes a write inside the caller's transaction. Returns the response and, for a create, the
/// created record's entity and key (for `Content-ID` references).
pub fn write_request(
    c: &Connection,
    target: &Target,
    req: &ODataRequest,
    base: &str,
    refs: &ContentIds,
) -> Result<(ODataResponse, Option<Created>), ODataError> {
    match (req.method.as_str(), target) {
        ("POST", Target::Collection(entity)) => create(c, entity, req, base, refs),
        ("POST", Target::Navigation(entity, id, nav)) => create_through_navigation(c, entity, id, nav, req, base, refs),
        ("PATCH", Target::Record(entity, id)) => {
            if req.header("If-None-Match").map(str::trim) == Some("*")
                && store::get_by_key(c, entity, id, Some(&[]))?.is_some()
            {
                return Err(ODataError::new(
                    412,
                    "",
                    "A record with matching key values already exists.",
                ));
            }
            write::update(c, entity, id, &json_body(req)?)?;
            Ok((
                ODataResponse::no_content().with_header("OData-EntityId", format!("{base}{}({id})", entity.entity_set)),
                None,
            ))
        }
        ("PUT", Target::Property(entity, id, prop)) => {
            let v = json_body(req)?;
            let value = v
                .get("value")
                .cloned()
                .ok_or_else(|| ODataError::bad_query("A PUT to a property needs {\"value\": …}."))?;
            set_property(c, entity, id, prop, value)
        }
        ("DELETE", Target::Record(entity, id)) => {
            write::delete(c, entity, id)?;
            Ok((ODataResponse::no_content(), None))
        }
        ("DELETE", Target::Property(entity, id, prop)) => set_property(c, entity, id, prop, Value::Null),
        (m, _) => Err(ODataError::new(
            405,
            "",
            format!("The HTTP method '{m}' is not allowed on this resource."),
        )),
    }
}

/// The request's JSON body (a 400 when it is empty or not JSON).
fn json_body(req: &ODataRequest) -> Result<Value, ODataError> {
    if req.body.is_empty() {
        return Err(ODataError::bad_query(
            "The request body is empty; a JSON object was expected.",
        ));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ODataError::bad_query(format!("The request body is not valid JSON: {e}.")))
}

/// `PUT set(id)/prop` (a value) and `DELETE set(id)/prop` (null).
fn set_property(
    c: &Connection,
    entity: &Entity,
    id: &str,
    prop: &str,
    value: Value,
) -> Result<(ODataResponse, Option<Created>), ODataError> {
    let mut patch = serde_json::Map::new();
    patch.insert(prop.to_string(), value);
    write::update(c, entity, id, &Value::Object(patch))?;
    Ok((ODataResponse::no_content(), None))
}

/// `POST set`: a create (deep insert included), answered with the record when
/// `Prefer: return=representation` asks for it.
fn create(
    c: &Connection,
    entity: &'static Entity,
    req: &ODataRequest,
    base: &str,
    refs: &ContentIds,
) -> Result<(ODataResponse, Option<Created>), ODataError> {
    let representation = req.preferences().iter().any(|p| p == "return=representation");
    let id = write::create(c, entity, &json_body(req)?, refs)?;
    let url = format!("{base}{}({id})", entity.entity_set);
    let resp = if representation {
        let o = read::parse_options(entity, &req.query)?.without_skiptoken()?;
        let scope = SqlFragment {
            sql: format!("{} = ?", quote(&entity.primary_key)),
            params: vec![id.clone().into()],
        };
        let row = read::query_collection(c, entity, &o, Some(scope), Some(1))?
            .rows
            .into_iter()
            .next()
            .unwrap_or_default();
        let mut out = serde_json::Map::new();
        out.insert(
            "@odata.context".into(),
            Value::String(context_url(base, entity, o.select.as_deref(), true)),
        );
        out.extend(row);
        ODataResponse::json(201, &Value::Object(out))
            .with_header("Preference-Applied", "return=representation".into())
            .with_header("Location", url)
    } else {
        ODataResponse::no_content()
            .with_header("OData-EntityId", url.clone())
            .with_header("Location", url)
    };
    Ok((resp, Some((entity, id))))
}

/// `POST set(id)/nav`: creates a child through a collection navigation, linked to the parent.
fn create_through_navigation(
    c: &Connection,
    entity: &Entity,
    id: &str,
    nav: &str,
    req: &ODataRequest,
    base: &str,
    refs: &ContentIds,
) -> Result<(ODataResponse, Option<Created>), ODataError> {
    let rel = entity.navigation(nav).expect("parsed navigation");
    if rel.lookup_on != LookupSide::Target {
        return Err(ODataError::new(
            405,
            "",
            format!("POST is not allowed on the single-valued navigation '{nav}'."),
        ));
    }
    let child_entity = model().by_logical_name(&rel.target).expect("relation target in model");
    let back = child_entity
        .graphql
        .relations
        .iter()
        .find(|r| r.lookup_on == LookupSide::This && r.lookup_property == rel.lookup_property)
        .expect("twin relation");
    let mut b = json_body(req)?;
    if let Some(o) = b.as_object_mut() {
        o.insert(
            format!("{}@odata.bind", back.navigation_property),
            Value::String(format!("{}({id})", entity.entity_set)),
        );
    }
    let cid = write::create(c, child_entity, &b, refs)?;
    let url = format!("{base}{}({cid})", child_entity.entity_set);
    Ok((
        ODataResponse::no_content().with_header("OData-EntityId", url),
        Some((child_entity, cid)),
    ))
}

#[cfg(test)]
mod paging_tests {
    use super::*;
    use crate::emulator::{build, dialect::Dialect, EmulatorConfig, Seed};

    const BASE: &str = "http://emulator/api/data/v9.2/";
    const SET: &str = "mshr_hcmrecruitingrequestentities";

    fn service(config: EmulatorConfig) -> Arc<crate::emulator::http::EmulatorState> {
        build(&EmulatorConfig {
            seed: Seed::Demo,
            seed_size: 10,
            ..config
        })
        .unwrap()
    }

    fn get(svc: &Service, path_and_query: &str, page_size: Option<usize>) -> (ODataResponse, Value) {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let headers = page_size
            .map(|n| vec![("Prefer".to_string(), format!("odata.maxpagesize={n}"))])
            .unwrap_or_default();
        let req = ODataRequest {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers,
            body: Vec::new(),
        };
        let resp = svc.handle(&req, BASE);
        let body = serde_json::from_slice(&resp.body).unwrap();
        (resp, body)
    }

    fn rows(body: &Value) -> usize {
        body["value"].as_array().map_or(0, Vec::len)
    }

    fn next(body: &Value) -> Option<String> {
        body["@odata.nextLink"]
            .as_str()
            .map(|l| l.strip_prefix(BASE).unwrap().to_string())
    }

    fn applied(resp: &ODataResponse) -> Option<&str> {
        resp.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("preference-applied"))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_ignoring_service_serves_every_row_and_honours_top() {
        let state = service(EmulatorConfig {
            dialect: Dialect::Odata4,
            ignore_maxpagesize: true,
            ..Default::default()
        });
        let svc = &state.service;
        let (resp, body) = get(svc, SET, Some(2));
        assert_eq!((resp.status, rows(&body), next(&body)), (200, 10, None));
        assert_eq!(applied(&resp), None, "an ignored preference is not applied");
        let (_, body) = get(svc, &format!("{SET}?$top=3&$skip=8"), Some(2));
        assert_eq!(rows(&body), 2);
        assert_eq!(svc.paging_stats.top_reads.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            svc.paging_stats.rows_served.load(std::sync::atomic::Ordering::Relaxed),
            12
        );
    }

    #[test]
    fn an_ignoring_service_pages_by_itself_with_strict_links() {
        let state = service(EmulatorConfig {
            dialect: Dialect::Odata4,
            ignore_maxpagesize: true,
            server_page_size: Some(4),
            ..Default::default()
        });
        let svc = &state.service;
        // $top=6 over pages of 4: 4 rows, then the 2 left of the top, then nothing.
        let (_, first) = get(svc, &format!("{SET}?$top=6&$skip=1"), Some(100));
        assert_eq!(rows(&first), 4);
        let link = next(&first).unwrap();
        let (resp, second) = get(svc, &link, None);
        assert_eq!((resp.status, rows(&second), next(&second)), (200, 2, None));
        // The link is bound to its query: with another $top or $skip, or altered, it is a 400.
        for other in [link.replace("$top=6", "$top=7"), link.replace("$skip=1", "$skip=2")] {
            assert_eq!(get(svc, &other, None).0.status, 400, "{other}");
        }
        let token = link.split("$skiptoken=").nth(1).unwrap();
        let forged = link.replace(token, "AAAAAAAAAAA");
        assert_eq!(get(svc, &forged, None).0.status, 400);
    }

    #[test]
    fn skip_is_plain_odata_and_refused_by_the_dataverse_dialect() {
        let dataverse = service(EmulatorConfig::default());
        assert_eq!(get(&dataverse.service, &format!("{SET}?$skip=2"), None).0.status, 400);
        let ignoring = service(EmulatorConfig {
            ignore_maxpagesize: true,
            ..Default::default()
        });
        assert_eq!(get(&ignoring.service, &format!("{SET}?$skip=2"), None).0.status, 400);
        let plain = service(EmulatorConfig {
            dialect: Dialect::Odata4,
            ..Default::default()
        });
        let (resp, body) = get(&plain.service, &format!("{SET}?$skip=8"), Some(5));
        assert_eq!((resp.status, rows(&body)), (200, 2));
        assert_eq!(applied(&resp), Some("odata.maxpagesize=5"));
    }
}
