//! The `tracing` part (issue #15): what OpenTelemetry export costs. The flat query and the
//! canonical nested query, each from `BENCH_CONCURRENCY` clients (8), through two gateways over one
//! emulator, both with `--expand-pushdown off` (so the nested query has loader batches, the most
//! spans per operation):
//!
//! - tracing off (no endpoint: today's gateway);
//! - tracing on: `--otlp-endpoint` to a receiver inside the benchmark that decodes each export
//!   (to count the spans) and discards it, `--trace-sample-ratio 1` (every operation exported).
//!
//! The two take turns in rounds of one second, `BENCH_SECONDS` rounds each per query, so that
//! other load on the machine falls on each alike. Requests per second and their ratio, against
//! the target of issue #15 (at most 10% fewer with tracing on). Runs only when `BENCH_ONLY`
//! names it; writes `tracing.md` and `tracing.json`, never `latest.*`.

use super::{commit, graphql_ok, machine, start_gateway_over, wait_up, Procs, CANONICAL, FLAT};
use prost::Message;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EMU_TRACING: &str = "127.0.0.1:17076";
const OFF: &str = "127.0.0.1:18099";
const ON: &str = "127.0.0.1:18100";
/// The target of issue #15: requests per second with tracing on, at least this share of off.
const TARGET_RATIO: f64 = 0.9;

/// What the benchmark's OTLP receiver took in.
#[derive(Default)]
struct Received {
    exports: AtomicU64,
    spans: AtomicU64,
}

/// Starts the receiver on a free port: decodes trace exports to count their spans, accepts
/// metrics, keeps nothing. Returns its base URL.
async fn start_receiver(received: Arc<Received>) -> (String, ats_gateway::serving::Serving) {
    use axum::routing::post;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let router = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| async move {
                if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                    let spans: usize = request
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .map(|s| s.spans.len())
                        .sum();
                    received.exports.fetch_add(1, Ordering::Relaxed);
                    received.spans.fetch_add(spans as u64, Ordering::Relaxed);
                }
                [("content-type", "application/x-protobuf")]
            }),
        )
        .route(
            "/v1/metrics",
            post(|| async { [("content-type", "application/x-protobuf")] }),
        );
    let (addr, serving) = ats_gateway::serving::Serving::bind("127.0.0.1:0".parse().unwrap(), router, "otlp")
        .await
        .expect("the receiver binds");
    (format!("http://{addr}"), serving)
}

/// Operations through `gateway` from `concurrency` clients for `round`: (answered, failed).
async fn round(gateway: &str, query: &'static str, concurrency: usize, round: Duration) -> (u64, u64) {
    let end = Instant::now() + round;
    let url = format!("http://{gateway}/graphql");
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut ok, mut failed) = (0u64, 0u64);
                while Instant::now() < end {
                    let answered = match client.post(&url).json(&json!({"query": query})).send().await {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.is_ok_and(|v| graphql_ok(&v)),
                        _ => false,
                    };
                    if answered {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let mut total = (0, 0);
    for t in tasks {
        let (ok, failed) = t.await.unwrap();
        total = (total.0 + ok, total.1 + failed);
    }
    total
}

/// One query's result: requests per second off and on, errors, spans exported per operation.
struct Row {
    query: &'static str,
    off: f64,
    on: f64,
    errors: u64,
    spans_per_op: f64,
}

async fn measure(name: &'static str, query: &'static str, received: &Received, rounds: u64, concurrency: usize) -> Row {
    // Warm-up: caches, connections, the batch exporter's first export.
    round(OFF, query, concurrency, Duration::from_millis(500)).await;
    round(ON, query, concurrency, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spans_before = received.spans.load(Ordering::Relaxed);
    let (mut off, mut on, mut errors) = (0u64, 0u64, 0u64);
    let second = Duration::from_secs(1);
    for _ in 0..rounds {
        let (ok, failed) = round(OFF, query, concurrency, second).await;
        off += ok;
        errors += failed;
        let (ok, failed) = round(ON, query, concurrency, second).await;
        on += ok;
        errors += failed;
    }
    // The last batch leaves within the exporter's delay (1 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let spans = received.spans.load(Ordering::Relaxed) - spans_before;
    Row {
        query: name,
        off: off as f64 / rounds as f64,
        on: on as f64 / rounds as f64,
        errors,
        spans_per_op: spans as f64 / on.max(1) as f64,
    }
}

/// Runs the part and writes `tracing.md` and `tracing.json` into `dir`.
pub async fn tracing(bin: &str, dir: &str, secs: u64, concurrency: usize) {
    let received = Arc::new(Received::default());
    let (endpoint, receiver) = start_receiver(received.clone()).await;
    let mut procs = Procs(Vec::new());
    super::start_emulator(bin, &mut procs, EMU_TRACING, &[]).await;
    let pushdown_off = ["--expand-pushdown", "off", "--state-db", ":memory:"];
    start_gateway_over(bin, &mut procs, EMU_TRACING, OFF, &pushdown_off);
    let mut on_args = pushdown_off.to_vec();
    on_args.extend(["--otlp-endpoint", &endpoint, "--trace-sample-ratio", "1"]);
    start_gateway_over(bin, &mut procs, EMU_TRACING, ON, &on_args);
    wait_up(&format!("http://{OFF}/healthz")).await;
    wait_up(&format!("http://{ON}/healthz")).await;
    let rows = vec![
        measure("flat (50 recruiting requests)", FLAT, &received, secs, concurrency).await,
        measure(
            "canonical nested (50 parents, pushdown off)",
            CANONICAL,
            &received,
            secs,
            concurrency,
        )
        .await,
    ];
    drop(procs);
    receiver.stop().await;
    let (machine, commit) = (machine(), commit());
    let mut md = format!(
        "# Tracing cost (issue #15)\n\nCommit {commit}; {machine}. `BENCH_ONLY=tracing`, {secs} rounds of 1 s per gateway and query, {concurrency} concurrent clients; both gateways `--expand-pushdown off`, over one emulator. On: `--otlp-endpoint` to an in-bench OTLP/HTTP receiver (decodes, counts, discards), `--trace-sample-ratio 1`.\n\n| query | off (req/s) | on (req/s) | on / off | target ≥ {TARGET_RATIO} | spans exported per operation | errors |\n|---|---|---|---|---|---|---|\n"
    );
    let mut json_rows = Vec::new();
    for r in &rows {
        let ratio = r.on / r.off.max(f64::MIN_POSITIVE);
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.3} | {} | {:.1} | {} |\n",
            r.query,
            r.off,
            r.on,
            ratio,
            if ratio >= TARGET_RATIO { "met" } else { "MISSED" },
            r.spans_per_op,
            r.errors
        ));
        json_rows.push(json!({"query": r.query, "off_rps": r.off, "on_rps": r.on, "ratio": ratio, "spans_per_op": r.spans_per_op, "errors": r.errors}));
    }
    md.push_str(&format!(
        "\nTrace exports received: {}.\n",
        received.exports.load(Ordering::Relaxed)
    ));
    print!("{md}");
    std::fs::write(format!("{dir}/tracing.md"), &md).unwrap();
    let out =
        json!({"commit": commit, "machine": machine, "seconds": secs, "concurrency": concurrency, "rows": json_rows});
    std::fs::write(
        format!("{dir}/tracing.json"),
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .unwrap();
}
