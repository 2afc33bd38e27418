//! Load benchmark: builds nothing itself (run through `bench/run.sh`, which builds the release
//! binary), starts the emulator and the gateways as separate processes, warms up, and runs three
//! parts (`BENCH_ONLY` picks some):
//!
//! - `ops`: drives each operation with a closed-loop load generator (N concurrent clients for a
//!   fixed time) and reports requests/s, p50/p99 latency, errors, upstream requests per operation
//!   and the gateway's peak RSS; reads also run directly against the emulator with the equivalent
//!   OData requests, so the gateway / direct ratio shows the overhead.
//! - `unloaded`: the canonical nested query with one client, one request after another, through
//!   the gateway with `$expand` pushdown auto and off, next to the emulator's own single `$expand`
//!   request for the same data: the p50s, the difference and ratio to that baseline, against the
//!   targets of issue #12 (+2 ms with pushdown, +4 ms without).
//! - `churn`: clients that hang up (see [`churn`]).
//! - `dashboard`: 100 users refreshing a dashboard through one application user, and the upstream
//!   requests per minute that costs with and without coalescing and the read cache (see
//!   [`dashboard`]). It runs only when `BENCH_ONLY` names it (about 3½ minutes), and writes
//!   `dashboard.md` and `dashboard.json`, never `latest.*`.
//! - `replicas`: a keyed submission and a flat read through one replica without Redis and
//!   through three sharing one Redis (see [`replicas`]). Also only when named; writes
//!   `replicas.md` and `replicas.json`.
//! - `subscribers`: 10,000 subscriptions over 100 filters on one gateway at 1 s intervals: RSS
//!   and upstream requests per second (see [`subscribers`]). Also only when named; writes
//!   `subscribers.md` and `subscribers.json`.
//! - `tracing`: the flat and the canonical queries with OpenTelemetry export on (sampling 1.0)
//!   against off (see [`tracing`]). Also only when named; writes `tracing.md` and `tracing.json`.
//!
//! Upstream requests per operation are always read from the emulator's request counter for one
//! operation, for the gateway and the direct requests alike. Writes `latest.md` and `latest.json`
//! in `bench/results/` (or `BENCH_RESULTS_DIR`), rewriting only the parts that ran.

#[path = "load/dashboard.rs"]
mod dashboard;
#[path = "load/replicas.rs"]
mod replicas;
#[path = "load/subscribers.rs"]
mod subscribers;
#[path = "load/tracing.rs"]
mod tracing;

use rand::Rng;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EMU: &str = "127.0.0.1:17070";
const GW: &str = "127.0.0.1:18080";
/// A second gateway with `--expand-pushdown auto` (the default, which pushes down against the
/// emulator); the first one runs with `--expand-pushdown off` (the loaders' path).
const GW_EXPAND: &str = "127.0.0.1:18081";
/// An emulator that wants tokens, and a gateway calling it with client credentials that checks
/// its callers' JWTs against the emulator's JWKS: what authentication costs.
const EMU_AUTH: &str = "127.0.0.1:17071";
const GW_AUTH: &str = "127.0.0.1:18082";
/// Ops whose upstream is `EMU_AUTH`.
const TARGET_AUTH: &str = "gateway (jwt callers, client credentials)";

struct Procs(Vec<Child>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn binary() -> String {
    std::env::var("ATS_GATEWAY_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/ats-gateway").to_string())
}

/// A `/proc/<pid>/status` memory line (`VmHWM:`, `VmRSS:`), in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

/// The resident set now (not its high-water mark).
fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// One request of an operation.
#[derive(Clone)]
enum Req {
    Get(String),
    /// A GET with `Prefer: odata.maxpagesize` (as the gateway reads a page).
    GetPaged(String, usize),
    GraphQl(String, Value),
    /// With an `Authorization` value.
    GraphQlAs(String, Value, String),
}

#[derive(Clone)]
#[allow(dead_code)]
struct Op {
    name: &'static str,
    /// Requests that make up one operation (sent concurrently; the operation ends when all did).
    reqs: Vec<Req>,
    /// Requests sent after `reqs` answered (a client's second round trip), concurrently.
    then: Vec<Req>,
    target: &'static str,
}

struct Stats {
    ops: u64,
    errors: u64,
    lat: Vec<Duration>,
    secs: f64,
}

async fn run_one(client: &reqwest::Client, r: &Req) -> bool {
    let resp = match r {
        Req::Get(url) => client.get(url).send().await,
        Req::GetPaged(url, size) => {
            client
                .get(url)
                .header("prefer", format!("odata.maxpagesize={size}"))
                .send()
                .await
        }
        Req::GraphQl(url, body) => client.post(url).json(body).send().await,
        Req::GraphQlAs(url, body, auth) => client.post(url).header("authorization", auth).json(body).send().await,
    };
    match resp {
        Ok(r) if r.status().is_success() => match r.json::<Value>().await {
            Ok(v) => graphql_ok(&v),
            Err(_) => false,
        },
        _ => false,
    }
}

/// A response without GraphQL errors and without errors in a mutation payload (OData bodies have
/// neither).
fn graphql_ok(v: &Value) -> bool {
    if v.get("errors")
        .is_some_and(|e| !e.as_array().is_some_and(|a| a.is_empty()))
    {
        return false;
    }
    let payload_errors = v.get("data").and_then(Value::as_object).is_some_and(|d| {
        d.values().any(|field| {
            field
                .get("errors")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        })
    });
    !payload_errors
}

/// One operation: its requests concurrently, then those of its second round trip.
async fn run_op(client: &reqwest::Client, op: &Op) -> bool {
    let mut ok = futures::future::join_all(op.reqs.iter().map(|r| run_one(client, r)))
        .await
        .into_iter()
        .all(|x| x);
    if !op.then.is_empty() {
        ok &= futures::future::join_all(op.then.iter().map(|r| run_one(client, r)))
            .await
            .into_iter()
            .all(|x| x);
    }
    ok
}

/// The upstream requests one operation makes, read from the counter of the emulator `emu` (the
/// one the operation reaches, directly or through a gateway), never from the requests the
/// operation itself names.
async fn upstream_requests_of(client: &reqwest::Client, op: &Op, emu: &str) -> u64 {
    reset(client, emu).await;
    run_op(client, op).await;
    upstream_count(client, emu).await
}

async fn drive(op: &Op, concurrency: usize, duration: Duration) -> Stats {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = run_op(&client, &op).await;
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    Stats {
        ops: all.len() as u64,
        errors,
        lat: all,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn pct(lat: &[Duration], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
    lat[i].as_secs_f64() * 1000.0
}

async fn upstream_count(client: &reqwest::Client, emu: &str) -> u64 {
    let v: Value = client
        .get(format!("http://{emu}/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["total"].as_u64().unwrap()
}

/// The `/metrics` text of the gateway at `gw` (`host:port`).
async fn metrics_text(client: &reqwest::Client, gw: &str) -> String {
    client
        .get(format!("http://{gw}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn reset(client: &reqwest::Client, emu: &str) {
    client
        .post(format!("http://{emu}/_emulator/stats/reset"))
        .send()
        .await
        .unwrap();
}

async fn wait_up(url: &str) {
    for _ in 0..300 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not come up");
}

/// A user's token for the gateway, from the emulator's password grant.
async fn user_token(client: &reqwest::Client, tenant: &str) -> String {
    let v: Value = client
        .post(format!("{tenant}/oauth2/v2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&client_id=ats-gateway&username=alice&password=demo&scope=api%3A%2F%2Fats-gateway%2Faccess_as_user")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!("Bearer {}", v["access_token"].as_str().expect("a user token"))
}

fn ops(
    doc_rr: &str,
    canonical_direct: (Vec<Req>, Vec<Req>),
    submission: Value,
    user_token: &str,
) -> Vec<(Op, Option<Op>)> {
    let root = format!("http://{EMU}/api/data/v9.2/");
    let gql = format!("http://{GW}/graphql");
    let gql_expand = format!("http://{GW_EXPAND}/graphql");
    let g = |q: &str| Req::GraphQl(gql.clone(), json!({"query": q}));
    let sel = "$select=mshr_recruitingrequestid,mshr_description,mshr_status,mshr_estimatedstartdate,mshr_dataareaid";
    let rr = format!("{root}mshr_hcmrecruitingrequestentities");
    vec![
        (
            Op { name: "emulator: 50-row $select page", reqs: vec![Req::Get(format!("{rr}?{sel}&$top=50"))], target: "emulator", then: vec![] },
            None,
        ),
        (
            Op {
                name: "emulator: documented $expand request",
                reqs: vec![Req::Get(format!("{rr}({doc_rr})?$expand=mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest,mshr_FK_HcmRecruitingRequestSkillEntity_RecruitingRequest,mshr_FK_HcmRecruitingRequestEducationEntity_RecruitingRequest"))],
                target: "emulator",
                then: vec![],
            },
            None,
        ),
        (
            Op { name: "gateway: flat 50-row list", reqs: vec![g(FLAT)], target: "gateway", then: vec![] },
            Some(Op { name: "direct: flat 50-row list", reqs: vec![Req::Get(format!("{rr}?{sel}&$top=50"))], target: "emulator", then: vec![] }),
        ),
        (
            Op {
                name: "gateway with JWT callers and client credentials: flat 50-row list",
                reqs: vec![Req::GraphQlAs(format!("http://{GW_AUTH}/graphql"), json!({"query": FLAT}), user_token.to_string())],
                target: TARGET_AUTH,
                then: vec![],
            },
            Some(Op { name: "the same list through the gateway without auth", reqs: vec![g(FLAT)], target: "gateway", then: vec![] }),
        ),
        (
            Op {
                name: "gateway, pushdown off: canonical nested query (50 parents)",
                reqs: vec![g(CANONICAL)],
                target: "gateway",
                then: vec![],
            },
            Some(Op { name: "direct: the same data in 1 + 5 OData requests", reqs: canonical_direct.0.clone(), then: canonical_direct.1.clone(), target: "emulator" }),
        ),
        (
            Op {
                name: "gateway with $expand pushdown auto (the default): canonical nested query (50 parents)",
                reqs: vec![Req::GraphQl(gql_expand.clone(), json!({"query": CANONICAL}))],
                target: "gateway",
                then: vec![],
            },
            Some(Op { name: "direct: the same data in 1 + 5 OData requests", reqs: canonical_direct.0.clone(), then: canonical_direct.1.clone(), target: "emulator" }),
        ),
        (
            Op {
                name: "gateway: one candidate with all of its person's details",
                reqs: vec![g("{ candidatesToHire(first: 1) { nodes { id candidateId comments person { name partyNumber educations { educationLevelId startDate endDate } professionalExperiences { employerName } addresses { city } contacts { locator } skills { skillId ratingLevel { ratingLevelId } } certificates { certificateTypeId } screenings { screeningTypeId status } identificationNumbers { identificationNumber } } } } }")],
                target: "gateway",
                then: vec![],
            },
            None,
        ),
        (
            Op {
                name: "gateway: submitCandidateToHire with 34 records",
                reqs: vec![Req::GraphQl(gql.clone(), json!({"query": SUBMIT, "variables": {"input": submission}}))],
                target: "gateway",
                then: vec![],
            },
            None,
        ),
        (
            Op { name: "gateway: reference data (cached)", reqs: vec![g("{ ratingLevels(first: 50) { nodes { id ratingLevelId description } } }")], target: "gateway", then: vec![] },
            Some(Op {
                name: "direct: reference data",
                reqs: vec![Req::Get(format!("{root}mshr_hcmratinglevelentities?$select=mshr_ratinglevelid,mshr_description&$top=50"))],
                target: "emulator",
                then: vec![],
            }),
        ),
    ]
}

const FLAT: &str = "{ recruitingRequests(first: 50) { nodes { id recruitingRequestId description status estimatedStartDate dataAreaId } } }";

const CANONICAL: &str = "{ recruitingRequests(first: 50) { nodes { id recruitingRequestId description status positions { positionId status description } skills { skillId ratingLevelId } educations { educationLevelId educationDisciplineId } location { description city } recruiter { name partyNumber } } } }";

const SUBMIT: &str = "mutation($input: CandidateToHireSubmissionInput!) { submitCandidateToHire(input: $input) { candidateId recordsCreated errors { code message path } } }";

/// A submission of 34 records (a person and 4 of each of the 8 kinds of details) against the seed.
fn submission_input() -> Value {
    let four = |f: &dyn Fn(usize) -> Value| (0..4).map(f).collect::<Vec<_>>();
    json!({
        "dataAreaId": "usmf", "recruitingRequestId": "USMF-000001", "positionId": "000426", "availabilityDate": "2027-03-01", "comments": "benchmark",
        "person": {"firstName": "Bench", "lastName": "Mark"},
        "educations": four(&|i| json!({"educationDisciplineId": "Business Mgmt", "educationLevelId": "Bachelor", "startDate": format!("201{i}-02-21T00:00:00Z"), "endDate": format!("201{}-02-22T00:00:00Z", i + 4)})),
        "professionalExperiences": four(&|i| json!({"employerName": format!("Contoso {i}"), "employerPosition": "Analyst", "startDate": format!("201{i}-01-01T00:00:00Z")})),
        "addresses": four(&|i| json!({"locationId": format!("L{i}"), "description": "Home", "roles": "Home", "city": "Redmond"})),
        "contacts": four(&|i| json!({"locationId": format!("C{i}"), "description": "Mobile", "type": "PHONE", "locator": format!("+1 555 010{i}")})),
        "skills": four(&|i| json!({"skillId": format!("Skill{i}"), "ratingId": "Skills", "levelId": "4", "levelType": "ACTUAL", "levelDate": "2020-01-01T00:00:00Z"})),
        "certificates": four(&|i| json!({"certificateTypeId": "Forklift", "startDate": format!("202{i}-01-01T00:00:00Z")})),
        "screenings": four(&|_| json!({"screeningTypeId": "Drug test", "status": "PASS"})),
        "identificationNumbers": four(&|i| json!({"identificationNumber": format!("ID-{i}"), "identificationTypeId": "SSN"})),
    })
}

/// The OData requests that fetch the canonical nested query's data without the gateway: the page
/// of 50 recruiting requests, then its positions, skills and educations (by readable key), its
/// locations and recruiters (by key), built with the project's own query builder.
async fn canonical_direct(client: &reqwest::Client) -> (Vec<Req>, Vec<Req>) {
    use ats_gateway::model::model;
    use ats_gateway::odata::children_of;
    let root = format!("http://{EMU}/api/data/v9.2/");
    let rr = model().by_entity_set("mshr_hcmrecruitingrequestentities").unwrap();
    let page_url = format!("{root}mshr_hcmrecruitingrequestentities?$select=mshr_hcmrecruitingrequestentityid,mshr_recruitingrequestid,mshr_description,mshr_status,_mshr_fk_recruiter_id_value,_mshr_fk_recruitingrequestlocation_id_value&$top=50");
    let page: Value = client.get(&page_url).send().await.unwrap().json().await.unwrap();
    let rows = page["value"].as_array().unwrap();
    let col = |k: &str| -> Vec<String> { rows.iter().filter_map(|r| r[k].as_str().map(str::to_owned)).collect() };
    let mut then = Vec::new();
    for r in &rr.graphql.relations {
        let target = model().by_logical_name(&r.target).unwrap();
        let (key, values) = match r.field.as_str() {
            "positions" | "skills" | "educations" => {
                (r.child_readable_key.clone().unwrap(), col("mshr_recruitingrequestid"))
            }
            "location" | "recruiter" => (target.primary_key.clone(), col(&r.lookup_property)),
            _ => continue,
        };
        for q in children_of(target, &key, &values, &[], None, ats_gateway::odata::Dialect::Dataverse).unwrap() {
            then.push(Req::Get(format!("{root}{}", q.to_relative_url())));
        }
    }
    (vec![Req::Get(page_url)], then)
}

/// A keyed submission: abandoned ones must not leave anything behind either.
const SUBMIT_KEYED: &str = "mutation($input: CandidateToHireSubmissionInput!, $key: String) { submitCandidateToHire(input: $input, idempotencyKey: $key) { candidateId recordsCreated errors { code message path } } }";

/// Where the churn section of `latest.md` starts (it is the last section).
const CHURN_HEADING: &str = "## Clients that hang up";

/// How a request sent by a client that hangs up ended.
enum Left {
    /// The connection was closed with no byte of the answer received.
    Abandoned,
    /// The answer started arriving before the client's time to hang up.
    AnsweredFirst,
    /// Connecting or sending failed, or the gateway closed the connection first.
    Failed,
}

/// One raw HTTP/1.1 POST of a GraphQL body to the gateway, whose connection is closed `after`
/// the body was sent, unless the answer came first (as `tests/integration/gateway_churn.rs` does).
async fn hang_up(addr: &str, body: &Value, after: Duration) -> Left {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return Left::Failed;
    };
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body.as_bytes()).await.is_err() {
        return Left::Failed;
    }
    let mut first = [0u8; 1];
    match tokio::time::timeout(after, stream.read(&mut first)).await {
        Err(_) => Left::Abandoned,
        Ok(Ok(n)) if n > 0 => Left::AnsweredFirst,
        Ok(_) => Left::Failed,
    }
}

/// One request of a client that waits: `Err` carries the error's code (the first GraphQL error's
/// `extensions.code`, a payload error's code, the HTTP status, or what failed).
async fn answered(client: &reqwest::Client, body: &Value) -> Result<(), String> {
    let r = client
        .post(format!("http://{GW}/graphql"))
        .json(body)
        .send()
        .await
        .map_err(|_| "no response".to_string())?;
    if !r.status().is_success() {
        return Err(format!("HTTP {}", r.status().as_u16()));
    }
    let v: Value = r.json().await.map_err(|_| "unreadable body".to_string())?;
    if graphql_ok(&v) {
        return Ok(());
    }
    let code = v["errors"][0]["extensions"]["code"]
        .as_str()
        .or_else(|| {
            v["data"]
                .as_object()
                .and_then(|d| d.values().find_map(|f| f["errors"][0]["code"].as_str()))
        })
        .unwrap_or("error");
    Err(code.to_string())
}

/// A gauge of the gateway's `/metrics` (-1 when it cannot be read).
async fn gauge(client: &reqwest::Client, name: &str) -> i64 {
    let Ok(r) = client.get(format!("http://{GW}/metrics")).send().await else {
        return -1;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The churn run: `connections` connections to the gateway without pushdown for `secs` seconds, half of
/// them sending requests (flat list, canonical nested query, a few keyed submissions) and hanging
/// up 0–40 ms after sending, half sending the flat list or the canonical nested query and waiting
/// for the answers. The emulator behind the gateway answers after `latency_ms`, so that upstream
/// calls are in flight when clients leave. Afterwards: the slots left in use, and whether an
/// ordinary request is answered.
async fn churn(gw_pid: u32, secs: u64, connections: usize, latency_ms: u64, submission: Value) -> Value {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let client = reqwest::Client::new();
    client
        .put(format!("http://{EMU}/_emulator/faults"))
        .json(&json!({"latencyMs": latency_ms}))
        .send()
        .await
        .unwrap();
    let flat = json!({"query": FLAT});
    let nested = json!({"query": CANONICAL});
    let waiting = connections / 2;
    let leaving = connections - waiting;
    // Warm up at the same number of connections, all waiting, so that the start RSS includes the
    // memory of that many requests in flight.
    let warm = |q: &str| Op {
        name: "churn warm-up",
        reqs: vec![Req::GraphQl(format!("http://{GW}/graphql"), json!({"query": q}))],
        target: "gateway",
        then: vec![],
    };
    let (w1, w2) = (warm(FLAT), warm(CANONICAL));
    futures::future::join(
        drive(&w1, waiting, Duration::from_secs(3)),
        drive(&w2, leaving, Duration::from_secs(3)),
    )
    .await;
    reset(&client, EMU).await;
    let rss_start = rss_kb(gw_pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(gw_pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut waiters = Vec::new();
    for c in 0..waiting {
        let (flat, nested) = (flat.clone(), nested.clone());
        waiters.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut lat, mut errors) = ([Vec::new(), Vec::new()], Vec::new());
            let mut i = c;
            while Instant::now() < deadline {
                // Alternating, each client starting with the other kind than its neighbour.
                let k = i % 2;
                i += 1;
                let t = Instant::now();
                let r = answered(&client, if k == 0 { &flat } else { &nested }).await;
                lat[k].push(t.elapsed());
                if let Err(code) = r {
                    errors.push(code);
                }
            }
            (lat, errors)
        }));
    }
    let mut leavers = Vec::new();
    for c in 0..leaving {
        let (flat, nested, submission, run) = (flat.clone(), nested.clone(), submission.clone(), run.clone());
        leavers.push(tokio::spawn(async move {
            // Abandoned, of which submissions; answered before hanging up; failed.
            let mut counts = [0u64; 4];
            let mut i = 0;
            while Instant::now() < deadline {
                let (pick, after) = {
                    let mut rng = rand::rng();
                    (rng.random_range(0..100u32), Duration::from_millis(rng.random_range(0..=40)))
                };
                i += 1;
                let keyed = pick < 5;
                let body = match pick {
                    0..5 => json!({"query": SUBMIT_KEYED, "variables": {"input": submission, "key": format!("churn-{run}-{c}-{i}")}}),
                    5..52 => flat.clone(),
                    _ => nested.clone(),
                };
                match hang_up(GW, &body, after).await {
                    Left::Abandoned => {
                        counts[0] += 1;
                        counts[1] += keyed as u64;
                    }
                    Left::AnsweredFirst => counts[2] += 1,
                    Left::Failed => counts[3] += 1,
                }
            }
            counts
        }));
    }
    let mut lat = [Vec::new(), Vec::new()];
    let mut error_codes = std::collections::BTreeMap::<String, u64>::new();
    for t in waiters {
        let (l, e) = t.await.unwrap();
        for (all, l) in lat.iter_mut().zip(l) {
            all.extend(l);
        }
        for code in e {
            *error_codes.entry(code).or_default() += 1;
        }
    }
    let mut counts = [0u64; 4];
    for t in leavers {
        for (all, n) in counts.iter_mut().zip(t.await.unwrap()) {
            *all += n;
        }
    }
    let load_secs = started.elapsed().as_secs_f64();
    let upstream = upstream_count(&client, EMU).await;
    // Wait (at most 10 s) until no slot is held and nobody waits for one.
    let settle_started = Instant::now();
    let mut slots = (-1, -1);
    for _ in 0..100 {
        slots = (
            gauge(&client, "ats_gateway_upstream_slots_in_use").await,
            gauge(&client, "ats_gateway_upstream_slots_waiting").await,
        );
        if slots == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled_ms = settle_started.elapsed().as_secs_f64() * 1000.0;
    // An ordinary request afterwards: the canonical nested query, all 50 parents, no error.
    let t = Instant::now();
    let after = tokio::time::timeout(Duration::from_secs(60), async {
        let v: Value = client
            .post(format!("http://{GW}/graphql"))
            .json(&nested)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let n = v["data"]["recruitingRequests"]["nodes"].as_array().map_or(0, Vec::len);
        Some(graphql_ok(&v) && n == 50)
    })
    .await;
    let answered_after = matches!(after, Ok(Some(true)));
    let answered_after_ms = t.elapsed().as_secs_f64() * 1000.0;
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let rss_end = rss_kb(gw_pid);
    let peak = peak.load(Ordering::Relaxed).max(rss_end);
    let [flat_lat, nested_lat] = lat;
    let mut all: Vec<Duration> = flat_lat.iter().chain(&nested_lat).copied().collect();
    all.sort();
    let (mut flat_lat, mut nested_lat) = (flat_lat, nested_lat);
    flat_lat.sort();
    nested_lat.sort();
    let mb = |kb: u64| kb as f64 / 1024.0;
    json!({
        "gateway": GW, "seconds": secs, "load_seconds": load_secs, "connections": connections,
        "waiting_connections": waiting, "leaving_connections": leaving, "hang_up_after_ms": [0, 40],
        "upstream_latency_ms": latency_ms,
        "leaving_mix": {"flat_list": 0.47, "canonical_nested": 0.48, "keyed_submission": 0.05},
        "completed": all.len(), "completed_per_second": all.len() as f64 / load_secs,
        "p50_ms": pct(&all, 0.5), "p99_ms": pct(&all, 0.99),
        "flat": {"completed": flat_lat.len(), "p50_ms": pct(&flat_lat, 0.5), "p99_ms": pct(&flat_lat, 0.99)},
        "nested": {"completed": nested_lat.len(), "p50_ms": pct(&nested_lat, 0.5), "p99_ms": pct(&nested_lat, 0.99)},
        "errors": error_codes.values().sum::<u64>(), "error_codes": error_codes,
        "abandoned": counts[0], "abandoned_submissions": counts[1], "answered_before_hang_up": counts[2],
        "failed_to_send": counts[3], "upstream_requests": upstream,
        "rss_start_mb": mb(rss_start), "rss_end_mb": mb(rss_end), "rss_peak_mb": mb(peak),
        "slots_in_use_after": slots.0, "slots_waiting_after": slots.1, "settled_after_ms": settled_ms,
        "answered_after": answered_after, "answered_after_ms": answered_after_ms,
    })
}

/// The churn section of `latest.md`.
fn churn_md(c: &Value, machine: &str, commit: &str) -> String {
    let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
    let codes = c["error_codes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "{CHURN_HEADING}\n\n\
         Churn run on {commit}, machine: {machine}. {} connections to the gateway without pushdown for {} s: {} of them send a request \
         (47% the flat 50-row list, 48% the canonical nested query, 5% a keyed submitCandidateToHire) as raw HTTP/1.1 and close \
         the connection a random 0–40 ms after sending it, then do it again; the other {} send the flat list and the canonical \
         nested query in turn and wait for each answer. The emulator behind the gateway adds {} ms to every OData request \
         (`PUT /_emulator/faults`), so that upstream calls are in flight or queued for one of the gateway's upstream slots \
         (8, its default) when clients leave. RSS is the gateway's VmRSS: at the start (after a 3 s warm-up at the same number \
         of connections, all waiting), at the end (after the slots settled and the request afterwards), and the largest sampled \
         every 100 ms in between.\n\n\
         | measure | value |\n|---|---|\n\
         | completed requests (waiting clients) | {} ({:.0} req/s) |\n\
         | p50 / p99 of completed, ms | {:.1} / {:.1} |\n\
         | flat list: completed, p50 / p99 ms | {}, {:.1} / {:.1} |\n\
         | canonical nested query: completed, p50 / p99 ms | {}, {:.1} / {:.1} |\n\
         | errors among completed | {}{} |\n\
         | requests abandoned before any answer | {} ({:.0}/s; of which keyed submissions: {}) |\n\
         | answered before the client hung up | {} |\n\
         | failed to send | {} |\n\
         | upstream requests during the run | {} |\n\
         | gateway RSS at start / end / peak, MB | {:.1} / {:.1} / {:.1} |\n\
         | upstream slots in use / waiting afterwards | {} / {} (read after {:.0} ms) |\n\
         | answered afterwards (canonical nested query, 50 parents, no error) | {} in {:.1} ms |\n",
        c["connections"],
        c["seconds"],
        c["leaving_connections"],
        c["waiting_connections"],
        c["upstream_latency_ms"],
        c["completed"],
        f("completed_per_second"),
        f("p50_ms"),
        f("p99_ms"),
        c["flat"]["completed"],
        c["flat"]["p50_ms"].as_f64().unwrap_or(0.0),
        c["flat"]["p99_ms"].as_f64().unwrap_or(0.0),
        c["nested"]["completed"],
        c["nested"]["p50_ms"].as_f64().unwrap_or(0.0),
        c["nested"]["p99_ms"].as_f64().unwrap_or(0.0),
        c["errors"],
        if codes.is_empty() { String::new() } else { format!(" ({codes})") },
        c["abandoned"],
        c["abandoned"].as_f64().unwrap_or(0.0) / f("load_seconds"),
        c["abandoned_submissions"],
        c["answered_before_hang_up"],
        c["failed_to_send"],
        c["upstream_requests"],
        f("rss_start_mb"),
        f("rss_end_mb"),
        f("rss_peak_mb"),
        c["slots_in_use_after"],
        c["slots_waiting_after"],
        f("settled_after_ms"),
        if c["answered_after"] == json!(true) { "yes" } else { "NO" },
        f("answered_after_ms"),
    )
}

/// The commit the benchmark ran on (`-dirty` with uncommitted changes), for the results.
fn commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "an unknown commit".into())
}

/// Starts a gateway at `listen` over the default emulator, with `extra` flags.
fn start_gateway(bin: &str, procs: &mut Procs, listen: &str, extra: &[&str]) -> u32 {
    start_gateway_over(bin, procs, EMU, listen, extra)
}

/// Starts a gateway at `listen` over the emulator at `emu`, with `extra` flags.
fn start_gateway_over(bin: &str, procs: &mut Procs, emu: &str, listen: &str, extra: &[&str]) -> u32 {
    let upstream = format!("http://{emu}/api/data/v9.2/");
    let gw = Command::new(bin)
        .args(["serve", "--listen", listen, "--upstream", &upstream])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts");
    let pid = gw.id();
    procs.0.push(gw);
    pid
}

/// Starts an emulator at `listen` with `extra` flags, and waits until it answers.
async fn start_emulator(bin: &str, procs: &mut Procs, listen: &str, extra: &[&str]) {
    let emu = Command::new(bin)
        .args(["emulator", "--listen", listen])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator starts");
    procs.0.push(emu);
    wait_up(&format!("http://{listen}/api/data/v9.2/")).await;
}

/// Starts the emulator that wants tokens and the gateway that calls it with client credentials
/// and checks its callers' JWTs against the emulator's JWKS; returns the emulator's tenant URL.
async fn start_auth_pair(bin: &str, procs: &mut Procs) -> String {
    start_emulator(bin, procs, EMU_AUTH, &["--require-auth", "true"]).await;
    let tenant = format!("http://{EMU_AUTH}/bench");
    let gw_auth = Command::new(bin)
        .args([
            "serve",
            "--listen",
            GW_AUTH,
            "--upstream",
            &format!("http://{EMU_AUTH}/api/data/v9.2/"),
            "--state-db",
            ":memory:",
            "--upstream-auth",
            "client-credentials",
            "--token-url",
            &format!("{tenant}/oauth2/v2.0/token"),
            "--client-id",
            ats_gateway::emulator::auth::DEMO_CLIENT_ID,
            "--caller-auth",
            "jwt",
            "--jwks-url",
            &format!("{tenant}/discovery/v2.0/keys"),
            "--jwt-issuer",
            &format!("{tenant}/v2.0"),
            "--jwt-audience",
            "api://ats-gateway",
        ])
        .env(
            "ATS_GATEWAY_CLIENT_SECRET",
            ats_gateway::emulator::auth::DEMO_CLIENT_SECRET,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway with auth starts");
    procs.0.push(gw_auth);
    wait_up(&format!("http://{GW_AUTH}/healthz")).await;
    tenant
}

/// One row of the operations table: `op` under load, and its direct counterpart. Upstream
/// requests per operation come from the emulator's counter for both.
async fn measure(client: &reqwest::Client, op: Op, direct: Option<Op>, secs: u64, concurrency: usize) -> Value {
    // Warm up, then count upstream requests for exactly one operation.
    drive(&op, concurrency, Duration::from_secs(2)).await;
    let emu = if op.target == TARGET_AUTH { EMU_AUTH } else { EMU };
    let per_op = upstream_requests_of(client, &op, emu).await;
    let s = drive(&op, concurrency, Duration::from_secs(secs)).await;
    let rps = s.ops as f64 / s.secs;
    let mut row = json!({
        "operation": op.name, "target": op.target, "requests_per_second": rps, "p50_ms": pct(&s.lat, 0.5), "p99_ms": pct(&s.lat, 0.99),
        "errors": s.errors, "operations": s.ops, "upstream_requests_per_operation": per_op,
    });
    if let Some(d) = direct {
        // Every direct operation reaches the default emulator (directly, or through the gateway).
        drive(&d, concurrency, Duration::from_secs(1)).await;
        let d_per_op = upstream_requests_of(client, &d, EMU).await;
        let ds = drive(&d, concurrency, Duration::from_secs(secs)).await;
        let drps = ds.ops as f64 / ds.secs;
        row["direct"] = json!({"operation": d.name, "requests_per_second": drps, "p50_ms": pct(&ds.lat, 0.5), "p99_ms": pct(&ds.lat, 0.99), "errors": ds.errors, "upstream_requests_per_operation": d_per_op});
        row["ratio_gateway_over_direct"] = json!(rps / drps);
    }
    eprintln!("{row}");
    row
}

/// The operations table as markdown.
fn ops_md(rows: &[Value], head: &str) -> String {
    let mut md = format!(
        "{head}\n\n| operation | req/s | p50 ms | p99 ms | errors | upstream req/op | direct req/s | direct p50 ms | direct upstream req/op | gateway / direct |\n|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let or_dash = |v: &Value, digits: usize| {
        v.as_f64()
            .map(|x| format!("{x:.digits$}"))
            .unwrap_or_else(|| "–".into())
    };
    for r in rows {
        let d = &r["direct"];
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |\n",
            r["operation"].as_str().unwrap(),
            r["requests_per_second"].as_f64().unwrap(),
            r["p50_ms"].as_f64().unwrap(),
            r["p99_ms"].as_f64().unwrap(),
            r["errors"],
            r["upstream_requests_per_operation"],
            or_dash(&d["requests_per_second"], 0),
            or_dash(&d["p50_ms"], 2),
            or_dash(&d["upstream_requests_per_operation"], 0),
            or_dash(&r["ratio_gateway_over_direct"], 2),
        ));
    }
    md
}

/// The operations table: starts the emulator and gateway with authentication, drives every
/// operation, and returns the table and the results' JSON.
async fn ops_table(
    bin: &str,
    procs: &mut Procs,
    gw_pid: u32,
    secs: u64,
    concurrency: usize,
    machine: &str,
) -> (String, Value) {
    let tenant = start_auth_pair(bin, procs).await;
    let client = reqwest::Client::new();
    let doc_rr = "00000d6b-0000-0000-0000-005001000000";
    let canonical = canonical_direct(&client).await;
    let latency_ms: u64 = env_or("BENCH_REFERENCE_LATENCY_MS", 20);
    let user_token = user_token(&client, &tenant).await;
    let mut all_ops = ops(doc_rr, canonical, submission_input(), &user_token);
    // The cache pays off over a real network: the reference-data comparison runs again with an
    // upstream latency injected at the emulator (both the gateway's misses and the direct calls
    // pay it).
    let reference = all_ops.last().cloned().expect("the reference-data op is last");
    all_ops.push((
        Op {
            name: "gateway: reference data (cached), upstream +latency",
            ..reference.0
        },
        reference.1.map(|d| Op {
            name: "direct: reference data, upstream +latency",
            ..d
        }),
    ));
    let n_ops = all_ops.len();
    let mut rows = Vec::new();
    for (i, (op, direct)) in all_ops.into_iter().enumerate() {
        if i + 1 == n_ops {
            set_latency(&client, latency_ms).await;
        }
        rows.push(measure(&client, op, direct, secs, concurrency).await);
    }
    set_latency(&client, 0).await;
    let rss_mb = peak_rss_kb(gw_pid) as f64 / 1024.0;
    let head = format!(
        "# ats-gateway benchmark\n\nRun on {}, machine: {machine}. Load: {concurrency} concurrent clients, {secs} s per operation after a warm-up, closed loop, loopback.\nGateway peak RSS over the whole run: {rss_mb:.1} MB. Upstream requests per operation, the gateway's and the direct ones', are read from the emulator's request counter for one operation.",
        commit()
    );
    let json = json!({"machine": machine, "commit": commit(), "concurrency": concurrency, "seconds": secs, "gateway_peak_rss_mb": rss_mb, "results": rows});
    (ops_md(&rows, &head), json)
}

/// Makes the default emulator answer every OData request `ms` later (0: at once).
async fn set_latency(client: &reqwest::Client, ms: u64) {
    let faults = if ms == 0 { json!({}) } else { json!({"latencyMs": ms}) };
    client
        .put(format!("http://{EMU}/_emulator/faults"))
        .json(&faults)
        .send()
        .await
        .unwrap();
}

/// Where the unloaded section of `latest.md` starts (between the operations table and the churn
/// run).
const UNLOADED_HEADING: &str = "## The canonical nested query, unloaded";

/// The canonical query's selection ([`CANONICAL`], written out): the recruiting request's fields,
/// then each relation with the fields selected under it.
const CANONICAL_FIELDS: &[&str] = &["id", "recruitingRequestId", "description", "status"];
const CANONICAL_RELATIONS: &[(&str, &[&str])] = &[
    ("positions", &["positionId", "status", "description"]),
    ("skills", &["skillId", "ratingLevelId"]),
    ("educations", &["educationLevelId", "educationDisciplineId"]),
    ("location", &["description", "city"]),
    ("recruiter", &["name", "partyNumber"]),
];

/// The canonical query as the upstream's own single request: the page of 50 recruiting requests
/// in id order with its five relations `$expand`ed, each with the columns the query selects, as
/// the gateway with pushdown asks for it (its `$select`s are built the way `resolve::select_for`
/// and `prefetch::child_select` build them). Sent with `Prefer: odata.maxpagesize=50`.
fn canonical_expand_url() -> String {
    use ats_gateway::model::{model, Entity, LookupSide};
    use ats_gateway::odata::{Expand, ODataQuery};
    let columns = |e: &Entity, fields: &[&str]| -> Vec<String> {
        let mut out = std::collections::BTreeSet::from([e.primary_key.clone()]);
        out.extend(
            e.properties
                .iter()
                .filter(|p| fields.contains(&p.graphql_field.as_str()))
                .map(|p| p.name.clone()),
        );
        out.into_iter().collect()
    };
    let rr = model().by_entity_set("mshr_hcmrecruitingrequestentities").unwrap();
    let mut select = columns(rr, CANONICAL_FIELDS);
    let mut expand = Vec::new();
    for (field, fields) in CANONICAL_RELATIONS {
        let r = rr
            .graphql
            .relations
            .iter()
            .find(|r| r.field == *field)
            .expect("a canonical relation");
        let target = model().by_logical_name(&r.target).unwrap();
        let mut inner = columns(target, fields);
        match r.lookup_on {
            LookupSide::This => select.push(r.lookup_property.clone()),
            LookupSide::Target => {
                select.push(r.parent_readable_key.clone().unwrap());
                let key = r.child_readable_key.clone().unwrap();
                if !inner.contains(&key) {
                    inner.push(key);
                }
            }
        }
        expand.push(Expand {
            navigation: r.navigation_property.clone(),
            select: inner,
            filter: None,
            expand: Vec::new(),
        });
    }
    select.sort();
    select.dedup();
    let q = ODataQuery {
        entity: rr,
        key: None,
        select,
        filter: None,
        orderby: vec![(rr.primary_key.clone(), false)],
        top: None,
        expand,
        count: false,
    };
    format!("http://{EMU}/api/data/v9.2/{}", q.to_relative_url())
}

/// How many children of each to-many relation 50 parents have: `rows` are recruiting requests,
/// `key(row, field)` their children under a relation field.
fn child_counts(rows: &[Value], key: impl Fn(&Value, &str) -> usize) -> Vec<usize> {
    ["positions", "skills", "educations"]
        .iter()
        .map(|f| rows.iter().map(|r| key(r, f)).sum())
        .collect()
}

/// Checks that the direct `$expand` request answers the canonical query's data: 50 parents with
/// the same number of children, relation by relation, as the gateway's answer.
async fn check_direct(client: &reqwest::Client, direct_url: &str) {
    use ats_gateway::model::model;
    let direct: Value = client
        .get(direct_url)
        .header("prefer", "odata.maxpagesize=50")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gateway: Value = client
        .post(format!("http://{GW}/graphql"))
        .json(&json!({"query": CANONICAL}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = direct["value"].as_array().expect("the direct request answers a page");
    let nodes = gateway["data"]["recruitingRequests"]["nodes"]
        .as_array()
        .expect("the gateway answers");
    assert_eq!((rows.len(), nodes.len()), (50, 50), "50 parents both ways");
    let rr = model().by_entity_set("mshr_hcmrecruitingrequestentities").unwrap();
    let nav = |f: &str| {
        rr.graphql
            .relations
            .iter()
            .find(|r| r.field == f)
            .unwrap()
            .navigation_property
            .clone()
    };
    let len = |v: &Value| v.as_array().map_or(0, Vec::len);
    assert_eq!(
        child_counts(rows, |r, f| len(&r[nav(f)])),
        child_counts(nodes, |n, f| len(&n[f])),
        "the same children both ways"
    );
}

/// The paths the unloaded comparison takes, the direct baseline first: a name, the operation and
/// the target (ms over the baseline's p50).
fn unloaded_paths(direct_url: String) -> Vec<(&'static str, Op, Option<f64>)> {
    let gateway = |addr: &str| {
        vec![Req::GraphQl(
            format!("http://{addr}/graphql"),
            json!({"query": CANONICAL}),
        )]
    };
    let op = |name, reqs, target| Op {
        name,
        reqs,
        then: vec![],
        target,
    };
    vec![
        (
            "direct: the emulator's own single $expand request",
            op("direct $expand", vec![Req::GetPaged(direct_url, 50)], "emulator"),
            None,
        ),
        (
            "gateway, $expand pushdown auto (the default)",
            op("gateway, pushdown", gateway(GW_EXPAND), "gateway"),
            Some(2.0),
        ),
        (
            "gateway, $expand pushdown off",
            op("gateway, loaders", gateway(GW), "gateway"),
            Some(4.0),
        ),
    ]
}

/// The canonical nested query unloaded: one client, one request after another, through the
/// gateway with `$expand` pushdown auto and off, next to the emulator answering the same data in
/// one `$expand` request. The paths take turns in rounds of one second (`secs` rounds), so that
/// other load on the machine falls on each of them alike.
/// `gateway_pids`: the gateways of the paths after the direct one, in their order.
async fn unloaded(secs: u64, emu_pid: u32, gateway_pids: [u32; 2]) -> Value {
    let client = reqwest::Client::new();
    set_latency(&client, 0).await;
    let direct_url = canonical_expand_url();
    check_direct(&client, &direct_url).await;
    let paths = unloaded_paths(direct_url);
    let mut counts = Vec::new();
    for (_, op, _) in &paths {
        drive(op, 1, Duration::from_secs(1)).await;
        counts.push(upstream_requests_of(&client, op, EMU).await);
    }
    let mut lat = vec![Vec::new(); paths.len()];
    let mut errors = vec![0u64; paths.len()];
    // CPU seconds of the emulator and of the path's gateway (none for the direct path) spent
    // during each path's rounds: per operation, a measure that load elsewhere disturbs less.
    let gateway_of = |i: usize| i.checked_sub(1).map(|g| gateway_pids[g]);
    let mut cpu = vec![(0.0f64, 0.0f64); paths.len()];
    for _ in 0..secs.max(1) {
        for (i, (_, op, _)) in paths.iter().enumerate() {
            let before = (cpu_seconds(emu_pid), gateway_of(i).map_or(0.0, cpu_seconds));
            let s = drive(op, 1, Duration::from_secs(1)).await;
            cpu[i].0 += cpu_seconds(emu_pid) - before.0;
            cpu[i].1 += gateway_of(i).map_or(0.0, cpu_seconds) - before.1;
            lat[i].extend(s.lat);
            errors[i] += s.errors;
        }
    }
    lat.iter_mut().for_each(|l| l.sort());
    let base = pct(&lat[0], 0.5);
    let rows: Vec<Value> = paths
        .iter()
        .enumerate()
        .map(|(i, (name, _, target))| {
            let p50 = pct(&lat[i], 0.5);
            let ops = lat[i].len().max(1) as f64;
            let mut row = json!({"path": name, "p50_ms": p50, "p99_ms": pct(&lat[i], 0.99), "operations": lat[i].len(), "errors": errors[i], "upstream_requests_per_operation": counts[i], "emulator_cpu_ms_per_operation": cpu[i].0 * 1000.0 / ops});
            if gateway_of(i).is_some() {
                row["gateway_cpu_ms_per_operation"] = json!(cpu[i].1 * 1000.0 / ops);
            }
            if let Some(t) = target {
                row["over_direct_ms"] = json!(p50 - base);
                row["ratio_over_direct"] = json!(p50 / base);
                row["target_over_direct_ms"] = json!(t);
                row["within_target"] = json!(p50 - base <= *t);
            }
            row
        })
        .collect();
    let v = json!({"seconds_per_path": secs.max(1), "paths": rows});
    eprintln!("{v}");
    v
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat` (clock ticks of
/// 1/100 s, Linux's `USER_HZ` on every architecture the project runs on); 0 when unreadable.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

/// The unloaded section of `latest.md`.
fn unloaded_md(v: &Value, machine: &str, commit: &str) -> String {
    let mut md = format!(
        "{UNLOADED_HEADING}\n\nRun on {commit}, machine: {machine}. One client sends the canonical nested query (50 recruiting \
         requests with their positions, skills, educations, location and recruiter) one request after another, {} s per path \
         in 1 s rounds taken in turn, loopback, no latency added. The direct baseline is the emulator answering the same data \
         itself in one OData request with `$expand` (the request the gateway sends with pushdown; checked to carry the same \
         children). Without pushdown the gateway reads the page, then one level of 5 loads, sent at once (no batch delay). \
         Upstream requests per operation come from the emulator's counter; CPU per operation is what the emulator and the \
         path's gateway process spent (user + system, from `/proc`) during the path's rounds, divided by its operations. \
         Targets (issue #12): within +2 ms of the direct p50 with pushdown, within +4 ms without.\n\n\
         | path | p50 ms | p99 ms | over direct p50, ms | p50 / direct p50 | upstream req/op | emulator CPU ms/op | gateway CPU ms/op | operations | errors | target | met |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        v["seconds_per_path"]
    );
    for r in v["paths"].as_array().unwrap() {
        let f = |k: &str, fmt: &dyn Fn(f64) -> String| r[k].as_f64().map(fmt).unwrap_or_else(|| "–".into());
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["path"].as_str().unwrap(),
            r["p50_ms"].as_f64().unwrap(),
            r["p99_ms"].as_f64().unwrap(),
            f("over_direct_ms", &|x| format!("{x:+.2}")),
            f("ratio_over_direct", &|x| format!("{x:.2}")),
            r["upstream_requests_per_operation"],
            f("emulator_cpu_ms_per_operation", &|x| format!("{x:.2}")),
            f("gateway_cpu_ms_per_operation", &|x| format!("{x:.2}")),
            r["operations"],
            r["errors"],
            f("target_over_direct_ms", &|x| format!("≤ +{x:.0} ms")),
            r["within_target"]
                .as_bool()
                .map_or("–", |ok| if ok { "yes" } else { "no" }),
        ));
    }
    md
}

/// The parts of a run, in their order in `latest.md`. A part that runs rewrites its own section
/// of `latest.md` and its own key of `latest.json` (the operations table: the top level).
const PARTS: [&str; 3] = ["ops", "unloaded", "churn"];
/// Parts that run only when `BENCH_ONLY` names them, each with its own results file.
const ONLY_WHEN_NAMED: [&str; 4] = ["dashboard", "replicas", "subscribers", "tracing"];

/// The sections of `latest.md` by part: the operations table up to the first other heading, each
/// other part from its heading to the next.
fn sections(md: &str) -> std::collections::HashMap<&'static str, String> {
    let mut starts: Vec<(usize, &'static str)> = [(UNLOADED_HEADING, "unloaded"), (CHURN_HEADING, "churn")]
        .into_iter()
        .filter_map(|(h, part)| md.find(h).map(|at| (at, part)))
        .collect();
    starts.push((0, "ops"));
    starts.sort();
    let ends = starts.iter().skip(1).map(|(at, _)| *at).chain([md.len()]);
    starts
        .iter()
        .zip(ends)
        .map(|((at, part), end)| (*part, md[*at..end].trim().to_string()))
        .collect()
}

/// The machine, for the results.
fn machine() -> String {
    format!(
        "{} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()))
            .unwrap_or_default()
    )
}

/// Starts the default emulator and the two gateways over it (`--expand-pushdown` off and auto);
/// returns the processes and the first gateway's pid.
async fn start_default(bin: &str) -> (Procs, u32) {
    let mut procs = Procs(Vec::new());
    start_emulator(bin, &mut procs, EMU, &[]).await;
    let gw_pid = start_gateway(bin, &mut procs, GW, &["--expand-pushdown", "off"]);
    start_gateway(
        bin,
        &mut procs,
        GW_EXPAND,
        &["--expand-pushdown", "auto", "--state-db", ":memory:"],
    );
    wait_up(&format!("http://{GW}/healthz")).await;
    wait_up(&format!("http://{GW_EXPAND}/healthz")).await;
    (procs, gw_pid)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: only `cargo bench` runs
        // the load test.
        println!("load benchmark skipped (run it with bench/run.sh)");
        return;
    }
    let secs: u64 = env_or("BENCH_SECONDS", 10);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 8);
    // BENCH_ONLY: some of the parts (comma-separated); all of them without it.
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| PARTS.join(","));
    let mut parts: Vec<&str> = only.split(',').map(str::trim).collect();
    assert!(
        parts.iter().all(|p| PARTS.contains(p) || ONLY_WHEN_NAMED.contains(p)),
        "BENCH_ONLY takes some of {PARTS:?} or {ONLY_WHEN_NAMED:?} (comma-separated), not {only:?}"
    );
    // BENCH_RESULTS_DIR: where latest.md and latest.json (and dashboard.*) are read and written.
    let dir = std::env::var("BENCH_RESULTS_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/bench/results").into());
    std::fs::create_dir_all(&dir).unwrap();
    if parts.contains(&"dashboard") {
        // Its own processes and its own results file; latest.* stay as they are.
        dashboard::dashboard(&binary(), &dir).await;
        parts.retain(|p| *p != "dashboard");
    }
    if parts.contains(&"replicas") {
        // Its own processes (and Redis) and its own results file, like the dashboard.
        replicas::replicas(&binary(), &dir, secs).await;
        parts.retain(|p| *p != "replicas");
    }
    if parts.contains(&"subscribers") {
        // Its own processes and results file, like the dashboard.
        subscribers::subscribers(&binary(), &dir, secs).await;
        parts.retain(|p| *p != "subscribers");
    }
    if parts.contains(&"tracing") {
        tracing::tracing(&binary(), &dir, secs, concurrency).await;
        parts.retain(|p| *p != "tracing");
    }
    if parts.is_empty() {
        return;
    }
    let old_md = std::fs::read_to_string(format!("{dir}/latest.md")).unwrap_or_default();
    let mut md = sections(&old_md);
    let mut out: Value = std::fs::read_to_string(format!("{dir}/latest.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| json!({}));
    let bin = binary();
    let (mut procs, gw_pid) = start_default(&bin).await;
    let (machine, commit) = (machine(), commit());
    if parts.contains(&"ops") {
        let (ops_md, mut json) = ops_table(&bin, &mut procs, gw_pid, secs, concurrency, &machine).await;
        for kept in ["unloaded", "churn"] {
            if let Some(v) = out.get(kept) {
                json[kept] = v.clone();
            }
        }
        md.insert("ops", ops_md);
        out = json;
    }
    if parts.contains(&"unloaded") {
        // In the order of `unloaded_paths`: pushdown auto (GW_EXPAND), then off (GW).
        let pids = [procs.0[2].id(), gw_pid];
        let u = unloaded(secs, procs.0[0].id(), pids).await;
        md.insert("unloaded", unloaded_md(&u, &machine, &commit));
        out["unloaded"] = u;
    }
    if parts.contains(&"churn") {
        let churn_secs: u64 = env_or("CHURN_SECONDS", 60);
        let churn_connections: usize = env_or("CHURN_CONNECTIONS", 64);
        let churn_latency_ms: u64 = env_or("CHURN_LATENCY_MS", 15);
        let c = churn(
            gw_pid,
            churn_secs,
            churn_connections,
            churn_latency_ms,
            submission_input(),
        )
        .await;
        eprintln!("{c}");
        md.insert("churn", churn_md(&c, &machine, &commit));
        out["churn"] = c;
    }
    drop(procs);
    let md: Vec<String> = PARTS
        .iter()
        .filter_map(|p| md.get(p).map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    let md = md.join("\n\n") + "\n";
    std::fs::write(format!("{dir}/latest.md"), &md).unwrap();
    std::fs::write(
        format!("{dir}/latest.json"),
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .unwrap();
    println!("{md}");
}
