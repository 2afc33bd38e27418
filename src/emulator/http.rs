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
}

/// The emulator's router.
pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/stats/reset", post(reset_stats))
        .route("/_emulator/faults", get(get_faults).put(put_faults))
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
    Json(v)
}

async fn reset_stats(State(s): State<Arc<EmulatorState>>) -> StatusCode {
    s.faults.reset_counts();
    s.service.writes.store(0, std::sync::atomic::Ordering::Relaxed);
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

async fn odata(
    State(s): State<Arc<EmulatorState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    let caller = caller_identity(headers.get("authorization").and_then(|v| v.to_str().ok()));
    tracing::debug!(http.method = %method, http.path = %path, http.query = uri.query().unwrap_or(""), caller = %caller, "emulator request");
    let latency = s.faults.faults().latency_ms;
    let verdict = s.faults.admit(&segment, &caller);
    match verdict {
        Verdict::Serve | Verdict::LoseResponse | Verdict::Garbage(_) => {}
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
            r.headers_mut().insert("Retry-After", HeaderValue::from(retry_after));
            return r;
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
            return odata_response(ODataResponse::error(&e));
        }
        Verdict::Drop => return dropped_connection(),
    }
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
    let state = s.clone();
    // A received request is worked on to the end, latency included, even if the client hangs up
    // meanwhile: a client that gave up cannot tell whether its write happened, as with Dataverse.
    let work = tokio::spawn(async move {
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        tokio::task::spawn_blocking(move || state.service.handle(&req, &base)).await
    });
    let resp = work.await.and_then(|r| r);
    match resp {
        // The work is done (a write committed); the client never learns.
        Ok(_) if verdict == Verdict::LoseResponse => dropped_connection(),
        Ok(mut r) => {
            if let Verdict::Garbage(kind) = verdict {
                r.body = damage(kind, r.status, &r.headers, std::mem::take(&mut r.body));
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
