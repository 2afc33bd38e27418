//! Metrics in Prometheus text format, and the logging set-up (with OpenTelemetry export when an
//! OTLP endpoint is set: see [`otel`]).
//!
//! One [`Metrics`] per process, shared by the HTTP layer (requests, latency), the upstream client
//! (requests by entity set and status, throttling) and the read path (cache hits and misses).
//! Operation names are client-chosen, so they are bounded: a name becomes a label only if it looks
//! like an identifier and fewer than [`MAX_OPERATION_LABELS`] names were seen; the rest are `other`.

pub mod otel;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// Distinct operation names kept as labels.
pub const MAX_OPERATION_LABELS: usize = 200;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationOutcome {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetStatus {
    entity_set: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntitySet {
    entity_set: String,
}

/// An upstream identity as the budget counts it (never a token: see `odata::rate_limit`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Identity {
    identity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheResult {
    cache: String,
    result: String,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<OperationOutcome, Counter>,
    latency: Family<Operation, Histogram>,
    upstream: Family<SetStatus, Counter>,
    upstream_latency: Family<EntitySet, Histogram>,
    cache: Family<CacheResult, Counter>,
    retries: Counter,
    throttled: Counter,
    slots_in_use: Gauge,
    slots_waiting: Gauge,
    budget: BudgetMetrics,
    /// Exchanges with Redis (`--redis-url`) and those that failed; 0 without Redis.
    redis_round_trips: Counter,
    redis_errors: Counter,
    names: Mutex<HashSet<String>>,
    watch: WatchMetrics,
}

/// The change watchers (`graphql::watch`): pollers and subscribers now, reads made.
#[derive(Default)]
struct WatchMetrics {
    watchers: Gauge,
    subscribers: Gauge,
    polls: Counter,
    /// Tasks alive on the runtime, set before each rendering: a leak (of a watcher, a socket's
    /// task, a delivery) shows as a count that does not come back down.
    tasks: Gauge,
}

impl WatchMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "watchers_active",
            "Change watchers polling now (one per distinct subscribed question)",
            self.watchers.clone(),
        );
        registry.register(
            "subscribers_active",
            "Change subscriptions open now",
            self.subscribers.clone(),
        );
        registry.register("watch_polls", "Complete reads of watched sets", self.polls.clone());
        registry.register(
            "runtime_tasks_alive",
            "Tasks alive on the gateway's async runtime",
            self.tasks.clone(),
        );
    }
}

/// The upstream budget per identity (see `odata::rate_limit`), set before each rendering.
#[derive(Default)]
struct BudgetMetrics {
    requests: Family<Identity, Gauge>,
    used: Family<Identity, Gauge<f64, std::sync::atomic::AtomicU64>>,
    limit: Gauge,
    window: Gauge,
}

impl BudgetMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "upstream_budget_requests",
            "Upstream requests per upstream identity over the last 5 minutes (the busiest 50; the rest as other)",
            self.requests.clone(),
        );
        registry.register(
            "upstream_budget_used_ratio",
            "Share of --upstream-rate-limit used per upstream identity over the limit's window (1 = spent)",
            self.used.clone(),
        );
        registry.register(
            "upstream_budget_limit_requests",
            "Requests per upstream identity and window that --upstream-rate-limit allows this process (0: no limit)",
            self.limit.clone(),
        );
        registry.register(
            "upstream_budget_window_seconds",
            "The window of --upstream-rate-limit (0: no limit)",
            self.window.clone(),
        );
    }
}

/// The counters of Redis exchanges (`--redis-url`) and of failed ones, registered.
fn register_redis(registry: &mut Registry) -> (Counter, Counter) {
    let (round_trips, errors) = (Counter::default(), Counter::default());
    registry.register(
        "redis_round_trips",
        "Exchanges with Redis (--redis-url), failed ones included",
        round_trips.clone(),
    );
    registry.register(
        "redis_errors",
        "Exchanges with Redis that failed (unreachable, timed out, refused)",
        errors.clone(),
    );
    (round_trips, errors)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ats_gateway");
        let requests = Family::<OperationOutcome, Counter>::default();
        let latency = Family::<Operation, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let upstream = Family::<SetStatus, Counter>::default();
        let upstream_latency = Family::<EntitySet, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let cache = Family::<CacheResult, Counter>::default();
        let retries = Counter::default();
        let throttled = Counter::default();
        let slots_in_use = Gauge::default();
        let slots_waiting = Gauge::default();
        let budget = BudgetMetrics::default();
        budget.register(&mut registry);
        let (redis_round_trips, redis_errors) = register_redis(&mut registry);
        let watch = WatchMetrics::default();
        watch.register(&mut registry);
        registry.register(
            "graphql_requests",
            "GraphQL requests by operation name and outcome (ok, error)",
            requests.clone(),
        );
        registry.register(
            "graphql_request_duration_seconds",
            "GraphQL request latency by operation name",
            latency.clone(),
        );
        registry.register(
            "upstream_requests",
            "Upstream requests by entity set and HTTP status (none: no response)",
            upstream.clone(),
        );
        registry.register(
            "upstream_request_duration_seconds",
            "Upstream request latency by entity set",
            upstream_latency.clone(),
        );
        registry.register(
            "cache_requests",
            "Cache lookups by cache and result (hit, miss)",
            cache.clone(),
        );
        registry.register("upstream_retries", "Upstream requests retried", retries.clone());
        registry.register(
            "upstream_throttled",
            "Upstream responses that were throttled (429)",
            throttled.clone(),
        );
        registry.register(
            "upstream_slots_in_use",
            "Upstream concurrency slots held now, over all upstream identities (calls in flight)",
            slots_in_use.clone(),
        );
        registry.register(
            "upstream_slots_waiting",
            "Upstream calls waiting for a concurrency slot now, over all upstream identities",
            slots_waiting.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            upstream,
            upstream_latency,
            cache,
            retries,
            throttled,
            slots_in_use,
            slots_waiting,
            budget,
            redis_round_trips,
            redis_errors,
            names: Mutex::default(),
            watch,
        }
    }

    /// The label for a client-chosen operation name.
    fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) =
            name.filter(|n| !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        else {
            return if name.is_none() {
                "anonymous".into()
            } else {
                "other".into()
            };
        };
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.contains(name) || names.len() < MAX_OPERATION_LABELS {
            names.insert(name.to_string());
            name.to_string()
        } else {
            "other".into()
        }
    }

    /// Records one GraphQL request.
    pub fn graphql_request(&self, operation: Option<&str>, ok: bool, elapsed: Duration) {
        let operation = self.operation_label(operation);
        let outcome = if ok { "ok" } else { "error" }.to_string();
        self.requests
            .get_or_create(&OperationOutcome {
                operation: operation.clone(),
                outcome,
            })
            .inc();
        if let Some(m) = otel::metrics() {
            m.graphql_request(&operation, if ok { "ok" } else { "error" }, elapsed);
        }
        self.latency
            .get_or_create(&Operation { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one upstream exchange.
    pub fn upstream_request(&self, entity_set: &str, status: Option<u16>, elapsed: Duration) {
        let status_label = status.map(|s| s.to_string()).unwrap_or_else(|| "none".into());
        self.upstream
            .get_or_create(&SetStatus {
                entity_set: entity_set.to_string(),
                status: status_label.clone(),
            })
            .inc();
        self.upstream_latency
            .get_or_create(&EntitySet {
                entity_set: entity_set.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        if status == Some(429) {
            self.throttled.inc();
        }
        if let Some(m) = otel::metrics() {
            m.upstream_request(entity_set, &status_label, elapsed);
        }
    }

    /// Records a cache lookup.
    pub fn cache_lookup(&self, cache: &str, hit: bool) {
        let result = if hit { "hit" } else { "miss" }.to_string();
        self.cache
            .get_or_create(&CacheResult {
                cache: cache.to_string(),
                result,
            })
            .inc();
    }

    /// The counters of Redis round trips and of failed ones, for [`crate::shared_state`].
    pub fn redis_counters(&self) -> (Counter, Counter) {
        (self.redis_round_trips.clone(), self.redis_errors.clone())
    }

    /// Records a retried upstream request.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// Records the upstream slots in use and the calls waiting for one (read before rendering).
    /// Records the watchers and subscribers open (read before rendering).
    pub fn set_watchers(&self, watchers: usize, subscribers: usize) {
        self.watch.watchers.set(watchers as i64);
        self.watch.subscribers.set(subscribers as i64);
    }

    /// Counts one complete read of a watched set.
    pub fn watch_poll(&self) {
        self.watch.polls.inc();
    }

    pub fn set_slots(&self, in_use: i64, waiting: i64) {
        self.slots_in_use.set(in_use);
        self.slots_waiting.set(waiting);
    }

    /// Records the upstream budget's state (read before rendering): each identity's requests
    /// and share of the limit, replacing the identities of the last rendering.
    pub fn set_budget(&self, budget: &crate::odata::rate_limit::UpstreamBudget) {
        let b = &self.budget;
        b.requests.clear();
        b.used.clear();
        for u in budget.usage() {
            let label = Identity { identity: u.identity };
            b.requests.get_or_create(&label).set(u.requests as i64);
            if let Some(share) = u.share {
                b.used.get_or_create(&label).set(share);
            }
        }
        let limit = budget.limit();
        b.limit.set(limit.map_or(0, |l| l.requests as i64));
        b.window.set(limit.map_or(0, |l| l.window.as_secs() as i64));
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.watch.tasks.set(runtime.metrics().num_alive_tasks() as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up logging: `ATS_GATEWAY_LOG` filters (default `info`), `format` picks text or JSON lines.
pub fn init_logging(format: LogFormat) {
    let _ = init_telemetry(format, None);
}

/// Sets up logging as [`init_logging`] does and, with `otel` settings, OpenTelemetry export
/// (inside the tokio runtime). The log's filter applies to the log only, so the spans exported
/// are not logged and, without `otel`, not even created.
pub fn init_telemetry(format: LogFormat, otel: Option<&otel::OtelSettings>) -> Result<Option<otel::OtelGuard>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, Registry};
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATS_GATEWAY_LOG").unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let log: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let (guard, export) = match otel {
        Some(settings) => {
            let (guard, layer) = otel::install::<Registry>(settings)?;
            (Some(guard), Some(layer.boxed()))
        }
        None => (None, None),
    };
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = std::iter::once(log).chain(export).collect();
    let _ = Registry::default().with(layers).try_init();
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_bounded_operation_names() {
        let m = Metrics::new();
        m.graphql_request(Some("ListRequests"), true, Duration::from_millis(5));
        m.graphql_request(Some("bad name; drop table"), false, Duration::from_millis(5));
        m.upstream_request("mshr_x", Some(429), Duration::from_millis(2));
        m.cache_lookup("reference", true);
        let text = m.render();
        assert!(
            text.contains("ats_gateway_graphql_requests_total{operation=\"ListRequests\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("operation=\"other\""));
        assert!(text.contains("ats_gateway_upstream_throttled_total 1"));
        assert!(text.contains("ats_gateway_cache_requests_total{cache=\"reference\",result=\"hit\"} 1"));
        assert!(text.contains("# TYPE ats_gateway_graphql_request_duration_seconds histogram"));
    }
}
