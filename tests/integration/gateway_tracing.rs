//! OpenTelemetry traces (issue #15): a gateway process exports to an OTLP/HTTP receiver that this
//! test runs (decoding with `opentelemetry-proto`); the emulator records the `traceparent` headers
//! it receives (`/_emulator/stats`).

use crate::harness::{client, free_port, Emu, GatewayProcess};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A nested query: the list in one request, the positions of its rows in a loader batch (the
/// gateways here run with `--expand-pushdown off`), their recruiters in another.
const NESTED: &str = "query Nested { recruitingRequests(first: 5) { nodes { recruitingRequestId positions { positionId } recruiter { name } } } }";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver: keeps the spans of `/v1/traces`, accepts `/v1/metrics`.
struct Receiver {
    base: String,
    spans: Arc<Mutex<Vec<Span>>>,
    _serving: ats_gateway::serving::Serving,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::routing::post;
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = spans.clone();
        let ok = || {
            (
                [("content-type", "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        };
        let router = axum::Router::new()
            .route(
                "/v1/traces",
                post(move |body: axum::body::Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP/protobuf trace export");
                    let mut kept = kept.lock().unwrap();
                    for rs in request.resource_spans {
                        for ss in rs.scope_spans {
                            kept.extend(ss.spans);
                        }
                    }
                    ok()
                }),
            )
            .route("/v1/metrics", post(move || async move { ok() }));
        let (addr, serving) = ats_gateway::serving::Serving::bind("127.0.0.1:0".parse().unwrap(), router, "otlp")
            .await
            .unwrap();
        Receiver {
            base: format!("http://{addr}"),
            spans,
            _serving: serving,
        }
    }

    /// The spans of trace `trace` (hex) once `done` says they are all there (at most 15 s).
    async fn trace(&self, trace: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        for _ in 0..150 {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| hex(&s.trace_id) == trace)
                .cloned()
                .collect();
            if done(&spans) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the spans of trace {trace} never all arrived");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attribute, as a string or an integer.
fn attr(span: &Span, key: &str) -> Option<Value> {
    let v = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        Any::StringValue(s) => json!(s),
        Any::IntValue(i) => json!(i),
        Any::BoolValue(b) => json!(b),
        Any::DoubleValue(d) => json!(d),
        other => json!(format!("{other:?}")),
    })
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// POSTs the nested query, with `traceparent` when given; the answer's data must be there.
async fn nested(gw: &GatewayProcess, traceparent: Option<&str>) -> Value {
    let mut request = client()
        .post(format!("{}/graphql", gw.base))
        .json(&json!({"query": NESTED}));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["recruitingRequests"]["nodes"].as_array().map(Vec::len),
        Some(5),
        "{body}"
    );
    body
}

/// The `traceparent` headers the emulator received since its counters were reset.
async fn traceparents(emu: &Emu) -> Vec<String> {
    let stats = emu.stats().await;
    stats["traceparents"]
        .as_array()
        .expect("traceparents in the emulator's stats")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn gateway(emu: &Emu, endpoint: &str, extra: &[&str]) -> GatewayProcess {
    let mut args = vec!["--otlp-endpoint", endpoint, "--expand-pushdown", "off"];
    args.extend_from_slice(extra);
    GatewayProcess::start(&emu.root, &args, &[("OTEL_SERVICE_NAME", "ats-gateway-test")], None).await
}

#[tokio::test]
async fn a_nested_query_exports_operation_batches_and_upstream_calls_and_continues_the_clients_trace() {
    let receiver = Receiver::start().await;
    let emu = Emu::fresh();
    let gw = gateway(&emu, &receiver.base, &[]).await;
    emu.reset_stats().await;
    nested(&gw, Some(&format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))).await;
    let sent = traceparents(&emu).await;
    // The list, the positions, the recruiters: at least three upstream requests.
    assert!(sent.len() >= 3, "{sent:?}");
    let spans = receiver
        .trace(CLIENT_TRACE, |s| {
            named(s, "graphql.operation").len() == 1 && named(s, "upstream.call").len() >= sent.len()
        })
        .await;

    let op = named(&spans, "graphql.operation")[0];
    assert_eq!(
        hex(&op.parent_span_id),
        CLIENT_SPAN,
        "the client's span is the operation's parent"
    );
    assert_eq!(op.kind, SpanKind::Server as i32);
    assert_eq!(attr(op, "graphql.operation.name"), Some(json!("Nested")));
    assert_eq!(attr(op, "graphql.operation.type"), Some(json!("query")));
    let caller = attr(op, "ats.caller.hash").expect("the caller's hash");
    assert_eq!(caller.as_str().map(str::len), Some(16), "{caller}");
    assert_eq!(attr(op, "ats.upstream_requests"), Some(json!(sent.len())));
    assert_eq!(attr(op, "ats.error_codes"), None, "no errors");

    let batches = named(&spans, "loader.batch");
    assert!(batches.len() >= 2, "the positions and the recruiters: {batches:?}");
    for b in &batches {
        assert_eq!(b.parent_span_id, op.span_id, "a batch is a child of its operation");
        assert!(
            attr(b, "ats.keys").and_then(|k| k.as_i64()).is_some_and(|k| k > 0),
            "{b:?}"
        );
        assert!(
            attr(b, "ats.rows").is_some() && attr(b, "ats.entity").is_some(),
            "{b:?}"
        );
    }
    let batch_ids: HashSet<&[u8]> = batches.iter().map(|b| b.span_id.as_slice()).collect();
    let upstream = named(&spans, "upstream.call");
    assert_eq!(upstream.len(), sent.len(), "one span per upstream request");
    for u in &upstream {
        assert_eq!(u.kind, SpanKind::Client as i32);
        assert_eq!(attr(u, "http.request.method"), Some(json!("GET")));
        assert_eq!(attr(u, "http.response.status_code"), Some(json!(200)));
        assert_eq!(attr(u, "ats.attempts"), Some(json!(1)));
        assert_eq!(attr(u, "ats.retry_wait_ms"), Some(json!(0)));
        assert!(
            attr(u, "ats.slot_wait_ms").is_some() && attr(u, "ats.entity_set").is_some(),
            "{u:?}"
        );
    }
    // The list is read by the operation itself; the relations by the batches.
    let under_op = upstream.iter().filter(|u| u.parent_span_id == op.span_id).count();
    let under_batches = upstream
        .iter()
        .filter(|u| batch_ids.contains(u.parent_span_id.as_slice()))
        .count();
    assert_eq!((under_op, under_batches), (1, upstream.len() - 1), "{upstream:?}");

    // Each upstream request carried its own span's traceparent.
    let exported: HashSet<String> = upstream
        .iter()
        .map(|u| format!("00-{CLIENT_TRACE}-{}-01", hex(&u.span_id)))
        .collect();
    assert_eq!(sent.iter().cloned().collect::<HashSet<_>>(), exported);
}

#[tokio::test]
async fn unsampled_calls_still_send_a_traceparent_and_a_sampled_client_wins() {
    let receiver = Receiver::start().await;
    let emu = Emu::fresh();
    let gw = gateway(&emu, &receiver.base, &["--trace-sample-ratio", "0"]).await;
    emu.reset_stats().await;
    nested(&gw, None).await;
    let sent = traceparents(&emu).await;
    assert!(sent.len() >= 3, "{sent:?}");
    let trace = sent[0].split('-').nth(1).unwrap().to_string();
    for tp in &sent {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(
            (parts[1], parts[3]),
            (trace.as_str(), "00"),
            "one trace, not sampled: {sent:?}"
        );
    }
    // Parent-based: the client's sampled flag wins over the ratio of 0.
    emu.reset_stats().await;
    let other = "0af7651916cd43dd8448eb211c80319c";
    nested(&gw, Some(&format!("00-{other}-b7ad6b7169203331-01"))).await;
    let sent_sampled = traceparents(&emu).await;
    assert!(sent_sampled
        .iter()
        .all(|tp| tp.starts_with(&format!("00-{other}-")) && tp.ends_with("-01")));
    let spans = receiver
        .trace(other, |s| named(s, "upstream.call").len() >= sent_sampled.len())
        .await;
    assert_eq!(named(&spans, "graphql.operation").len(), 1);
    // By now the unsampled trace would have been exported too (same batch delay): it was not.
    assert!(receiver.spans.lock().unwrap().iter().all(|s| hex(&s.trace_id) != trace));
}

#[tokio::test]
async fn with_the_endpoint_down_queries_still_succeed() {
    let emu = Emu::fresh();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let gw = gateway(&emu, &closed, &[]).await;
    emu.reset_stats().await;
    for _ in 0..3 {
        nested(&gw, None).await;
    }
    // Past the batch delay: the failed exports happened, and the gateway still answers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nested(&gw, None).await;
    assert!(!traceparents(&emu).await.is_empty());
}
