//! The `subscribers` part (issue #14): how many subscribers one gateway holds at 1 s intervals,
//! and what they cost upstream. One gateway (`--watch-interval 1s`) over its own emulator (the
//! demo seed); `SUBSCRIBERS` subscriptions (10,000) over `SUBSCRIBER_FILTERS` distinct filters
//! (100; each matches every recruiting request, so every watcher holds the whole set), spread
//! over `SUBSCRIBER_CONNECTIONS` WebSockets (100, `graphql-transport-ws`). Measured: the
//! gateway's RSS idle, while holding them (largest sampled every 100 ms over
//! `BENCH_SECONDS`), and after they all left; the emulator's requests per second while held
//! (target: one per distinct filter per interval) and after they left (target: none); the
//! watchers and subscribers `/metrics` reports. Target (issue #14): 10,000 subscribers over 100
//! filters under 100 MB RSS. Runs only when `BENCH_ONLY` names it; writes `subscribers.md` and
//! `subscribers.json`, never `latest.*`.

use super::{commit, env_or, machine, reset, rss_kb, start_gateway_over, upstream_count, wait_up, Procs};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const EMU_SUB: &str = "127.0.0.1:17076";
const GW_SUB: &str = "127.0.0.1:18099";
/// The target of issue #14.
const TARGET_MB: f64 = 100.0;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A gauge of the gateway's `/metrics`.
async fn metric(client: &reqwest::Client, name: &str) -> i64 {
    let text = super::metrics_text(client, GW_SUB).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .map_or(-1, |v| v as i64)
}

/// Waits (up to 120 s) until the gateway holds `watchers` watchers and `subscribers` subscribers.
async fn settle(client: &reqwest::Client, watchers: i64, subscribers: i64) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let w = metric(client, "ats_gateway_watchers_active").await;
        let s = metric(client, "ats_gateway_subscribers_active").await;
        if (w, s) == (watchers, subscribers) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not settle at {watchers} watchers and {subscribers} subscribers");
}

/// A WebSocket with `ids` subscriptions, the `i`-th on filter `i % filters`.
async fn open(ids: std::ops::Range<usize>, filters: usize) -> Socket {
    let mut request = format!("ws://{GW_SUB}/graphql/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("a WebSocket");
    let send = |v: Value| Message::Text(v.to_string().into());
    socket
        .send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .unwrap();
    let ack = socket.next().await.unwrap().unwrap();
    assert!(ack.to_string().contains("connection_ack"), "{ack}");
    for i in ids {
        let query = format!(
            "subscription {{ recruitingRequestChanged(filter: {{recruitingRequestId: {{ne: \"filter-{}\"}}}}) {{ kind id changedFields record {{ status }} }} }}",
            i % filters
        );
        socket
            .send(send(
                json!({"id": format!("s{i}"), "type": "subscribe", "payload": {"query": query}}),
            ))
            .await
            .unwrap();
    }
    socket
}

/// The largest RSS of `pid` and the emulator's requests over `secs` seconds.
async fn hold(client: &reqwest::Client, pid: u32, secs: u64) -> (u64, u64) {
    reset(client, EMU_SUB).await;
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        peak = peak.max(rss_kb(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (peak, upstream_count(client, EMU_SUB).await)
}

/// Runs the part and writes `subscribers.md` and `subscribers.json` into `dir`.
pub async fn subscribers(bin: &str, dir: &str, secs: u64) {
    let total: usize = env_or("SUBSCRIBERS", 10_000);
    let filters: usize = env_or("SUBSCRIBER_FILTERS", 100);
    let connections: usize = env_or::<usize>("SUBSCRIBER_CONNECTIONS", 100).max(1);
    let mut procs = Procs(Vec::new());
    super::start_emulator(bin, &mut procs, EMU_SUB, &[]).await;
    let pid = start_gateway_over(
        bin,
        &mut procs,
        EMU_SUB,
        GW_SUB,
        &[
            "--watch-interval",
            "1s",
            "--watch-interval-below-minimum",
            "--state-db",
            ":memory:",
        ],
    );
    wait_up(&format!("http://{GW_SUB}/healthz")).await;
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kb = rss_kb(pid);
    let per = total.div_ceil(connections);
    let mut sockets = Vec::new();
    for c in 0..connections {
        let ids = (c * per).min(total)..((c + 1) * per).min(total);
        sockets.push(open(ids, filters).await);
    }
    let took = settle(&client, filters.min(total) as i64, total as i64).await;
    let (peak_kb, polls) = hold(&client, pid, secs).await;
    let held_kb = rss_kb(pid);
    drop(sockets);
    settle(&client, 0, 0).await;
    let (_, polls_after) = hold(&client, pid, 3).await;
    let after_kb = rss_kb(pid);
    let v = json!({
        "commit": commit(),
        "machine": machine(),
        "subscribers": total,
        "filters": filters,
        "connections": connections,
        "seconds": secs,
        "settleSeconds": took.as_secs_f64(),
        "idleRssKb": idle_kb,
        "peakRssKb": peak_kb,
        "heldRssKb": held_kb,
        "afterRssKb": after_kb,
        "upstreamRequests": polls,
        "upstreamRequestsPerSecond": polls as f64 / secs as f64,
        "upstreamRequestsAfterLeaving": polls_after,
    });
    std::fs::write(
        format!("{dir}/subscribers.json"),
        serde_json::to_string_pretty(&v).unwrap(),
    )
    .unwrap();
    std::fs::write(format!("{dir}/subscribers.md"), md(&v)).unwrap();
    println!("{}", md(&v));
}

fn md(v: &Value) -> String {
    let mb = |k: &str| v[k].as_u64().unwrap_or(0) as f64 / 1024.0;
    let peak = mb("peakRssKb");
    format!(
        "# Subscribers one gateway holds (issue #14)\n\n\
         Commit {}, {}. One gateway (`--watch-interval 1s`) over its own emulator (demo seed: 200 recruiting \
         requests); {} subscriptions to `recruitingRequestChanged` over {} distinct filters (each matching every \
         request), on {} WebSockets (`graphql-transport-ws`), held for {} s. RSS is the gateway's VmRSS; upstream \
         requests are the emulator's counter. Run with `BENCH_ONLY=subscribers bench/run.sh`.\n\n\
         | measure | value |\n|---|---|\n\
         | subscriptions open, all answered by the first read of their watcher | {:.1} s |\n\
         | RSS idle (no subscriber) | {:.1} MB |\n\
         | RSS holding them (largest, sampled every 100 ms) | {:.1} MB ({} the {TARGET_MB} MB target) |\n\
         | RSS after every subscriber left | {:.1} MB |\n\
         | upstream requests per second while held (one per filter per interval: {}) | {:.1} |\n\
         | upstream requests in 3 s after every subscriber left | {} |\n",
        v["commit"].as_str().unwrap_or(""),
        v["machine"].as_str().unwrap_or(""),
        v["subscribers"],
        v["filters"],
        v["connections"],
        v["seconds"],
        v["settleSeconds"].as_f64().unwrap_or(0.0),
        mb("idleRssKb"),
        peak,
        if peak < TARGET_MB { "under" } else { "over" },
        mb("afterRssKb"),
        v["filters"],
        v["upstreamRequestsPerSecond"].as_f64().unwrap_or(0.0),
        v["upstreamRequestsAfterLeaving"],
    )
}
