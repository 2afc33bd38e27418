//! OpenTelemetry: traces and metrics exported over OTLP (HTTP/protobuf), off unless an endpoint
//! is configured (`--otlp-endpoint`, or the standard `OTEL_EXPORTER_OTLP_*` variables).
//!
//! The spans are `tracing` spans of the target [`TARGET`] at `DEBUG`: the log's filter
//! (`ATS_GATEWAY_LOG`, `info` by default) leaves them disabled, so without an endpoint they cost
//! what a disabled callsite costs. With one, a `tracing-opentelemetry` layer that sees only
//! that target turns them into OpenTelemetry spans:
//!
//! - `graphql.operation`: one per request to `/graphql` (name, type, caller identity hash, error
//!   codes); a client's W3C `traceparent` makes it a child of the client's span;
//! - `loader.batch`: one per loader batch (entity, relation, keys, rows), carried into the
//!   batch's task ([`carry`]);
//! - `upstream.call`: one per upstream call (method, entity set, status, attempts, retry and slot
//!   waits); the request carries its `traceparent`, sampled or not.
//!
//! Sampling is parent-based with a ratio. Spans and metrics leave in batches from the SDK's
//! background threads, over the gateway's own HTTP client ([`ExportClient`], so no second TLS
//! stack); a failed export is dropped, logged at most once a minute, and never touches a request.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Sampler;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of the spans that are exported (and of nothing else).
pub const TARGET: &str = "ats_gateway::otel";

/// Whether the OpenTelemetry layer is installed (set once, at start).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: checked before any work that only tracing needs.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The tracing flags of `serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OtelArgs {
    /// OTLP/HTTP endpoint to export traces and metrics to (its base: `/v1/traces` and
    /// `/v1/metrics` are added). Also `OTEL_EXPORTER_OTLP_ENDPOINT`; unset: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled, 0 to 1 (parent-based: a client's sampled flag wins). Also
    /// `OTEL_TRACES_SAMPLER_ARG`; default 1.
    #[arg(long)]
    pub trace_sample_ratio: Option<f64>,
}

/// Where and how to export, resolved from the flags and the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelSettings {
    pub traces_endpoint: String,
    /// `None`: only a traces endpoint was given.
    pub metrics_endpoint: Option<String>,
    pub service_name: String,
    pub sample_ratio: f64,
}

impl OtelArgs {
    /// The settings (`None`: export off), from these flags and the process's environment.
    pub fn settings(&self) -> Result<Option<OtelSettings>, String> {
        OtelSettings::resolve(self, |name| std::env::var(name).ok())
    }
}

impl OtelSettings {
    /// Resolves the settings: the flags first, then `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is),
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER_ARG`.
    /// (`OTEL_EXPORTER_OTLP_HEADERS` is read by the exporter itself.)
    pub fn resolve(args: &OtelArgs, env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let base = args.otlp_endpoint.clone().filter(|v| !v.trim().is_empty());
        let signal = |var_name: &str, path: &str| {
            var(var_name).or_else(|| base.as_ref().map(|b| format!("{}/{path}", b.trim_end_matches('/'))))
        };
        let Some(traces_endpoint) = signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "v1/traces") else {
            return Ok(None);
        };
        let sample_ratio = match (args.trace_sample_ratio, var("OTEL_TRACES_SAMPLER_ARG")) {
            (Some(r), _) => r,
            (None, Some(arg)) => arg
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("OTEL_TRACES_SAMPLER_ARG: {arg:?} is not a number between 0 and 1"))?,
            (None, None) => 1.0,
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(format!(
                "the trace sample ratio must be between 0 and 1, not {sample_ratio}"
            ));
        }
        Ok(Some(OtelSettings {
            traces_endpoint,
            metrics_endpoint: signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "v1/metrics"),
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "ats-gateway".into()),
            sample_ratio,
        }))
    }
}

/// The exporters' HTTP client: the gateway's `reqwest` (rustls), each request run on the
/// gateway's tokio runtime (the SDK exports from threads of its own). Failures are logged at
/// most once a minute.
#[derive(Debug)]
struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// When an export failure was last logged, in seconds since the Unix epoch.
static LAST_FAILURE_LOG: AtomicU64 = AtomicU64::new(0);

fn log_export_failure(what: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_FAILURE_LOG.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST_FAILURE_LOG
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %what, "OTLP export failed; telemetry is dropped until the endpoint answers (logged at most once a minute)");
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let resp = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(resp.status());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>(out.body(body))
        });
        let message = match sent.await {
            Ok(Ok(Ok(resp))) if resp.status().is_success() => return Ok(resp),
            Ok(Ok(Ok(resp))) => {
                log_export_failure(&format!("HTTP {}", resp.status()));
                return Ok(resp);
            }
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(e)) => e.without_url().to_string(),
            Err(e) => e.to_string(),
        };
        log_export_failure(&message);
        Err(message.into())
    }
}

/// The installed providers; [`OtelGuard::shutdown`] flushes what is still queued.
pub struct OtelGuard {
    traces: opentelemetry_sdk::trace::SdkTracerProvider,
    metrics: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl OtelGuard {
    /// Exports what is still queued and stops the exporters (at most a few seconds).
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || {
            let _ = self.traces.shutdown_with_timeout(Duration::from_secs(5));
            if let Some(m) = self.metrics {
                let _ = m.shutdown();
            }
        })
        .await;
    }
}

fn export_client() -> ExportClient {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    ExportClient {
        http,
        runtime: tokio::runtime::Handle::current(),
    }
}

/// Builds the exporters and providers (call inside the tokio runtime) and the `tracing` layer
/// that feeds them, filtered to [`TARGET`]; marks tracing as enabled.
pub fn install<S>(settings: &OtelSettings) -> Result<(OtelGuard, impl tracing_subscriber::Layer<S>), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(export_client())
        .with_endpoint(settings.traces_endpoint.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("OTLP traces exporter: {e}"))?;
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(spans)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_max_queue_size(8192)
                .with_max_export_batch_size(1024)
                .with_scheduled_delay(Duration::from_secs(1))
                .build(),
        )
        .build();
    let traces = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource.clone())
        .build();
    let metrics = match &settings.metrics_endpoint {
        Some(endpoint) => Some(install_metrics(endpoint, resource)?),
        None => None,
    };
    let layer = tracing_opentelemetry::layer()
        .with_tracer(traces.tracer("ats-gateway"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::DEBUG));
    ENABLED.store(true, Ordering::Relaxed);
    Ok((OtelGuard { traces, metrics }, layer))
}

/// The metric instruments exported over OTLP (beside Prometheus' `/metrics`).
pub struct OtelMetrics {
    requests: opentelemetry::metrics::Counter<u64>,
    duration: opentelemetry::metrics::Histogram<f64>,
    upstream: opentelemetry::metrics::Counter<u64>,
    upstream_duration: opentelemetry::metrics::Histogram<f64>,
}

static METRICS: OnceLock<OtelMetrics> = OnceLock::new();

/// The OTLP instruments, when metrics are exported.
#[inline]
pub fn metrics() -> Option<&'static OtelMetrics> {
    METRICS.get()
}

fn install_metrics(
    endpoint: &str,
    resource: opentelemetry_sdk::Resource,
) -> Result<opentelemetry_sdk::metrics::SdkMeterProvider, String> {
    use opentelemetry::metrics::MeterProvider as _;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(export_client())
        .with_endpoint(endpoint.to_string())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("OTLP metrics exporter: {e}"))?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(15))
        .build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    let meter = provider.meter("ats-gateway");
    let _ = METRICS.set(OtelMetrics {
        requests: meter
            .u64_counter("ats_gateway.graphql.requests")
            .with_description("GraphQL requests by operation name and outcome (ok, error)")
            .build(),
        duration: meter
            .f64_histogram("ats_gateway.graphql.request.duration")
            .with_unit("s")
            .with_description("GraphQL request latency by operation name")
            .build(),
        upstream: meter
            .u64_counter("ats_gateway.upstream.requests")
            .with_description("Upstream requests by entity set and HTTP status (none: no response)")
            .build(),
        upstream_duration: meter
            .f64_histogram("ats_gateway.upstream.request.duration")
            .with_unit("s")
            .with_description("Upstream request latency by entity set")
            .build(),
    });
    Ok(provider)
}

impl OtelMetrics {
    /// One GraphQL request (`operation` is already the bounded label).
    pub fn graphql_request(&self, operation: &str, outcome: &'static str, elapsed: Duration) {
        use opentelemetry::KeyValue;
        let op = KeyValue::new("operation", operation.to_string());
        self.requests.add(1, &[op.clone(), KeyValue::new("outcome", outcome)]);
        self.duration.record(elapsed.as_secs_f64(), &[op]);
    }

    /// One upstream exchange.
    pub fn upstream_request(&self, entity_set: &str, status: &str, elapsed: Duration) {
        use opentelemetry::KeyValue;
        let set = KeyValue::new("entity_set", entity_set.to_string());
        self.upstream
            .add(1, &[set.clone(), KeyValue::new("status", status.to_string())]);
        self.upstream_duration.record(elapsed.as_secs_f64(), &[set]);
    }
}

/// The span of one GraphQL request, a child of the client's span when the request carries a
/// W3C `traceparent` (and `tracestate`). A disabled span without an endpoint.
pub fn operation_span(headers: &http::HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::debug_span!(
        target: TARGET,
        "graphql.operation",
        otel.kind = "server",
        graphql.operation.name = Empty,
        graphql.operation.type = Empty,
        ats.caller.hash = Empty,
        ats.error_codes = Empty,
        ats.upstream_requests = Empty,
        otel.status_code = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// A short hash of a caller's identity (never the credential: the identity is already a name
/// or a fingerprint), so that one caller's operations can be grouped without naming it.
pub fn caller_hash(identity: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(identity.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// What an operation's span says once it answered (its name and type are recorded when its
/// document is parsed: [`record_operation`]).
pub struct OperationOutcome<'a> {
    pub caller: Option<&'a str>,
    pub error_codes: Vec<&'a str>,
    pub errors: usize,
    pub upstream_requests: u64,
}

/// Records an operation's outcome on its span (`span` from [`operation_span`]).
pub fn finish_operation<'a>(span: &Span, outcome: impl FnOnce() -> OperationOutcome<'a>) {
    if span.is_disabled() {
        return;
    }
    let o = outcome();
    if let Some(caller) = o.caller {
        span.record("ats.caller.hash", caller_hash(caller).as_str());
    }
    span.record("ats.upstream_requests", o.upstream_requests as i64);
    if o.errors > 0 {
        let mut codes = o.error_codes;
        codes.sort_unstable();
        codes.dedup();
        span.record("ats.error_codes", codes.join(",").as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// The operation name the request asked for, kept in the request's data for
/// [`record_operation`] (tracing on only).
struct RequestedOperation(Option<String>);

/// Notes the request's operation name (tracing on), for [`record_operation`].
pub fn note_operation_name(request: async_graphql::Request) -> async_graphql::Request {
    if !enabled() {
        return request;
    }
    let name = request.operation_name.clone();
    request.data(RequestedOperation(name))
}

/// Records the name and type (`query`, `mutation`, `subscription`) of the operation the request
/// runs on the current (operation) span: the one it named, or the document's only one.
pub fn record_operation(
    ctx: &async_graphql::extensions::ExtensionContext<'_>,
    doc: &async_graphql::parser::types::ExecutableDocument,
) {
    use async_graphql::parser::types::DocumentOperations;
    if !enabled() {
        return;
    }
    let requested = ctx.data_opt::<RequestedOperation>().and_then(|r| r.0.as_deref());
    let (name, op) = match (&doc.operations, requested) {
        (DocumentOperations::Single(op), _) => ("anonymous", op),
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => (name, op),
            None => return,
        },
        (DocumentOperations::Multiple(ops), None) => match ops.iter().next() {
            Some((name, op)) if ops.len() == 1 => (name.as_str(), op),
            _ => return,
        },
    };
    let span = Span::current();
    span.record("graphql.operation.name", name);
    span.record("graphql.operation.type", op.node.ty.to_string().as_str());
}

/// A loader batch's task, carrying the span current where it is spawned (the operation's), so
/// that its spans join the operation's trace.
pub fn carry(batch: futures::future::BoxFuture<'static, ()>) -> futures::future::BoxFuture<'static, ()> {
    if !enabled() {
        return batch;
    }
    Box::pin(tracing::Instrument::in_current_span(batch))
}

/// The span of one loader batch: `kind` (`record`: by key, `children`: by a relation's key),
/// the entity, the relation's key property, the keys asked for.
pub fn batch_span(kind: &'static str, entity: &str, relation: &str, keys: usize) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::debug_span!(
        target: TARGET,
        "loader.batch",
        ats.loader = kind,
        ats.entity = entity,
        ats.relation = relation,
        ats.keys = keys as i64,
        ats.rows = Empty,
    )
}

/// Records the rows a batch read on the current (batch) span.
pub fn record_rows(rows: usize) {
    if enabled() {
        Span::current().record("ats.rows", rows as i64);
    }
}

/// The span of one upstream call (all its attempts), `entity_set` computed only when traced.
pub fn upstream_span(method: &http::Method, entity_set: impl FnOnce() -> String) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::debug_span!(
        target: TARGET,
        "upstream.call",
        otel.kind = "client",
        http.request.method = method.as_str(),
        ats.entity_set = entity_set().as_str(),
        http.response.status_code = Empty,
        ats.attempts = Empty,
        ats.retries = Empty,
        ats.retry_wait_ms = Empty,
        ats.slot_wait_ms = Empty,
        otel.status_code = Empty,
    )
}

/// Adds the W3C `traceparent` (and `tracestate`) of `span` to an upstream request's headers;
/// sampled or not (flag `00`), so that the upstream's traces line up with the gateway's.
pub fn inject_traceparent(span: &Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
}

/// What one upstream call's attempts did, recorded on the call's span when it is dropped: at the
/// end of the call, or when the call is cancelled. Explain reads the same counts.
#[derive(Debug)]
pub struct CallTrace {
    span: Span,
    attempts: u32,
    status: Option<u16>,
    slot_wait: Duration,
    retry_wait: Duration,
}

impl Default for CallTrace {
    fn default() -> Self {
        Self::new(Span::none())
    }
}

impl CallTrace {
    /// The attempts of the call whose span (from [`upstream_span`]) is `span`.
    pub fn new(span: Span) -> Self {
        CallTrace {
            span,
            attempts: 0,
            status: None,
            slot_wait: Duration::ZERO,
            retry_wait: Duration::ZERO,
        }
    }

    /// An attempt waited `waited` for its slot (and the budget), then was sent.
    pub fn slot_waited(&mut self, waited: Duration) {
        self.slot_wait += waited;
    }

    /// An attempt was answered with `status` (`None`: no response).
    pub fn answered(&mut self, attempt: u32, status: Option<u16>) {
        self.attempts = attempt;
        self.status = status;
    }

    /// The call waits `wait` before its next attempt.
    pub fn retry_wait(&mut self, wait: Duration) {
        self.retry_wait += wait;
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time waited for slots (and the budget), over all attempts.
    pub fn slot_wait(&self) -> Duration {
        self.slot_wait
    }

    /// Time waited between attempts.
    pub fn retry_waits(&self) -> Duration {
        self.retry_wait
    }
}

impl Drop for CallTrace {
    fn drop(&mut self) {
        let span = &self.span;
        if span.is_disabled() {
            return;
        }
        if let Some(status) = self.status {
            span.record("http.response.status_code", status as i64);
        }
        if !matches!(self.status, Some(200..=399)) {
            span.record("otel.status_code", "ERROR");
        }
        span.record("ats.attempts", self.attempts as i64);
        span.record("ats.retries", self.attempts.saturating_sub(1) as i64);
        span.record("ats.retry_wait_ms", self.retry_wait.as_millis() as i64);
        span.record("ats.slot_wait_ms", self.slot_wait.as_millis() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(args: OtelArgs, env: &[(&str, &str)]) -> Result<Option<OtelSettings>, String> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtelSettings::resolve(&args, |name| env.get(name).cloned())
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert_eq!(resolve(OtelArgs::default(), &[("OTEL_SERVICE_NAME", "x")]), Ok(None));
        assert_eq!(
            resolve(OtelArgs::default(), &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", " ")]),
            Ok(None)
        );
    }

    #[test]
    fn the_flag_is_a_base_and_the_signal_variables_are_taken_as_they_are() {
        let args = OtelArgs {
            otlp_endpoint: Some("http://collector:4318/".into()),
            trace_sample_ratio: None,
        };
        let s = resolve(args.clone(), &[]).unwrap().unwrap();
        assert_eq!(s.traces_endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.metrics_endpoint.as_deref(), Some("http://collector:4318/v1/metrics"));
        assert_eq!(s.service_name, "ats-gateway");
        assert_eq!(s.sample_ratio, 1.0);
        let s = resolve(
            args,
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9/t"),
                ("OTEL_SERVICE_NAME", "hr-gateway"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.traces_endpoint, "http://traces:9/t");
        assert_eq!(s.metrics_endpoint.as_deref(), Some("http://collector:4318/v1/metrics"));
        assert_eq!(s.service_name, "hr-gateway");
        // A traces endpoint alone: traces, no metrics.
        let s = resolve(
            OtelArgs::default(),
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/v1/traces")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.traces_endpoint.as_str(), s.metrics_endpoint),
            ("http://t/v1/traces", None)
        );
    }

    #[test]
    fn the_ratio_comes_from_the_flag_then_the_sampler_arg_and_is_checked() {
        let on = |ratio: Option<f64>| OtelArgs {
            otlp_endpoint: Some("http://c:4318".into()),
            trace_sample_ratio: ratio,
        };
        let ratio = |args, env: &[(&str, &str)]| resolve(args, env).map(|s| s.unwrap().sample_ratio);
        assert_eq!(ratio(on(None), &[("OTEL_TRACES_SAMPLER_ARG", "0.25")]), Ok(0.25));
        assert_eq!(ratio(on(Some(0.5)), &[("OTEL_TRACES_SAMPLER_ARG", "0.25")]), Ok(0.5));
        assert_eq!(ratio(on(Some(0.0)), &[]), Ok(0.0));
        assert!(ratio(on(Some(1.5)), &[]).is_err());
        assert!(ratio(on(None), &[("OTEL_TRACES_SAMPLER_ARG", "-1")]).is_err());
        assert!(ratio(on(None), &[("OTEL_TRACES_SAMPLER_ARG", "half")]).is_err());
    }

    #[test]
    fn the_flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            otel: OtelArgs,
        }
        let cli =
            Cli::try_parse_from(["x", "--otlp-endpoint", "http://c:4318", "--trace-sample-ratio", "0.1"]).unwrap();
        assert_eq!(cli.otel.otlp_endpoint.as_deref(), Some("http://c:4318"));
        assert_eq!(cli.otel.trace_sample_ratio, Some(0.1));
    }

    #[test]
    fn the_caller_hash_is_short_stable_and_not_the_identity() {
        let h = caller_hash("api-key:partner-app");
        assert_eq!(h.len(), 16);
        assert_eq!(h, caller_hash("api-key:partner-app"));
        assert_ne!(h, caller_hash("api-key:other"));
        assert!(!h.contains("partner"));
    }
}
