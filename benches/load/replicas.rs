//! The `replicas` part (issue #13): what sharing state through Redis costs. One client, one
//! request after another, sends a keyed `submitCandidateToHire` (34 records; a fresh
//! idempotency key each time, so every one writes) and a flat read (50 recruiting requests, four
//! fields), through:
//!
//! - one replica without Redis: idempotency keys in its SQLite file (the default
//!   `ats-gateway-state.db`, here in a temporary directory), as a single process runs today;
//! - three replicas sharing one Redis (`--redis-url`), the client taking them in turn.
//!
//! Both run over one emulator, with a Redis server of the benchmark's own (`redis-server` on
//! `PATH`, Debian's package; no persistence). The configurations take turns in rounds of one
//! second, so that other load on the machine falls on each alike. Redis round trips per
//! operation are read from the replicas' `/metrics` (`ats_gateway_redis_round_trips_total`),
//! upstream requests from the emulator's counter. Target (issue #13): Redis adds at most 2 ms to
//! a submission's p50. Runs only when `BENCH_ONLY` names it; writes `replicas.md` and
//! `replicas.json`, never `latest.*`.

use super::{commit, machine, pct, reset, start_gateway_over, upstream_count, wait_up, Procs};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EMU_REP: &str = "127.0.0.1:17075";
const REDIS_PORT: u16 = 17379;
const SOLO: &str = "127.0.0.1:18095";
const SHARED: [&str; 3] = ["127.0.0.1:18096", "127.0.0.1:18097", "127.0.0.1:18098"];
const FLAT: &str = "{ recruitingRequests(first: 50) { nodes { id recruitingRequestId description status } } }";
/// The target of issue #13: what Redis may add to a submission's p50.
const TARGET_MS: f64 = 2.0;

/// One configuration: a name and the gateways the client takes in turn.
struct Config {
    name: &'static str,
    gateways: Vec<String>,
}

/// Latencies and errors of one operation through one configuration.
#[derive(Default)]
struct Samples {
    lat: Vec<Duration>,
    errors: u64,
}

/// Starts the benchmark's own Redis, without persistence.
fn start_redis(procs: &mut Procs) {
    let redis = Command::new("redis-server")
        .args(["--port", &REDIS_PORT.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (Debian's redis-server package)");
    procs.0.push(redis);
}

/// The emulator, Redis, the replica without Redis and the three with it.
async fn start(bin: &str, dir: &std::path::Path) -> (Procs, Vec<Config>) {
    let mut procs = Procs(Vec::new());
    start_redis(&mut procs);
    super::start_emulator(bin, &mut procs, EMU_REP, &[]).await;
    let state_db = dir.join("ats-gateway-state.db");
    start_gateway_over(
        bin,
        &mut procs,
        EMU_REP,
        SOLO,
        &["--state-db", state_db.to_str().unwrap()],
    );
    let redis_url = format!("redis://127.0.0.1:{REDIS_PORT}/0");
    for addr in SHARED {
        start_gateway_over(bin, &mut procs, EMU_REP, addr, &["--redis-url", &redis_url]);
    }
    for addr in std::iter::once(SOLO).chain(SHARED) {
        wait_up(&format!("http://{addr}/healthz")).await;
    }
    let configs = vec![
        Config {
            name: "1 replica, no Redis (SQLite keys)",
            gateways: vec![SOLO.to_string()],
        },
        Config {
            name: "3 replicas sharing Redis",
            gateways: SHARED.iter().map(|s| s.to_string()).collect(),
        },
    ];
    (procs, configs)
}

/// The body of one operation: the flat read, or a keyed submission with a key of its own.
fn body(submission: bool, n: u64) -> Value {
    if !submission {
        return json!({"query": FLAT});
    }
    json!({"query": super::SUBMIT_KEYED, "variables": {"input": super::submission_input(), "key": format!("bench-{}-{n}", std::process::id())}})
}

/// Sends operations one after another for `round`, taking `gateways` in turn.
async fn round(
    client: &reqwest::Client,
    gateways: &[String],
    submission: bool,
    round: Duration,
    n: &mut u64,
    out: &mut Samples,
) {
    let end = Instant::now() + round;
    while Instant::now() < end {
        *n += 1;
        let url = format!("http://{}/graphql", gateways[*n as usize % gateways.len()]);
        let started = Instant::now();
        let ok = match client.post(&url).json(&body(submission, *n)).send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.is_ok_and(|v| super::graphql_ok(&v)),
            _ => false,
        };
        out.lat.push(started.elapsed());
        out.errors += u64::from(!ok);
    }
}

/// Redis round trips the replicas of `gateways` counted so far (their `/metrics`).
async fn redis_round_trips(client: &reqwest::Client, gateways: &[String]) -> u64 {
    let mut total = 0;
    for g in gateways {
        let text = client
            .get(format!("http://{g}/metrics"))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .unwrap_or_default();
        total += text
            .lines()
            .filter(|l| l.starts_with("ats_gateway_redis_round_trips_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

/// Upstream requests and Redis round trips of one operation through `config`.
async fn counts(client: &reqwest::Client, config: &Config, submission: bool, n: &mut u64) -> (u64, u64) {
    reset(client, EMU_REP).await;
    let redis_before = redis_round_trips(client, &config.gateways).await;
    *n += 1;
    let url = format!("http://{}/graphql", config.gateways[0]);
    let sent = client.post(&url).json(&body(submission, *n)).send().await;
    assert!(
        sent.is_ok_and(|r| r.status().is_success()),
        "one {} through {}",
        url,
        config.name
    );
    let upstream = upstream_count(client, EMU_REP).await;
    (
        upstream,
        redis_round_trips(client, &config.gateways).await - redis_before,
    )
}

/// Runs the part and writes `replicas.md` and `replicas.json` into `dir`.
pub async fn replicas(bin: &str, dir: &str, secs: u64) {
    let tmp = std::env::temp_dir().join(format!("ats-bench-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (procs, configs) = start(bin, &tmp).await;
    let client = reqwest::Client::new();
    let mut n = 0u64;
    let mut rows = Vec::new();
    for (op, submission) in [
        ("keyed submitCandidateToHire (34 records)", true),
        ("flat read (50 rows)", false),
    ] {
        let mut samples: Vec<Samples> = configs.iter().map(|_| Samples::default()).collect();
        for c in &configs {
            round(
                &client,
                &c.gateways,
                submission,
                Duration::from_secs(1),
                &mut n,
                &mut Samples::default(),
            )
            .await;
        }
        for _ in 0..secs.max(1) {
            for (c, s) in configs.iter().zip(samples.iter_mut()) {
                round(&client, &c.gateways, submission, Duration::from_secs(1), &mut n, s).await;
            }
        }
        let mut base = None;
        for (c, s) in configs.iter().zip(samples.iter_mut()) {
            s.lat.sort();
            let (upstream, redis) = counts(&client, c, submission, &mut n).await;
            let p50 = pct(&s.lat, 0.5);
            let mut row = json!({"operation": op, "configuration": c.name, "p50_ms": p50, "p99_ms": pct(&s.lat, 0.99), "operations": s.lat.len(), "errors": s.errors, "upstream_requests_per_operation": upstream, "redis_round_trips_per_operation": redis});
            match base {
                None => base = Some(p50),
                Some(b) => {
                    row["over_one_replica_ms"] = json!(p50 - b);
                    if submission {
                        row["target_ms"] = json!(TARGET_MS);
                        row["within_target"] = json!(p50 - b <= TARGET_MS);
                    }
                }
            }
            rows.push(row);
        }
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&tmp);
    let v = json!({"seconds_per_configuration": secs.max(1), "rows": rows});
    eprintln!("{v}");
    std::fs::write(format!("{dir}/replicas.md"), md(&v, &machine(), &commit())).unwrap();
    std::fs::write(
        format!("{dir}/replicas.json"),
        serde_json::to_string_pretty(&v).unwrap(),
    )
    .unwrap();
}

fn md(v: &Value, machine: &str, commit: &str) -> String {
    let mut out = format!(
        "# Several replicas: what Redis costs\n\nRun on {commit}, machine: {machine}. One client sends each operation one after another, {} s per configuration in 1 s rounds taken in turn, loopback, no latency added: through one replica without Redis (idempotency keys in its SQLite file), and through three replicas sharing one Redis (taken in turn). Every submission has a fresh idempotency key, so each one claims a key and writes. Upstream requests come from the emulator's counter, Redis round trips from the replicas' `/metrics`, for one operation. Target (issue #13): Redis adds at most {TARGET_MS} ms to a submission's p50.\n\n| operation | configuration | p50 ms | p99 ms | over one replica, ms | upstream req/op | Redis round trips/op | operations | errors | target | met |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        v["seconds_per_configuration"]
    );
    for r in v["rows"].as_array().into_iter().flatten() {
        let over = r["over_one_replica_ms"]
            .as_f64()
            .map_or("–".into(), |d| format!("{d:+.2}"));
        let target = r["target_ms"].as_f64().map_or("–".into(), |t| format!("≤ +{t} ms"));
        let met = r["within_target"]
            .as_bool()
            .map_or("–", |m| if m { "yes" } else { "no" });
        out += &format!(
            "| {} | {} | {:.2} | {:.2} | {over} | {} | {} | {} | {} | {target} | {met} |\n",
            r["operation"].as_str().unwrap_or(""),
            r["configuration"].as_str().unwrap_or(""),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["upstream_requests_per_operation"],
            r["redis_round_trips_per_operation"],
            r["operations"],
            r["errors"],
        );
    }
    out
}
