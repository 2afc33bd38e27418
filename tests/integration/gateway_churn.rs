//! Clients that hang up. Thousands of requests (reads, nested reads, keyed submissions) are
//! abandoned at random points, before and during their upstream calls, at a concurrency above
//! the upstream slot count. Afterwards the gateway must answer normally, hold no upstream slot,
//! not grow with a second round, and every abandoned keyed submission, retried with its key,
//! must yield exactly one candidate.
//!
//! The gateway runs as its own process (the built binary), so that its memory can be read from
//! `/proc`; the emulator runs in the test, with latency injected so that calls are in flight
//! when their clients leave.

use crate::gateway_writes::{request_and_position, SUBMIT};
use crate::harness::{get_text, post_json, Emu, GatewayProcess};
use ats_gateway::emulator::{faults::Faults, EmulatorConfig, Seed};
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const LIST: &str = "{ recruitingRequests(first: 50) { nodes { id recruitingRequestId } } }";
const NESTED: &str = "{ recruitingRequests(first: 50) { nodes { id recruitingRequestId description status
    positions { positionId status description } skills { skillId ratingLevelId } educations { educationLevelId educationDisciplineId }
    location { description city } recruiter { name partyNumber } } } }";

/// Clients at once, and requests each sends per round.
const CLIENTS: usize = 48;
const PER_CLIENT: usize = 24;

/// A gauge of the gateway's `/metrics`.
async fn gauge(gw: &GatewayProcess, name: &str) -> i64 {
    let text = get_text(&format!("{}/metrics", gw.base)).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

/// Waits (at most 20 s) until no upstream slot is held and nobody waits for one; returns the
/// last (in use, waiting).
async fn settle(gw: &GatewayProcess) -> (i64, i64) {
    let mut last = (-1, -1);
    for _ in 0..200 {
        last = (
            gauge(gw, "ats_gateway_upstream_slots_in_use").await,
            gauge(gw, "ats_gateway_upstream_slots_waiting").await,
        );
        if last == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// What a client sends.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    List,
    Nested,
    Submission,
}

/// One raw HTTP/1.1 POST of a GraphQL body, abandoned `after` it was sent: the connection is
/// closed with the answer still to come, as a browser tab or a load balancer does.
async fn abandon(port: u16, body: &Value, after: Duration) {
    let body = body.to_string();
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body.as_bytes()).await.is_err() {
        return;
    }
    tokio::time::sleep(after).await;
    drop(stream);
}

/// The submission input of key `key`: its person's last name is the key, so that the emulator
/// can be asked how many candidates each key made.
fn submission(template: &Value, key: &str) -> Value {
    let mut input = template.clone();
    input["person"]["lastName"] = json!(key);
    input["comments"] = json!(format!("churn {key}"));
    json!({"query": SUBMIT, "variables": {"input": input, "key": key}})
}

/// One round: `CLIENTS` clients each abandon `PER_CLIENT` requests (a few they wait for),
/// returning the idempotency keys of the abandoned submissions and how many requests were
/// abandoned.
async fn round(gw: &GatewayProcess, port: u16, template: &Value, name: &str) -> (Vec<String>, usize) {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (template, base, name) = (template.clone(), gw.base.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            let (mut keys, mut abandoned) = (Vec::new(), 0);
            for i in 0..PER_CLIENT {
                let (kind, after, wait) = {
                    let mut rng = rand::rng();
                    let kind = match rng.random_range(0..10) {
                        0..=3 => Kind::List,
                        4..=7 => Kind::Nested,
                        _ => Kind::Submission,
                    };
                    // 0-40 ms: before the first upstream call, while it queues for a slot, while
                    // it is in flight (the emulator answers after 15 ms), between levels.
                    (
                        kind,
                        Duration::from_millis(rng.random_range(0..40)),
                        rng.random_range(0..20) == 0,
                    )
                };
                let body = match kind {
                    Kind::List => json!({"query": LIST}),
                    Kind::Nested => json!({"query": NESTED}),
                    Kind::Submission => {
                        let key = format!("{name}-{c}-{i}");
                        keys.push(key.clone());
                        submission(&template, &key)
                    }
                };
                if wait && kind != Kind::Submission {
                    // Some clients wait for their answers, among those that leave.
                    let v = post_json(&format!("{base}/graphql"), &body).await;
                    assert!(v["data"].is_object(), "a waiting client is answered: {v}");
                } else {
                    abandon(port, &body, after).await;
                    abandoned += 1;
                }
            }
            (keys, abandoned)
        }));
    }
    let (mut keys, mut abandoned) = (Vec::new(), 0);
    for t in tasks {
        let (k, n) = t.await.unwrap();
        keys.extend(k);
        abandoned += n;
    }
    (keys, abandoned)
}

/// Retries a keyed submission until it settles, returning its candidate id.
async fn retry_until_settled(gw: &GatewayProcess, body: Value) -> String {
    for _ in 0..50 {
        let v = gw.post(&body).await;
        let p = &v["data"]["submitCandidateToHire"];
        if let Some(id) = p["candidateId"].as_str() {
            return id.to_string();
        }
        let code = p["errors"][0]["code"].as_str().unwrap_or("");
        assert!(
            matches!(code, "IDEMPOTENCY_KEY_IN_PROGRESS" | "IDEMPOTENCY_OUTCOME_UNKNOWN"),
            "a retried submission either settles or says to retry: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the submission never settled: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_requests_release_every_resource() {
    let emu = Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 60,
        faults: Faults {
            latency_ms: 15,
            ..Default::default()
        },
        ..EmulatorConfig::default()
    });
    let args = ["--upstream-concurrency", "8", "--deadline", "20s"];
    let gw = GatewayProcess::start(&emu.root, &args, &[("ATS_GATEWAY_LOG", "error")], None).await;
    let port: u16 = gw.base.rsplit(':').next().unwrap().parse().unwrap();
    let (rr, pos) = request_and_position(&emu).await;
    let template = json!({
        "dataAreaId": "usmf", "recruitingRequestId": rr, "positionId": pos, "availabilityDate": "2027-03-01",
        "person": {"firstName": "Churn", "lastName": "-", "gender": "FEMALE"},
        "educations": [{"educationDisciplineId": "Business Mgmt", "educationLevelId": "Bachelor", "educationInstitutionId": "Cottonwood Univ", "startDate": "2015-02-21T00:00:00Z", "endDate": "2019-02-22T00:00:00Z"}],
        "skills": [{"skillId": "Skill1", "ratingId": "Skills", "levelId": "4", "levelType": "ACTUAL", "levelDate": "2020-01-01T00:00:00Z", "verified": false}],
    });

    let (mut keys, mut abandoned) = round(&gw, port, &template, "first").await;
    let after_first = settle(&gw).await;
    assert_eq!(
        after_first,
        (0, 0),
        "no slot held or awaited after the first round (in use, waiting)"
    );
    let ok = gw.post(&json!({"query": NESTED})).await;
    assert!(
        ok.get("errors").is_none(),
        "the next ordinary request answers normally: {ok}"
    );
    assert_eq!(ok["data"]["recruitingRequests"]["nodes"].as_array().unwrap().len(), 50);
    let rss_before = gw.rss_kb();

    let (second_keys, second_abandoned) = round(&gw, port, &template, "second").await;
    keys.extend(second_keys);
    abandoned += second_abandoned;
    assert_eq!(
        settle(&gw).await,
        (0, 0),
        "no slot held or awaited after the second round"
    );
    let rss_after = gw.rss_kb();
    assert!(abandoned >= 2000, "requests abandoned: {abandoned}");
    assert!(
        rss_after < rss_before + 10 * 1024,
        "a second round of {} requests grew the gateway from {rss_before} kB to {rss_after} kB",
        CLIENTS * PER_CLIENT
    );
    let ok = gw.post(&json!({"query": LIST})).await;
    assert!(ok.get("errors").is_none(), "still answering: {ok}");

    // Every abandoned keyed submission, retried with its key, yields exactly one candidate.
    assert!(keys.len() > 100, "enough submissions were abandoned: {}", keys.len());
    let settled: Vec<String> = futures::stream::iter(keys.iter())
        .map(|key| retry_until_settled(&gw, submission(&template, key)))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut ids = std::collections::HashSet::new();
    for id in settled {
        assert!(ids.insert(id.to_ascii_lowercase()), "two keys share candidate {id}");
    }
    let v = emu
        .get("mshr_hcmcandidatetohireentities?$select=mshr_lastname&$filter=startswith(mshr_lastname,'first-') or startswith(mshr_lastname,'second-')")
        .await
        .1;
    let mut per_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for row in v["value"].as_array().expect("candidates") {
        *per_key
            .entry(row["mshr_lastname"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for key in &keys {
        assert_eq!(per_key.get(key), Some(&1), "candidates written for key {key}");
    }
    assert_eq!(per_key.len(), keys.len(), "no candidate without its key");
    assert_eq!(settle(&gw).await, (0, 0));
}

/// Rows of the sets a submission of [`submission`]'s template writes to.
async fn written_rows(emu: &Emu) -> [u64; 3] {
    let mut out = [0; 3];
    let sets = [
        "mshr_hcmcandidatetohireentities",
        "mshr_hcmpersoneducationentities",
        "mshr_hcmpersonskillentities",
    ];
    for (n, set) in out.iter_mut().zip(sets) {
        let text = get_text(&emu.url(&format!("{set}/$count"))).await;
        *n = text
            .trim_start_matches('\u{feff}')
            .parse()
            .unwrap_or_else(|_| panic!("{set}: {text}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flat_submissions_abandoned_mid_write_leave_no_half_candidate() {
    use ats_gateway::graphql::context::WriteConfig;
    use ats_gateway::graphql::mutations::write::Strategy;
    let emu = Emu::with_faults(Faults {
        latency_ms: 20,
        ..Default::default()
    });
    let gw = crate::harness::Gateway::with_writes(
        emu,
        WriteConfig {
            strategy: Strategy::Flat,
            ..Default::default()
        },
    );
    let port: u16 = gw
        .endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (rr, pos) = request_and_position(&gw.emu).await;
    let template = json!({
        "dataAreaId": "usmf", "recruitingRequestId": rr, "positionId": pos, "availabilityDate": "2027-03-01",
        "person": {"firstName": "Flat", "lastName": "-", "gender": "FEMALE"},
        "educations": [{"educationDisciplineId": "Business Mgmt", "educationLevelId": "Bachelor", "educationInstitutionId": "Cottonwood Univ", "startDate": "2015-02-21T00:00:00Z", "endDate": "2019-02-22T00:00:00Z"}],
        "skills": [{"skillId": "Skill1", "ratingId": "Skills", "levelId": "4", "levelType": "ACTUAL", "levelDate": "2020-01-01T00:00:00Z", "verified": false}],
    });
    let waited = std::time::Instant::now();
    let v = post_json(&gw.endpoint, &submission(&template, "flat-waited")).await;
    // Clients leave within 1.5 times what a waited submission took here (at least 500 ms), so
    // that on a loaded machine some still reach the writes before they go (not a timed
    // assertion: it only scales the random moments of leaving).
    let window_ms = (waited.elapsed().as_millis() as u64 * 3 / 2).max(500);
    assert!(
        v["data"]["submitCandidateToHire"]["candidateId"].is_string(),
        "a flat submission works: {v}"
    );
    let before = written_rows(&gw.emu).await;
    // 60 submissions (half keyed) abandoned at a random moment of the window: during
    // validation, between the flat POSTs (each takes 20 ms at the emulator) or after the last.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let mut body = submission(&template, &format!("flat-{i}"));
        if i % 2 == 0 {
            body["variables"]["key"] = Value::Null;
        }
        let after = Duration::from_millis(rand::rng().random_range(0..window_ms));
        tasks.push(tokio::spawn(async move { abandon(port, &body, after).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Every write started goes on to its end (or its compensation) without its client.
    let mut settled = [0; 3];
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = written_rows(&gw.emu).await;
        if now == settled {
            break;
        }
        settled = now;
    }
    let added: Vec<u64> = settled.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        (added[1], added[2]),
        (added[0], added[0]),
        "every candidate written has its education and skill, and no detail lacks its candidate (candidates, educations, skills added): {added:?}"
    );
    assert!(
        added[0] > 0,
        "some submissions were written before their clients left: {added:?}"
    );
}
