//! The explain extension (issue #15): `extensions.explain` lists exactly the upstream requests the
//! emulator counted, with `$expand` pushdown and without; literal values are redacted unless
//! `--explain-values`; cache and memo hits show as such; refused (`EXPLAIN_NOT_ALLOWED`, before
//! anything runs) when the gateway or the caller may not have it.

use crate::harness::{client, Emu, Gateway, GatewayProcess};
use ats_gateway::emulator::{EmulatorConfig, Seed};
use ats_gateway::graphql::context::ExpandPushdown;
use ats_gateway::graphql::explain::ExplainPolicy;
use ats_gateway::secret::{sha256_hex, Secret};
use ats_gateway::server::auth::{CallerAuthConfig, CallerAuthMode, JwtConfig, JwtKeys};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A nested query: a list, to-many and to-one relations, reference data (rating levels).
const NESTED: &str = "{ recruitingRequests(first: 5) { nodes { id recruitingRequestId description
    positions { positionId status } skills { skillId ratingLevelId ratingLevel { id } }
    location { description city } recruiter { name partyNumber } } } }";

/// A filter on a value that must not show in a redacted explain.
const FILTERED: &str =
    r#"{ recruitingRequests(first: 3, filter: {description: {contains: "Zebulon-Explain"}}) { nodes { id } } }"#;

fn emulator() -> Emu {
    Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 20,
        ..EmulatorConfig::default()
    })
}

fn gateway(pushdown: ExpandPushdown, policy: ExplainPolicy) -> Gateway {
    Gateway::with_config(emulator(), |c| {
        c.read.expand_pushdown = pushdown;
        c.http.explain = policy;
    })
}

/// Posts `body` to `endpoint` with `headers`; the status and the answer.
async fn post(endpoint: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut rb = client().post(endpoint).json(&body);
    for (name, value) in headers {
        rb = rb.header(*name, *value);
    }
    let r = rb.send().await.expect("request sent");
    (r.status().as_u16(), r.json().await.expect("a JSON answer"))
}

/// `query` with explain asked for; its answer and what the emulator counted meanwhile.
async fn explained(gw: &Gateway, query: &str) -> (Value, Value) {
    gw.emu.reset_stats().await;
    let (status, body) = post(
        &gw.endpoint,
        json!({"query": query, "extensions": {"explain": true}}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    (body, gw.emu.stats().await)
}

fn upstream_entries(explain: &Value) -> Vec<&Value> {
    explain["requests"]
        .as_array()
        .expect("a list of requests")
        .iter()
        .filter(|r| r["source"] == "upstream")
        .collect()
}

/// The explain's upstream requests, as the emulator counts them: HTTP exchanges per entity set.
fn by_entity_set(explain: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in upstream_entries(explain) {
        *out.entry(r["entitySet"].as_str().unwrap().to_string()).or_default() += r["attempts"].as_u64().unwrap();
    }
    out
}

fn emulator_by_entity_set(stats: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(stats["byEntitySet"].clone()).unwrap()
}

/// Checks that the explain lists exactly what the emulator saw; returns the upstream count.
fn matches_the_emulator(body: &Value, stats: &Value) -> u64 {
    let explain = &body["extensions"]["explain"];
    let total = stats["total"].as_u64().unwrap();
    assert_eq!(explain["upstreamRequests"].as_u64(), Some(total), "{explain}\n{stats}");
    assert_eq!(
        by_entity_set(explain),
        emulator_by_entity_set(stats),
        "{explain}\n{stats}"
    );
    for r in upstream_entries(explain) {
        assert_eq!(r["status"], 200, "{r}");
        assert!(
            r["rows"].as_u64().is_some() && r["durationMs"].as_f64().is_some(),
            "{r}"
        );
        assert!(
            r["path"].as_str().is_some_and(|p| p.starts_with("recruitingRequests")),
            "{r}"
        );
    }
    total
}

#[tokio::test]
async fn a_nested_querys_explain_lists_exactly_the_upstream_requests_without_pushdown() {
    let gw = gateway(ExpandPushdown::Off, ExplainPolicy::open());
    let (body, stats) = explained(&gw, NESTED).await;
    let total = matches_the_emulator(&body, &stats);
    assert!(total >= 5, "a list and its relations: {body}");
    let explain = &body["extensions"]["explain"];
    let ups = upstream_entries(explain);
    assert_eq!(
        ups[0]["entitySet"], "mshr_hcmrecruitingrequestentities",
        "the list goes first: {explain}"
    );
    assert_eq!(ups[0]["pageSize"], 5);
    assert!(ups[0]["query"]["$select"].as_str().is_some(), "{}", ups[0]);
    let batches: Vec<_> = ups
        .iter()
        .filter(|r| r["keys"].as_u64().is_some_and(|k| k > 0))
        .collect();
    assert!(batches.len() >= 4, "the relations load as batches of keys: {explain}");
    let starts: Vec<f64> = explain["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["startMs"].as_f64().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "in the order they started: {starts:?}"
    );
}

#[tokio::test]
async fn a_nested_querys_explain_lists_exactly_the_upstream_requests_with_pushdown() {
    let gw = gateway(ExpandPushdown::On, ExplainPolicy::open());
    let (body, stats) = explained(&gw, NESTED).await;
    let total = matches_the_emulator(&body, &stats);
    let explain = &body["extensions"]["explain"];
    let list = upstream_entries(explain)[0];
    assert!(
        list["query"]["$expand"].as_str().is_some(),
        "relations pushed down: {list}"
    );
    let (_, off) = explained(&gateway(ExpandPushdown::Off, ExplainPolicy::open()), NESTED).await;
    assert!(
        total < off["total"].as_u64().unwrap(),
        "pushdown costs fewer requests: {explain}"
    );
}

#[tokio::test]
async fn literal_values_are_redacted_unless_the_gateway_shows_them() {
    let gw = gateway(ExpandPushdown::Off, ExplainPolicy::open());
    let (body, stats) = explained(&gw, FILTERED).await;
    matches_the_emulator(&body, &stats);
    let explain = &body["extensions"]["explain"];
    assert_eq!(explain["valuesShown"], false);
    assert!(!explain.to_string().contains("Zebulon"), "{explain}");
    let filter = upstream_entries(explain)[0]["query"]["$filter"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(filter.contains("contains(mshr_description,'…')"), "{filter}");

    let shown = ExplainPolicy {
        values: true,
        ..ExplainPolicy::open()
    };
    let gw = gateway(ExpandPushdown::Off, shown);
    let (body, _) = explained(&gw, FILTERED).await;
    let explain = &body["extensions"]["explain"];
    assert_eq!(explain["valuesShown"], true);
    let filter = upstream_entries(explain)[0]["query"]["$filter"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(filter.contains("Zebulon-Explain"), "{filter}");
}

#[tokio::test]
async fn cache_hits_show_as_such_on_a_second_run() {
    let gw = gateway(ExpandPushdown::Off, ExplainPolicy::open());
    let (first, stats) = explained(&gw, NESTED).await;
    let cold = matches_the_emulator(&first, &stats);
    let (second, stats) = explained(&gw, NESTED).await;
    let warm = matches_the_emulator(&second, &stats);
    let explain = &second["extensions"]["explain"];
    let hits: Vec<&Value> = explain["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "referenceCache")
        .collect();
    assert!(!hits.is_empty(), "reference data from its cache: {explain}");
    assert!(
        hits.iter().all(|h| h["attempts"] == 0 && h["status"].is_null()),
        "{hits:?}"
    );
    assert!(warm < cold, "the hits cost nothing upstream: {warm} vs {cold}");
    // Not asked for: no explain, and no cost.
    let (status, plain) = post(&gw.endpoint, json!({"query": NESTED}), &[]).await;
    assert_eq!(status, 200);
    assert!(plain["extensions"].get("explain").is_none(), "{plain}");
}

#[tokio::test]
async fn the_header_asks_for_explain_too() {
    let gw = gateway(ExpandPushdown::Off, ExplainPolicy::open());
    let (status, body) = post(&gw.endpoint, json!({"query": FILTERED}), &[("x-ats-explain", "true")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["extensions"]["explain"]["requests"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
}

fn refused(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "EXPLAIN_NOT_ALLOWED", "{body}");
    assert!(body.get("data").is_none(), "nothing ran: {body}");
}

#[tokio::test]
async fn with_an_upstream_explain_is_refused_unless_enabled_and_then_only_to_named_keys() {
    let emu = emulator();
    let accept = ("accept", "application/graphql-response+json");
    let ask = json!({"query": FILTERED, "extensions": {"explain": true}});
    // `--upstream` without `--explain`: refused before anything goes upstream.
    let mut off = GatewayProcess::start(&emu.root, &[], &[], None).await;
    emu.reset_stats().await;
    let (status, body) = post(&format!("{}/graphql", off.base), ask.clone(), &[accept]).await;
    refused(status, &body);
    assert_eq!(emu.stats().await["total"], 0, "refused before any upstream request");
    off.stop();

    let keys = format!(
        "ops=sha256:{},app=sha256:{}",
        sha256_hex(b"ops-key"),
        sha256_hex(b"app-key")
    );
    let args = [
        "--caller-auth",
        "api-key",
        "--api-keys",
        &keys,
        "--explain",
        "--explain-api-keys",
        "ops",
    ];
    let mut on = GatewayProcess::start(&emu.root, &args, &[], None).await;
    let endpoint = format!("{}/graphql", on.base);
    let (status, body) = post(&endpoint, ask.clone(), &[accept, ("x-api-key", "app-key")]).await;
    refused(status, &body);
    let (status, body) = post(&endpoint, ask.clone(), &[accept, ("x-api-key", "ops-key")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["extensions"]["explain"]["upstreamRequests"].as_u64() >= Some(1),
        "{body}"
    );
    let (status, body) = post(
        &endpoint,
        json!({"query": FILTERED}),
        &[accept, ("x-api-key", "app-key")],
    )
    .await;
    assert_eq!(status, 200, "without explain the caller is served: {body}");
    on.stop();
}

#[tokio::test]
async fn jwt_callers_need_a_named_role() {
    let secret = "an-explain-test-secret-of-32-bytes-or-more";
    let gw = Gateway::with_config(emulator(), |c| {
        c.caller_auth = CallerAuthConfig {
            mode: CallerAuthMode::Jwt(JwtConfig {
                keys: JwtKeys::SharedSecret(Secret::new(secret)),
                issuer: "https://issuer.test".into(),
                audiences: vec!["api://ats-gateway".into()],
                leeway: std::time::Duration::from_secs(5),
            }),
            allow_anonymous: false,
        };
        c.http.explain = ExplainPolicy {
            roles: vec!["Explain.Read".into()],
            ..ExplainPolicy::open()
        };
    });
    let token = |roles: Value| {
        let claims = json!({"iss": "https://issuer.test", "aud": "api://ats-gateway", "sub": "u1",
            "exp": 4_000_000_000u64, "roles": roles});
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        format!("Bearer {jwt}")
    };
    let ask = json!({"query": FILTERED, "extensions": {"explain": true}});
    let accept = ("accept", "application/graphql-response+json");
    let other = token(json!(["Other"]));
    let (status, body) = post(&gw.endpoint, ask.clone(), &[accept, ("authorization", &other)]).await;
    refused(status, &body);
    let reader = token(json!(["Other", "Explain.Read"]));
    let (status, body) = post(&gw.endpoint, ask, &[accept, ("authorization", &reader)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["extensions"]["explain"]["requests"].as_array().is_some(), "{body}");
}

#[tokio::test]
async fn the_playgrounds_explain_tab_gets_its_explain() {
    let gw = gateway(ExpandPushdown::Off, ExplainPolicy::open());
    let tab = ats_gateway::server::playground::EXAMPLES
        .iter()
        .find(|e| e.name == "explain-upstream-requests")
        .expect("the explain tab");
    let headers: BTreeMap<String, String> = serde_json::from_str(tab.headers.expect("its headers")).unwrap();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let variables: Value = serde_json::from_str(tab.variables.unwrap()).unwrap();
    gw.emu.reset_stats().await;
    let (status, body) = post(
        &gw.endpoint,
        json!({"query": tab.query, "variables": variables}),
        &headers,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stats = gw.emu.stats().await;
    assert_eq!(
        by_entity_set(&body["extensions"]["explain"]),
        emulator_by_entity_set(&stats),
        "{body}"
    );
}
