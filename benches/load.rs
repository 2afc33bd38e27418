//! Load benchmark: builds nothing itself (run through `bench/run.sh`, which builds the release
//! binary), starts the emulator and the gateway as separate processes, warms up, and drives each
//! operation with a closed-loop load generator (N concurrent clients for a fixed time). For every
//! operation it reports requests/s, p50/p99 latency, errors, upstream requests per operation (from
//! the emulator's counter) and the gateway's peak RSS; reads also run directly against the
//! emulator with the equivalent OData requests, so the gateway / direct ratio shows the overhead.
//! Writes `bench/results/latest.md` and `bench/results/latest.json`.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EMU: &str = "127.0.0.1:17070";
const GW: &str = "127.0.0.1:18080";
/// A second gateway with `--expand-pushdown true`.
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

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// One request of an operation.
#[derive(Clone)]
enum Req {
    Get(String),
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
                let mut ok = futures::future::join_all(op.reqs.iter().map(|r| run_one(&client, r)))
                    .await
                    .into_iter()
                    .all(|x| x);
                if !op.then.is_empty() {
                    ok &= futures::future::join_all(op.then.iter().map(|r| run_one(&client, r)))
                        .await
                        .into_iter()
                        .all(|x| x);
                }
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
                name: "gateway: canonical nested query (50 parents)",
                reqs: vec![g(CANONICAL)],
                target: "gateway",
                then: vec![],
            },
            Some(Op { name: "direct: the same data in 1 + 5 OData requests", reqs: canonical_direct.0.clone(), then: canonical_direct.1.clone(), target: "emulator" }),
        ),
        (
            Op {
                name: "gateway with $expand pushdown: canonical nested query (50 parents)",
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

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: only `cargo bench` runs
        // the load test.
        println!("load benchmark skipped (run it with bench/run.sh)");
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let bin = binary();
    let emu = Command::new(&bin)
        .args(["emulator", "--listen", EMU])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator starts");
    let mut procs = Procs(vec![emu]);
    wait_up(&format!("http://{EMU}/api/data/v9.2/")).await;
    let gw = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            GW,
            "--upstream",
            &format!("http://{EMU}/api/data/v9.2/"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts");
    let gw_pid = gw.id();
    procs.0.push(gw);
    let gw2 = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            GW_EXPAND,
            "--upstream",
            &format!("http://{EMU}/api/data/v9.2/"),
            "--expand-pushdown",
            "true",
            "--state-db",
            ":memory:",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("second gateway starts");
    procs.0.push(gw2);
    let emu_auth = Command::new(&bin)
        .args(["emulator", "--listen", EMU_AUTH, "--require-auth", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator with auth starts");
    procs.0.push(emu_auth);
    wait_up(&format!("http://{EMU_AUTH}/api/data/v9.2/")).await;
    let tenant = format!("http://{EMU_AUTH}/bench");
    let gw_auth = Command::new(&bin)
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
    wait_up(&format!("http://{GW}/healthz")).await;
    wait_up(&format!("http://{GW_EXPAND}/healthz")).await;
    wait_up(&format!("http://{GW_AUTH}/healthz")).await;
    let client = reqwest::Client::new();
    let doc_rr = "00000d6b-0000-0000-0000-005001000000";
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let canonical = canonical_direct(&client).await;
    let latency_ms: u64 = std::env::var("BENCH_REFERENCE_LATENCY_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
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
    for (i, (op, direct)) in all_ops.into_iter().enumerate() {
        if i + 1 == n_ops {
            client
                .put(format!("http://{EMU}/_emulator/faults"))
                .json(&json!({"latencyMs": latency_ms}))
                .send()
                .await
                .unwrap();
        }
        // Warm up, then count upstream requests for exactly one operation.
        drive(&op, concurrency, Duration::from_secs(2)).await;
        let emu = if op.target == TARGET_AUTH { EMU_AUTH } else { EMU };
        reset(&client, emu).await;
        futures::future::join_all(op.reqs.iter().map(|r| run_one(&client, r))).await;
        let per_op = upstream_count(&client, emu).await;
        let s = drive(&op, concurrency, Duration::from_secs(secs)).await;
        let rps = s.ops as f64 / s.secs;
        let mut row = json!({
            "operation": op.name, "target": op.target, "requests_per_second": rps, "p50_ms": pct(&s.lat, 0.5), "p99_ms": pct(&s.lat, 0.99),
            "errors": s.errors, "operations": s.ops, "upstream_requests_per_operation": per_op,
        });
        if let Some(d) = direct {
            drive(&d, concurrency, Duration::from_secs(1)).await;
            let ds = drive(&d, concurrency, Duration::from_secs(secs)).await;
            let drps = ds.ops as f64 / ds.secs;
            row["direct"] = json!({"operation": d.name, "requests_per_second": drps, "p50_ms": pct(&ds.lat, 0.5), "p99_ms": pct(&ds.lat, 0.99), "errors": ds.errors, "odata_requests_per_operation": d.reqs.len()});
            row["ratio_gateway_over_direct"] = json!(rps / drps);
        }
        eprintln!("{row}");
        results.push(row.clone());
        rows.push(row);
    }
    let rss_mb = peak_rss_kb(gw_pid) as f64 / 1024.0;
    drop(procs);
    let machine = format!(
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
    );
    let mut md = format!(
        "# ats-gateway benchmark\n\nMachine: {machine}. Load: {concurrency} concurrent clients, {secs} s per operation after a warm-up, closed loop, loopback.\nGateway peak RSS over the whole run: {rss_mb:.1} MB.\n\n| operation | req/s | p50 ms | p99 ms | errors | upstream req/op | direct req/s | direct p50 ms | gateway / direct |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in &rows {
        let d = &r["direct"];
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} |\n",
            r["operation"].as_str().unwrap(),
            r["requests_per_second"].as_f64().unwrap(),
            r["p50_ms"].as_f64().unwrap(),
            r["p99_ms"].as_f64().unwrap(),
            r["errors"],
            r["upstream_requests_per_operation"],
            d["requests_per_second"]
                .as_f64()
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "–".into()),
            d["p50_ms"]
                .as_f64()
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "–".into()),
            r["ratio_gateway_over_direct"]
                .as_f64()
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "–".into()),
        ));
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/results");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/latest.md"), &md).unwrap();
    std::fs::write(
        format!("{dir}/latest.json"),
        serde_json::to_string_pretty(&json!({"machine": machine, "concurrency": concurrency, "seconds": secs, "gateway_peak_rss_mb": rss_mb, "results": results})).unwrap(),
    )
    .unwrap();
    println!("{md}");
}
