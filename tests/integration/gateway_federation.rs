//! `--federation`: the subgraph SDL checked in as `schema.federation.graphql` (drift fails with how
//! to accept it), `_service { sdl }` with the `@link` and the keys, `_entities` through the
//! loaders (one upstream request for 100 records by `id`, and for 50 by readable key), bad
//! representations refused, `_entities` counted against the upstream request limit, and neither
//! field without the flag.

use crate::harness::{shared_gateway, Emu, Gateway};
use ats_gateway::emulator::{EmulatorConfig, Seed};
use serde_json::{json, Value};

const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.federation.graphql");

#[test]
fn schema_federation_graphql_matches_the_code() {
    let sdl = ats_gateway::graphql::federation::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_FILE, &sdl).expect("schema.federation.graphql is writable");
    }
    let checked_in = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        sdl == checked_in,
        "schema.federation.graphql differs from the subgraph SDL the code builds. If the change is intended, run\n    UPDATE_SCHEMA=1 cargo test --test integration schema_federation_graphql\nand commit schema.federation.graphql."
    );
}

/// A federated gateway over a fresh emulator of 120 recruiting requests, its own so that the
/// emulator's counter sees only this test's requests.
fn federated() -> Gateway {
    let emu = Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 120,
        ..EmulatorConfig::default()
    });
    Gateway::with_config(emu, |c| c.limits.federation = true)
}

const ENTITIES: &str = "query($r: [_Any!]!) { _entities(representations: $r) { __typename \
    ... on RecruitingRequest { id recruitingRequestId dataAreaId } \
    ... on Person { id partyNumber } } }";

/// The first `n` recruiting requests: id, readable id and company.
async fn requests(gw: &Gateway, n: usize) -> Vec<Value> {
    let data = gw
        .data(
            "query($n: Int) { recruitingRequests(first: $n) { nodes { id recruitingRequestId dataAreaId } } }",
            json!({"n": n}),
        )
        .await;
    let nodes = data["recruitingRequests"]["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), n);
    nodes
}

#[tokio::test]
async fn service_sdl_links_federation_v2_and_has_the_keys() {
    let gw = federated();
    let sdl = gw.data("{ _service { sdl } }", json!({})).await["_service"]["sdl"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sdl,
        ats_gateway::graphql::federation::sdl(),
        "the checked-in SDL is what is served"
    );
    assert!(sdl.contains("extend schema @link("), "{sdl}");
    assert!(sdl.contains("url: \"https://specs.apollo.dev/federation/v2."), "{sdl}");
    for d in ["\"@key\"", "\"@shareable\"", "\"@inaccessible\""] {
        assert!(sdl.contains(d), "{d} imported");
    }
    for e in &ats_gateway::model::model().entities {
        assert!(
            sdl.contains(&format!("type {} @key(fields: \"id\")", e.graphql.type_name)),
            "{} has @key(fields: \"id\")",
            e.graphql.type_name
        );
    }
    assert!(
        sdl.contains("type RecruitingRequest @key(fields: \"id\") @key(fields: \"recruitingRequestId dataAreaId\")")
    );
    assert!(sdl.contains("type Person @key(fields: \"id\") @key(fields: \"partyNumber\")"));
    assert!(sdl.contains("type PageInfo @shareable"), "{sdl}");
}

#[tokio::test]
async fn entities_by_id_cost_one_upstream_request() {
    let gw = federated();
    let rows = requests(&gw, 100).await;
    // 100 records, and the first 20 again: 120 representations, still one request.
    let wanted: Vec<&Value> = rows.iter().chain(&rows[..20]).collect();
    let reps: Vec<Value> = wanted
        .iter()
        .map(|r| json!({"__typename": "RecruitingRequest", "id": r["id"]}))
        .collect();
    let (n, v) = gw.upstream_requests(gw.query(ENTITIES, json!({ "r": reps }))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(n, 1, "representations of 100 records cost one upstream request");
    let got = v["data"]["_entities"].as_array().unwrap();
    assert_eq!(got.len(), 120);
    for (g, want) in got.iter().zip(wanted) {
        assert_eq!(g["__typename"], "RecruitingRequest");
        assert_eq!(g["id"], want["id"], "in the representations' order");
        assert_eq!(g["recruitingRequestId"], want["recruitingRequestId"]);
    }
    // Nested relations load by level, as under a list: one more request for all positions.
    let nested =
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on RecruitingRequest { id positions { id } } } }";
    let (n, v) = gw.upstream_requests(gw.query(nested, json!({ "r": reps }))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(n, 2, "the records and their positions");
    assert!(v["data"]["_entities"][0]["positions"].is_array());
}

#[tokio::test]
async fn entities_by_readable_key_cost_one_upstream_request() {
    let gw = federated();
    let rows = requests(&gw, 50).await;
    let reps: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"__typename": "RecruitingRequest",
                // Keys compare as Dataverse does: case-insensitively.
                "recruitingRequestId": r["recruitingRequestId"].as_str().unwrap().to_lowercase(),
                "dataAreaId": r["dataAreaId"]})
        })
        .collect();
    let (n, v) = gw.upstream_requests(gw.query(ENTITIES, json!({ "r": reps }))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(n, 1, "50 readable keys cost one upstream request");
    let got = v["data"]["_entities"].as_array().unwrap();
    for (g, want) in got.iter().zip(&rows) {
        assert_eq!(g["id"], want["id"]);
    }
    // The same readable id in another company is another record (or none).
    let other = json!([{"__typename": "RecruitingRequest",
        "recruitingRequestId": rows[0]["recruitingRequestId"], "dataAreaId": "NOPE"}]);
    let v = gw.data(ENTITIES, json!({ "r": other })).await;
    assert_eq!(v["_entities"], json!([null]));
    // Persons by party number, and a quote that reaches OData only escaped: no match, no error.
    let people = gw
        .data("{ people(first: 3) { nodes { id partyNumber } } }", json!({}))
        .await;
    let people = people["people"]["nodes"].as_array().unwrap();
    let mut reps: Vec<Value> = people
        .iter()
        .map(|p| json!({"__typename": "Person", "partyNumber": p["partyNumber"]}))
        .collect();
    reps.push(json!({"__typename": "Person", "partyNumber": "x' or 1 eq 1 or 'a"}));
    let (n, v) = gw.upstream_requests(gw.query(ENTITIES, json!({ "r": reps }))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(n, 1);
    let got = v["data"]["_entities"].as_array().unwrap();
    for (g, want) in got.iter().zip(people) {
        assert_eq!(g["id"], want["id"]);
    }
    assert_eq!(got[3], Value::Null);
}

#[tokio::test]
async fn bad_representations_are_refused_with_a_code() {
    let gw = federated();
    let id = "6d1e2f0a-4b1c-4e8f-9a55-0c3f2b7d9e11"; // well-formed, of no record
    for (rep, says) in [
        (json!({"__typename": "Nope", "id": id}), "not an entity type"),
        (json!({"__typename": "PageInfo", "id": id}), "not an entity type"),
        (json!({"id": id}), "`__typename` is missing"),
        (
            json!({"__typename": "RecruitingRequest", "id": "1' or 1 eq 1"}),
            "not a valid id",
        ),
        (
            json!({"__typename": "RecruitingRequest", "id": 7}),
            "needs the string fields",
        ),
        (
            json!({"__typename": "RecruitingRequest", "dataAreaId": "USMF"}),
            "needs the string fields",
        ),
        (json!(["RecruitingRequest"]), "is an object"),
    ] {
        let (n, v) = gw.upstream_requests(gw.query(ENTITIES, json!({ "r": [rep] }))).await;
        let err = &v["errors"][0];
        assert_eq!(err["extensions"]["code"], "BAD_USER_INPUT", "{rep}: {v}");
        assert!(err["message"].as_str().unwrap().contains(says), "{rep}: {v}");
        assert_eq!(n, 0, "{rep}: refused before any upstream request");
    }
    // A well-formed id of no record is null, not an error, beside the records found.
    let found = requests(&gw, 1).await;
    let reps = json!([{"__typename": "RecruitingRequest", "id": id}, {"__typename": "RecruitingRequest", "id": found[0]["id"]}]);
    let v = gw.data(ENTITIES, json!({ "r": reps })).await;
    assert_eq!(v["_entities"][0], Value::Null);
    assert_eq!(v["_entities"][1]["id"], found[0]["id"]);
}

#[tokio::test]
async fn without_the_flag_there_is_no_service_or_entities() {
    let gw = shared_gateway();
    for q in [
        "{ _service { sdl } }",
        "{ _entities(representations: []) { __typename } }",
    ] {
        let v = gw.query(q, json!({})).await;
        let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("Unknown field"), "{q}: {v}");
    }
    assert!(!ats_gateway::graphql::sdl().contains("@key"));
}

#[tokio::test]
async fn entities_count_against_the_upstream_request_limit() {
    let emu = Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 20,
        ..EmulatorConfig::default()
    });
    let gw = Gateway::with_config(emu, |c| {
        c.limits.federation = true;
        c.limits.operation.max_upstream_requests = 2;
    });
    let rows = requests(&gw, 10).await;
    let reps: Vec<Value> = rows
        .iter()
        .map(|r| json!({"__typename": "RecruitingRequest", "id": r["id"]}))
        .collect();
    let two =
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on RecruitingRequest { id positions { id } } } }";
    let (n, v) = gw.upstream_requests(gw.query(two, json!({ "r": reps }))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(n, 2);
    let three = "query($r: [_Any!]!) { _entities(representations: $r) { ... on RecruitingRequest { id positions { id } skills { id } } } }";
    let (n, v) = gw.upstream_requests(gw.query(three, json!({ "r": reps }))).await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "TOO_MANY_UPSTREAM_REQUESTS",
        "{v}"
    );
    assert_eq!(v["errors"][0]["extensions"]["estimatedUpstreamRequests"], 3, "{v}");
    assert_eq!(n, 0, "refused before any upstream request");
}
