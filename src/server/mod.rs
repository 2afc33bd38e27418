//! HTTP: the gateway's routes and the wiring of a running process.
//!
//! - `POST /graphql` (and `GET /graphql?query=…` for queries): the GraphQL endpoint, per the
//!   GraphQL over HTTP specification, with automatic persisted queries (`graphql_http`).
//! - `GET /` (and a browser's `GET /graphql`): the GraphiQL playground (`playground`).
//! - `GET /healthz`: the process is up; `GET /readyz`: the gateway can serve (the upstream
//!   answers and accepts its credentials, the breaker is closed; option-set labels or
//!   `$metadata` not read are a warning; the `$metadata` differences and the `$expand` pushdown
//!   decided at start are listed); `GET /metrics`: Prometheus text (`ops`).
//! - `GET /graphql/ws`: subscriptions over WebSocket (`graphql-transport-ws`, `graphql-ws`);
//!   `Accept: text/event-stream` on `/graphql`: GraphQL over SSE (`subscriptions`).
//! - `startup`: what is decided once at start (dialect, paging, `$metadata` reconciliation, pushdown).
//! - Layers: CORS (a setting; same origin only by default), a request body limit.
//!
//! Each GraphQL request gets its caller (authenticated by `auth`) and fresh request-scoped loaders;
//! one log line per request says what ran, how long it took and how many upstream requests it made.

use crate::graphql::context::GatewayState;
use crate::graphql::{self, SchemaLimits};
use async_graphql::dynamic::Schema;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub mod auth;
pub mod graphql_http;
pub mod ops;
pub mod playground;
pub mod startup;
pub mod subscriptions;

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pub schema: Schema,
    pub gateway: Arc<GatewayState>,
    pub persisted_queries: graphql_http::apq::PersistedQueries,
    pub callers: Arc<auth::CallerAuth>,
    /// Signs and checks the cursors of list fields (request data of every operation).
    pub cursor_key: Arc<crate::graphql::cursor::CursorKey>,
    /// The longest document the limits accept (`--max-query-chars`): a subscription over it is
    /// not parsed ahead of its run (see `subscriptions`).
    pub max_document_chars: usize,
    /// Parsed documents, by query text (see `graphql_http::documents`).
    pub documents: graphql_http::documents::Documents,
}

/// Builds the gateway's router over `gateway`, with a persisted-query cache of `apq_cache_bytes`
/// and cursors signed with `cursor_key`.
pub fn app(
    gateway: Arc<GatewayState>,
    limits: &SchemaLimits,
    apq_cache_bytes: u64,
    callers: Arc<auth::CallerAuth>,
    cursor_key: crate::graphql::cursor::CursorKey,
) -> Result<Router, async_graphql::dynamic::SchemaError> {
    let schema = graphql::build_schema(Some(gateway.clone()), limits)?;
    let persisted_queries =
        graphql_http::apq::PersistedQueries::new(apq_cache_bytes).with_shared(gateway.shared.clone());
    let app = AppState {
        schema,
        gateway,
        persisted_queries,
        callers,
        cursor_key: Arc::new(cursor_key),
        max_document_chars: limits.operation.max_document_chars,
        documents: graphql_http::documents::Documents::new(limits.operation.max_document_chars),
    };
    Ok(Router::new()
        .route(
            "/graphql",
            get(graphql_http::graphql_get)
                .post(graphql_http::graphql_post)
                .layer(axum::middleware::from_fn(playground::page_for_browsers))
                .layer(axum::middleware::from_fn_with_state(
                    app.clone(),
                    subscriptions::sse_or_next,
                )),
        )
        .route("/graphql/ws", get(subscriptions::websocket))
        .route("/healthz", get(|| async { "ok" }))
        .merge(ops::routes())
        .merge(playground::routes())
        .with_state(app))
}

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The upstream OData service root, such as `https://org.crm.dynamics.com/api/data/v9.2/`.
    pub upstream: String,
    pub read: crate::graphql::context::ReadConfig,
    pub limits: SchemaLimits,
    /// Timeout of one upstream attempt.
    pub upstream_timeout: std::time::Duration,
    /// Timeout of opening a connection to the upstream.
    pub upstream_connect_timeout: std::time::Duration,
    /// Retries, concurrency per caller, circuit breaker.
    pub resilience: crate::odata::ResilienceConfig,
    pub write: crate::graphql::context::WriteConfig,
    pub http: HttpConfig,
    /// How the gateway authenticates toward the upstream.
    pub upstream_auth: crate::odata::UpstreamAuth,
    /// Who may call the gateway.
    pub caller_auth: auth::CallerAuthConfig,
    /// The key cursors are signed with (`--cursor-key-file`); `None`: the key kept in Redis under
    /// `--redis-url`, else a random key of this process (cursors do not outlive it or work on
    /// another replica).
    pub cursor_key: Option<crate::graphql::cursor::CursorKey>,
    /// Redis, where replicas share their state (`--redis-url`); `None`: local state only (the
    /// SQLite file and memory).
    pub redis_url: Option<crate::secret::Secret>,
    /// Webhook delivery settings (`--webhook-*`).
    pub webhooks: crate::graphql::webhooks::WebhookConfig,
}

/// HTTP settings of the gateway.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Origins allowed by CORS; empty means same origin only (no CORS headers), `*` any origin.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Bytes of query text the automatic-persisted-query cache holds; 0 switches APQ off.
    pub apq_cache_bytes: u64,
    /// Who may ask for explain (off by default; the command line turns it on with the emulator).
    pub explain: crate::graphql::explain::ExplainPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            apq_cache_bytes: graphql_http::apq::DEFAULT_CACHE_BYTES,
            explain: Default::default(),
        }
    }
}

fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::OPTIONS,
        ])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            axum::http::header::ACCEPT,
            axum::http::HeaderName::from_static("x-api-key"),
            axum::http::HeaderName::from_static("x-ats-explain"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    Some(if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<axum::http::HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    })
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid upstream: {0}")]
    Upstream(String),
    #[error("the schema does not build: {0}")]
    Schema(String),
    #[error("auth settings: {0}")]
    Auth(String),
    #[error("shared state: {0}")]
    State(String),
}

/// Reads the option-set labels again every `every` until the upstream gives them all (a start
/// while the upstream was down or refusing), so that readiness comes back without a restart.
fn reread_labels(state: std::sync::Weak<GatewayState>, every: std::time::Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(state) = state.upgrade() else { return };
            let labels = crate::odata::OptionSetLabels::load(&state.upstream, None).await;
            let (now, before) = (labels.fallbacks().len(), state.labels().fallbacks().len());
            if now < before {
                state.set_labels(labels);
            }
            if now == 0 {
                tracing::info!("option-set labels read from the upstream");
                return;
            }
        }
    });
}

/// Which dialect the upstream speaks, from one request (no retry) with a
/// `Microsoft.Dynamics.CRM.In` filter on a small entity set: accepted → dataverse, refused with a
/// 400 → odata4. `Err` says why the answer was inconclusive (unreachable, 401, 5xx, ...).
pub async fn probe_dialect(upstream: &crate::odata::Upstream) -> Result<crate::odata::Dialect, String> {
    probe_dialect_as(upstream, None).await
}

/// The start of a probe's query: the ids of a small entity set (reference data).
fn probe_query() -> Result<crate::odata::ODataQuery, String> {
    let entities = &crate::model::model().entities;
    let entity = entities
        .iter()
        .find(|e| e.reference_data)
        .or(entities.first())
        .ok_or("no entity to probe")?;
    let mut q = crate::odata::ODataQuery::new(entity);
    q.select = vec![entity.primary_key.clone()];
    Ok(q)
}

/// [`probe_dialect`] sent with a caller's `Authorization` value (`ats-gateway doctor` with a
/// caller token, for the pass-through and on-behalf-of modes).
pub async fn probe_dialect_as(
    upstream: &crate::odata::Upstream,
    auth: Option<&str>,
) -> Result<crate::odata::Dialect, String> {
    use crate::odata::{Dialect, UpstreamErrorKind};
    let mut q = probe_query()?;
    q.top = Some(1);
    q.filter = Some(format!(
        "Microsoft.Dynamics.CRM.In(PropertyName={},PropertyValues={})",
        crate::odata::escape::string_literal(&q.entity.primary_key),
        crate::odata::escape::in_values(&["00000000-0000-0000-0000-000000000000"])
    ));
    match upstream.get_json_once(&q.to_relative_url(), auth).await {
        Ok(_) => Ok(Dialect::Dataverse),
        Err(e) if e.kind == UpstreamErrorKind::BadRequest => Ok(Dialect::Odata4),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the upstream honours `Prefer: odata.maxpagesize`, from one request (no retry) for the
/// ids of a small entity set with `$top=2` and a page size of 1: honoured when
/// `Preference-Applied` says so or no more than one row comes back (Dataverse ignores `$top`
/// when a page size is sent), else paged with `$top`. `Err` says why the answer was inconclusive.
pub async fn probe_paging(upstream: &crate::odata::Upstream) -> Result<crate::odata::calls::Paging, String> {
    let mut q = probe_query()?;
    q.top = Some(2);
    match upstream.probe_paging(&q.to_relative_url()).await {
        Ok(seen) => Ok(seen.paging()),
        Err(e) => Err(e.to_string()),
    }
}

/// A running gateway.
pub struct RunningGateway {
    pub addr: std::net::SocketAddr,
    pub state: Arc<GatewayState>,
    serving: crate::serving::Serving,
}

impl RunningGateway {
    /// The GraphQL endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn stop(self) {
        self.serving.stop().await;
        if let Some(webhooks) = &self.state.webhooks {
            webhooks.shutdown();
        }
    }
}

/// Connects to the upstream (reading its option-set labels and its `$metadata`, deciding the
/// dialect and the `$expand` pushdown), binds `listen` and serves.
pub async fn start(listen: std::net::SocketAddr, config: &GatewayConfig) -> Result<RunningGateway, StartError> {
    let (upstream, callers, metrics) = connect(config)?;
    let acts_only_for_callers = config.upstream_auth.acts_only_for_callers();
    let labels = read_labels(&upstream, acts_only_for_callers).await;
    let (shared, idempotency) = open_state(config, &metrics)?;
    let mut read = config.read.clone();
    startup::decide_dialect(&upstream, acts_only_for_callers, &mut read).await;
    startup::decide_paging(&upstream, acts_only_for_callers, &mut read).await;
    let metadata = startup::reconcile_metadata(&upstream, acts_only_for_callers).await;
    read.pushdown = startup::decide_pushdown(&upstream, read.expand_pushdown, &metadata).await;
    let mut state = GatewayState::new(upstream, labels, read, config.write.clone(), idempotency);
    state.metrics = metrics;
    state.metadata = metadata;
    let (cursor_key, source) = cursor_key(config, shared.as_deref()).await;
    state.webhooks = Some(start_webhooks(config, shared.as_ref())?);
    state.shared = shared;
    state.cursor_key_source = source;
    state.explain = config.http.explain.clone();
    let state = Arc::new(state);
    if let Some(shared) = &state.shared {
        share_pauses(shared, &state);
        if state.upstream.budget().limit().is_some() {
            let window = crate::shared_state::rate_window::RedisWindow::new(shared.clone());
            state.upstream.budget().share(Arc::new(window));
        }
        if config.resilience.shared_concurrency.is_some() {
            let slots = crate::shared_state::slots::RedisSlots::new(shared.clone());
            state.upstream.set_shared_slots(Arc::new(slots));
        }
    } else if config.resilience.shared_concurrency.is_some() {
        tracing::warn!(
            "--upstream-concurrency-total needs --redis-url: each replica holds only its own --upstream-concurrency"
        );
    }
    if !state.labels().fallbacks().is_empty() {
        reread_labels(Arc::downgrade(&state), config.read.labels_retry);
    }
    if let Some(webhooks) = &state.webhooks {
        let watcher = crate::graphql::webhooks::watching::watcher(Arc::downgrade(&state));
        match webhooks.watch_all(watcher).await {
            Ok(n) => tracing::info!(webhooks = n, "webhooks watched"),
            Err(e) => tracing::error!(error = %e, "webhooks: registrations not read at start"),
        }
    }
    serve(listen, config, state, callers, cursor_key).await
}

/// The webhooks, in Redis under `--redis-url` (shared by the replicas), else in the SQLite state
/// file. Registration is refused when the gateway
/// calls upstream only with its callers' tokens: a background watcher has none to poll with.
fn start_webhooks(
    config: &GatewayConfig,
    shared: Option<&Arc<crate::shared_state::SharedState>>,
) -> Result<Arc<crate::graphql::webhooks::Webhooks>, StartError> {
    use crate::graphql::webhooks::{store::WebhookStore, Webhooks};
    let store = match shared {
        Some(shared) => WebhookStore::shared(shared.clone()),
        None => WebhookStore::open(config.write.state_db.as_deref())
            .map_err(|e| StartError::State(format!("cannot open the state database for webhooks: {e}")))?,
    };
    let refused = config.upstream_auth.acts_only_for_callers().then(|| {
        format!(
            "webhooks need an upstream identity of the gateway's own to watch with; --upstream-auth {} calls upstream only with callers' tokens, which a background watcher does not have",
            config.upstream_auth.mode()
        )
    });
    let webhooks = Webhooks::start(store, config.webhooks.clone(), refused).map_err(StartError::State)?;
    Ok(Arc::new(webhooks))
}

/// A 429's pause seen here is announced to the other replicas, and theirs are held here.
fn share_pauses(shared: &Arc<crate::shared_state::SharedState>, state: &Arc<GatewayState>) {
    let announce = shared.clone();
    state.upstream.set_pause_hook(Arc::new(move |identity: &str, pause| {
        announce.share_pause(identity, pause)
    }));
    let gateway = Arc::downgrade(state);
    shared.follow_pauses(Arc::new(move |identity: &str, pause| {
        if let Some(gateway) = gateway.upgrade() {
            gateway.upstream.pause_identity(identity, pause);
        }
    }));
}

/// The key cursors are signed with: `--cursor-key-file`'s, else the one kept in Redis (created
/// by the first replica to start), else a random key of this process; with where it came from.
/// Redis down at start is a warning: this process's cursors then work on this process only.
async fn cursor_key(
    config: &GatewayConfig,
    shared: Option<&crate::shared_state::SharedState>,
) -> (
    crate::graphql::cursor::CursorKey,
    crate::graphql::cursor::CursorKeySource,
) {
    use crate::graphql::cursor::{CursorKey, CursorKeySource};
    if let Some(key) = &config.cursor_key {
        return (key.clone(), CursorKeySource::File);
    }
    let own = CursorKey::random();
    let Some(shared) = shared else {
        return (own, CursorKeySource::Process);
    };
    let kept = shared.shared_secret("cursor-key", own.as_bytes()).await;
    match kept.map_err(|e| e.0).and_then(CursorKey::new) {
        Ok(key) => (key, CursorKeySource::Shared),
        Err(why) => {
            tracing::warn!(error = %why, "cursor key: not read from Redis at start; a key of this process signs cursors, which other replicas refuse");
            (own, CursorKeySource::ProcessFallback { why })
        }
    }
}

/// Where the gateway's own state lives: Redis with `--redis-url` (connected lazily: Redis may be
/// down at start), else the SQLite state database.
fn open_state(
    config: &GatewayConfig,
    metrics: &crate::telemetry::Metrics,
) -> Result<
    (
        Option<Arc<crate::shared_state::SharedState>>,
        crate::graphql::idempotency::IdempotencyStore,
    ),
    StartError,
> {
    use crate::graphql::idempotency::IdempotencyStore;
    let ttl = config.write.idempotency_ttl;
    let Some(url) = &config.redis_url else {
        let store = IdempotencyStore::open(config.write.state_db.as_deref(), ttl)
            .map_err(|e| StartError::Upstream(format!("cannot open the state database: {e}")))?;
        return Ok((None, store));
    };
    let (round_trips, errors) = metrics.redis_counters();
    let shared = crate::shared_state::SharedState::connect(url, round_trips, errors).map_err(StartError::State)?;
    tracing::info!(
        redis = shared.url(),
        "shared state in Redis: idempotency keys, persisted queries, the cursor key, 429 pauses, reference data, --upstream-rate-limit"
    );
    let shared = Arc::new(shared);
    Ok((Some(shared.clone()), IdempotencyStore::shared(shared, ttl)))
}

/// The upstream client (observed by the metrics from its first call on: the labels' reads and
/// their token request count too) and the callers' authentication.
fn connect(
    config: &GatewayConfig,
) -> Result<
    (
        crate::odata::Upstream,
        Arc<auth::CallerAuth>,
        Arc<crate::telemetry::Metrics>,
    ),
    StartError,
> {
    let mut upstream_config = crate::odata::UpstreamConfig::new(config.upstream.clone());
    upstream_config.timeout = config.upstream_timeout;
    upstream_config.connect_timeout = config.upstream_connect_timeout;
    upstream_config.resilience = config.resilience.clone();
    upstream_config.auth = config.upstream_auth.clone();
    let app_identity = matches!(config.upstream_auth, crate::odata::UpstreamAuth::ClientCredentials(_));
    let callers = Arc::new(auth::CallerAuth::new(config.caller_auth.clone(), app_identity).map_err(StartError::Auth)?);
    tracing::info!(
        upstream_auth = config.upstream_auth.mode(),
        caller_auth = callers.mode(),
        "authentication"
    );
    let upstream = crate::odata::Upstream::new(upstream_config).map_err(|e| StartError::Upstream(e.message))?;
    let metrics = Arc::new(crate::telemetry::Metrics::default());
    let observed = metrics.clone();
    upstream.set_observer(Arc::new(move |e: &crate::odata::client::UpstreamEvent<'_>| {
        observed.upstream_request(e.entity_set, e.status, e.elapsed);
        if e.attempt > 1 {
            observed.retry();
        }
    }));
    Ok((upstream, callers, metrics))
}

/// The option-set labels, read from the upstream (documented integers where it cannot give them).
async fn read_labels(upstream: &crate::odata::Upstream, acts_only_for_callers: bool) -> crate::odata::OptionSetLabels {
    // Acting only for callers, the gateway has no token of its own to read the labels with.
    if acts_only_for_callers {
        tracing::info!("option sets: documented integers (no token of the gateway's own to read the labels with)");
        crate::odata::OptionSetLabels::documented()
    } else {
        crate::odata::OptionSetLabels::load(upstream, None).await
    }
}

/// Builds the router over `state` with the HTTP layers, binds `listen` and serves.
async fn serve(
    listen: std::net::SocketAddr,
    config: &GatewayConfig,
    state: Arc<GatewayState>,
    callers: Arc<auth::CallerAuth>,
    cursor_key: crate::graphql::cursor::CursorKey,
) -> Result<RunningGateway, StartError> {
    let router = app(
        state.clone(),
        &config.limits,
        config.http.apq_cache_bytes,
        callers,
        cursor_key,
    )
    .map_err(|e| StartError::Schema(e.to_string()))?;
    // Both: the extractor limit answers 413 for buffered bodies, the layer bounds streaming ones.
    let router = router
        .layer(axum::extract::DefaultBodyLimit::max(config.http.max_body_bytes))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            config.http.max_body_bytes,
        ));
    let router = match cors(&config.http.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    let (addr, serving) = crate::serving::Serving::bind(listen, router, "gateway")
        .await
        .map_err(|source| StartError::Bind { addr: listen, source })?;
    Ok(RunningGateway { addr, state, serving })
}
