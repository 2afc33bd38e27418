//! Operations routes: `/readyz` (the upstream answers and the option-set labels were read from it)
//! and `/metrics` (Prometheus text format).

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::time::Duration;

/// How long `/readyz` waits for the upstream.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(app): State<AppState>) -> Response {
    let upstream = match tokio::time::timeout(READY_TIMEOUT, app.gateway.upstream.get_json("", None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.status.is_some_and(|s| s < 500 && s != 429) => Ok(()), // it answers
        Ok(Err(e)) => Err(format!("upstream failing: {}", e.message)),
        Err(_) => Err(format!("upstream did not answer within {} s", READY_TIMEOUT.as_secs())),
    };
    let fallbacks = app.gateway.labels.fallbacks();
    let labels = if fallbacks.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "option-set labels not read from the upstream for {} set(s); documented integers in use",
            fallbacks.len()
        ))
    };
    let body = serde_json::json!({
        "status": if upstream.is_ok() && labels.is_ok() { "ready" } else { "not ready" },
        "upstream": upstream.as_ref().err().cloned().unwrap_or_else(|| "ok".into()),
        "optionSetLabels": labels.as_ref().err().cloned().unwrap_or_else(|| "loaded".into()),
    });
    let status = if upstream.is_ok() && labels.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.gateway.metrics.render(),
    )
        .into_response()
}
