//! The gateway over a failing upstream, with the emulator's fault injection: a throttled burst,
//! a 30% 5xx rate, the upstream going away and coming back, idempotent submissions under
//! failures and lost answers, and garbage bodies. Timing assertions are loose bounds; loops are
//! bounded in count and time. Each test prints what it saw (run with `--nocapture`).

use crate::harness::{client, Emu, Gateway};
use ats_gateway::emulator::{EmulatorConfig, Seed};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const READ: &str = "{ recruitingRequests(first: 2) { nodes { id recruitingRequestId } } }";

async fn set_faults(emu: &Emu, faults: Value) {
    emu.set_faults(faults).await
}

/// The codes of a response's GraphQL errors.
fn codes(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("(none)").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn metric(gw: &Gateway, name: &str) -> u64 {
    let (_, text) = gw.get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn emulator(seed_size: usize) -> Emu {
    Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size,
        ..EmulatorConfig::default()
    })
}

#[tokio::test]
async fn a_throttled_burst_waits_instead_of_storming() {
    let emu = emulator(10).await;
    let gw = Gateway::over(emu);
    gw.data(READ, json!({})).await;
    // 25 requests per caller per second; the gateway's callers here are all anonymous: one
    // identity, so 200 operations need at least 8 windows.
    set_faults(&gw.emu, json!({"throttle": {"requests": 25, "windowSeconds": 1}})).await;
    gw.emu.reset_stats().await;
    let started = Instant::now();
    let burst = futures::future::join_all((0..200).map(|_| gw.query(READ, json!({}))));
    let responses = tokio::time::timeout(Duration::from_secs(120), burst)
        .await
        .expect("the burst ends");
    let elapsed = started.elapsed();
    let mut ok = 0;
    let mut throttled = 0;
    for v in &responses {
        match codes(v).as_slice() {
            [] => {
                assert_eq!(v["data"]["recruitingRequests"]["nodes"].as_array().unwrap().len(), 2);
                ok += 1;
            }
            other => {
                assert!(other.iter().all(|c| c == "UPSTREAM_THROTTLED"), "{v}");
                throttled += 1;
            }
        }
    }
    let stats = gw.emu.stats().await;
    let upstream_429 = stats["injected"]["throttled"].as_u64().unwrap_or(0);
    let upstream_total = stats["total"].as_u64().unwrap();
    println!(
        "throttled burst: {ok} ok, {throttled} UPSTREAM_THROTTLED in {:.1} s; upstream saw {upstream_total} requests, {upstream_429} answered 429; gateway retries {}",
        elapsed.as_secs_f64(),
        metric(&gw, "ats_gateway_upstream_retries_total").await
    );
    assert_eq!(ok + throttled, 200);
    assert!(ok >= 100, "most of the burst gets through by waiting ({ok} ok)");
    assert!(
        upstream_429 < 200,
        "queueing and pausing keep 429s well below one per operation ({upstream_429})"
    );
    let r = client().get(format!("{}/healthz", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), 200, "the gateway is still up");
}

#[tokio::test]
async fn a_burst_beyond_the_throttling_window_fails_fast_with_upstream_throttled() {
    let emu = emulator(10).await;
    let gw = Gateway::over(emu);
    gw.data(READ, json!({})).await;
    // 30 requests per minute: the rest would have to wait longer than the deadline (30 s).
    set_faults(&gw.emu, json!({"throttle": {"requests": 30, "windowSeconds": 60}})).await;
    gw.emu.reset_stats().await;
    let started = Instant::now();
    // 200 different queries: identical ones in flight together would share one upstream request.
    let distinct = "query($n: Int) { recruitingRequests(first: $n) { nodes { id recruitingRequestId } } }";
    let burst = futures::future::join_all((0..200).map(|i| gw.query(distinct, json!({"n": i + 1}))));
    let responses = tokio::time::timeout(Duration::from_secs(60), burst)
        .await
        .expect("the burst ends");
    let elapsed = started.elapsed();
    let ok = responses.iter().filter(|v| codes(v).is_empty()).count();
    for v in responses.iter().filter(|v| !codes(v).is_empty()) {
        assert_eq!(codes(v), ["UPSTREAM_THROTTLED"], "{v}");
    }
    let stats = gw.emu.stats().await;
    println!(
        "burst past the window: {ok} ok, {} UPSTREAM_THROTTLED in {:.1} s; upstream saw {} requests, {} answered 429",
        200 - ok,
        elapsed.as_secs_f64(),
        stats["total"],
        stats["injected"]["throttled"]
    );
    assert_eq!(ok, 30, "the budget, and no more");
    assert!(
        stats["injected"]["throttled"].as_u64().unwrap_or(0) <= 16,
        "after the first 429s the caller is paused: the rest fail without a request"
    );
}

#[tokio::test]
async fn reads_succeed_through_a_30_percent_5xx_rate() {
    let emu = emulator(10).await;
    let gw = Gateway::with_config(emu, |c| {
        // At 30%, a call fails after its retries with p = 0.3^(retries+1): 0.8% with the default
        // 3 retries, 0.002% with 8.
        c.resilience.max_retries = 8;
        c.resilience.base_backoff = Duration::from_millis(20);
        c.resilience.max_backoff = Duration::from_millis(200);
    });
    set_faults(&gw.emu, json!({"errorRate": 0.3})).await;
    gw.emu.reset_stats().await;
    let nested = "{ recruitingRequests(first: 3) { nodes { id positions { positionId } skills { skillId } location { id city } } } }";
    let queries = (0..40).map(|i| if i % 2 == 0 { READ } else { nested });
    let responses: Vec<Value> = futures::stream::iter(queries)
        .map(|q| gw.query(q, json!({})))
        .buffer_unordered(8)
        .collect()
        .await;
    for v in &responses {
        assert!(v.get("errors").is_none(), "a read failed: {v}");
    }
    let stats = gw.emu.stats().await;
    let injected = stats["injected"]["serverError"].as_u64().unwrap_or(0);
    let retries = metric(&gw, "ats_gateway_upstream_retries_total").await;
    println!(
        "30% 5xx: 40 reads ok; upstream saw {} requests, {injected} answered 503; gateway retries {retries}",
        stats["total"]
    );
    assert!(injected > 0 && retries >= injected, "every 503 was retried");
    let r = client().get(format!("{}/readyz", gw.base())).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["circuit"], "closed",
        "errors that retries cure do not open the breaker: {v}"
    );
}

#[tokio::test]
async fn the_upstream_going_away_fails_fast_and_recovers() {
    let emu = emulator(10).await;
    let deadline = Duration::from_secs(4);
    let gw = Gateway::with_config(emu, |c| {
        c.limits.operation.deadline = deadline;
        c.resilience.base_backoff = Duration::from_millis(50);
        c.resilience.breaker_threshold = 3;
        c.resilience.breaker_cooldown = Duration::from_millis(500);
    });
    gw.data(READ, json!({})).await;
    gw.emu.pause();
    let mut slowest = Duration::ZERO;
    for _ in 0..6 {
        let t = Instant::now();
        let v = gw.query(READ, json!({})).await;
        let took = t.elapsed();
        slowest = slowest.max(took);
        assert_eq!(codes(&v), ["UPSTREAM_UNAVAILABLE"], "{v}");
        assert!(took < deadline, "the error came within the deadline ({took:?})");
    }
    let r = client().get(format!("{}/readyz", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let ready: Value = r.json().await.unwrap();
    let t = Instant::now();
    let v = gw.query(READ, json!({})).await;
    let fast = t.elapsed();
    assert_eq!(codes(&v), ["UPSTREAM_UNAVAILABLE"], "{v}");
    gw.emu.resume();
    let back = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let v = gw.query(READ, json!({})).await;
        if codes(&v).is_empty() {
            break;
        }
        assert!(
            tries < 100 && back.elapsed() < Duration::from_secs(30),
            "never recovered: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client().get(format!("{}/readyz", gw.base())).send().await.unwrap();
    let after: Value = r.json().await.unwrap();
    println!(
        "upstream down: errors within {slowest:?} (deadline {deadline:?}); readyz while down: {ready}; a call with the circuit open: {fast:?}; recovered {:?} after restart ({tries} tries); readyz after: {after}",
        back.elapsed()
    );
    assert_eq!(after["circuit"], "closed", "{after}");
}

const SUBMIT: &str = "mutation($input: CandidateToHireSubmissionInput!, $key: String) {
  submitCandidateToHire(input: $input, idempotencyKey: $key) {
    candidateId replayed recordsCreated errors { code message } } }";

fn submission(rr: &str, pos: &str, n: usize) -> Value {
    json!({
        "dataAreaId": "usmf", "recruitingRequestId": rr, "positionId": pos,
        "comments": format!("Fault test submission {n}"),
        "person": {"firstName": format!("Faulty{n}"), "lastName": "Network"},
        "skills": [{"skillId": "Skill1", "ratingId": "Skills", "levelId": "4", "levelType": "ACTUAL", "levelDate": "2020-01-01T00:00:00Z", "verified": false}],
    })
}

async fn candidate_count(emu: &Emu) -> u64 {
    let r = client()
        .get(emu.url("mshr_hcmcandidatetohireentities/$count"))
        .send()
        .await
        .unwrap();
    r.text().await.unwrap().trim_start_matches('\u{feff}').parse().unwrap()
}

/// Submits with `key` until the payload has no errors (at most `tries` times); returns the last
/// payload and how many calls it took.
async fn submit_until_done(gw: &Gateway, input: &Value, key: &str, tries: usize) -> (Value, usize) {
    let mut last = Value::Null;
    for attempt in 1..=tries {
        let v = gw.query(SUBMIT, json!({"input": input, "key": key})).await;
        last = v["data"]["submitCandidateToHire"].clone();
        if v.get("errors").is_none() && last["errors"] == json!([]) {
            return (last, attempt);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (last, tries)
}

#[tokio::test]
async fn keyed_submissions_under_failures_create_each_candidate_once() {
    let emu = emulator(10).await;
    let gw = Gateway::with_config(emu, |c| {
        c.resilience.base_backoff = Duration::from_millis(20);
        c.resilience.max_backoff = Duration::from_millis(200);
    });
    let (rr, pos) = crate::gateway_writes::request_and_position(&gw.emu).await;
    let before = candidate_count(&gw.emu).await;
    // 20% of requests fail: 10% refused with 503 (nothing done), 5% dropped before processing,
    // 5% processed and their answer lost.
    set_faults(
        &gw.emu,
        json!({"errorRate": 0.1, "dropRate": 0.05, "lostResponseRate": 0.05}),
    )
    .await;
    gw.emu.reset_stats().await;
    let runs = (0..100).map(|n| {
        let input = submission(&rr, &pos, n);
        let gw = &gw;
        async move { submit_until_done(gw, &input, &format!("fault-{n}"), 10).await }
    });
    let results: Vec<(Value, usize)> = futures::stream::iter(runs).buffer_unordered(8).collect().await;
    let stats = gw.emu.stats().await;
    set_faults(&gw.emu, json!({})).await;
    let after = candidate_count(&gw.emu).await;
    let mut ids = std::collections::HashSet::new();
    let mut client_retries = 0;
    let mut replays = 0;
    for (p, calls) in &results {
        assert_eq!(p["errors"], json!([]), "a submission never went through: {p}");
        assert!(ids.insert(p["candidateId"].as_str().unwrap().to_string()), "{p}");
        client_retries += calls - 1;
        replays += usize::from(p["replayed"] == true);
    }
    // The validation reads go in `$batch`es; only look-ups after a lost answer read the
    // candidates' set directly.
    let lookups = stats["byEntitySet"]["mshr_hcmcandidatetohireentities"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "100 keyed submissions: {} candidates created; {lookups} look-ups after lost answers; client retries {client_retries} ({replays} answered by a look-up); injected {}; gateway retries {}",
        after - before,
        stats["injected"],
        metric(&gw, "ats_gateway_upstream_retries_total").await
    );
    assert_eq!(after - before, 100, "exactly one candidate per submission");
    assert!(
        stats["injected"]["lostResponse"].as_u64().unwrap_or(0) > 0,
        "some answers were lost after the write: {stats}"
    );
}

#[tokio::test]
async fn a_submission_cancelled_while_writing_is_found_not_written_twice() {
    let emu = emulator(10).await;
    // Each upstream request takes 1.5 s; the operation may take 2.5 s: validation ends at about
    // 1.5 s, the write goes out and commits at about 3 s, after the deadline cancelled the
    // submission.
    let gw = Gateway::with_config(emu, |c| c.limits.operation.deadline = Duration::from_millis(2500));
    let (rr, pos) = crate::gateway_writes::request_and_position(&gw.emu).await;
    let input = submission(&rr, &pos, 1000);
    let before = candidate_count(&gw.emu).await;
    set_faults(&gw.emu, json!({"latencyMs": 1500})).await;
    let v = gw.query(SUBMIT, json!({"input": &input, "key": "slow-1"})).await;
    assert_eq!(codes(&v), ["DEADLINE_EXCEEDED"], "{v}");
    // Wait (bounded) until the emulator has finished whatever went out.
    let waited = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    set_faults(&gw.emu, json!({})).await;
    while candidate_count(&gw.emu).await == before && waited.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written_before_retry = candidate_count(&gw.emu).await - before;
    let (p, calls) = submit_until_done(&gw, &input, "slow-1", 3).await;
    assert_eq!(p["errors"], json!([]), "{p}");
    println!(
        "cancelled while writing: {written_before_retry} candidate written before the retry; retry answered {p} in {calls} call(s)"
    );
    assert_eq!(candidate_count(&gw.emu).await - before, 1, "written once");
    if written_before_retry == 1 {
        assert_eq!(p["replayed"], true, "found, not written again: {p}");
    }
}

#[tokio::test]
async fn garbage_from_the_upstream_is_a_clear_error() {
    let emu = emulator(10).await;
    let gw = Gateway::over(emu);
    let (rr, pos) = crate::gateway_writes::request_and_position(&gw.emu).await;
    let input = submission(&rr, &pos, 2000);
    let read = "{ recruitingRequests(first: 2) { nodes { id recruitingRequestId status positions { positionId } } } }";
    let single = "query($id: ID!) { recruitingRequest(id: $id) { id description } }";
    let id = gw.data(read, json!({})).await["recruitingRequests"]["nodes"][0]["id"].clone();
    let id = id.as_str().unwrap().to_string();
    for kind in ["invalidJson", "truncatedJson", "wrongTypes", "unclosedMultipart"] {
        set_faults(&gw.emu, json!({"garbage": {"rate": 1.0, "kind": kind}})).await;
        let mut seen = Vec::new();
        for (what, q, vars) in [("list", read, json!({})), ("single", single, json!({"id": id}))] {
            let v = gw.query(q, vars).await;
            let c = codes(&v);
            if kind != "unclosedMultipart" {
                assert!(!c.is_empty(), "{kind} {what}: {v}");
                assert!(c.iter().all(|c| c == "UPSTREAM_INVALID_RESPONSE"), "{kind} {what}: {v}");
            }
            seen.push(format!("{what}: {}", c.first().map(String::as_str).unwrap_or("ok")));
        }
        // Submissions read and write through `$batch`, whose parts wrongTypes leaves alone.
        if kind != "wrongTypes" {
            let v = gw.query(SUBMIT, json!({"input": &input, "key": null})).await;
            let p = &v["data"]["submitCandidateToHire"];
            let first = p["errors"][0]["code"].as_str().unwrap_or("(none)").to_string();
            assert_eq!(first, "UPSTREAM_INVALID_RESPONSE", "{kind} submission: {v}");
            seen.push(format!("submission: {first}"));
        }
        println!("garbage {kind}: {}", seen.join(", "));
    }
    set_faults(&gw.emu, json!({})).await;
    gw.data(read, json!({})).await;
}
