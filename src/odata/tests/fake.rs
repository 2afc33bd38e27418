//! A tiny fake upstream for the client tests: an axum server on 127.0.0.1:0 that answers canned
//! Dataverse-shaped responses and records every request it sees, plus a raw TCP server for
//! broken connections (a truncated body, a reset). Only for unit tests; the project's
//! integration tests use the real emulator.

use crate::batch::{self, BatchRequestItem, BatchResponseItem, HttpResponsePart};
use crate::model::{model, Entity};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const ROOT_PATH: &str = "/api/data/v9.2/";
pub const KNOWN_ID: &str = "00000d6b-0000-0000-0000-005001000000";
pub const NEW_ID: &str = "00000d2d-0000-0000-7317-005001000000";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, percent-decoded.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
pub struct Fake {
    pub seen: Mutex<Vec<Seen>>,
    base: Mutex<String>,
    /// Requests to `gauge` in flight now, and the most ever.
    in_flight: std::sync::atomic::AtomicUsize,
    pub max_in_flight: std::sync::atomic::AtomicUsize,
}

impl Fake {
    /// Requests seen so far whose path (without the query) ends with `suffix`.
    pub fn hits(&self, suffix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.split('?').next().unwrap_or("").ends_with(suffix))
            .count()
    }
}

/// The entity the fake serves: the model's first.
pub fn entity() -> &'static Entity {
    &model().entities[0]
}

fn row(i: usize) -> Value {
    json!({ entity().primary_key.clone(): format!("00000000-0000-0000-0000-{i:012}") })
}

fn json_response(status: u16, body: Value) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        "application/json; odata.metadata=minimal".parse().unwrap(),
    );
    r.headers_mut().insert("odata-version", "4.0".parse().unwrap());
    r
}

fn error(status: u16, message: &str) -> Response {
    json_response(status, json!({"error": {"code": "0x80060888", "message": message}}))
}

/// Starts the fake; returns it and the service root URL.
pub async fn start() -> (Arc<Fake>, String) {
    start_on("127.0.0.1:0".parse().unwrap()).await
}

/// Starts the fake on `addr` (a port chosen before, to come back on).
pub async fn start_on(addr: std::net::SocketAddr) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let root = format!("http://{addr}{ROOT_PATH}");
    *fake.base.lock().unwrap() = root.clone();
    (fake, root)
}

/// Records the request, then answers it: a named scenario (`throttled`, `flaky`, `gauge`, …) or
/// the entity set's service.
async fn handle(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let seen = record(&fake, req).await;
    let base = fake.base.lock().unwrap().clone();
    let path = seen.target.strip_prefix(ROOT_PATH).unwrap_or(&seen.target).to_string();
    let (resource, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
    let call = Call {
        fake: &fake,
        method: seen.method.as_str(),
        resource,
        query,
        base: &base,
        hits: fake.hits(resource),
        seen: &seen,
    };
    match scenario(&call).await {
        Some(response) => response,
        None => service(&call),
    }
}

/// A request the fake answers, with what it knows about it.
struct Call<'a> {
    fake: &'a Fake,
    method: &'a str,
    /// The path under the service root, without the query.
    resource: &'a str,
    query: &'a str,
    /// The service root URL.
    base: &'a str,
    /// Requests seen so far to this resource, this one included.
    hits: usize,
    seen: &'a Seen,
}

/// Reads the request and adds it to [`Fake::seen`].
async fn record(fake: &Fake, req: Request) -> Seen {
    let method = req.method().to_string();
    let raw_target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let target = percent_encoding::percent_decode_str(&raw_target)
        .decode_utf8_lossy()
        .into_owned();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let seen = Seen {
        method,
        target,
        headers,
        body,
    };
    fake.seen.lock().unwrap().push(seen.clone());
    seen
}

/// The named resources that play a failure or a behaviour; `None` for anything else.
async fn scenario(call: &Call<'_>) -> Option<Response> {
    let hits = call.hits;
    Some(match (call.method, call.resource) {
        ("GET", "throttled") => {
            let mut r = error(
                429,
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            );
            r.headers_mut().insert("retry-after", "5".parse().unwrap());
            r
        }
        ("GET", "unavailable") => error(503, "Service Unavailable"),
        // Fails twice with 503, then answers.
        (_, "flaky") if hits <= 2 => error(503, "Service Unavailable"),
        ("GET", "flaky") => json_response(200, json!({"value": []})),
        ("POST", "flaky") => StatusCode::NO_CONTENT.into_response(),
        // Throttled once (Retry-After: 1), then answers.
        ("GET", "throttled-once") if hits == 1 => {
            let mut r = error(429, "Number of requests exceeded the limit.");
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            r
        }
        ("GET", "throttled-once") => json_response(200, json!({"value": []})),
        // Counts how many of these are in flight at once.
        ("GET", "gauge") => {
            use std::sync::atomic::Ordering::SeqCst;
            let now = call.fake.in_flight.fetch_add(1, SeqCst) + 1;
            call.fake.max_in_flight.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            call.fake.in_flight.fetch_sub(1, SeqCst);
            json_response(200, json!({"value": []}))
        }
        // A token endpoint that fails twice, then issues `tok`; and a resource that wants it.
        ("POST", "flaky-token") if hits <= 2 => error(503, "Service Unavailable"),
        ("POST", "flaky-token") => json_response(
            200,
            json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "tok"}),
        ),
        ("GET", "needs-token") if call.seen.header("authorization") == Some("Bearer tok") => {
            json_response(200, json!({"value": []}))
        }
        ("GET", "needs-token") => error(401, "not authenticated"),
        ("GET", "html") => (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response(),
        ("GET", "badjson") => (StatusCode::OK, "{\"value\": [ {\"a\": 1}, oops").into_response(),
        ("GET", "foreign") => json_response(
            200,
            json!({"value": [], "@odata.nextLink": "http://127.0.0.2:9/api/data/v9.2/x"}),
        ),
        ("GET", "slow") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json_response(200, json!({"value": []}))
        }
        _ => return None,
    })
}

/// The entity set's service: reads (paged, a loop, one record), option sets, `$batch` and writes.
fn service(call: &Call<'_>) -> Response {
    let (base, set) = (call.base, entity().entity_set.as_str());
    let (resource, query, headers) = (call.resource, call.query, &call.seen.headers);
    match (call.method, resource) {
        ("GET", r) if r == set && query.contains("loop") => json_response(
            200,
            json!({"value": [row(1)], "@odata.nextLink": format!("{base}{set}?loop")}),
        ),
        ("GET", r) if r == set => pages(base, query),
        ("GET", r) if r == format!("{set}({KNOWN_ID})") => {
            let mut body = row(7);
            body["@odata.context"] = json!(format!("{base}$metadata#{set}/$entity"));
            json_response(200, body)
        }
        ("GET", r) if r.starts_with(&format!("{set}(")) => {
            error(404, &format!("{} With Id = x Does Not Exist", entity().logical_name))
        }
        ("GET", r) if r.starts_with("GlobalOptionSetDefinitions(") => option_set(r),
        ("POST", "$batch") => batch_response(headers, &call.seen.body),
        ("POST", r) if r == set => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let id = format!("{base}{set}({NEW_ID})");
            resp.headers_mut().insert("odata-entityid", id.parse().unwrap());
            resp
        }
        ("PATCH", _) if headers.get("if-match").is_none() => error(400, "PATCH without If-Match"),
        ("PATCH", _) => {
            let mut body: Value = serde_json::from_slice(&call.seen.body).unwrap();
            body[entity().primary_key.as_str()] = json!(KNOWN_ID);
            json_response(200, body)
        }
        ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
        _ => error(404, &format!("Resource not found for the segment '{resource}'.")),
    }
}

/// Three pages of 2, 2 and 1 rows, whatever the page size asked.
fn pages(base: &str, query: &str) -> Response {
    let set = entity().entity_set.as_str();
    let page: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("$skiptoken="))
        .map_or(1, |t| t.parse().unwrap());
    let rows: Vec<Value> = match page {
        1 => vec![row(1), row(2)],
        2 => vec![row(3), row(4)],
        _ => vec![row(5)],
    };
    let mut body = json!({ "@odata.context": format!("{base}$metadata#{set}"), "value": rows });
    if query.contains("$count=true") {
        body["@odata.count"] = json!(5);
    }
    if page < 3 {
        // Opaque, already-encoded token: the client must send it back unchanged.
        body["@odata.nextLink"] = json!(format!("{base}{set}?$select=x&$skiptoken={}", page + 1));
    }
    json_response(200, body)
}

/// The first option set of the model, each value shifted by 1000; every other set is missing.
fn option_set(resource: &str) -> Response {
    let set = &model().option_sets[0];
    if resource != format!("GlobalOptionSetDefinitions(Name='{}')", set.name) {
        return error(404, "Could not find an optionset with name");
    }
    let options: Vec<Value> = set
        .values
        .iter()
        .map(|v| json!({"Value": v.value + 1000, "Label": {"UserLocalizedLabel": {"Label": v.label.to_lowercase()}}}))
        .collect();
    json_response(200, json!({"Name": set.name, "Options": options}))
}

/// Answers each GET with a one-row page and each write with 204 + OData-EntityId; a change set
/// whose first member's URL contains `fail` fails with 400 (and the batch stops there).
fn batch_response(headers: &HeaderMap, body: &[u8]) -> Response {
    let ct = headers.get("content-type").unwrap().to_str().unwrap();
    let boundary = batch::boundary_from_content_type(ct).unwrap();
    let items = batch::read_batch_request(&boundary, body).unwrap();
    let ok = |id: Option<String>, method: &str| {
        let (status, reason, body, headers) = if method == "GET" {
            (200, "OK", json!({"value": [row(1)]}).to_string().into_bytes(), vec![])
        } else {
            let loc = format!("http://h{ROOT_PATH}{}({NEW_ID})", entity().entity_set);
            (204, "No Content", vec![], vec![("OData-EntityId".to_string(), loc)])
        };
        HttpResponsePart {
            content_id: id,
            status,
            reason: reason.into(),
            headers,
            body,
        }
    };
    let mut out = Vec::new();
    let mut status = StatusCode::OK;
    for item in items {
        match item {
            BatchRequestItem::Request(p) => out.push(BatchResponseItem::Response(ok(p.content_id, &p.method))),
            BatchRequestItem::ChangeSet(ps) if ps[0].url.contains("fail") => {
                let err = json!({"error": {"code": "0x80044331", "message": "A validation error occurred."}});
                out = vec![BatchResponseItem::Response(HttpResponsePart {
                    content_id: ps[0].content_id.clone(),
                    status: 400,
                    reason: "Bad Request".into(),
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: err.to_string().into_bytes(),
                })];
                status = StatusCode::BAD_REQUEST;
                break;
            }
            BatchRequestItem::ChangeSet(ps) => out.push(BatchResponseItem::ChangeSet(
                ps.into_iter().map(|p| ok(p.content_id, &p.method)).collect(),
            )),
        }
    }
    let (ct, body) = batch::write_batch_response(&out);
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", ct.parse().unwrap());
    r
}

/// A raw TCP server that answers every connection with `reply` and closes it (an empty `reply`
/// closes without a word: a connection reset from the client's point of view).
pub async fn raw_server(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(reply).await;
            let _ = sock.shutdown().await;
        }
    });
    format!("http://{addr}{ROOT_PATH}")
}
