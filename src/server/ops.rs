//! Operations routes: `/readyz` (the gateway can serve: the upstream answers, accepts the
//! gateway's credentials and the circuit breaker is closed) and `/metrics` (Prometheus text).
//!
//! Readiness never waits behind callers: its probe takes none of the per-identity slots
//! ([`crate::odata::Upstream::probe_ungated`]) and has a short timeout of its own. Option-set
//! labels the upstream could not give (no `GlobalOptionSetDefinitions`, a renamed label) are a
//! warning, not "not ready": the gateway serves with the documented integers meanwhile; so is a
//! Redis (`--redis-url`) that does not answer (`sharedState`): reads go on without it.

use super::AppState;
use crate::odata::CircuitState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::time::Duration;

/// How long `/readyz` waits for the upstream (token request included).
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Whether the upstream can serve the gateway's callers, from the probe's outcome; `Err` says why
/// not.
fn upstream_readiness(probe: Result<u16, crate::odata::UpstreamError>, acts_for_callers: bool) -> Result<(), String> {
    use crate::odata::UpstreamErrorKind;
    match probe {
        // 429: it answers; throttling is per caller, and callers' calls wait it out.
        Ok(s) if (200..400).contains(&s) || s == 429 => Ok(()),
        // Without a token of its own, the gateway's probe is refused; the callers' are not.
        Ok(401 | 403) if acts_for_callers => Ok(()),
        Ok(s @ (401 | 403)) => Err(format!(
            "upstream auth failing: the upstream refuses the gateway's credentials ({s})"
        )),
        Ok(404) => Err("upstream failing: no OData service at the configured service root (404)".into()),
        Ok(s) if s >= 500 => Err(format!("upstream failing: it answers {s}")),
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind {
            UpstreamErrorKind::CircuitOpen { .. } => format!("upstream failing: {}", e.message),
            UpstreamErrorKind::Unauthorized | UpstreamErrorKind::Forbidden => {
                format!("upstream auth failing: {}", e.message)
            }
            UpstreamErrorKind::Timeout => format!("upstream did not answer within {} s", READY_TIMEOUT.as_secs()),
            _ => format!("upstream unreachable: {}", e.message),
        }),
    }
}

async fn readyz(State(app): State<AppState>) -> Response {
    let up = &app.gateway.upstream;
    let acts_for_callers = up.config().auth.acts_only_for_callers();
    // An open breaker answers without calling: the gateway fails fast, so it is not ready. After
    // the cool-down this probe may itself be the breaker's test call, and close it.
    let upstream = match up.circuit() {
        CircuitState::Open { retry_in } => Err(format!(
            "upstream failing: circuit open, next probe in {} ms",
            retry_in.as_millis()
        )),
        _ => upstream_readiness(up.probe_ungated(READY_TIMEOUT).await, acts_for_callers),
    };
    let circuit = match up.circuit() {
        CircuitState::Closed => "closed",
        CircuitState::Open { .. } => "open",
        CircuitState::HalfOpen => "half-open",
    };
    let current_labels = app.gateway.labels();
    let fallbacks = current_labels.fallbacks();
    let labels = if !fallbacks.is_empty() {
        format!(
            "documented integers in use for {} set(s): their labels were not read or matched upstream",
            fallbacks.len()
        )
    } else if acts_for_callers {
        // Acting only for callers, the gateway has no token of its own to read the labels with.
        "documented integers (the gateway has no token of its own to read them with)".into()
    } else {
        "loaded".into()
    };
    let mut warnings: Vec<String> = fallbacks
        .iter()
        .map(|f| format!("option-set labels: documented integers in use for {f}"))
        .collect();
    let read = &app.gateway.config;
    if let crate::graphql::context::DialectSource::Assumed { why } = &read.dialect_source {
        warnings.push(format!(
            "upstream dialect: dataverse assumed, the probe at start was inconclusive: {why}"
        ));
    }
    if let crate::graphql::context::DialectSource::Assumed { why } = &read.paging_source {
        warnings.push(format!(
            "upstream paging: maxpagesize assumed, the probe at start was inconclusive: {why}"
        ));
    }
    budget_warning(up.budget(), &mut warnings);
    let shared_state = shared_state_report(app.gateway.shared.as_deref(), &mut warnings).await;
    if let crate::graphql::cursor::CursorKeySource::ProcessFallback { why } = &app.gateway.cursor_key_source {
        warnings.push(format!(
            "cursor key: Redis could not give the shared key at start ({why}): this replica signs cursors with a key of its own, so cursors work only on the replica that issued them (restart it once Redis answers, or give every replica --cursor-key-file)"
        ));
    }
    let metadata = super::startup::metadata_report(&app.gateway.metadata, &mut warnings);
    let body = serde_json::json!({
        "status": if upstream.is_ok() { "ready" } else { "not ready" },
        "upstream": upstream.as_ref().err().cloned().unwrap_or_else(|| "ok".into()),
        "circuit": circuit,
        "optionSetLabels": labels,
        "warnings": warnings,
        "upstreamAuth": up.tokens().mode(),
        "upstreamDialect": read.dialect.name(),
        "upstreamDialectDecided": read.dialect_source.name(),
        "upstreamPaging": read.paging.name(),
        "upstreamPagingDecided": read.paging_source.name(),
        "metadata": metadata,
        "expandPushdown": super::startup::pushdown_report(read),
        "sharedState": shared_state,
        "cursorKey": app.gateway.cursor_key_source.name(),
    });
    let status = if upstream.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Where the gateway's own state is, and whether Redis answers (one `PING`, at most
/// [`crate::shared_state::COMMAND_TIMEOUT`]). Redis down is a warning, not "not ready": reads
/// and submissions without a key go on; keyed submissions are refused until it is back.
async fn shared_state_report(
    shared: Option<&crate::shared_state::SharedState>,
    warnings: &mut Vec<String>,
) -> serde_json::Value {
    let Some(shared) = shared else {
        return serde_json::json!({"store": "local"});
    };
    match shared.health().await {
        Ok(()) => serde_json::json!({"store": "redis", "redis": "ok"}),
        Err(why) => {
            warnings.push(format!(
                "shared state: Redis unreachable ({why}): submissions with an idempotency key are refused (STATE_UNAVAILABLE) until it answers; reads and submissions without a key go on"
            ));
            serde_json::json!({"store": "redis", "redis": format!("unreachable: {why}")})
        }
    }
}

/// Share of `--upstream-rate-limit` above which `/readyz` warns.
pub const BUDGET_WARNING_SHARE: f64 = 0.8;

/// A warning for each upstream identity that used more than [`BUDGET_WARNING_SHARE`] of the
/// budget in its window (still ready: calls wait for the window or fail, one by one).
fn budget_warning(budget: &crate::odata::rate_limit::UpstreamBudget, warnings: &mut Vec<String>) {
    let Some(limit) = budget.limit() else { return };
    for u in budget.usage() {
        match u.share {
            Some(share) if share > BUDGET_WARNING_SHARE => warnings.push(format!(
                "upstream budget: identity {} used {:.0}% of --upstream-rate-limit {limit} (this process's count)",
                u.identity,
                share * 100.0
            )),
            _ => {}
        }
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    let slots = app.gateway.upstream.slot_usage();
    app.gateway.metrics.set_slots(slots.in_use(), slots.waiting());
    app.gateway.metrics.set_budget(app.gateway.upstream.budget());
    let watchers = &app.gateway.watchers;
    app.gateway
        .metrics
        .set_watchers(watchers.active(), watchers.subscribers());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.gateway.metrics.render(),
    )
        .into_response()
}
