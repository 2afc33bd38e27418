//! The emulator's HTTP face: the OData routes under `/api/data/v9.2/`, fault injection in front of
//! them, and the `/_emulator/*` control routes tests use (request counters, faults).

use super::error::{codes, ODataError};
use super::faults::{caller_identity, damage, FaultState, Faults, Verdict};
use super::service::{ODataRequest, ODataResponse, Service, SERVICE_ROOT};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body the emulator reads (Dataverse answers 413 above its own limits).
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Shared state of the emulator's routes.
pub struct EmulatorState {
    pub service: Service,
    pub faults: FaultState,
    pub authority: super::auth::Authority,
    /// Whether `GlobalOptionSetDefinitions` is served (see [`super::EmulatorConfig`]).
    pub option_set_definitions: bool,
    /// The last W3C `traceparent` headers received, oldest first (in `/_emulator/stats`).
    pub traceparents: Traceparents,
}

/// The last [`Traceparents::KEPT`] `traceparent` headers of OData requests.
#[derive(Debug, Default)]
pub struct Traceparents(std::sync::Mutex<std::collections::VecDeque<String>>);

impl Traceparents {
    pub const KEPT: usize = 1000;

    fn record(&self, headers: &HeaderMap) {
        if let Some(v) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == Self::KEPT {
                kept.pop_front();
            }
            kept.push_back(v.to_string());
        }
    }

    fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The emulator's router.
pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/stats/reset", post(reset_stats))
        .route("/_emulator/faults", get(get_faults).put(put_faults))
        .route("/_emulator/auth/expire", post(expire_tokens))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/api/data/v9.2", get(odata).post(odata))
        .route("/api/data/v9.2/", get(odata).post(odata))
        .route(
            "/api/data/v9.2/{*rest}",
            get(odata).post(odata).patch(odata).delete(odata).put(odata),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn not_found(uri: Uri) -> Response {
    let e = ODataError::new(
        404,
        codes::QUERY,
        format!(
            "No resource at '{}'; the OData service root is {SERVICE_ROOT}.",
            uri.path()
        ),
    );
    odata_response(ODataResponse::error(&e))
}

async fn stats(State(s): State<Arc<EmulatorState>>) -> impl IntoResponse {
    let mut v = serde_json::to_value(s.faults.counts()).unwrap_or_default();
    v["writes"] = s.service.writes.load(std::sync::atomic::Ordering::Relaxed).into();
    v["auth"] = s.authority.stats();
    let paging = &s.service.paging_stats;
    v["rowsServed"] = paging.rows_served.load(std::sync::atomic::Ordering::Relaxed).into();
    v["topReads"] = paging.top_reads.load(std::sync::atomic::Ordering::Relaxed).into();
    v["traceparents"] = s.traceparents.list().into();
    Json(v)
}

async fn reset_stats(State(s): State<Arc<EmulatorState>>) -> StatusCode {
    s.faults.reset_counts();
    s.authority.reset_stats();
    s.service.writes.store(0, std::sync::atomic::Ordering::Relaxed);
    s.service.paging_stats.reset();
    s.traceparents.clear();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(s): State<Arc<EmulatorState>>) -> impl IntoResponse {
    Json(s.faults.faults())
}

async fn put_faults(State(s): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            tracing::info!(faults = ?f, "emulator faults changed");
            s.faults.set_faults(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid faults: {e}")).into_response(),
    }
}

/// `http://host:port` of a request, from its `Host` header.
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

async fn expire_tokens(State(s): State<Arc<EmulatorState>>) -> StatusCode {
    s.authority.expire_all();
    tracing::info!("emulator: every resource token issued so far is now expired");
    StatusCode::NO_CONTENT
}

/// Entra's token endpoint (see [`super::auth`]).
async fn token(
    State(s): State<Arc<EmulatorState>>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: std::collections::BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let issuer = format!("{}/{tenant}/v2.0", origin(&headers));
    let (status, body) = match s.authority.token(&form, &issuer, &tenant) {
        Ok(t) => (200, serde_json::to_value(t).unwrap_or_default()),
        Err(r) => {
            tracing::info!(error = r.error, description = %r.description, "emulator: token request refused");
            let code: u64 = r
                .description
                .strip_prefix("AADSTS")
                .and_then(|d| d.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut body = serde_json::json!({
                "error": r.error,
                "error_description": r.description,
                "error_codes": [code],
                "trace_id": uuid::Uuid::new_v4().to_string(),
                "correlation_id": uuid::Uuid::new_v4().to_string(),
            });
            if let Some(claims) = r.claims {
                body["claims"] = claims.into();
            }
            (r.status, body)
        }
    };
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Cache-Control", "no-store, no-cache")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn jwks(State(s): State<Arc<EmulatorState>>) -> impl IntoResponse {
    Json(s.authority.jwks().clone())
}

async fn openid_configuration(
    axum::extract::Path(tenant): axum::extract::Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let base = origin(&headers);
    Json(serde_json::json!({
        "issuer": format!("{base}/{tenant}/v2.0"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "grant_types_supported": ["client_credentials", "password", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

/// Dataverse's answer to a request without a valid token: 401, an empty body, and where to get one.
fn unauthorized(origin: &str, refusal: &super::auth::Refusal) -> Response {
    let challenge = format!(
        "Bearer authorization_uri=\"{origin}/common/oauth2/authorize\", resource_id=\"{origin}/\", error=\"{}\", error_description=\"{}\"",
        refusal.error,
        refusal.description.replace('"', "'")
    );
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert("WWW-Authenticate", v);
    }
    r
}

async fn odata(
    State(s): State<Arc<EmulatorState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (path, segment) = request_path(&uri);
    s.traceparents.record(&headers);
    let caller = match authorize(&s, &headers, &path) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    tracing::debug!(http.method = %method, http.path = %path, http.query = uri.query().unwrap_or(""), caller = %caller, "emulator request");
    let latency = s.faults.faults().latency_ms;
    let verdict = s.faults.admit(&segment, &caller);
    if let Some(injected) = injected_fault(&s, &verdict, latency).await {
        return injected;
    }
    if segment == "GlobalOptionSetDefinitions" && !s.option_set_definitions {
        return odata_response(ODataResponse::error(&ODataError::segment_not_found(&segment)));
    }
    let omit_entity_id = method == Method::POST && s.faults.omits_entity_id(&segment);
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let base = format!("http://{host}{SERVICE_ROOT}");
    let req = ODataRequest {
        method: method.as_str().to_string(),
        path,
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let resp = work_to_the_end(s.clone(), req, base, latency).await;
    finish(resp, verdict, omit_entity_id)
}

/// The path after the service root (percent-decoded) and its first segment (`$service` for the
/// service document), by which faults and counters go.
fn request_path(uri: &Uri) -> (String, String) {
    let raw_path = uri
        .path()
        .strip_prefix("/api/data/v9.2")
        .unwrap_or("")
        .trim_start_matches('/');
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let segment = path.split(['/', '(']).next().unwrap_or("").to_string();
    let segment = if segment.is_empty() {
        "$service".to_string()
    } else {
        segment
    };
    (path, segment)
}

/// The caller's identity, or the 401 when a bearer token is required and this one is refused.
fn authorize(s: &EmulatorState, headers: &HeaderMap, path: &str) -> Result<String, Box<Response>> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if !s.authority.required() {
        return Ok(caller_identity(authorization));
    }
    let origin = origin(headers);
    match s.authority.check_bearer(authorization, &origin) {
        Ok(claims) => Ok(claims.identity()),
        Err(refusal) => {
            tracing::info!(http.path = %path, reason = %refusal.description, "emulator: request refused (401)");
            Err(Box::new(unauthorized(&origin, &refusal)))
        }
    }
}

/// The answer of a fault injected before the request is served (throttling, an error status, a
/// dropped connection); `None` when the request is to be served.
async fn injected_fault(s: &EmulatorState, verdict: &Verdict, latency: u64) -> Option<Response> {
    match verdict {
        Verdict::Serve | Verdict::LoseResponse | Verdict::Garbage(_) => None,
        Verdict::Throttled {
            retry_after,
            limit,
            window,
        } => {
            let e = ODataError::new(
                429,
                codes::THROTTLED,
                format!("Number of requests exceeded the limit of {limit} over time window of {window} seconds."),
            );
            let mut r = odata_response(ODataResponse::error(&e));
            r.headers_mut().insert("Retry-After", HeaderValue::from(*retry_after));
            Some(r)
        }
        Verdict::ServerError => {
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            let status = s.faults.faults().error_status.unwrap_or(503);
            let e = if status < 500 {
                ODataError::new(
                    status,
                    codes::SERVER,
                    "A validation error occurred in Finance and Operations. (injected fault)",
                )
            } else {
                ODataError::new(status, codes::SERVER, "A token was obtained to call Finance and Operations, but Finance and Operations returned an error of type InternalServerError. (injected fault)")
            };
            Some(odata_response(ODataResponse::error(&e)))
        }
        Verdict::Drop => Some(dropped_connection()),
    }
}

/// Serves the request after the injected latency. A received request is worked on to the end,
/// latency included, even if the client hangs up meanwhile: a client that gave up cannot tell
/// whether its write happened, as with Dataverse.
async fn work_to_the_end(
    state: Arc<EmulatorState>,
    req: ODataRequest,
    base: String,
    latency: u64,
) -> Result<ODataResponse, tokio::task::JoinError> {
    let work = tokio::spawn(async move {
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        tokio::task::spawn_blocking(move || state.service.handle(&req, &base)).await
    });
    work.await.and_then(|r| r)
}

/// The HTTP response to a served request, with the faults that act on the answer applied (a
/// lost response, a damaged body, a create that does not say what it created).
fn finish(resp: Result<ODataResponse, tokio::task::JoinError>, verdict: Verdict, omit_entity_id: bool) -> Response {
    match resp {
        // The work is done (a write committed); the client never learns.
        Ok(_) if verdict == Verdict::LoseResponse => dropped_connection(),
        Ok(mut r) => {
            if let Verdict::Garbage(kind) = verdict {
                r.body = damage(kind, r.status, &r.headers, std::mem::take(&mut r.body));
            }
            if omit_entity_id {
                r.headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case("odata-entityid") && !k.eq_ignore_ascii_case("location"));
            }
            odata_response(r)
        }
        Err(e) => {
            tracing::error!(error = %e, "emulator handler failed");
            odata_response(ODataResponse::error(&ODataError::new(
                500,
                codes::SERVER,
                "The emulator failed to handle the request.",
            )))
        }
    }
}

/// A response whose body fails after the headers: the client sees a truncated response, the way
/// a connection reset mid-response looks.
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection drop"))
    });
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(Body::from_stream(stream))
        .expect("response builds")
}

fn odata_response(r: ODataResponse) -> Response {
    let mut builder = Response::builder().status(r.status);
    for (k, v) in &r.headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Body::from(r.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
