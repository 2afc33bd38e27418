//! The upstream budget (issue #17), counted by the emulator: identical reads in flight share one
//! upstream request per upstream identity (never across identities), the short-lived read cache
//! (TTL, writes, `no-cache`, `extensions.cache`).

use crate::gateway_auth::{entra_app, on_behalf_of_gateway_with};
use crate::harness::{client, Emu, Gateway};
use ats_gateway::graphql::context::ReadConfig;
use ats_gateway::odata::read_cache::ReadCacheConfig;
use ats_gateway::odata::UpstreamAuth;
use ats_gateway::secret::sha256_hex;
use ats_gateway::server::auth::{ApiKey, CallerAuthConfig, CallerAuthMode};
use serde_json::{json, Value};
use std::time::Duration;

/// The canonical nested query of the issue (six upstream requests, one reference-data read).
const CANONICAL: &str = "{ recruitingRequests(first: 10) { nodes { id recruitingRequestId description status
    positions { positionId status description } skills { skillId ratingLevelId } educations { educationLevelId educationDisciplineId }
    location { description city } recruiter { name partyNumber } } } }";

/// A list and its positions: no reference data, so every read goes through the read cache.
const LIST: &str =
    "{ recruitingRequests(first: 5) { nodes { recruitingRequestId positions { id positionId status } } } }";

/// Callers `caller-0` … `caller-{n-1}`, each with the API key `key-of-caller-i`.
fn api_keys(n: usize) -> CallerAuthConfig {
    CallerAuthConfig {
        mode: CallerAuthMode::ApiKeys(
            (0..n)
                .map(|i| ApiKey {
                    name: format!("caller-{i}"),
                    sha256: sha256_hex(format!("key-of-caller-{i}").as_bytes()),
                })
                .collect(),
        ),
        allow_anonymous: false,
    }
}

/// Posts `query` with extra headers; returns the status and the body.
async fn post(gw: &Gateway, query: &str, headers: &[(&str, &str)]) -> Value {
    let mut rb = client().post(&gw.endpoint).json(&json!({"query": query}));
    for (name, value) in headers {
        rb = rb.header(*name, *value);
    }
    let r = rb.send().await.expect("request sent");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("a JSON response");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body
}

async fn as_caller(gw: &Gateway, query: &str, i: usize) -> Value {
    post(gw, query, &[("x-api-key", &format!("key-of-caller-{i}"))]).await
}

/// OData requests the emulator received while `f` ran.
async fn costs<F: std::future::Future<Output = T>, T>(emu: &Emu, f: F) -> (u64, T) {
    emu.reset_stats().await;
    let out = f.await;
    (emu.stats().await["total"].as_u64().unwrap(), out)
}

#[tokio::test]
async fn fifty_callers_under_client_credentials_cost_what_one_costs() {
    let emu = Emu::with_auth(Duration::from_secs(3600));
    let app = entra_app(&emu, ".default");
    let gw = Gateway::with_config(emu, move |c| {
        c.upstream_auth = UpstreamAuth::ClientCredentials(app);
        c.caller_auth = api_keys(52);
    });
    as_caller(&gw, CANONICAL, 51).await; // the application's token, once
                                         // Every upstream answer takes 400 ms, so that the fifty operations are in flight together
                                         // (the coalescing is what is tested, not how fast the callers are).
    gw.emu.set_faults(json!({"latencyMs": 400})).await;
    let (one, alone) = costs(&gw.emu, as_caller(&gw, CANONICAL, 50)).await;
    assert!(one >= 5, "the canonical query reads upstream: {one}");
    let runs = (0..50).map(|i| as_caller(&gw, CANONICAL, i));
    let (fifty, answers) = costs(&gw.emu, futures::future::join_all(runs)).await;
    assert_eq!(
        fifty, one,
        "fifty identical queries cost {fifty} upstream requests, one costs {one}"
    );
    for a in &answers {
        assert_eq!(a["data"], alone["data"], "every caller got the same answer");
    }
    let stats = gw.emu.stats().await;
    assert_eq!(
        stats["byCaller"].as_object().unwrap().len(),
        1,
        "one upstream identity: {stats}"
    );
}

#[tokio::test]
async fn under_on_behalf_of_two_users_are_never_coalesced() {
    let gw = on_behalf_of_gateway_with(|_| {});
    let alice = format!(
        "Bearer {}",
        gw.emu.user_token("alice", "api://ats-gateway/access_as_user").await
    );
    let bob = format!(
        "Bearer {}",
        gw.emu.user_token("bob", "api://ats-gateway/access_as_user").await
    );
    for user in [&alice, &bob] {
        post(&gw, LIST, &[("authorization", user)]).await; // each user's token exchange
    }
    gw.emu.set_faults(json!({"latencyMs": 400})).await;
    let (one, _) = costs(&gw.emu, post(&gw, LIST, &[("authorization", &alice)])).await;
    let runs = [&alice, &alice, &bob, &bob].map(|user| async { post(&gw, LIST, &[("authorization", user)]).await });
    let (total, _) = costs(&gw.emu, futures::future::join_all(runs)).await;
    let stats = gw.emu.stats().await;
    let by_caller = &stats["byCaller"];
    assert_eq!(by_caller["user:alice"], by_caller["user:bob"], "{stats}");
    assert_eq!(
        total,
        2 * one,
        "each user reads for itself, once per read in flight: {stats}"
    );
}

fn cached_for(ttl: Duration) -> ReadConfig {
    ReadConfig {
        read_cache: ReadCacheConfig {
            ttl: Some(ttl),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn the_read_cache_serves_repeats_within_its_ttl_and_reads_again_after() {
    let gw = Gateway::over_with(Emu::fresh(), cached_for(Duration::from_secs(2)));
    let (first, answer) = costs(&gw.emu, post(&gw, LIST, &[])).await;
    assert_eq!(first, 2, "the list and its positions");
    assert!(
        answer.get("extensions").is_none(),
        "nothing came from the cache: {answer}"
    );
    let (repeat, cached) = costs(&gw.emu, post(&gw, LIST, &[])).await;
    assert_eq!(repeat, 0, "a repeat within the TTL costs nothing");
    assert_eq!(cached["data"], answer["data"]);
    assert_eq!(cached["extensions"]["cache"]["hits"], 2, "{cached}");
    assert!(cached["extensions"]["cache"]["oldestAgeMs"].is_u64(), "{cached}");
    let (bypassed, fresh) = costs(&gw.emu, post(&gw, LIST, &[("cache-control", "no-cache")])).await;
    assert_eq!(bypassed, 2, "no-cache reads upstream");
    assert!(fresh.get("extensions").is_none(), "{fresh}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (after, _) = costs(&gw.emu, post(&gw, LIST, &[])).await;
    assert_eq!(after, 2, "after the TTL the plan costs what it cost");
}

#[tokio::test]
async fn a_write_through_the_gateway_makes_the_next_read_of_its_set_go_upstream() {
    let gw = Gateway::over_with(Emu::fresh(), cached_for(Duration::from_secs(60)));
    let before = post(&gw, LIST, &[]).await;
    let nodes = before["data"]["recruitingRequests"]["nodes"].as_array().unwrap();
    let (i, id) = nodes
        .iter()
        .enumerate()
        .find_map(|(i, n)| Some((i, n["positions"][0]["id"].as_str()?)))
        .expect("a request with a position");
    let (repeat, _) = costs(&gw.emu, post(&gw, LIST, &[])).await;
    assert_eq!(repeat, 0);
    let update = format!(
        "mutation {{ updateRecruitingRequestPosition(id: \"{id}\", input: {{status: FILLED}}) {{ errors {{ code }} record {{ id }} }} }}"
    );
    post(&gw, &update, &[]).await;
    let (after, read) = costs(&gw.emu, post(&gw, LIST, &[])).await;
    assert_eq!(after, 1, "the positions are read again, the list is not (other set)");
    assert_eq!(read["extensions"]["cache"]["hits"], 1, "{read}");
    let positions = read["data"]["recruitingRequests"]["nodes"][i]["positions"]
        .as_array()
        .unwrap();
    let updated = positions.iter().find(|p| p["id"] == id).unwrap();
    assert_eq!(updated["status"], "FILLED", "the write is seen at once");
}

#[tokio::test]
async fn a_submission_makes_the_next_read_of_its_sets_go_upstream() {
    let gw = Gateway::over_with(Emu::fresh(), cached_for(Duration::from_secs(60)));
    const CANDIDATES: &str = "{ candidatesToHire(first: 100) { nodes { candidateId comments } } }";
    let before = post(&gw, CANDIDATES, &[]).await;
    let (repeat, _) = costs(&gw.emu, post(&gw, CANDIDATES, &[])).await;
    assert_eq!(repeat, 0);
    let input = crate::gateway_writes::full_input(&gw.emu, "budget").await;
    let submitted = crate::gateway_writes::submit(&gw, &input, None).await;
    assert!(
        submitted["errors"].as_array().is_none_or(|e| e.is_empty()),
        "{submitted}"
    );
    let (after, read) = costs(&gw.emu, post(&gw, CANDIDATES, &[])).await;
    assert_eq!(after, 1, "the candidates are read again");
    let count = |v: &Value| v["data"]["candidatesToHire"]["nodes"].as_array().unwrap().len();
    assert_eq!(count(&read), count(&before) + 1, "with the new candidate");
}

#[tokio::test]
async fn an_operation_over_the_upstream_request_limit_is_refused_before_any_request() {
    // The canonical query is estimated at 6 requests: over a limit of 5, within the default 50.
    let gw = Gateway::with_config(Emu::fresh(), |c| c.limits.operation.max_upstream_requests = 5);
    let (requests, v) = costs(&gw.emu, gw.query(CANONICAL, json!({}))).await;
    assert_eq!(requests, 0, "refused before any upstream request: {v}");
    let error = &v["errors"][0];
    assert_eq!(error["extensions"]["code"], "TOO_MANY_UPSTREAM_REQUESTS", "{v}");
    assert_eq!(error["extensions"]["estimatedUpstreamRequests"], 6, "{v}");
    assert_eq!(error["extensions"]["maxUpstreamRequests"], 5, "{v}");
    assert!(
        error["message"].as_str().unwrap().contains("6 upstream requests"),
        "{v}"
    );
    // With the default limit the same query runs, and costs at most its estimate.
    let gw = Gateway::over(Emu::fresh());
    let (requests, v) = costs(&gw.emu, gw.query(CANONICAL, json!({}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert!((1..=6).contains(&requests), "{requests}");
}

/// A list without relations: one upstream request, a different URL for each `n`.
const ONE_REQUEST: &str = "query($n: Int) { recruitingRequests(first: $n) { nodes { id } } }";

/// The value of the `/metrics` sample `name{identity="…"}`, for each identity.
fn by_identity(metrics: &str, name: &str) -> std::collections::BTreeMap<String, f64> {
    let prefix = format!("{name}{{identity=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (identity, value) = rest.split_once("\"} ")?;
            Some((identity.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_show_each_identitys_requests_and_share_of_the_budget_never_a_token() {
    let gw = on_behalf_of_gateway_with(|c| c.resilience.rate_limit = Some("1000/5m".parse().unwrap()));
    let alice = gw.emu.user_token("alice", "api://ats-gateway/access_as_user").await;
    let bob = gw.emu.user_token("bob", "api://ats-gateway/access_as_user").await;
    post(&gw, LIST, &[("authorization", &format!("Bearer {alice}"))]).await;
    for _ in 0..3 {
        post(&gw, CANONICAL, &[("authorization", &format!("Bearer {bob}"))]).await;
    }
    let stats = gw.emu.stats().await;
    let (_, metrics) = gw.get("/metrics").await;
    assert!(
        !metrics.contains(&alice) && !metrics.contains(&bob),
        "no token in /metrics"
    );
    let requests = by_identity(&metrics, "ats_gateway_upstream_budget_requests");
    let users: Vec<(&String, &f64)> = requests.iter().filter(|(i, _)| i.starts_with("user:")).collect();
    assert_eq!(users.len(), 2, "one line per user: {metrics}");
    let mut counted: Vec<u64> = users.iter().map(|(_, n)| **n as u64).collect();
    let mut upstream: Vec<u64> = ["user:alice", "user:bob"]
        .iter()
        .map(|u| stats["byCaller"][u].as_u64().unwrap())
        .collect();
    counted.sort();
    upstream.sort();
    assert_eq!(
        counted, upstream,
        "the gateway counts what the upstream received: {stats}\n{metrics}"
    );
    let used = by_identity(&metrics, "ats_gateway_upstream_budget_used_ratio");
    for (identity, n) in users {
        assert_eq!(used[identity], n / 1000.0, "{metrics}");
        assert_eq!(identity.len(), "user:".len() + 16, "a fingerprint: {identity}");
    }
    assert!(
        metrics.contains("ats_gateway_upstream_budget_limit_requests 1000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ats_gateway_upstream_budget_window_seconds 300"),
        "{metrics}"
    );
    let (_, ready) = gw.get("/readyz").await;
    assert!(!ready.contains("upstream budget"), "well under 80%: {ready}");
}

#[tokio::test]
async fn over_the_rate_limit_a_request_waits_for_the_window_when_the_deadline_allows() {
    let gw = Gateway::with_config(Emu::fresh(), |c| {
        c.resilience.rate_limit = Some("8/2s".parse().unwrap())
    });
    tokio::time::sleep(Duration::from_millis(2100)).await; // the start's requests leave the window
    let started = std::time::Instant::now();
    let (requests, answers) = costs(&gw.emu, async {
        let mut answers = Vec::new();
        for n in 1..=16 {
            answers.push(gw.query(ONE_REQUEST, json!({ "n": n })).await);
        }
        answers
    })
    .await;
    let took = started.elapsed();
    for a in &answers {
        assert!(a.get("errors").is_none(), "every query waited and succeeded: {a}");
    }
    assert_eq!(requests, 16);
    // 16 requests at 8 per 2 s: the second eight wait for the first to leave the window.
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    let (_, ready) = gw.get("/readyz").await;
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["status"], "ready", "a warning, not unready: {ready}");
    let warnings = ready["warnings"].to_string();
    assert!(warnings.contains("upstream budget: identity gateway used"), "{ready}");
}

#[tokio::test]
async fn over_the_rate_limit_a_request_that_cannot_wait_fails_unsent() {
    let gw = Gateway::with_config(Emu::fresh(), |c| {
        c.resilience.rate_limit = Some("20/1m".parse().unwrap());
        c.limits.operation.deadline = Duration::from_secs(1);
    });
    let (_, metrics) = gw.get("/metrics").await;
    let at_start = by_identity(&metrics, "ats_gateway_upstream_budget_requests")
        .get("gateway")
        .copied()
        .unwrap_or(0.0) as u64;
    assert!(at_start < 20, "the start spent {at_start}");
    gw.emu.reset_stats().await;
    let mut served = 0;
    let refused = loop {
        let v = gw.query(ONE_REQUEST, json!({ "n": served + 1 })).await;
        match v.get("errors") {
            None => served += 1,
            Some(_) => break v,
        }
        assert!(served <= 20, "never refused");
    };
    assert_eq!(served, 20 - at_start, "the budget left after the start: {refused}");
    assert_eq!(gw.emu.stats().await["total"], served, "the refused query sent nothing");
    let error = &refused["errors"][0];
    assert_eq!(error["extensions"]["code"], "UPSTREAM_BUDGET_EXHAUSTED", "{refused}");
    let retry = error["extensions"]["retryAfterMs"].as_u64().unwrap();
    assert!(retry > 1000 && retry <= 60_000, "{refused}");
    assert!(error["message"].as_str().unwrap().contains("20/1m"), "{refused}");
    let (_, metrics) = gw.get("/metrics").await;
    let used = by_identity(&metrics, "ats_gateway_upstream_budget_used_ratio");
    assert!(used["gateway"] >= 1.0, "{metrics}");
}

#[tokio::test]
async fn a_to_one_target_the_operation_already_read_costs_nothing() {
    let gw = Gateway::over(Emu::fresh()); // no $expand pushdown: every relation is a request
    let outer = "recruitingRequests(first: 5) { nodes { id description positions { positionId";
    // Each position's recruiting request is one of the five the list read, with every field asked.
    let known = format!("{{ {outer} recruitingRequest {{ id description }} }} }} }} }}");
    let (requests, v) = costs(&gw.emu, gw.query(&known, json!({}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    let nodes = v["data"]["recruitingRequests"]["nodes"].as_array().unwrap();
    let with_positions = nodes.iter().filter(|n| !n["positions"].as_array().unwrap().is_empty());
    for n in with_positions.clone() {
        for p in n["positions"].as_array().unwrap() {
            assert_eq!(p["recruitingRequest"]["id"], n["id"], "{v}");
            assert_eq!(p["recruitingRequest"]["description"], n["description"], "{v}");
        }
    }
    assert!(with_positions.count() > 0, "some request has positions: {v}");
    assert_eq!(
        requests, 2,
        "the list and the positions; the recruiting requests were read: {v}"
    );
    // A field the list did not read (status) is read upstream: one more request.
    let unknown = format!("{{ {outer} recruitingRequest {{ id status }} }} }} }} }}");
    let (requests, v) = costs(&gw.emu, gw.query(&unknown, json!({}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(requests, 3, "{v}");
    // Two to-one relations to the same targets: the second costs nothing.
    let twice = "{ recruitingRequests(first: 5) { nodes { a: location { city } b: location { city } } } }";
    let (requests, v) = costs(&gw.emu, gw.query(twice, json!({}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(requests, 2, "{v}");
}

#[tokio::test]
async fn without_coalescing_identical_reads_in_flight_each_go_upstream() {
    let gw = Gateway::over_with(
        Emu::fresh(),
        ReadConfig {
            coalesce_reads: false,
            ..Default::default()
        },
    );
    gw.emu.set_faults(json!({"latencyMs": 300})).await;
    let runs = (0..4).map(|_| gw.query(LIST, json!({})));
    let (requests, answers) = costs(&gw.emu, futures::future::join_all(runs)).await;
    for a in &answers {
        assert!(a.get("errors").is_none(), "{a}");
    }
    assert_eq!(requests, 8, "four lists and four position reads");
}
