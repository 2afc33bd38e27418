//! What resolvers share: the upstream client, option-set labels, the reference-data cache and the
//! read settings (schema data), and the caller of the current request (request data).

use crate::model::Entity;
use crate::odata::options::OptionSetLabels;
use crate::odata::{Page, Upstream, UpstreamError};
use futures::FutureExt;
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the read path.
#[derive(Debug, Clone)]
pub struct ReadConfig {
    /// Page size when a list field has no `first`.
    pub default_first: usize,
    /// The largest `first` a client may ask for (also the cap on unpaged to-many relations).
    pub max_first: usize,
    /// How long reference data stays in the cross-request cache.
    pub cache_ttl: Duration,
    /// How many reference-data pages the cache holds.
    pub cache_capacity: u64,
    /// How long a loader waits to batch the keys of one level, in milliseconds.
    pub batch_delay_ms: u64,
    /// How often option-set labels are read again when the read at start failed.
    pub labels_retry: Duration,
    /// Ask for a list's first-level relations with `$expand` in the same request: `On`, `Off`,
    /// or `Auto` (the command line's default; `Off` here, for embedders): decided at start for
    /// the relations whose navigation properties the upstream's `$metadata` has, to-many ones
    /// only if a probe collection `$expand` works (see [`PushdownPlan`]).
    pub expand_pushdown: ExpandPushdown,
    /// Which relations are pushed down, as decided at start from `expand_pushdown`.
    pub pushdown: PushdownPlan,
    /// The upstream's `$filter` language: joins and `in` filters use `Microsoft.Dynamics.CRM.In`
    /// (Dataverse) or `or` chains of `eq` (plain OData v4).
    pub dialect: crate::odata::Dialect,
    /// How `dialect` was (or is to be) decided; with [`DialectSource::Auto`] the gateway probes
    /// the upstream once at start and sets `dialect` before serving.
    pub dialect_source: DialectSource,
    /// The short-lived read cache per upstream identity (off by default; see `budget`).
    pub read_cache: crate::odata::read_cache::ReadCacheConfig,
    /// Whether identical reads in flight of one upstream identity share one request (on by
    /// default; `--read-coalescing false` is for measuring what it saves).
    pub coalesce_reads: bool,
    /// How upstream reads are limited: by `Prefer: odata.maxpagesize` and next links, or by
    /// `$top` and `$skip` for a service that ignores the preference (`--upstream-paging`).
    pub paging: crate::odata::calls::Paging,
    /// How `paging` was (or is to be) decided, as for the dialect: [`DialectSource::Auto`] probes
    /// the upstream once at start (an inconclusive probe assumes maxpagesize).
    pub paging_source: DialectSource,
    /// How the change watchers behind subscriptions poll (`--watch-interval`,
    /// `--watch-max-records`).
    pub watch: super::watch::WatchConfig,
}

/// Whether lists fetch their first-level relations with `$expand` (`--expand-pushdown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpandPushdown {
    /// Decided at start: the relations whose navigation properties exist in the upstream's
    /// `$metadata`; to-many ones only if one probe collection `$expand` succeeds.
    Auto,
    /// Every relation whose navigation property exists (`true` is accepted too).
    #[value(alias = "true")]
    On,
    /// None: relations load through the loaders (`false` is accepted too).
    #[default]
    #[value(alias = "false")]
    Off,
}

impl ExpandPushdown {
    pub fn name(self) -> &'static str {
        match self {
            ExpandPushdown::Auto => "auto",
            ExpandPushdown::On => "on",
            ExpandPushdown::Off => "off",
        }
    }
}

/// Which relations lists push down, decided once at start (see `server::start`). A relation
/// whose navigation property the upstream lacks is never pushed down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushdownPlan {
    /// To-one relations (`$expand` of a lookup).
    pub to_one: bool,
    /// To-many relations (a collection `$expand`).
    pub to_many: bool,
    /// Why, for the start log and `/readyz`.
    pub why: String,
}

impl PushdownPlan {
    /// The plan `mode` gives before any probe: `On` pushes everything down, `Off` and `Auto`
    /// (until decided) nothing.
    pub fn configured(mode: ExpandPushdown) -> PushdownPlan {
        let on = mode == ExpandPushdown::On;
        PushdownPlan {
            to_one: on,
            to_many: on,
            why: format!("configured {}", mode.name()),
        }
    }

    /// Whether any relation is pushed down.
    pub fn any(&self) -> bool {
        self.to_one || self.to_many
    }
}

/// How the upstream dialect (or paging) was decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DialectSource {
    /// Set by configuration.
    #[default]
    Configured,
    /// To be probed at start (`--upstream-dialect auto`); replaced by `Probed` or `Assumed`.
    Auto,
    /// Probed at start: the upstream accepted (dataverse) or refused with a 400 (odata4) a
    /// `Microsoft.Dynamics.CRM.In` filter.
    Probed,
    /// The probe at start was inconclusive (`why`); the default (dataverse, maxpagesize) assumed,
    /// not probed again.
    Assumed { why: String },
}

impl DialectSource {
    /// `configured` or `probed` (an inconclusive probe included), for `/readyz`.
    pub fn name(&self) -> &'static str {
        match self {
            DialectSource::Configured => "configured",
            _ => "probed",
        }
    }
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            default_first: 100,
            max_first: 500,
            cache_ttl: Duration::from_secs(300),
            cache_capacity: 10_000,
            batch_delay_ms: 3,
            labels_retry: Duration::from_secs(30),
            expand_pushdown: ExpandPushdown::Off,
            pushdown: PushdownPlan::default(),
            dialect: crate::odata::Dialect::Dataverse,
            dialect_source: DialectSource::Configured,
            read_cache: Default::default(),
            coalesce_reads: true,
            paging: crate::odata::calls::Paging::Maxpagesize,
            paging_source: DialectSource::Configured,
            watch: Default::default(),
        }
    }
}

/// Who is calling: the credentials forwarded upstream and a stable identity derived from them.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The caller's `Authorization` value (the upstream auth mode decides what goes upstream).
    /// Never logged.
    pub authorization: Option<String>,
    /// The authenticated caller (or a fingerprint of its credentials), partitioning caches and
    /// idempotency keys. Holds no credential.
    pub identity: String,
    /// Upstream requests this request caused (cache hits included), for its log line.
    pub upstream_requests: Arc<std::sync::atomic::AtomicU64>,
    /// Upstream pages fetched (or being fetched) for this request, by URL and page size.
    pub memo: Arc<std::sync::Mutex<PageMemo>>,
    /// Cache hits and coalesced reads of this request, and whether it bypasses the read cache.
    pub reuse: Arc<super::budget::ReadReuse>,
    /// The records this request has read, which to-one relations are served from.
    pub records: Arc<super::budget::RecordMemo>,
}

impl RequestCtx {
    /// Counts one upstream request made for this request (for its log line).
    pub fn count_upstream(&self) {
        self.upstream_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The same caller with an empty memo of its own: what a memoised load may hold, since the
    /// memo holds the load.
    fn without_memo(&self) -> RequestCtx {
        RequestCtx {
            memo: Arc::default(),
            ..self.clone()
        }
    }

    /// A request from the caller `identity` (see [`crate::server::auth`]), whose `Authorization`
    /// value goes upstream in the pass-through and on-behalf-of modes.
    pub fn new(authorization: Option<String>, identity: String) -> Self {
        RequestCtx {
            authorization,
            identity,
            upstream_requests: Arc::default(),
            memo: Arc::default(),
            reuse: Arc::default(),
            records: Arc::default(),
        }
    }
}

/// An upstream page load shared by every identical load of one request.
pub type PageFuture = futures::future::Shared<futures::future::BoxFuture<'static, Result<Arc<Page>, UpstreamError>>>;

/// The pages of one request, by URL and page size.
pub type PageMemo = std::collections::HashMap<(String, Option<usize>), PageFuture>;

/// Key of a cached reference-data page: who asked, and what.
type CacheKey = (String, String, Option<usize>);

/// Settings of the write path.
#[derive(Debug, Clone)]
pub struct WriteConfig {
    /// How `submitCandidateToHire` writes upstream.
    pub strategy: super::mutations::write::Strategy,
    /// Where idempotency keys are kept (`None`: in memory).
    pub state_db: Option<std::path::PathBuf>,
    /// How long idempotency keys are kept after their first use.
    pub idempotency_ttl: Duration,
}

impl Default for WriteConfig {
    fn default() -> Self {
        WriteConfig {
            strategy: super::mutations::write::Strategy::Batch,
            state_db: None,
            idempotency_ttl: super::idempotency::DEFAULT_TTL,
        }
    }
}

/// State shared by all requests.
pub struct GatewayState {
    pub metrics: Arc<crate::telemetry::Metrics>,
    pub write: WriteConfig,
    pub idempotency: super::idempotency::IdempotencyStore,
    pub upstream: Upstream,
    /// Option-set labels; replaced when a later read succeeds (see [`GatewayState::set_labels`]).
    labels: std::sync::RwLock<Arc<OptionSetLabels>>,
    pub config: ReadConfig,
    /// Reference data (entities nothing else hangs off), per caller identity and URL, so that no
    /// caller is served data fetched with another caller's credentials.
    pub reference_cache: Cache<CacheKey, Arc<Page>>,
    /// Reads in flight and the read cache, per upstream identity (see `budget`).
    pub reads: super::budget::Reads,
    /// The upstream's `$metadata` held against the model at start (for `/readyz`).
    pub metadata: MetadataStatus,
    /// Whether a deep insert written as a `$batch` for want of a navigation property upstream
    /// was logged (once per gateway).
    pub deep_insert_fallback_logged: std::sync::atomic::AtomicBool,
    /// The Redis connection replicas share state through (`--redis-url`), for `/readyz`; the
    /// stores that use it hold it too.
    pub shared: Option<Arc<crate::shared_state::SharedState>>,
    /// Where the cursor key came from (for `/readyz`).
    pub cursor_key_source: super::cursor::CursorKeySource,
    /// The change watchers subscriptions share (see `watch`).
    pub watchers: super::watch::Watchers,
    /// Webhook registrations and deliveries (`None`: not started, as in schema-only uses).
    pub webhooks: Option<Arc<super::webhooks::Webhooks>>,
    /// Who may ask for explain (off until set; see `explain`).
    pub explain: super::explain::ExplainPolicy,
}

/// What the `$metadata` read at start gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataStatus {
    /// Not read (yet, or the gateway has no token of its own to read it with): `why`.
    NotRead { why: String },
    /// Read and held against the model; the upstream client translates by its naming.
    Reconciled(crate::odata::metadata::Reconciliation),
    /// The read failed (`why`): the model is used as it is.
    Failed { why: String },
}

impl Default for MetadataStatus {
    fn default() -> Self {
        MetadataStatus::NotRead {
            why: "not read at start".into(),
        }
    }
}

impl GatewayState {
    pub fn new(
        upstream: Upstream,
        labels: OptionSetLabels,
        config: ReadConfig,
        write: WriteConfig,
        idempotency: super::idempotency::IdempotencyStore,
    ) -> Self {
        let reads = super::budget::Reads::new(config.read_cache.clone());
        let watchers = super::watch::Watchers::new(config.watch.clone());
        let reference_cache = Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_live(config.cache_ttl)
            .build();
        GatewayState {
            metrics: Arc::default(),
            write,
            idempotency,
            upstream,
            labels: std::sync::RwLock::new(Arc::new(labels)),
            config,
            reference_cache,
            reads,
            metadata: MetadataStatus::default(),
            deep_insert_fallback_logged: Default::default(),
            shared: None,
            cursor_key_source: Default::default(),
            watchers,
            webhooks: None,
            explain: Default::default(),
        }
    }

    /// The option-set labels in use.
    pub fn labels(&self) -> Arc<OptionSetLabels> {
        self.labels.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the labels (after a start whose read of them failed).
    pub fn set_labels(&self, labels: OptionSetLabels) {
        *self.labels.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(labels);
    }

    /// Sends one write upstream for the caller, counting it for the request. Never retried.
    pub async fn send_write(
        &self,
        rq: &RequestCtx,
        method: crate::odata::Method,
        url: &str,
        body: &serde_json::Value,
        representation: bool,
    ) -> Result<crate::odata::WriteResult, UpstreamError> {
        self.send_write_with(rq, method, url, body, representation, crate::odata::RetryPolicy::Never)
            .await
    }

    /// [`GatewayState::send_write`] with a retry policy (for writes an idempotency key protects).
    pub async fn send_write_with(
        &self,
        rq: &RequestCtx,
        method: crate::odata::Method,
        url: &str,
        body: &serde_json::Value,
        representation: bool,
        policy: crate::odata::RetryPolicy,
    ) -> Result<crate::odata::WriteResult, UpstreamError> {
        let _clears = self
            .reads
            .write_started(url, &self.upstream.config().service_root, body);
        rq.records.clear();
        rq.count_upstream();
        self.upstream
            .send_write_with(method, url, body, rq.authorization.as_deref(), representation, policy)
            .await
    }

    /// Sends a `$batch` for the caller, counting it for the request; `policy` `None` lets the
    /// client choose (reads retried, writes not).
    pub async fn batch(
        &self,
        rq: &RequestCtx,
        items: Vec<crate::batch::BatchRequestItem>,
        continue_on_error: bool,
        policy: Option<crate::odata::RetryPolicy>,
    ) -> Result<Vec<crate::batch::BatchResponseItem>, UpstreamError> {
        let _clears = self.reads.batch_started(&items, &self.upstream.config().service_root);
        rq.records.clear();
        rq.count_upstream();
        let auth = rq.authorization.as_deref();
        match policy {
            Some(p) => self.upstream.batch_with(items, auth, continue_on_error, p).await,
            None => self.upstream.batch(items, auth, continue_on_error).await,
        }
    }

    /// One page for the caller straight from the upstream, bypassing the caches and the request
    /// memo (for a fresh look, and under them), counted for the request.
    pub async fn get_page_fresh(
        &self,
        rq: &RequestCtx,
        url: &str,
        page_size: Option<usize>,
    ) -> Result<Page, UpstreamError> {
        rq.count_upstream();
        self.upstream
            .get_page(url, rq.authorization.as_deref(), page_size)
            .await
    }

    /// Every row of the query `url` (built by the gateway), page by page through the request
    /// memo and the reference cache, paged as [`ReadConfig::paging`] says; more than `limit`
    /// rows is a `TooManyRows` error, never a silent truncation (see
    /// [`crate::odata::calls::collect_all`], which also guards against paging that never ends).
    pub async fn get_all(
        self: &Arc<Self>,
        entity: &'static Entity,
        url: &str,
        rq: &RequestCtx,
        limit: usize,
    ) -> Result<Vec<crate::odata::Record>, UpstreamError> {
        let fetch = |link: String, size: Option<usize>| async move { self.fetch_page(entity, &link, rq, size).await };
        crate::odata::calls::collect_all(url, self.config.paging, limit, &entity.entity_set, fetch).await
    }

    /// Fetches one page, through the cache for reference data.
    pub async fn fetch_page(
        self: &Arc<Self>,
        entity: &'static Entity,
        url: &str,
        rq: &RequestCtx,
        page_size: Option<usize>,
    ) -> Result<Page, UpstreamError> {
        // Identical loads within one request share one upstream call, even while it is in flight.
        let key = (url.to_string(), page_size);
        let shared = {
            let mut memo = rq.memo.lock().unwrap_or_else(|p| p.into_inner());
            match memo.entry(key) {
                std::collections::hash_map::Entry::Occupied(load) => {
                    super::explain::reused(super::explain::Source::Memo, url, page_size, None);
                    load.get().clone()
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    // The shared load must not hold the memo it is kept in: a cycle would keep a
                    // load the operation abandoned (and its upstream slot) alive for ever.
                    let (state, url, rq) = (self.clone(), url.to_string(), rq.without_memo());
                    let load = async move { state.fetch_page_uncached(entity, &url, &rq, page_size).await }
                        .boxed()
                        .shared();
                    slot.insert(load).clone()
                }
            }
        };
        // The memo, the caches and coalescing share one `Arc<Page>`; the caller's copy shares
        // its rows.
        shared.await.map(|page| (*page).clone())
    }

    async fn fetch_page_uncached(
        self: &Arc<Self>,
        entity: &Entity,
        url: &str,
        rq: &RequestCtx,
        page_size: Option<usize>,
    ) -> Result<Arc<Page>, UpstreamError> {
        if !entity.reference_data {
            return self.read_shared(entity, url, rq, page_size).await;
        }
        let key = (rq.identity.clone(), url.to_string(), page_size);
        let missed = std::sync::atomic::AtomicBool::new(false);
        let page = self
            .reference_cache
            .try_get_with(key, async {
                missed.store(true, std::sync::atomic::Ordering::Relaxed);
                self.reference_page(entity, url, rq, page_size).await
            })
            .await
            .map_err(|e: Arc<UpstreamError>| (*e).clone())?;
        let hit = !missed.load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.cache_lookup("reference", hit);
        if hit {
            super::explain::reused(
                super::explain::Source::ReferenceCache,
                url,
                page_size,
                Some(page.value.len()),
            );
        }
        Ok(page)
    }

    /// A reference-data page the local cache missed: from Redis' second level under
    /// `--redis-url` (see [`super::shared_reference`]), else upstream (and then stored there).
    async fn reference_page(
        self: &Arc<Self>,
        entity: &Entity,
        url: &str,
        rq: &RequestCtx,
        page_size: Option<usize>,
    ) -> Result<Arc<Page>, UpstreamError> {
        use super::shared_reference as level2;
        let Some(shared) = &self.shared else {
            return self.read_shared(entity, url, rq, page_size).await;
        };
        let key = level2::key(shared, &rq.identity, url, page_size);
        let stored = level2::get(shared, &key).await;
        self.metrics.cache_lookup("reference-redis", stored.is_some());
        if let Some(page) = stored {
            super::explain::reused(
                super::explain::Source::SharedCache,
                url,
                page_size,
                Some(page.value.len()),
            );
            return Ok(Arc::new(page));
        }
        let page = self.read_shared(entity, url, rq, page_size).await?;
        level2::put(shared, key, &page, self.config.cache_ttl);
        Ok(page)
    }
}
