//! The explain extension (issue #15): what an operation cost upstream, in its response.
//!
//! A request with `"extensions": {"explain": true}` (or the header `X-ATS-Explain: true`, which
//! GraphiQL's headers editor can send) that the [`ExplainPolicy`] allows carries
//! [`Asked`] as request data. `limits` then runs the operation with a [`Recorder`] in
//! scope (a task-local, carried into loader tasks by `tasks` as the deadline is) and writes
//! `extensions.explain`: every upstream request the operation made, in the order they started,
//! and every read it served without one (a cache or memo hit), each with
//!
//! - `path`: the GraphQL field that caused it (for a loader batch, the field whose resolver
//!   started the batch, or the list that prefetched the level) and `keys` for a batch of keys;
//! - `method`, `entitySet`, `url` (relative to the service root) and `query` (its options,
//!   `$select`, `$filter`, `$orderby`, `$expand`, `$top`, …), with every literal value shown as
//!   `…` (`odata::redact`) unless `--explain-values`; `pageSize` (its `odata.maxpagesize`); for a
//!   `$batch`, `requests`: its inner requests and their statuses;
//! - `source`: `upstream`, or where a read came from instead: `readCache`, `referenceCache`,
//!   `sharedCache` (Redis), `coalesced` (joined an identical read in flight), `memo` (read
//!   already in this operation);
//! - `status`, `durationMs`, `rows`, `attempts`, `slotWaitMs` and `retryWaitMs`.
//!
//! Nothing is recorded, and nothing costs more than one task-local look-up per upstream call,
//! when explain was not asked for.

use crate::odata::resilience::{self, CallLog, CallReport};
use async_graphql::{Name, Value};
use futures::future::{BoxFuture, Either};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Who may ask for explain (`--explain`, `--explain-values`, `--explain-api-keys`,
/// `--explain-roles`).
#[derive(Debug, Clone, Default)]
pub struct ExplainPolicy {
    /// Whether explain is served at all (on with the embedded emulator, `--explain` otherwise).
    pub enabled: bool,
    /// Literal values shown instead of `…`.
    pub values: bool,
    /// API key names allowed (none named and no role named: every caller).
    pub api_keys: Vec<String>,
    /// JWT roles (the `roles` claim) allowed.
    pub roles: Vec<String>,
}

impl ExplainPolicy {
    /// Every caller may ask, values redacted.
    pub fn open() -> Self {
        ExplainPolicy {
            enabled: true,
            ..Default::default()
        }
    }

    /// Whether the caller `identity` (from `server::auth`: `key:<name>` for an API key) with
    /// JWT `roles` may ask for explain; `Err` says why not.
    pub fn allows(&self, identity: &str, roles: &[String]) -> Result<ExplainRequest, String> {
        if !self.enabled {
            return Err("explain is not enabled on this gateway (start it with --explain)".into());
        }
        let by_key = identity
            .strip_prefix("key:")
            .is_some_and(|name| self.api_keys.iter().any(|k| k == name));
        let by_role = roles.iter().any(|r| self.roles.contains(r));
        let open = self.api_keys.is_empty() && self.roles.is_empty();
        match open || by_key || by_role {
            true => Ok(ExplainRequest { values: self.values }),
            false => Err("this caller may not ask for explain (--explain-api-keys, --explain-roles)".into()),
        }
    }
}

/// Whether a request asks for explain: `extensions.explain` true, or the header
/// `X-ATS-Explain: true` (or `1`).
pub fn asked(extensions: Option<&serde_json::Map<String, serde_json::Value>>, header: Option<&str>) -> bool {
    let by_extension = extensions.and_then(|e| e.get("explain")) == Some(&serde_json::Value::Bool(true));
    let by_header = header.is_some_and(|h| h.trim().eq_ignore_ascii_case("true") || h.trim() == "1");
    by_extension || by_header
}

/// How to explain an operation (literal values shown or not).
#[derive(Debug, Clone, Copy)]
pub struct ExplainRequest {
    pub values: bool,
}

/// Request data: the explain a request asked for and may have, if any.
#[derive(Debug, Clone, Copy)]
pub struct Asked(pub Option<ExplainRequest>);

/// What caused the upstream calls in its scope.
#[derive(Debug, Clone, Default)]
pub struct Cause {
    path: Option<Arc<str>>,
    keys: Option<usize>,
}

tokio::task_local! {
    static CAUSE: Cause;
}

/// Where a read came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upstream,
    ReadCache,
    ReferenceCache,
    SharedCache,
    Coalesced,
    Memo,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::ReadCache => "readCache",
            Source::ReferenceCache => "referenceCache",
            Source::SharedCache => "sharedCache",
            Source::Coalesced => "coalesced",
            Source::Memo => "memo",
        }
    }
}

/// One inner request of a `$batch`: method, URL (as shown) and status.
type Part = (String, String, Option<u16>);

/// One line of the explain.
#[derive(Debug, Clone)]
struct Entry {
    started: Instant,
    cause: Cause,
    source: Source,
    method: String,
    url: String,
    page_size: Option<usize>,
    status: Option<u16>,
    error: Option<&'static str>,
    elapsed: Duration,
    rows: Option<usize>,
    attempts: u32,
    slot_wait: Duration,
    retry_wait: Duration,
    parts: Vec<Part>,
}

/// The explain of one operation.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    values: bool,
    /// The service root, stripped from URLs.
    root: String,
    entries: Mutex<Vec<Entry>>,
}

impl Recorder {
    pub fn new(request: ExplainRequest, service_root: &str) -> Arc<Recorder> {
        Arc::new(Recorder {
            started: Instant::now(),
            values: request.values,
            root: service_root.to_string(),
            entries: Mutex::default(),
        })
    }

    /// The recorder of an operation whose request asked for explain (`request`), reading URLs
    /// relative to the gateway's upstream.
    pub fn for_request(request: ExplainRequest, state: Option<&Arc<super::context::GatewayState>>) -> Arc<Recorder> {
        let root = state.map_or("", |s| s.upstream.config().service_root.as_str());
        Recorder::new(request, root)
    }

    /// `f` (the operation) with this recorder told about its upstream calls and reads.
    pub fn run<F: Future>(self: Arc<Self>, f: F) -> impl Future<Output = F::Output> {
        resilience::with_call_log(self, f)
    }

    /// The URL as shown: relative to the service root, values redacted unless asked for.
    fn shown(&self, url: &str) -> String {
        let relative = url.strip_prefix(&self.root).unwrap_or(url);
        match self.values {
            true => percent_encoding::percent_decode_str(relative)
                .decode_utf8_lossy()
                .into_owned(),
            false => crate::odata::redact::redact_url(relative),
        }
    }

    fn push(&self, entry: Entry) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    fn note(&self, source: Source, url: &str, page_size: Option<usize>, rows: Option<usize>) {
        self.push(Entry {
            started: Instant::now(),
            cause: current_cause(),
            source,
            method: "GET".into(),
            url: self.shown(url),
            page_size,
            status: None,
            error: None,
            elapsed: Duration::ZERO,
            rows,
            attempts: 0,
            slot_wait: Duration::ZERO,
            retry_wait: Duration::ZERO,
            parts: Vec::new(),
        });
    }

    /// Upstream requests recorded (HTTP exchanges: every attempt counts, as upstream).
    pub fn upstream_requests(&self) -> u64 {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().map(|e| u64::from(e.attempts)).sum()
    }

    /// `extensions.explain`: `{upstreamRequests, valuesShown, requests: [...]}`.
    pub fn to_value(&self) -> Value {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner()).clone();
        entries.sort_by_key(|e| e.started);
        let mut out = async_graphql::indexmap::IndexMap::new();
        let upstream: u64 = entries.iter().map(|e| u64::from(e.attempts)).sum();
        out.insert(Name::new("upstreamRequests"), Value::from(upstream));
        out.insert(Name::new("valuesShown"), Value::from(self.values));
        let list = entries.iter().map(|e| e.to_value(self.started)).collect();
        out.insert(Name::new("requests"), Value::List(list));
        Value::Object(out)
    }
}

impl CallLog for Recorder {
    fn record(&self, call: &CallReport<'_>) {
        let (status, rows, parts) = match call.answer {
            Some((status, content_type, body)) => {
                let (rows, parts) = answer_rows(content_type, body, call.body, |u| self.shown(u));
                (Some(status), rows, parts)
            }
            None => (None, None, Vec::new()),
        };
        self.push(Entry {
            started: call.started,
            cause: current_cause(),
            source: Source::Upstream,
            method: call.method.to_string(),
            url: self.shown(call.url),
            page_size: page_size(call.headers),
            status,
            error: call.error,
            elapsed: call.elapsed,
            rows,
            attempts: call.attempts,
            slot_wait: call.slot_wait,
            retry_wait: call.retry_wait,
            parts,
        });
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The page size a call's `Prefer: odata.maxpagesize=N` asks for.
fn page_size(headers: &[(&str, String)]) -> Option<usize> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("prefer"))
        .flat_map(|(_, v)| v.split(','))
        .find_map(|p| p.trim().strip_prefix("odata.maxpagesize=")?.parse().ok())
}

/// Rows of a JSON answer (`value`'s length, or 1 for one record); for a `$batch`, the rows of all
/// its parts and each part's method, URL (as `shown`) and status.
fn answer_rows(
    content_type: Option<&str>,
    body: &[u8],
    request: Option<&[u8]>,
    shown: impl Fn(&str) -> String,
) -> (Option<usize>, Vec<Part>) {
    let multipart = content_type.and_then(|ct| crate::batch::boundary_from_content_type(ct).ok());
    let Some(boundary) = multipart else {
        return (json_rows(body), Vec::new());
    };
    let answers: Vec<crate::batch::HttpResponsePart> = crate::batch::read_batch_response(&boundary, body)
        .map(|items| items.into_iter().flat_map(response_parts).collect())
        .unwrap_or_default();
    let requests = request.and_then(|r| {
        let boundary = std::str::from_utf8(r)
            .ok()?
            .lines()
            .next()?
            .trim()
            .strip_prefix("--")?
            .to_string();
        crate::batch::read_batch_request(&boundary, r).ok()
    });
    let requests: Vec<crate::batch::HttpRequestPart> = requests
        .unwrap_or_default()
        .into_iter()
        .flat_map(|i| match i {
            crate::batch::BatchRequestItem::Request(p) => vec![p],
            crate::batch::BatchRequestItem::ChangeSet(ps) => ps,
        })
        .collect();
    let rows = answers.iter().filter_map(|a| json_rows(&a.body)).sum();
    let parts = requests
        .iter()
        .enumerate()
        .map(|(i, p)| (p.method.clone(), shown(&p.url), answers.get(i).map(|a| a.status)))
        .collect();
    (Some(rows), parts)
}

fn response_parts(item: crate::batch::BatchResponseItem) -> Vec<crate::batch::HttpResponsePart> {
    match item {
        crate::batch::BatchResponseItem::Response(p) => vec![p],
        crate::batch::BatchResponseItem::ChangeSet(ps) => ps,
    }
}

fn json_rows(body: &[u8]) -> Option<usize> {
    match serde_json::from_slice::<serde_json::Value>(body).ok()? {
        serde_json::Value::Object(o) => match o.get("value") {
            Some(serde_json::Value::Array(rows)) => Some(rows.len()),
            _ if o.contains_key("error") => Some(0),
            _ => Some(1),
        },
        _ => None,
    }
}

fn ms(d: Duration) -> Value {
    Value::from((d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0)
}

impl Entry {
    fn to_value(&self, operation_started: Instant) -> Value {
        let mut o = async_graphql::indexmap::IndexMap::new();
        let mut put = |k: &str, v: Value| {
            o.insert(Name::new(k), v);
        };
        put("path", self.cause.path.as_deref().map_or(Value::Null, Value::from));
        if let Some(keys) = self.cause.keys {
            put("keys", Value::from(keys));
        }
        put("source", Value::from(self.source.as_str()));
        put("method", Value::from(self.method.as_str()));
        let (path, query) = self.url.split_once('?').unwrap_or((&self.url, ""));
        let set = path.split(['(', '/']).next().unwrap_or(path);
        put("entitySet", Value::from(set));
        put("url", Value::from(self.url.as_str()));
        put("query", query_options(query));
        put("pageSize", self.page_size.map_or(Value::Null, Value::from));
        put("status", self.status.map_or(Value::Null, Value::from));
        if let Some(code) = self.error {
            put("error", Value::from(code));
        }
        put("rows", self.rows.map_or(Value::Null, Value::from));
        put("startMs", ms(self.started.saturating_duration_since(operation_started)));
        put("durationMs", ms(self.elapsed));
        put("attempts", Value::from(self.attempts));
        put("slotWaitMs", ms(self.slot_wait));
        put("retryWaitMs", ms(self.retry_wait));
        if !self.parts.is_empty() {
            let parts = self.parts.iter().map(|(method, url, status)| {
                let mut p = async_graphql::indexmap::IndexMap::new();
                p.insert(Name::new("method"), Value::from(method.as_str()));
                p.insert(Name::new("url"), Value::from(url.as_str()));
                p.insert(Name::new("status"), status.map_or(Value::Null, Value::from));
                Value::Object(p)
            });
            put("requests", Value::List(parts.collect()));
        }
        Value::Object(o)
    }
}

/// `$select=a,b&$top=3` as `{"$select": "a,b", "$top": "3"}` (already decoded by `shown`).
fn query_options(query: &str) -> Value {
    let mut o = async_graphql::indexmap::IndexMap::new();
    for option in query.split('&').filter(|s| !s.is_empty()) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        o.insert(Name::new(name), Value::from(value));
    }
    Value::Object(o)
}

/// The recorder for an operation, when its request data asks for explain ([`Asked`]).
pub fn recorder_for(asked: Option<&Asked>, state: Option<&Arc<super::context::GatewayState>>) -> Option<Arc<Recorder>> {
    asked?.0.map(|r| Recorder::for_request(r, state))
}

/// The recorder in scope, if this operation is explained.
pub fn current() -> Option<Arc<dyn CallLog>> {
    resilience::current_call_log()
}

fn with_recorder(f: impl FnOnce(&Recorder)) {
    if let Some(log) = current() {
        if let Some(r) = log.as_any().downcast_ref::<Recorder>() {
            f(r)
        }
    }
}

fn current_cause() -> Cause {
    CAUSE.try_with(Cause::clone).unwrap_or_default()
}

/// `f` (a field's resolver) as the cause of the upstream calls it makes.
pub fn at_path<F: Future>(path: String, f: F) -> impl Future<Output = F::Output> {
    let cause = Cause {
        path: Some(path.into()),
        keys: None,
    };
    CAUSE.scope(cause, f)
}

/// `f` (a loader's batch of `keys` keys of one group) as the cause of its upstream calls, under
/// the path in scope; just `f` when the operation is not explained.
///
/// Wrappers here are plain functions returning `Either`, not `async fn`s: an `async fn` keeps its
/// argument future twice (as an argument and as a local), and a submission's future is big
/// enough that a few such layers overflow a worker's stack in debug builds.
pub fn batch<F: Future>(keys: usize, f: F) -> Either<F, tokio::task::futures::TaskLocalFuture<Cause, F>> {
    if current().is_none() {
        return Either::Left(f);
    }
    let cause = Cause {
        keys: Some(keys),
        ..current_cause()
    };
    Either::Right(CAUSE.scope(cause, f))
}

/// A read of `url` (page size `page_size`) served from `source` with no upstream request.
pub fn reused(source: Source, url: &str, page_size: Option<usize>, rows: Option<usize>) {
    with_recorder(|r| r.note(source, url, page_size, rows));
}

/// `n` records of `entity_set` a loader found among those this operation read already (none: no
/// line).
pub fn records_known(entity_set: &str, n: usize) {
    if n > 0 {
        with_recorder(|r| r.note(Source::Memo, entity_set, None, Some(n)));
    }
}

/// `f` as it may run in a task of its own: with this operation's recorder and cause, captured
/// where `carry` is called (see `tasks`). Unchanged when the operation is not explained; boxed
/// when it is.
pub fn carry<'a, F: Future + Send + 'a>(f: F) -> Either<F, BoxFuture<'a, F::Output>> {
    let Some(log) = current() else {
        return Either::Left(f);
    };
    let cause = CAUSE.try_with(Cause::clone).unwrap_or_default();
    Either::Right(Box::pin(resilience::with_call_log(log, CAUSE.scope(cause, f))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "http://h:1/api/data/v9.2/";

    fn report<'a>(url: &'a str, body: &'a [u8], headers: &'a [(&'a str, String)]) -> CallReport<'a> {
        CallReport {
            method: "GET",
            url,
            headers,
            body: None,
            started: Instant::now(),
            elapsed: Duration::from_millis(12),
            answer: Some((200, Some("application/json"), body)),
            error: None,
            attempts: 2,
            slot_wait: Duration::from_millis(3),
            retry_wait: Duration::from_millis(200),
        }
    }

    fn json(r: &Recorder) -> serde_json::Value {
        r.to_value().into_json().unwrap()
    }

    #[tokio::test]
    async fn calls_are_recorded_in_order_with_their_cause_and_values_redacted() {
        let recorder = Recorder::new(ExplainRequest { values: false }, ROOT);
        let url = format!("{ROOT}mshr_candidates?$select=a,b&$filter=mshr_name%20eq%20'Secret'&$top=5");
        let headers = [("prefer", "odata.maxpagesize=100".to_string())];
        let log: Arc<dyn CallLog> = recorder.clone();
        let work = at_path("candidates".into(), async {
            current()
                .unwrap()
                .record(&report(&url, br#"{"value":[{},{},{}]}"#, &headers));
            batch(4, async {
                reused(Source::Memo, "mshr_jobs?$filter=x%20eq%201", None, Some(2))
            })
            .await;
        });
        resilience::with_call_log(log, work).await;
        let out = json(&recorder);
        assert_eq!(out["upstreamRequests"], 2);
        let first = &out["requests"][0];
        assert_eq!(first["path"], "candidates");
        assert_eq!(first["source"], "upstream");
        assert_eq!(first["entitySet"], "mshr_candidates");
        assert_eq!(first["query"]["$filter"], "mshr_name eq '…'");
        assert_eq!(first["query"]["$top"], "5");
        assert_eq!(first["pageSize"], 100);
        assert_eq!(first["rows"], 3);
        assert_eq!(
            (first["attempts"].clone(), first["retryWaitMs"].clone()),
            (2.into(), 200.0.into())
        );
        assert!(!out.to_string().contains("Secret"), "no literal value: {out}");
        let second = &out["requests"][1];
        assert_eq!(
            (second["source"].as_str(), second["keys"].as_u64()),
            (Some("memo"), Some(4))
        );
        assert_eq!(second["path"], "candidates");
        assert_eq!(second["query"]["$filter"], "x eq …");
    }

    #[tokio::test]
    async fn values_are_shown_when_asked_for_and_nothing_is_recorded_outside_a_scope() {
        reused(Source::ReadCache, "anything", None, None); // no recorder: nothing happens
        let recorder = Recorder::new(ExplainRequest { values: true }, ROOT);
        let url = format!("{ROOT}mshr_candidates?$filter=mshr_name%20eq%20'Secret'");
        recorder
            .clone()
            .run(async { current().unwrap().record(&report(&url, b"{}", &[])) })
            .await;
        let out = json(&recorder);
        assert_eq!(out["requests"][0]["query"]["$filter"], "mshr_name eq 'Secret'");
        assert_eq!(out["requests"][0]["rows"], 1);
        assert_eq!(out["requests"][0]["path"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn a_carried_task_records_into_its_operation() {
        let recorder = Recorder::new(ExplainRequest { values: false }, ROOT);
        let spawned = recorder
            .clone()
            .run(at_path("a.b".into(), async {
                tokio::spawn(carry(async { reused(Source::Coalesced, "s", None, None) })).await
            }))
            .await;
        spawned.unwrap();
        let out = json(&recorder);
        assert_eq!(out["requests"][0]["path"], "a.b");
        assert_eq!(out["requests"][0]["source"], "coalesced");
    }

    #[test]
    fn the_policy_names_who_may_ask() {
        assert!(ExplainPolicy::default().allows("anonymous", &[]).is_err());
        assert!(ExplainPolicy::open().allows("anonymous", &[]).is_ok());
        let policy = ExplainPolicy {
            api_keys: vec!["ops".into()],
            roles: vec!["Explain.Read".into()],
            ..ExplainPolicy::open()
        };
        assert!(policy.allows("key:ops", &[]).is_ok());
        assert!(policy.allows("key:app", &[]).is_err());
        assert!(policy.allows("jwt:abc", &["Explain.Read".into()]).is_ok());
        assert!(policy.allows("jwt:abc", &["Other".into()]).is_err());
        assert!(asked(None, Some("true")) && asked(None, Some("1")) && !asked(None, Some("no")));
        let ext = serde_json::json!({"explain": true});
        assert!(asked(ext.as_object(), None));
    }

    #[test]
    fn batch_answers_list_their_parts() {
        let items = vec![crate::batch::BatchRequestItem::Request(crate::batch::HttpRequestPart {
            method: "GET".into(),
            url: "mshr_jobs?$filter=a%20eq%20'x'".into(),
            headers: vec![],
            body: vec![],
            content_id: None,
        })];
        let (_, request) = crate::batch::write_batch_request(&items);
        let answer = vec![crate::batch::BatchResponseItem::Response(
            crate::batch::HttpResponsePart {
                status: 200,
                reason: "OK".into(),
                headers: vec![],
                body: br#"{"value":[{},{}]}"#.to_vec(),
                content_id: None,
            },
        )];
        let (ct, body) = crate::batch::write_batch_response(&answer);
        let (rows, parts) = answer_rows(Some(&ct), &body, Some(&request), crate::odata::redact::redact_url);
        assert_eq!(rows, Some(2));
        assert_eq!(
            parts,
            vec![("GET".into(), "mshr_jobs?$filter=a eq '…'".into(), Some(200))]
        );
    }
}
