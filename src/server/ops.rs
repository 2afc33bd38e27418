//! Operations routes: `/readyz` (the circuit breaker is closed, the upstream answers and the
//! option-set labels were read from it) and `/metrics` (Prometheus text format).

use super::AppState;
use crate::odata::CircuitState;
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
    let up = &app.gateway.upstream;
    // An open breaker answers without calling: the gateway fails fast, so it is not ready. After
    // the cool-down this probe may itself be the breaker's test call, and close it.
    let upstream = match up.circuit() {
        CircuitState::Open { retry_in } => Err(format!(
            "upstream failing: circuit open, next probe in {} ms",
            retry_in.as_millis()
        )),
        _ => match tokio::time::timeout(READY_TIMEOUT, up.probe()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.status.is_some_and(|s| s < 500 && s != 429) => Ok(()), // it answers
            Ok(Err(e)) => Err(format!("upstream failing: {}", e.message)),
            Err(_) => Err(format!("upstream did not answer within {} s", READY_TIMEOUT.as_secs())),
        },
    };
    let circuit = match up.circuit() {
        CircuitState::Closed => "closed",
        CircuitState::Open { .. } => "open",
        CircuitState::HalfOpen => "half-open",
    };
    let current_labels = app.gateway.labels();
    let fallbacks = current_labels.fallbacks();
    // Acting only for callers, the gateway has no token of its own to read the labels with.
    let acts_for_callers = up.config().auth.acts_only_for_callers();
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
        "circuit": circuit,
        "optionSetLabels": match &labels {
            Err(e) => e.clone(),
            Ok(()) if acts_for_callers => "documented integers (the gateway has no token of its own to read them with)".into(),
            Ok(()) => "loaded".into(),
        },
        "upstreamAuth": up.tokens().mode(),
    });
    let status = if upstream.is_ok() && labels.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    let slots = app.gateway.upstream.slot_usage();
    app.gateway.metrics.set_slots(slots.in_use(), slots.waiting());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.gateway.metrics.render(),
    )
        .into_response()
}
