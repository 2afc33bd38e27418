//! Operating the gateway: limits, introspection, CORS, health, readiness, metrics, graceful
//! shutdown, configuration.

use crate::harness::{client, Emu, Gateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn limits_refuse_deep_costly_aliased_and_oversized_queries() {
    let gw = Gateway::with_config(Emu::fresh(), |c| {
        c.limits.depth = 6;
        c.limits.operation.max_cost = 5_000;
        c.limits.operation.max_aliases = 3;
        c.limits.operation.max_document_chars = 2_000;
        c.http.max_body_bytes = 8_000;
    });
    let deep = "{ candidatesToHire(first: 1) { nodes { person { candidatesToHire(first: 1) { person { candidatesToHire(first: 1) { id } } } } } } }";
    let v = gw.query(deep, json!({})).await;
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("nested too deep"),
        "{v}"
    );
    let costly = "{ recruitingRequests(first: 500) { nodes { positions(first: 100) { id description } } } }";
    let v = gw.query(costly, json!({})).await;
    assert_eq!(code(&v), "QUERY_TOO_COSTLY", "{v}");
    let by_variable =
        "query($n: Int) { recruitingRequests(first: $n) { nodes { positions(first: 20) { id description } } } }";
    let v = gw.query(by_variable, json!({"n": 400})).await;
    assert_eq!(code(&v), "QUERY_TOO_COSTLY", "variables count in the cost: {v}");
    let v = gw.query(by_variable, json!({"n": 10})).await;
    assert!(v.get("errors").is_none(), "{v}");
    let cheap = gw
        .query(
            "{ recruitingRequests(first: 10) { nodes { positions { id } } } }",
            json!({}),
        )
        .await;
    assert!(cheap.get("errors").is_none(), "{cheap}");
    let aliased = "{ a: ratingLevels(first: 1) { totalCount } b: ratingLevels(first: 1) { totalCount } c: ratingLevels(first: 1) { totalCount } d: ratingLevels(first: 1) { totalCount } }";
    let v = gw.query(aliased, json!({})).await;
    assert_eq!(code(&v), "TOO_MANY_ALIASES", "{v}");
    let long = format!("{{ ratingLevels(first: 1) {{ totalCount }} }} # {}", "x".repeat(2_100));
    let v = gw.query(&long, json!({})).await;
    assert_eq!(code(&v), "QUERY_TOO_LARGE", "{v}");
    let r = client()
        .post(&gw.endpoint)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"query\": \"{{ __typename }}\", \"variables\": {{\"pad\": \"{}\"}}}}",
            "x".repeat(9_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "request bodies above the limit are refused");
}

#[tokio::test]
async fn the_deadline_ends_slow_operations_with_a_clear_error() {
    let emu = Emu::with_faults(ats_gateway::emulator::faults::Faults {
        latency_ms: 1_500,
        ..Default::default()
    });
    let gw = Gateway::with_config(emu, |c| c.limits.operation.deadline = Duration::from_millis(300));
    let t = Instant::now();
    let v = gw
        .query("{ recruitingRequests(first: 1) { nodes { id } } }", json!({}))
        .await;
    assert_eq!(code(&v), "DEADLINE_EXCEEDED", "{v}");
    assert!(
        t.elapsed() < Duration::from_millis(1_400),
        "answered at the deadline, not when the upstream did"
    );
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let gw = Gateway::with_config(Emu::fresh(), |c| c.limits.introspection = false);
    let v = gw.query("{ __schema { types { name } } }", json!({})).await;
    assert!(v.get("errors").is_some(), "{v}");
    let d = gw.data("{ ratingLevels(first: 1) { totalCount } }", json!({})).await;
    assert!(d["ratingLevels"]["totalCount"].is_number());
}

#[tokio::test]
async fn cors_is_same_origin_by_default_and_a_setting() {
    let gw = Gateway::start(5);
    let r = client()
        .request(reqwest::Method::OPTIONS, &gw.endpoint)
        .header("Origin", "https://ats.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "no CORS headers by default"
    );
    let gw = Gateway::with_config(Emu::fresh(), |c| {
        c.http.cors_origins = vec!["https://ats.example".into()]
    });
    let r = client()
        .request(reqwest::Method::OPTIONS, &gw.endpoint)
        .header("Origin", "https://ats.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://ats.example");
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["authorization", "x-api-key", "content-type"] {
        assert!(allowed.contains(header), "{header} may be sent: {allowed}");
    }
    let r = client()
        .request(reqwest::Method::OPTIONS, &gw.endpoint)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "other origins get nothing"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let emu = Emu::fresh();
    let admin = emu.admin.clone();
    let gw = Gateway::over(emu);
    let r = client().get(format!("{}/healthz", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(format!("{}/readyz", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["optionSetLabels"], "loaded");
    client()
        .put(format!("{admin}faults"))
        .json(&json!({"errorRate": 1.0}))
        .send()
        .await
        .unwrap();
    let r = client().get(format!("{}/readyz", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), 503, "an upstream answering 503 is not ready");
    let v: Value = r.json().await.unwrap();
    assert!(v["upstream"].as_str().unwrap().contains("failing"), "{v}");
    let r = client().get(format!("{}/healthz", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), 200, "the process is still up");
}

#[tokio::test]
async fn readiness_reports_labels_not_read_from_the_upstream() {
    let emu = Emu::fresh();
    let root = emu.root.replace("/v9.2/", "/v9.2/missing/");
    let gw = Gateway::over(Emu {
        root,
        admin: emu.admin.clone(),
        _stop: emu._stop.clone(),
    });
    let r = client().get(format!("{}/readyz", gw.base())).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn labels_missed_at_start_are_read_once_the_upstream_answers() {
    let emu = Emu::with_faults(ats_gateway::emulator::faults::Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    let admin = emu.admin.clone();
    let gw = Gateway::with_config(emu, |c| {
        c.read.labels_retry = Duration::from_millis(200);
        c.resilience.max_retries = 0;
        c.resilience.breaker_cooldown = Duration::from_millis(100);
    });
    let (status, body) = gw.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("documented integers in use"), "{body}");
    client()
        .put(format!("{admin}faults"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let body = loop {
        let (status, body) = gw.get("/readyz").await;
        if status == 200 && body.contains("\"optionSetLabels\":\"loaded\"") {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still not ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["optionSetLabels"], "loaded", "{v}");
}

#[tokio::test]
async fn metrics_count_requests_upstream_calls_and_cache_hits() {
    let gw = Gateway::start(5);
    gw.data(
        "query ListLevels { ratingLevels(first: 5) { nodes { id } } }",
        json!({}),
    )
    .await;
    gw.data(
        "query ListLevels { ratingLevels(first: 5) { nodes { id } } }",
        json!({}),
    )
    .await;
    gw.query("query Broken { nope }", json!({})).await;
    let (_, text) = gw.get("/metrics").await;
    assert!(
        text.contains("ats_gateway_graphql_requests_total{operation=\"ListLevels\",outcome=\"ok\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("ats_gateway_graphql_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains(
            "ats_gateway_upstream_requests_total{entity_set=\"mshr_hcmratinglevelentities\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("ats_gateway_cache_requests_total{cache=\"reference\",result=\"hit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ats_gateway_cache_requests_total{cache=\"reference\",result=\"miss\"} 1"),
        "{text}"
    );
    assert!(text.contains("ats_gateway_upstream_throttled_total 0"));
    assert!(text.contains("ats_gateway_upstream_retries_total"));
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let emu = Emu::with_faults(ats_gateway::emulator::faults::Faults::default());
    let admin = emu.admin.clone();
    let gw = Gateway::over(emu);
    client()
        .put(format!("{admin}faults"))
        .json(&json!({"latencyMs": 700}))
        .send()
        .await
        .unwrap();
    let endpoint = gw.endpoint.clone();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(endpoint)
            .json(&json!({"query": "{ recruitingRequests(first: 1) { nodes { id } } }"}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.begin_shutdown();
    assert_eq!(in_flight.await.unwrap().expect("the in-flight request completes"), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = reqwest::Client::new()
        .post(&gw.endpoint)
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await;
    assert!(late.is_err(), "new requests are refused after shutdown");
}

#[tokio::test]
async fn the_binary_stops_cleanly_on_sigterm_and_reads_a_config_file() {
    let dir = std::env::temp_dir().join(format!("ats-gw-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = crate::harness::free_port();
    let emu_port = crate::harness::free_port();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\nemulator_listen = \"127.0.0.1:{emu_port}\"\nstate-db = \":memory:\"\nmax-page-size = 7\n\n[emulator]\nseed-size = 5\n")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(["--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let up = crate::harness::came_up(&base).await;
    assert!(up, "the gateway came up on the port from the config file");
    let v: Value = client()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": "{ ratingLevels(first: 8) { totalCount } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["errors"][0]["message"].as_str().unwrap_or("").contains("7"),
        "max-page-size from the file applies: {v}"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the gateway did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(code.success(), "{code:?}");
    std::fs::write(&config, "no-such-setting = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting `no-such-setting`"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn readiness_warns_about_labels_an_upstream_cannot_give_and_serves_documented_integers() {
    // As `ats-gateway emulator --no-option-set-definitions` runs it.
    let cli = ats_gateway::cli::parse_args(
        [
            "ats-gateway",
            "emulator",
            "--seed-size",
            "30",
            "--no-option-set-definitions",
        ]
        .map(Into::into)
        .to_vec(),
    )
    .unwrap();
    let Some(ats_gateway::cli::Command::Emulator(args)) = cli.command else {
        panic!("not emulator")
    };
    let config = args.config();
    assert!(!config.option_set_definitions);
    let emu = Emu::start(config);
    let (status, body) = emu
        .get("GlobalOptionSetDefinitions(Name='mshr_hcmrecruitingstatus')")
        .await;
    assert_eq!(status, 404, "this upstream has no option-set definitions: {body}");
    let gw = Gateway::over(emu);
    let (status, body) = gw.get("/readyz").await;
    assert_eq!(status, 200, "labels not read are a warning, not 'not ready': {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["upstream"], "ok", "{v}");
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), ats_gateway::model::model().option_sets.len(), "{v}");
    for set in &ats_gateway::model::model().option_sets {
        assert!(
            body.contains(&format!("documented integers in use for {}:", set.name)),
            "{} named: {v}",
            set.name
        );
    }
    assert!(
        v["optionSetLabels"].as_str().unwrap().contains("documented integers"),
        "{v}"
    );

    // Enum output and an enum filter work with the documented integers.
    let all = gw
        .data("{ recruitingRequests(first: 30) { nodes { id status } } }", json!({}))
        .await;
    let nodes = all["recruitingRequests"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 30);
    let status = nodes[0]["status"]
        .as_str()
        .expect("an enum value, not an integer")
        .to_string();
    let expected: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["status"] == status.as_str())
        .map(|n| &n["id"])
        .collect();
    let filtered = gw
        .data(
            "query($s: RecruitingRequestStatus) { recruitingRequests(first: 30, filter: {status: {eq: $s}}) { nodes { id status } } }",
            json!({"s": status}),
        )
        .await;
    let got: Vec<&Value> = filtered["recruitingRequests"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(
        got, expected,
        "the filter on {status} matches the rows showing {status}"
    );
}

#[tokio::test]
async fn readiness_is_503_while_the_upstream_is_down() {
    let gw = Gateway::over(Emu::fresh());
    assert_eq!(gw.get("/readyz").await.0, 200);
    gw.emu.pause();
    let started = Instant::now();
    let (status, body) = gw.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unreachable") && body.contains("not ready"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    gw.emu.resume();
    assert_eq!(gw.get("/readyz").await.0, 200, "ready again once it answers");
}

#[tokio::test]
async fn readiness_answers_promptly_while_every_caller_slot_is_busy() {
    // Every upstream request takes 700 ms: 24 queries of one identity fill its 8 slots three
    // times over (they end at about 0.7, 1.4 and 2.1 s). A probe queueing behind them would
    // answer after 2 s at best.
    let emu = Emu::with_faults(ats_gateway::emulator::faults::Faults {
        latency_ms: 700,
        ..Default::default()
    });
    let gw = Gateway::over(emu);
    let started = Instant::now();
    // 24 different queries: identical ones in flight together would share one upstream request.
    let gw = &gw;
    let queries = futures::future::join_all((0..24).map(|i| async move {
        let v = gw
            .query(
                "query($n: Int) { recruitingRequests(first: $n) { nodes { id } } }",
                json!({"n": i + 1}),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
        started.elapsed()
    }));
    let ready = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = started.elapsed();
        let (status, body) = gw.get("/readyz").await;
        (status, body, asked, started.elapsed())
    };
    let (finished, (status, body, asked, answered)) = tokio::join!(queries, ready);
    assert_eq!(status, 200, "{body}");
    let took = answered - asked;
    let after = finished.iter().filter(|t| **t > answered).count();
    println!("readyz took {took:?} with the slots busy; {after} of 24 queries ended after it; queries: {finished:?}");
    assert!(took < Duration::from_millis(1500), "readyz took {took:?}");
    assert!(
        after >= 8,
        "the slots were still busy when readyz answered: {finished:?}"
    );
}
