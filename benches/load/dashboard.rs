//! The `dashboard` part (issue #17): a recruiting dashboard used by 100 people at once, all
//! through one application user (client credentials), so that every upstream request they cause
//! is spent from that one user's Dataverse budget (6,000 per 5 minutes: 1,200 per minute).
//!
//! Each simulated user has an API key of their own and refreshes the dashboard every
//! [`PERIOD`] for [`DURATION`]: the canonical nested query and a reference-data query, sent
//! together. The users are spread over the period (user `i` starts at `i/100` of it, plus up to
//! 100 ms of jitter), not in lockstep. The run is repeated against three gateways over the same
//! emulator: with `--read-coalescing false` (no cache, no coalescing), as configured by default
//! (coalescing only), and with `--read-cache-ttl 5s`. Upstream requests come from the emulator's
//! counter over the run, scaled to a minute; staleness is the largest `extensions.cache.
//! oldestAgeMs` any answer carried (the read cache's age; reference data stays in its own cache
//! for `--cache-ttl`, 5 minutes, as before). Results go to `bench/results/dashboard.md` and
//! `dashboard.json`, never `latest.*`.

use super::{commit, machine, reset, upstream_count, wait_up, Procs, CANONICAL};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EMU_DASH: &str = "127.0.0.1:17073";
const GW_DASH: &str = "127.0.0.1:18083";
const USERS: usize = 100;
const PERIOD: Duration = Duration::from_secs(10);
const DURATION: Duration = Duration::from_secs(60);
/// The application user's budget per minute (6,000 per 5 minutes).
const BUDGET_PER_MINUTE: f64 = 1200.0;
const REFERENCE: &str = "{ ratingLevels(first: 50) { nodes { id ratingLevelId description } } }";

/// The gateways: a name and the flags that make it. First as the issue counts the canonical
/// query (six requests: the list and one per relation, as against an upstream that cannot
/// `$expand`), then with the default `--expand-pushdown auto`, which the emulator lets push every
/// relation into the list's own request.
const CONFIGS: [(&str, &[&str]); 6] = [
    (
        "no cache, no coalescing",
        &["--expand-pushdown", "off", "--read-coalescing", "false"],
    ),
    ("coalescing only (default)", &["--expand-pushdown", "off"]),
    (
        "coalescing + 5 s read cache",
        &["--expand-pushdown", "off", "--read-cache-ttl", "5s"],
    ),
    ("no cache, no coalescing", &["--read-coalescing", "false"]),
    ("coalescing only (default)", &[]),
    ("coalescing + 5 s read cache", &["--read-cache-ttl", "5s"]),
];

fn key_of(user: usize) -> String {
    format!("dashboard-key-{user}")
}

/// Starts a gateway over `EMU_DASH` under client credentials, with `USERS` API keys and `extra`.
fn start_gateway(bin: &str, procs: &mut Procs, extra: &[&str]) {
    let keys: Vec<String> = (0..USERS)
        .map(|u| {
            format!(
                "user-{u}=sha256:{}",
                ats_gateway::secret::sha256_hex(key_of(u).as_bytes())
            )
        })
        .collect();
    let tenant = format!("http://{EMU_DASH}/dashboard");
    let gw = Command::new(bin)
        .args(["serve", "--listen", GW_DASH, "--state-db", ":memory:"])
        .args(["--upstream", &format!("http://{EMU_DASH}/api/data/v9.2/")])
        .args([
            "--upstream-auth",
            "client-credentials",
            "--client-id",
            ats_gateway::emulator::auth::DEMO_CLIENT_ID,
        ])
        .args(["--token-url", &format!("{tenant}/oauth2/v2.0/token")])
        .args(["--caller-auth", "api-key", "--api-keys", &keys.join(",")])
        .args(extra)
        .env(
            "ATS_GATEWAY_CLIENT_SECRET",
            ats_gateway::emulator::auth::DEMO_CLIENT_SECRET,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts");
    procs.0.push(gw);
}

/// What one user saw: answers, errors, and the oldest cached page in any answer.
#[derive(Default)]
struct Seen {
    answers: u64,
    errors: u64,
    stalest_ms: u64,
    cached_answers: u64,
}

/// One user's refreshes: both queries together, every `PERIOD` from `offset` until `DURATION`.
async fn user(u: usize, started: Instant, offset: Duration) -> Seen {
    let client = reqwest::Client::new();
    let url = format!("http://{GW_DASH}/graphql");
    let mut seen = Seen::default();
    let mut at = offset;
    while at < DURATION {
        tokio::time::sleep_until((started + at).into()).await;
        let ask = |q: &'static str| {
            client
                .post(&url)
                .header("x-api-key", key_of(u))
                .json(&json!({ "query": q }))
                .send()
        };
        let (a, b) = tokio::join!(ask(CANONICAL), ask(REFERENCE));
        for r in [a, b] {
            let v: Option<Value> = match r {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            seen.answers += 1;
            match v {
                Some(v) if v.get("errors").is_none() => {
                    if let Some(age) = v["extensions"]["cache"]["oldestAgeMs"].as_u64() {
                        seen.cached_answers += 1;
                        seen.stalest_ms = seen.stalest_ms.max(age);
                    }
                }
                _ => seen.errors += 1,
            }
        }
        at += PERIOD;
    }
    seen
}

/// One gateway configuration under the dashboard's load.
async fn run(bin: &str, name: &str, extra: &[&str]) -> Value {
    let mut procs = Procs(Vec::new());
    start_gateway(bin, &mut procs, extra);
    wait_up(&format!("http://{GW_DASH}/healthz")).await;
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(1)).await; // the start's own reads end
    reset(&client, EMU_DASH).await;
    let started = Instant::now();
    let users = (0..USERS).map(|u| {
        let jitter = Duration::from_millis(rand::random::<u64>() % 100);
        let offset = PERIOD.mul_f64(u as f64 / USERS as f64) + jitter;
        tokio::spawn(user(u, started, offset))
    });
    let seen: Vec<Seen> = futures::future::join_all(users)
        .await
        .into_iter()
        .map(|s| s.expect("a user's task"))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let requests = upstream_count(&client, EMU_DASH).await;
    let metrics = super::metrics_text(&client, GW_DASH).await;
    drop(procs);
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("ats_gateway_upstream_budget_requests{"))
        .collect();
    let per_minute = requests as f64 * 60.0 / secs.max(DURATION.as_secs_f64());
    let row = json!({
        "gateway": name, "flags": extra.join(" "), "seconds": secs, "upstream_requests": requests,
        "upstream_requests_per_minute": per_minute, "share_of_budget": per_minute / BUDGET_PER_MINUTE,
        "answers": seen.iter().map(|s| s.answers).sum::<u64>(), "errors": seen.iter().map(|s| s.errors).sum::<u64>(),
        "answers_from_read_cache": seen.iter().map(|s| s.cached_answers).sum::<u64>(),
        "max_staleness_ms": seen.iter().map(|s| s.stalest_ms).max().unwrap_or(0),
        "gateway_metrics_budget": counted,
    });
    eprintln!("{row}");
    row
}

/// The results as markdown.
fn markdown(rows: &[Value], machine: &str, commit: &str) -> String {
    let mut md = format!(
        "## Dashboard: {USERS} users through one application user\n\n\
         Commit {commit}, {machine}. Run with `BENCH_ONLY=dashboard bash bench/run.sh` (release build; \
         gateway and emulator as separate processes on this machine).\n\n\
         {USERS} simulated users, each with its own API key, under client credentials (one upstream identity); \
         each refreshes the canonical nested query (`recruitingRequests(first: 50)` with positions, skills, \
         educations, location and recruiter) and a reference-data query (`ratingLevels`) together every \
         {} s for {} s (real time, not compressed), spread over the period (user i starts at i/{USERS} of it, \
         plus up to 100 ms of jitter). Upstream requests are the emulator's counter over the run, per minute; \
         the gateway's own count (`ats_gateway_upstream_budget_requests`, last 5 minutes, its start's reads included) is in `dashboard.json`. \
         The first three rows turn `$expand` pushdown off, so that the canonical query costs what the issue counts \
         (6 requests: the list and one per relation, as against an upstream that cannot `$expand`, such as F&O virtual tables); \
         the last three run the default `--expand-pushdown auto`, which pushes every relation into the list's request against the emulator. \
         Budget: 6,000 per 5 minutes = {BUDGET_PER_MINUTE} per minute. Staleness: the largest \
         `extensions.cache.oldestAgeMs` of any answer (reference data stays in its own cache, `--cache-ttl` 5m, as before).\n\n\
         | gateway | flags | upstream requests / minute | share of the 1,200 / minute budget | answers | errors | answers using the read cache | max staleness |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        PERIOD.as_secs(),
        DURATION.as_secs()
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | `{}` | {:.0} | {:.0}% | {} | {} | {} | {:.1} s |\n",
            r["gateway"].as_str().unwrap_or(""),
            r["flags"].as_str().filter(|f| !f.is_empty()).unwrap_or("(defaults)"),
            r["upstream_requests_per_minute"].as_f64().unwrap_or(0.0),
            r["share_of_budget"].as_f64().unwrap_or(0.0) * 100.0,
            r["answers"],
            r["errors"],
            r["answers_from_read_cache"],
            r["max_staleness_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        ));
    }
    md.push_str("\nTarget (issue #17): at most 300 per minute with the 5 s TTL, every answer at most 5 s stale.\n");
    md
}

/// Runs the dashboard part and writes `dashboard.md` and `dashboard.json` in `dir`.
pub async fn dashboard(bin: &str, dir: &str) {
    let mut procs = Procs(Vec::new());
    super::start_emulator(bin, &mut procs, EMU_DASH, &["--require-auth", "true"]).await;
    let mut rows = Vec::new();
    for (name, flags) in CONFIGS {
        rows.push(run(bin, name, flags).await);
    }
    drop(procs);
    let (machine, commit) = (machine(), commit());
    let md = markdown(&rows, &machine, &commit);
    std::fs::write(format!("{dir}/dashboard.md"), &md).unwrap();
    let out = json!({"commit": commit, "machine": machine, "runs": rows});
    std::fs::write(
        format!("{dir}/dashboard.json"),
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .unwrap();
    println!("{md}");
}
