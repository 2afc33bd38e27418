//! Replicas sharing their state in Redis (`--redis-url`): three gateway processes (the built
//! binary, so that killing one really drops what it held) over one emulator and one Redis of the
//! test's own (`redis_server`).

use crate::gateway_writes::{counts, full_input, SUBMIT};
use crate::harness::{get_text, Emu, GatewayProcess};
use crate::redis_server::RedisServer;
use serde_json::{json, Value};

/// `n` gateway processes over `emu`, sharing `redis`; `args` added to each.
async fn replicas(n: usize, emu: &Emu, redis: &RedisServer, args: &[&str]) -> Vec<GatewayProcess> {
    let (url, mut all) = (redis.url(), Vec::new());
    for _ in 0..n {
        let mut with = vec!["--redis-url", url.as_str()];
        with.extend_from_slice(args);
        all.push(GatewayProcess::start(&emu.root, &with, &[], None).await);
    }
    all
}

/// `submitCandidateToHire` of `input` under `key` through `gw`: the payload.
async fn submit_to(gw: &GatewayProcess, input: &Value, key: Option<&str>) -> Value {
    let v = gw
        .post(&json!({"query": SUBMIT, "variables": {"input": input, "key": key}}))
        .await;
    assert!(v.get("errors").is_none(), "GraphQL errors: {v}");
    v["data"]["submitCandidateToHire"].clone()
}

/// Rows added to each entity set between two [`counts`].
fn added(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    before
        .iter()
        .zip(after)
        .map(|((set, b), (_, a))| (set.clone(), a - b))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// What one full submission adds (34 records; the candidate and its person included).
async fn one_submission(emu: &Emu, gw: &GatewayProcess) -> Vec<(String, u64)> {
    let before = counts(emu).await;
    let p = submit_to(gw, &full_input(emu, "measure").await, None).await;
    assert_eq!(p["errors"], json!([]), "{p}");
    added(&before, &counts(emu).await)
}

/// The multiple of `unit` that `delta` is, if it is one.
fn times(delta: &[(String, u64)], unit: &[(String, u64)]) -> Option<u64> {
    let n = unit
        .first()
        .map(|(set, u)| delta.iter().find(|(s, _)| s == set).map_or(0, |d| d.1) / u)?;
    let expected: Vec<(String, u64)> = unit
        .iter()
        .map(|(s, u)| (s.clone(), u * n))
        .filter(|(_, x)| *x > 0)
        .collect();
    (delta == expected.as_slice()).then_some(n)
}

/// The value of the metric `name` (without labels) on `gw`'s `/metrics`.
async fn metric(gw: &GatewayProcess, name: &str) -> f64 {
    let text = get_text(&format!("{}/metrics", gw.base)).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

const LIST: &str = "{ recruitingRequests(first: 3) { nodes { id } } }";

/// The first payload error's code, or "" when there is none.
/// The replica's `/readyz` answer.
async fn readyz(gw: &GatewayProcess) -> Value {
    crate::harness::send(crate::harness::client().get(format!("{}/readyz", gw.base)))
        .await
        .1
}

/// POSTs `body` to the gateway at `base` in a task of its own (a request a test abandons, or
/// whose replica it kills).
fn spawn_post(base: String, body: Value) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    tokio::spawn(async move {
        crate::harness::client()
            .post(format!("{base}/graphql"))
            .json(&body)
            .send()
            .await
    })
}

fn code(payload: &Value) -> String {
    payload["errors"][0]["code"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn one_keyed_submission_sent_to_three_replicas_at_once_writes_once() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    let gws = replicas(3, &emu, &redis, &[]).await;
    let unit = one_submission(&emu, &gws[0]).await;
    let input = full_input(&emu, "three").await;
    // Slow upstream: the first replica to claim the key is still writing when the others ask.
    emu.set_faults(json!({"latencyMs": 300})).await;
    let before = counts(&emu).await;
    let payloads = futures::future::join_all(gws.iter().map(|gw| submit_to(gw, &input, Some("three-at-once")))).await;
    emu.set_faults(json!({})).await;
    assert_eq!(
        times(&added(&before, &counts(&emu).await), &unit),
        Some(1),
        "{payloads:?}"
    );
    let what = |p: &Value| json!({"candidateId": p["candidateId"], "strategy": p["strategy"], "errors": p["errors"], "candidate": p["candidate"]});
    assert!(payloads[0]["candidateId"].is_string(), "{}", payloads[0]);
    for p in &payloads {
        assert_eq!(what(p), what(&payloads[0]), "the three payloads say the same");
    }
    let written: Vec<bool> = payloads.iter().map(|p| p["replayed"] == false).collect();
    assert_eq!(
        written.iter().filter(|w| **w).count(),
        1,
        "one wrote, two replayed: {payloads:?}"
    );
    assert!(metric(&gws[1], "ats_gateway_redis_round_trips_total").await > 0.0);
    assert_eq!(metric(&gws[1], "ats_gateway_redis_errors_total").await, 0.0);
}

#[tokio::test]
async fn a_replica_killed_while_holding_a_key_leaves_the_submission_to_a_retry_elsewhere() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    let mut gws = replicas(2, &emu, &redis, &[]).await;
    let unit = one_submission(&emu, &gws[1]).await;
    let input = full_input(&emu, "killed").await;
    let before = counts(&emu).await;
    emu.set_faults(json!({"latencyMs": 1500})).await;
    emu.reset_stats().await;
    let doomed = {
        let (base, input) = (gws[0].base.clone(), input.clone());
        let body = json!({"query": SUBMIT, "variables": {"input": input, "key": "killed-key"}});
        spawn_post(base, body)
    };
    // Killed once its write (the second `$batch`, after the validation's) reached the upstream,
    // which works on it to the end regardless.
    let since = std::time::Instant::now();
    while emu.stats().await["byEntitySet"]["$batch"].as_u64().unwrap_or(0) < 2 {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(30),
            "the write never went out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gws[0].child.kill().expect("the replica is killed");
    let _ = gws[0].child.wait();
    assert!(doomed.await.unwrap().is_err(), "the killed replica never answered");
    emu.set_faults(json!({})).await;
    // The retry waits out the dead replica's lease, then looks upstream before writing.
    let mut retry = submit_to(&gws[1], &input, Some("killed-key")).await;
    for _ in 0..5 {
        if code(&retry) != "IDEMPOTENCY_KEY_IN_PROGRESS" {
            break;
        }
        retry = submit_to(&gws[1], &input, Some("killed-key")).await;
    }
    assert_eq!(retry["errors"], json!([]), "{retry}");
    assert!(retry["candidateId"].is_string(), "{retry}");
    assert_eq!(
        retry["replayed"], true,
        "found upstream by the recovery look-up, not written again: {retry}"
    );
    assert_eq!(times(&added(&before, &counts(&emu).await), &unit), Some(1), "{retry}");
    let again = submit_to(&gws[1], &input, Some("killed-key")).await;
    assert_eq!(
        (&again["candidateId"], &again["replayed"]),
        (&retry["candidateId"], &json!(true))
    );
}

/// Sends `input` under `key` until the answer is not `STATE_UNAVAILABLE` (a reconnection to a
/// Redis that came back may cost the first attempt).
async fn submit_once_redis_answers(gw: &GatewayProcess, input: &Value, key: &str) -> Value {
    for _ in 0..20 {
        let p = submit_to(gw, input, Some(key)).await;
        if code(&p) != "STATE_UNAVAILABLE" {
            return p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("keyed submissions still refused after Redis came back");
}

#[tokio::test]
async fn with_redis_stopped_reads_go_on_and_keyed_submissions_are_refused_until_it_is_back() {
    let (mut redis, emu) = (RedisServer::start(), Emu::fresh());
    let gws = replicas(3, &emu, &redis, &[]).await;
    let unit = one_submission(&emu, &gws[0]).await;
    let (first, second) = (full_input(&emu, "before").await, full_input(&emu, "during").await);
    let done = submit_to(&gws[0], &first, Some("before-outage")).await;
    assert_eq!(done["errors"], json!([]), "{done}");
    let before = counts(&emu).await;

    redis.stop();
    for gw in &gws {
        let v = gw.post(&json!({"query": LIST})).await;
        assert!(
            v.get("errors").is_none() && v["data"]["recruitingRequests"]["nodes"][2]["id"].is_string(),
            "{v}"
        );
    }
    let refused = submit_to(&gws[1], &second, Some("during-outage")).await;
    assert_eq!(code(&refused), "STATE_UNAVAILABLE", "{refused}");
    assert_eq!(refused["candidateId"], Value::Null);
    let ready = readyz(&gws[2]).await;
    assert_eq!(ready["status"], "ready", "degraded, still ready: {ready}");
    assert!(ready["warnings"].to_string().contains("Redis unreachable"), "{ready}");
    let unkeyed = submit_to(&gws[2], &full_input(&emu, "unkeyed").await, None).await;
    assert_eq!(unkeyed["errors"], json!([]), "{unkeyed}");
    assert_eq!(
        times(&added(&before, &counts(&emu).await), &unit),
        Some(1),
        "only the unkeyed one"
    );

    redis.restart();
    let later = submit_once_redis_answers(&gws[1], &second, "during-outage").await;
    assert_eq!(
        (later["errors"].clone(), later["replayed"].clone()),
        (json!([]), json!(false)),
        "{later}"
    );
    let replay = submit_once_redis_answers(&gws[2], &first, "before-outage").await;
    assert_eq!(
        (&replay["candidateId"], &replay["replayed"]),
        (&done["candidateId"], &json!(true))
    );
    let again = submit_once_redis_answers(&gws[0], &second, "during-outage").await;
    assert_eq!(
        (&again["candidateId"], &again["replayed"]),
        (&later["candidateId"], &json!(true))
    );
    assert_eq!(
        times(&added(&before, &counts(&emu).await), &unit),
        Some(2),
        "no duplicate"
    );
    let ready = readyz(&gws[2]).await;
    assert_eq!(
        ready["sharedState"],
        json!({"store": "redis", "redis": "ok"}),
        "{ready}"
    );
    assert!(metric(&gws[1], "ats_gateway_redis_errors_total").await > 0.0);
}

#[tokio::test]
async fn a_persisted_query_registered_on_one_replica_is_served_by_the_others() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    let gws = replicas(3, &emu, &redis, &[]).await;
    let hash = ats_gateway::secret::sha256_hex(LIST.as_bytes());
    let by_hash = json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}}});
    let unknown = gws[1].post(&by_hash).await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
        "{unknown}"
    );
    let mut register = by_hash.clone();
    register["query"] = json!(LIST);
    let registered = gws[0].post(&register).await;
    assert!(registered.get("errors").is_none(), "{registered}");
    for gw in &gws[1..] {
        let served = gw.post(&by_hash).await;
        assert_eq!(
            served["data"], registered["data"],
            "served by hash on another replica: {served}"
        );
    }
}

#[tokio::test]
async fn the_redis_password_never_reaches_the_log_or_readyz() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    let log = std::env::temp_dir().join(format!("ats-gateway-redis-log-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    // The test's Redis has no password: authenticating fails, as with a wrong one.
    let url = format!("redis://:pa55-in-the-url@127.0.0.1:{}/", redis.port);
    let mut gw = GatewayProcess::start(&emu.root, &["--redis-url", &url], &[], Some(&log)).await;
    let refused = submit_to(&gw, &full_input(&emu, "password").await, Some("password-key")).await;
    assert_eq!(code(&refused), "STATE_UNAVAILABLE", "{refused}");
    let ready = get_text(&format!("{}/readyz", gw.base)).await;
    assert!(ready.contains("Redis unreachable"), "{ready}");
    // Redis refused this replica at start too: its cursors are its own, and it says so.
    assert!(ready.contains(r#""cursorKey":"process""#), "{ready}");
    assert!(
        ready.contains("cursor key: Redis could not give the shared key"),
        "{ready}"
    );
    gw.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        text.contains(&format!("redis://:***@127.0.0.1:{}/", redis.port)),
        "{text}"
    );
    assert!(!text.contains("pa55") && !ready.contains("pa55"), "{text}\n{ready}");
}

#[tokio::test]
async fn a_client_that_hangs_up_before_the_write_leaves_the_key_free_for_every_replica() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    // A short deadline: a retry waits for the key less than a lease lasts (10 s), so only a key
    // settled when its request was dropped can be free in time.
    let gws = replicas(2, &emu, &redis, &["--deadline", "3s"]).await;
    let unit = one_submission(&emu, &gws[1]).await;
    let input = full_input(&emu, "hung-up").await;
    let before = counts(&emu).await;
    emu.set_faults(json!({"latencyMs": 1500})).await;
    let body = json!({"query": SUBMIT, "variables": {"input": input, "key": "hung-up-key"}});
    let gone = crate::harness::client()
        .post(format!("{}/graphql", gws[0].base))
        .json(&body)
        .timeout(std::time::Duration::from_millis(400))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up during the validation read");
    emu.set_faults(json!({})).await;
    let retry = submit_to(&gws[1], &input, Some("hung-up-key")).await;
    assert_eq!(
        (retry["errors"].clone(), retry["replayed"].clone()),
        (json!([]), json!(false)),
        "{retry}"
    );
    assert_eq!(times(&added(&before, &counts(&emu).await), &unit), Some(1), "{retry}");
}

const PAGE: &str = "query($after: String) { recruitingRequests(first: 2, after: $after, orderBy: [{recruitingRequestId: ASC}]) { pageInfo { endCursor } nodes { recruitingRequestId } } }";

#[tokio::test]
async fn a_cursor_issued_by_one_replica_continues_on_another() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    let gws = replicas(3, &emu, &redis, &[]).await;
    let page = |v: &Value| v["data"]["recruitingRequests"].clone();
    let first = page(&gws[0].post(&json!({"query": PAGE})).await);
    let cursor = first["pageInfo"]["endCursor"].clone();
    assert!(cursor.is_string(), "{first}");
    let on_third = gws[2]
        .post(&json!({"query": PAGE, "variables": {"after": cursor}}))
        .await;
    assert!(
        on_third.get("errors").is_none(),
        "accepted by another replica: {on_third}"
    );
    let whole = gws[1]
        .post(&json!({"query": PAGE.replace("first: 2", "first: 4")}))
        .await;
    let ids = |v: &Value| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["recruitingRequestId"].clone())
            .collect::<Vec<_>>()
    };
    let mut continued = ids(&first);
    continued.extend(ids(&page(&on_third)));
    assert_eq!(
        continued,
        ids(&page(&whole)),
        "the next page, from where the first replica stopped"
    );
    let ready = readyz(&gws[2]).await;
    assert_eq!(ready["cursorKey"], "redis", "{ready}");
}

/// The emulator's count of injected faults of `kind`.
async fn injected(emu: &Emu, kind: &str) -> u64 {
    emu.stats().await["injected"][kind].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_429_seen_by_one_replica_pauses_the_others() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    let gws = replicas(2, &emu, &redis, &[]).await;
    // Distinct reads, so that no read cache answers instead of the upstream.
    let read = |n: u32| json!({"query": format!("{{ recruitingRequests(first: {n}) {{ nodes {{ id }} }} }}")});
    // Two requests per 2 s: replica 1's third read is refused with `Retry-After: 2`.
    emu.set_faults(json!({"throttle": {"requests": 2, "windowSeconds": 2}}))
        .await;
    for n in [1, 2] {
        assert!(gws[0].post(&read(n)).await.get("errors").is_none());
    }
    emu.reset_stats().await;
    let first = {
        let (gw, body) = (gws[0].base.clone(), read(3));
        tokio::spawn(async move { crate::harness::post_json(&format!("{gw}/graphql"), &body).await })
    };
    let since = std::time::Instant::now();
    while injected(&emu, "throttled").await < 1 {
        assert!(since.elapsed() < std::time::Duration::from_secs(10), "no 429 seen");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Replica 1 announced the pause once its key is in Redis (the announcement goes with it).
    while redis.command("KEYS ats-gateway:pause:*").as_deref() == Some("*0") {
        assert!(since.elapsed() < std::time::Duration::from_secs(10), "no pause shared");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let second = gws[1].post(&read(4)).await;
    let first = first.await.unwrap();
    for v in [&first, &second] {
        assert!(v.get("errors").is_none(), "served once the pause ended: {v}");
    }
    let stats = emu.stats().await;
    assert_eq!(
        (injected(&emu, "throttled").await, stats["total"].as_u64()),
        (1, Some(3)),
        "replica 2 waited out replica 1's pause instead of meeting a 429 of its own: {stats}"
    );
}

#[tokio::test]
async fn reference_data_is_fetched_upstream_once_for_the_three_replicas() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    let gws = replicas(3, &emu, &redis, &[]).await;
    let q = json!({"query": "{ ratingLevels(first: 50) { nodes { id ratingLevelId } } }"});
    let as_caller = |gw: &GatewayProcess, token: &'static str| {
        let (url, q) = (format!("{}/graphql", gw.base), q.clone());
        async move {
            let rb = crate::harness::client().post(url).bearer_auth(token).json(&q);
            rb.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let fetched = || async { emu.stats().await["byEntitySet"]["mshr_hcmratinglevelentities"].as_u64() };
    emu.reset_stats().await;
    let first = as_caller(&gws[0], "alice").await;
    assert!(first["data"]["ratingLevels"]["nodes"][0]["id"].is_string(), "{first}");
    // Replica 1 stores the page in Redis once it read it (in a task of its own).
    let since = std::time::Instant::now();
    while redis.command("KEYS ats-gateway:reference:*").as_deref() == Some("*0") {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(10),
            "the page never reached Redis"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for gw in &gws[1..] {
        assert_eq!(as_caller(gw, "alice").await, first, "the same page");
    }
    assert_eq!(fetched().await, Some(1), "fetched upstream once for the three replicas");
    // Keyed by caller identity: another caller's page is its own.
    let bob = as_caller(&gws[1], "bob").await;
    assert_eq!(bob["data"], first["data"]);
    assert_eq!(fetched().await, Some(2), "bob is not served alice's page");
}

#[tokio::test]
async fn a_burst_through_three_replicas_stays_within_the_shared_upstream_rate_limit() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    // 40 per 10 s: each replica's start (labels, `$metadata`, probes: 21 requests, counted in
    // its own window before it shares one) fits, and leaves each replica's own window room for
    // the 15 reads it gets. A deadline shorter than the window: a read over the budget cannot
    // wait for it, and fails.
    let args = ["--upstream-rate-limit", "40/10s", "--deadline", "5s"];
    let gws = replicas(3, &emu, &redis, &args).await;
    emu.reset_stats().await;
    // 45 distinct reads (no cache or coalescing answers one for another), 15 per replica:
    // each replica alone stays within its window, all three together do not.
    let reads = (1..=45).map(|n| {
        let gw = &gws[n % 3];
        let q = format!("{{ recruitingRequests(first: {n}) {{ nodes {{ id }} }} }}");
        async move { gw.post(&json!({"query": q})).await }
    });
    let answers = futures::future::join_all(reads).await;
    let served = answers.iter().filter(|v| v.get("errors").is_none()).count();
    let refused: Vec<&Value> = answers.iter().filter(|v| v.get("errors").is_some()).collect();
    for v in &refused {
        assert_eq!(v["errors"][0]["extensions"]["code"], "UPSTREAM_BUDGET_EXHAUSTED", "{v}");
    }
    let stats = emu.stats().await;
    let seen = stats["total"].as_u64().unwrap_or(0);
    assert!(
        seen <= 40,
        "the emulator saw {seen} requests within one 10 s window: {stats}"
    );
    assert_eq!((served as u64, served + refused.len()), (seen, 45), "{stats}");
}

#[tokio::test]
async fn slots_are_shared_by_the_replicas_and_a_dead_replicas_slot_comes_back() {
    let (redis, emu) = (RedisServer::start(), Emu::fresh());
    // One request in flight per identity over both replicas; a lease lasts at most the
    // operation's deadline (90% of 2 s) and one upstream attempt (2 s).
    let args = [
        "--upstream-concurrency-total",
        "1",
        "--deadline",
        "2s",
        "--upstream-timeout",
        "2s",
    ];
    let mut gws = replicas(2, &emu, &redis, &args).await;
    let read = |n: u32| json!({"query": format!("{{ recruitingRequests(first: {n}) {{ nodes {{ id }} }} }}")});
    emu.set_faults(json!({"latencyMs": 5000})).await;
    emu.reset_stats().await;
    let doomed = {
        let (base, body) = (gws[0].base.clone(), read(1));
        spawn_post(base, body)
    };
    // Killed while its request is at the upstream: it holds the one slot, and never frees it.
    let since = std::time::Instant::now();
    while emu.stats().await["total"].as_u64().unwrap_or(0) < 1 {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(10),
            "the read never went out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gws[0].child.kill().expect("the replica is killed");
    let _ = gws[0].child.wait();
    assert!(doomed.await.unwrap().is_err(), "the killed replica never answered");
    emu.set_faults(json!({})).await;
    let waited = gws[1].post(&read(2)).await;
    assert_eq!(
        waited["errors"][0]["extensions"]["code"], "UPSTREAM_THROTTLED",
        "{waited}"
    );
    assert!(waited.to_string().contains("over all gateway replicas"), "{waited}");
    assert_eq!(
        emu.stats().await["total"],
        1,
        "nothing sent while the dead replica's lease lasts"
    );
    // Its lease ends: the slot comes back.
    let mut later = gws[1].post(&read(3)).await;
    for _ in 0..10 {
        if later.get("errors").is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        later = gws[1].post(&read(3)).await;
    }
    assert!(later.get("errors").is_none(), "the slot came back: {later}");
    // A call that ended gave its slot back at once (not at the end of its lease).
    let next = gws[1].post(&read(4)).await;
    assert!(next.get("errors").is_none(), "{next}");
}
