//! The read path: the real gateway over the real emulator, over HTTP.

use crate::harness::{client, shared_gateway, shared_gateway_for, shared_gateway_in, Dialect, Emu, Gateway, Profile};
use ats_gateway::model::{model, Cardinality, LookupSide};
use serde_json::{json, Value};

const DOC_RR_ID: &str = "00000d6b-0000-0000-0000-005001000000";

in_every_upstream!(every_entity_has_a_working_single_and_list_field);
async fn every_entity_has_a_working_single_and_list_field(profile: Profile) {
    let gw = shared_gateway_for(profile);
    for e in &model().entities {
        let q = format!(
            "{{ {}(first: 2) {{ totalCount nodes {{ id }} }} }}",
            e.graphql.list_field
        );
        let d = gw.data(&q, json!({})).await;
        let nodes = d[&e.graphql.list_field]["nodes"].as_array().unwrap();
        assert!(!nodes.is_empty(), "{} is empty", e.graphql.list_field);
        assert!(d[&e.graphql.list_field]["totalCount"].as_u64().unwrap() >= nodes.len() as u64);
        let id = nodes[0]["id"].as_str().unwrap();
        let q = format!("query($id: ID!) {{ {}(id: $id) {{ id }} }}", e.graphql.single_field);
        let d = gw.data(&q, json!({"id": id})).await;
        assert_eq!(d[&e.graphql.single_field]["id"], id, "{}", e.graphql.single_field);
    }
}

in_every_upstream!(every_relation_resolves_in_both_directions);
async fn every_relation_resolves_in_both_directions(profile: Profile) {
    let gw = shared_gateway_for(profile);
    for e in &model().entities {
        for r in &e.graphql.relations {
            let target = model().by_logical_name(&r.target).unwrap();
            // The twin relation on the other side, over the same lookup.
            let back = target.graphql.relations.iter().find(|b| {
                b.lookup_property == r.lookup_property && b.target == e.logical_name && b.lookup_on != r.lookup_on
            });
            let Some(back) = back else {
                // Reference data (rating levels, certificate and screening types) has no way back.
                assert!(target.reference_data, "{}.{} has no twin", e.graphql.type_name, r.field);
                let q = format!(
                    "{{ {}(first: 200) {{ nodes {{ {} {{ id }} }} }} }}",
                    e.graphql.list_field, r.field
                );
                let d = gw.data(&q, json!({})).await;
                assert!(
                    d[&e.graphql.list_field]["nodes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|n| n[&r.field].is_object()),
                    "{}.{}",
                    e.graphql.type_name,
                    r.field
                );
                continue;
            };
            let q = format!(
                "{{ {}(first: 200) {{ nodes {{ id {} {{ id {} {{ id }} }} }} }} }}",
                e.graphql.list_field, r.field, back.field
            );
            let d = gw.data(&q, json!({})).await;
            let mut linked = 0;
            for node in d[&e.graphql.list_field]["nodes"].as_array().unwrap() {
                let related: Vec<&Value> = match r.kind {
                    Cardinality::One => node[&r.field]
                        .as_object()
                        .map(|_| vec![&node[&r.field]])
                        .unwrap_or_default(),
                    Cardinality::Many => node[&r.field].as_array().unwrap().iter().collect(),
                };
                for rel in related {
                    linked += 1;
                    let back_ids: Vec<&Value> = match back.kind {
                        Cardinality::One => vec![&rel[&back.field]["id"]],
                        Cardinality::Many => rel[&back.field].as_array().unwrap().iter().map(|b| &b["id"]).collect(),
                    };
                    assert!(
                        back_ids.contains(&&node["id"]),
                        "{}.{} -> {}.{} does not lead back",
                        e.graphql.type_name,
                        r.field,
                        target.graphql.type_name,
                        back.field
                    );
                }
            }
            assert!(
                linked > 0,
                "{}.{} never resolved to anything",
                e.graphql.type_name,
                r.field
            );
            let _ = LookupSide::This;
        }
    }
}

in_every_upstream!(documented_recruiting_request_in_one_query_carries_every_documented_field);
async fn documented_recruiting_request_in_one_query_carries_every_documented_field(profile: Profile) {
    let doc: Value = serde_json::from_str(include_str!("fixtures/documented-recruiting-request.json")).unwrap();
    let rr = model().by_entity_set("mshr_hcmrecruitingrequestentities").unwrap();
    let fields_of = |entity: &ats_gateway::model::Entity, sample: &Value| -> Vec<String> {
        sample
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| entity.property(k).map(|p| p.graphql_field.clone()))
            .collect()
    };
    let mut selection = fields_of(rr, &doc).join(" ");
    for (key, value) in doc.as_object().unwrap() {
        if let Some(r) = rr.navigation(key) {
            let target = model().by_logical_name(&r.target).unwrap();
            selection.push_str(&format!(
                " {} {{ {} }}",
                r.field,
                fields_of(target, &value[0]).join(" ")
            ));
        }
    }
    let q = format!("query($id: ID!) {{ recruitingRequest(id: $id) {{ {selection} }} }}");
    let gw = shared_gateway_for(profile);
    let d = gw.data(&q, json!({"id": DOC_RR_ID})).await;
    let got = &d["recruitingRequest"];
    for (key, value) in doc.as_object().unwrap() {
        if let Some(p) = rr.property(key) {
            assert!(
                got.get(&p.graphql_field).is_some(),
                "{key} ({}) missing",
                p.graphql_field
            );
        } else {
            let r = rr.navigation(key).unwrap();
            let target = model().by_logical_name(&r.target).unwrap();
            let children = got[&r.field].as_array().unwrap();
            assert_eq!(children.len(), value.as_array().unwrap().len(), "{}", r.field);
            for k in value[0].as_object().unwrap().keys() {
                let f = &target.property(k).unwrap().graphql_field;
                assert!(children[0].get(f).is_some(), "{}.{f} missing", r.field);
            }
        }
    }
    assert_eq!(got["recruitingRequestId"], "USMF-000001");
    assert_eq!(got["status"], "ACTIVE");
    assert_eq!(got["exemptStatus"], "NON_EXEMPT");
    assert_eq!(got["compensationHighThreshold"], 92500.0);
}

#[tokio::test]
async fn unknown_ids_are_null_and_malformed_ids_are_refused() {
    let gw = shared_gateway();
    let d = gw
        .data(
            "{ recruitingRequest(id: \"00000000-0000-0000-0000-000000000001\") { id } }",
            json!({}),
        )
        .await;
    assert!(d["recruitingRequest"].is_null());
    let v = gw
        .query("{ recruitingRequest(id: \"x') or (1 eq 1\") { id } }", json!({}))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{v}");
}

in_every_upstream!(ordering_paging_and_total_count);
async fn ordering_paging_and_total_count(profile: Profile) {
    let gw = shared_gateway_for(profile);
    let d = gw.data("{ recruitingRequests(first: 5, orderBy: [{recruitingRequestId: DESC}]) { nodes { recruitingRequestId } } }", json!({})).await;
    let ids: Vec<&str> = d["recruitingRequests"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["recruitingRequestId"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted);

    let q = "query($after: String) { recruitingRequests(first: 70, after: $after, orderBy: [{recruitingRequestId: ASC}]) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { recruitingRequestId } } } }";
    let mut after = Value::Null;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let d = gw.data(q, json!({"after": after})).await;
        let c = &d["recruitingRequests"];
        assert_eq!(c["totalCount"], 200);
        pages += 1;
        let edges = c["edges"].as_array().unwrap();
        seen.extend(
            edges
                .iter()
                .map(|e| e["node"]["recruitingRequestId"].as_str().unwrap().to_string()),
        );
        assert_eq!(c["pageInfo"]["endCursor"], edges.last().unwrap()["cursor"]);
        if !c["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = c["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), 200, "no row lost or repeated across pages");

    // Resuming from a cursor in the middle of a page continues right after it.
    let d = gw.data("{ recruitingRequests(first: 5, orderBy: [{recruitingRequestId: ASC}]) { edges { cursor node { recruitingRequestId } } } }", json!({})).await;
    let second_cursor = d["recruitingRequests"]["edges"][1]["cursor"].clone();
    let d = gw.data(q, json!({"after": second_cursor})).await;
    assert_eq!(
        d["recruitingRequests"]["edges"][0]["node"]["recruitingRequestId"],
        seen[2]
    );
}

#[tokio::test]
async fn cursors_and_page_sizes_are_checked() {
    let gw = shared_gateway();
    let v = gw
        .query("{ recruitingRequests(first: 501) { nodes { id } } }", json!({}))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("500"), "{v}");
    let d = gw
        .data("{ recruitingRequests(first: 1) { pageInfo { endCursor } } }", json!({}))
        .await;
    let cursor = d["recruitingRequests"]["pageInfo"]["endCursor"].clone();
    let v = gw
        .query("query($a: String) { recruitingRequests(first: 1, after: $a, filter: {dataAreaId: {eq: \"usmf\"}}) { nodes { id } } }", json!({"a": cursor}))
        .await;
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("different query"),
        "{v}"
    );
    let v = gw
        .query("{ recruitingRequests(after: \"garbage\") { nodes { id } } }", json!({}))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[tokio::test]
async fn option_sets_are_enums_and_yes_no_sets_are_booleans() {
    let gw = shared_gateway();
    let d = gw
        .data("{ candidatesToHire(first: 20) { nodes { applicationIntegrationResult isWillingToRelocate person { gender } } } }", json!({}))
        .await;
    for n in d["candidatesToHire"]["nodes"].as_array().unwrap() {
        assert!(n["applicationIntegrationResult"].is_string());
        assert!(
            n["isWillingToRelocate"].is_boolean() || n["isWillingToRelocate"].is_null(),
            "{n}"
        );
    }
    let v = gw
        .query(
            "{ recruitingRequests(filter: {status: {eq: BOGUS}}) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("BOGUS"),
        "invalid enum values are refused: {v}"
    );
}

/// Persons whose `knownAs` holds characters that must be escaped on their way into OData.
const TRICKY: [&str; 8] = [
    "O'Brien",
    "100% sure",
    "a&b",
    "x/y",
    "#hash",
    "1+1",
    "x') or (1 eq 1",
    "under_score",
];

async fn tricky_gateway(profile: Profile) -> Gateway {
    let emu = Emu::start(profile.emulator(5));
    for (i, k) in TRICKY.iter().enumerate() {
        let (s, _, v) = emu
            .post(
                "mshr_dirpersonentities",
                &json!({"mshr_firstname": format!("Tricky{i}"), "mshr_knownas": k, "mshr_birthyear": 1980 + i}),
            )
            .await;
        assert_eq!(s, 204, "{v}");
    }
    Gateway::over_profile(profile, emu)
}

async fn known_as(gw: &Gateway, filter: Value) -> Vec<String> {
    let only_tricky = json!({"and": [{"firstName": {"startsWith": "Tricky"}}, filter]});
    let v = gw
        .query(
            "query($f: PersonFilter) { people(filter: $f, first: 500) { nodes { knownAs } } }",
            json!({"f": only_tricky}),
        )
        .await;
    assert!(v.get("errors").is_none(), "{filter}: {v}");
    let mut out: Vec<String> = v["data"]["people"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["knownAs"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

in_every_upstream!(every_filter_operator_with_escaping);
async fn every_filter_operator_with_escaping(profile: Profile) {
    let gw = tricky_gateway(profile).await;
    for k in TRICKY {
        assert_eq!(known_as(&gw, json!({"knownAs": {"eq": k}})).await, [k], "eq {k:?}");
        assert_eq!(
            known_as(&gw, json!({"knownAs": {"contains": k}})).await,
            [k],
            "contains {k:?}"
        );
        assert_eq!(
            known_as(&gw, json!({"knownAs": {"startsWith": k}})).await,
            [k],
            "startsWith {k:?}"
        );
        assert_eq!(
            known_as(&gw, json!({"knownAs": {"endsWith": k}})).await,
            [k],
            "endsWith {k:?}"
        );
    }
    assert_eq!(
        known_as(&gw, json!({"knownAs": {"contains": "%"}})).await,
        ["100% sure"],
        "% is literal"
    );
    assert_eq!(
        known_as(&gw, json!({"knownAs": {"contains": "_"}})).await,
        ["under_score"],
        "_ is literal"
    );
    assert_eq!(
        known_as(&gw, json!({"knownAs": {"eq": "o'brien"}})).await,
        ["O'Brien"],
        "case-insensitive, as Dataverse"
    );
    assert_eq!(
        known_as(&gw, json!({"knownAs": {"in": ["a&b", "x/y", "nobody"]}})).await,
        ["a&b", "x/y"]
    );
    let all = known_as(&gw, json!({"knownAs": {"isNull": false}})).await;
    assert_eq!(all.len(), TRICKY.len());
    let ne = known_as(&gw, json!({"knownAs": {"ne": "a&b", "isNull": false}})).await;
    assert_eq!(ne.len(), TRICKY.len() - 1);
    let tricky_years = |f: Value| {
        let gw = &gw;
        async move { known_as(gw, f).await.len() }
    };
    assert_eq!(tricky_years(json!({"birthYear": {"gt": 1983}})).await, 4);
    assert_eq!(tricky_years(json!({"birthYear": {"ge": 1983}})).await, 5);
    assert_eq!(tricky_years(json!({"birthYear": {"lt": 1983}})).await, 3);
    assert_eq!(tricky_years(json!({"birthYear": {"le": 1983}})).await, 4);
    assert_eq!(tricky_years(json!({"birthYear": {"in": [1980, 1987]}})).await, 2);
    assert_eq!(
        tricky_years(json!({"or": [{"birthYear": {"eq": 1980}}, {"birthYear": {"eq": 1981}}]})).await,
        2
    );
    assert_eq!(tricky_years(json!({"not": {"birthYear": {"eq": 1980}}})).await, 7);
    let v = gw
        .query(
            "{ people(filter: {knownAs: {isNull: true}}, first: 1) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
}

#[tokio::test]
async fn filters_the_upstream_cannot_express_are_refused_before_any_request() {
    let gw = Gateway::start(5);
    let (n, v) = gw
        .upstream_requests(gw.query("{ candidatesToHire(filter: {personGuid: {eq: \"00000d6b-0000-0000-0000-005001000000\"}}) { nodes { id } } }", json!({})))
        .await;
    assert_eq!(n, 0, "no upstream request for a refused filter");
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("lookup"), "{v}");
    let (n, v) = gw
        .upstream_requests(gw.query(
            "{ recruitingRequests(filter: {estimatedStartDate: {eq: \"tomorrow\"}}) { nodes { id } } }",
            json!({}),
        ))
        .await;
    assert_eq!(n, 0);
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{v}");
}

const CANONICAL: &str = "query($n: Int) { recruitingRequests(first: $n) { nodes { id recruitingRequestId description status
    positions { positionId status description } skills { skillId ratingLevelId } educations { educationLevelId educationDisciplineId }
    location { description city } recruiter { name partyNumber } } } }";

// One request per level and relation (six); against a service that pages by itself, each of
// those six chains takes one request more per page of its own size.
in_every_upstream!(canonical_nested_query_costs_at_most_six_upstream_requests_at_10_and_50_parents);
async fn canonical_nested_query_costs_at_most_six_upstream_requests_at_10_and_50_parents(profile: Profile) {
    let gw = Gateway::start_profile(profile, 60);
    for n in [10, 50] {
        let (requests, v) = gw.upstream_requests(gw.query(CANONICAL, json!({"n": n}))).await;
        assert!(v.get("errors").is_none(), "{v}");
        let nodes = v["data"]["recruitingRequests"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), n);
        assert!(nodes.iter().any(|r| !r["positions"].as_array().unwrap().is_empty()));
        let rows = gw.emu.stats().await["rowsServed"].as_u64().unwrap();
        let bound = match profile.server_page_size {
            None => 6,
            Some(page) => 6 + rows / page as u64,
        };
        eprintln!("{profile:?}: the canonical query at {n} parents cost {requests} upstream requests ({rows} rows)");
        assert!(
            requests <= bound,
            "{profile:?}: {n} parents cost {requests} upstream requests"
        );
    }
}

#[tokio::test]
async fn levels_the_prefetch_knows_are_sent_without_waiting_for_the_batch_delay() {
    // A batch delay far past the operation's deadline (30 s): a level that waited for it would
    // end in DEADLINE_EXCEEDED instead of data.
    let gw = Gateway::over_with(
        Emu::start(ats_gateway::emulator::EmulatorConfig {
            seed_size: 60,
            ..Default::default()
        }),
        ats_gateway::graphql::context::ReadConfig {
            batch_delay_ms: 3_600_000,
            ..Default::default()
        },
    );
    let (requests, v) = gw.upstream_requests(gw.query(CANONICAL, json!({"n": 50}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(v["data"]["recruitingRequests"]["nodes"].as_array().unwrap().len(), 50);
    assert!(requests <= 6, "{requests} upstream requests");
    // Three levels under the page, each sent when the one above it arrived.
    let q = "{ candidatesToHire(first: 5) { nodes { person { name educations { educationLevelId } skills { skillId ratingLevel { ratingLevelId } } } } } }";
    let (requests, v) = gw.upstream_requests(gw.query(q, json!({}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    let nodes = v["data"]["candidatesToHire"]["nodes"].as_array().unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| !n["person"]["skills"].as_array().unwrap().is_empty()),
        "{v}"
    );
    assert!(
        requests <= 5,
        "{requests} upstream requests: the page, then one per relation and level"
    );
}

#[tokio::test]
async fn identical_loads_in_one_request_are_fetched_once() {
    let gw = Gateway::start(10);
    let q = "{ a: recruitingRequests(first: 10) { nodes { positions { id } } } b: recruitingRequests(first: 10) { nodes { positions { id } } } }";
    let (n, v) = gw.upstream_requests(gw.query(q, json!({}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(n, 2, "two identical lists and their positions took {n} requests");
}

#[tokio::test]
async fn reference_data_is_cached_across_requests_per_caller() {
    let gw = Gateway::start(5);
    let q = json!({"query": "{ ratingLevels(first: 50) { nodes { id ratingLevelId } } }"});
    let run = |token: &'static str| {
        let endpoint = gw.endpoint.clone();
        let q = q.clone();
        async move {
            client()
                .post(endpoint)
                .bearer_auth(token)
                .json(&q)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    gw.emu.reset_stats().await;
    run("alice").await;
    run("alice").await;
    assert_eq!(
        gw.emu.stats().await["byEntitySet"]["mshr_hcmratinglevelentities"],
        1,
        "the second call is served from the cache"
    );
    run("bob").await;
    let stats = gw.emu.stats().await;
    assert_eq!(
        stats["byEntitySet"]["mshr_hcmratinglevelentities"], 2,
        "another caller is not served alice's cached data"
    );
}

#[tokio::test]
async fn upstream_failures_become_coded_errors() {
    let emu = Emu::fresh();
    let admin = emu.admin.clone();
    let gw = Gateway::over(emu);
    let set = |f: Value| {
        let url = format!("{admin}faults");
        async move { assert_eq!(client().put(url).json(&f).send().await.unwrap().status(), 204) }
    };
    let q = "{ recruitingRequests(first: 1) { nodes { id } } }";
    set(json!({"errorRate": 1.0})).await;
    let v = gw.query(q, json!({})).await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "UPSTREAM_UNAVAILABLE", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["upstreamStatus"], 503);
    set(json!({"errorRate": 1.0, "errorStatus": 400})).await;
    let v = gw.query(q, json!({})).await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "UPSTREAM_BAD_REQUEST", "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("validation error"),
        "the upstream's message: {v}"
    );
    set(json!({})).await;
    // A nullable nested field fails alone: partial data survives.
    let d = gw.data(q, json!({})).await;
    assert_eq!(d["recruitingRequests"]["nodes"].as_array().unwrap().len(), 1);
    // Last: the gateway honours the 60 s Retry-After for this caller from now on.
    set(json!({"throttle": {"requests": 0, "windowSeconds": 60}})).await;
    let v = gw.query(q, json!({})).await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "UPSTREAM_THROTTLED", "{v}");
}

#[tokio::test]
async fn an_upstream_without_the_entity_set_is_a_not_found_error() {
    let emu = Emu::fresh();
    let root = emu.root.replace("/v9.2/", "/v9.2/missing/");
    let gw = Gateway::over(Emu {
        root,
        admin: emu.admin.clone(),
        ..emu
    });
    let v = gw
        .query("{ recruitingRequests(first: 1) { nodes { id } } }", json!({}))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "UPSTREAM_NOT_FOUND", "{v}");
}

#[tokio::test]
async fn expand_pushdown_brings_the_canonical_query_to_one_request_with_the_same_data() {
    let emu = Emu::start(ats_gateway::emulator::EmulatorConfig {
        seed_size: 60,
        ..Default::default()
    });
    let plain = Gateway::over(Emu {
        root: emu.root.clone(),
        admin: emu.admin.clone(),
        _stop: emu._stop.clone(),
    });
    let pushed = Gateway::over_with(
        emu,
        ats_gateway::graphql::context::ReadConfig {
            expand_pushdown: ats_gateway::graphql::context::ExpandPushdown::On,
            ..Default::default()
        },
    );
    for n in [10, 50] {
        let (requests, with) = pushed.upstream_requests(pushed.query(CANONICAL, json!({"n": n}))).await;
        assert!(with.get("errors").is_none(), "{with}");
        assert_eq!(requests, 1, "{n} parents with $expand pushdown");
        let without = plain.data(CANONICAL, json!({"n": n})).await;
        assert_eq!(with["data"], without, "the same data either way");
    }
    // A filtered to-many relation is pushed down with its filter.
    let q = "{ recruitingRequests(first: 20) { nodes { id positions(filter: {status: {eq: OPEN}}) { positionId status } } } }";
    let (requests, with) = pushed.upstream_requests(pushed.query(q, json!({}))).await;
    assert_eq!(requests, 1);
    let without = plain.data(q, json!({})).await;
    assert_eq!(with["data"], without);
}

in_every_upstream!(children_whose_join_key_differs_in_case_are_found);
async fn children_whose_join_key_differs_in_case_are_found(profile: Profile) {
    let gw = Gateway::start_profile(profile, 5);
    let rr = gw
        .emu
        .first("mshr_hcmrecruitingrequestentities?$filter=mshr_recruitingrequestid eq 'USMF-000001'&$expand=mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest($select=mshr_positionid,mshr_status)")
        .await;
    let children = rr["mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest"]
        .as_array()
        .unwrap()
        .len();
    let pos = &rr["mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest"][0];
    // A child written with the parent's key in another case (Dataverse resolves it either way).
    let (s, _, v) = gw
        .emu
        .post(
            "mshr_hcmrecruitingrequestpositionentities",
            &json!({"mshr_dataareaid": "usmf", "mshr_recruitingrequestid": "uSmF-000001",
                    "mshr_positionid": pos["mshr_positionid"], "mshr_status": pos["mshr_status"]}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let q = r#"{ recruitingRequests(filter: {recruitingRequestId: {eq: "usmf-000001"}}) { nodes { recruitingRequestId positions { recruitingRequest { recruitingRequestId } } } } }"#;
    let d = gw.data(q, json!({})).await;
    let node = &d["recruitingRequests"]["nodes"][0];
    assert_eq!(node["recruitingRequestId"], "USMF-000001");
    let positions = node["positions"].as_array().unwrap();
    assert_eq!(positions.len(), children + 1, "{d}");
    for p in positions {
        assert_eq!(p["recruitingRequest"]["recruitingRequestId"], "USMF-000001");
    }
}

// `--upstream-dialect auto` (the CLI default) over an emulator of `dialect`: the gateway probes
// the upstream once at start, picks `dialect`, says so in `/readyz`, and nested reads work.
in_both_dialects!(the_auto_dialect_is_probed_at_start);
async fn the_auto_dialect_is_probed_at_start(dialect: Dialect) {
    use ats_gateway::emulator::{EmulatorConfig, Seed};
    let emu = Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 10,
        dialect: crate::harness::emulator_dialect(dialect),
        ..EmulatorConfig::default()
    });
    let gw = Gateway::with_config(emu, |c| {
        c.read.dialect = Dialect::Dataverse;
        c.read.dialect_source = ats_gateway::graphql::context::DialectSource::Auto;
    });
    let (status, body) = gw.get("/readyz").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upstreamDialect"], dialect.name(), "{body}");
    assert_eq!(body["upstreamDialectDecided"], "probed", "{body}");
    assert!(
        !body["warnings"].to_string().contains("upstream dialect"),
        "a conclusive probe: {body}"
    );
    let d = gw
        .data(
            "{ recruitingRequests(first: 5) { nodes { id positions { id } } } }",
            json!({}),
        )
        .await;
    let nodes = d["recruitingRequests"]["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty());
    assert!(
        nodes.iter().any(|n| !n["positions"].as_array().unwrap().is_empty()),
        "{d}"
    );
}

/// A configured dialect is reported as such.
#[tokio::test]
async fn a_configured_dialect_is_reported_in_readyz() {
    let (_, body) = shared_gateway_in(Dialect::Odata4).get("/readyz").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["upstreamDialect"], "odata4", "{body}");
    assert_eq!(body["upstreamDialectDecided"], "configured", "{body}");
}

/// `auto` with an upstream that does not answer: dataverse, with a warning in `/readyz`.
#[tokio::test]
async fn an_inconclusive_dialect_probe_assumes_dataverse_with_a_warning() {
    let gw = Gateway::with_config(Emu::fresh(), |c| {
        c.upstream = format!("http://127.0.0.1:{}/api/data/v9.2/", crate::harness::free_port());
        c.resilience.max_retries = 0;
        c.read.dialect_source = ats_gateway::graphql::context::DialectSource::Auto;
    });
    let (status, body) = gw.get("/readyz").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["upstreamDialect"], "dataverse", "{body}");
    assert_eq!(body["upstreamDialectDecided"], "probed", "{body}");
    assert!(
        body["warnings"]
            .to_string()
            .contains("upstream dialect: dataverse assumed"),
        "{body}"
    );
}

// `--upstream-paging auto`: one probe at start decides between `odata.maxpagesize` and `$top`,
// reported in `/readyz`.
in_every_upstream!(the_auto_paging_is_probed_at_start);
async fn the_auto_paging_is_probed_at_start(profile: Profile) {
    let gw = Gateway::start_profile(profile, 5);
    let (status, body) = gw.get("/readyz").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upstreamPaging"], profile.paging().name(), "{body}");
    assert_eq!(body["upstreamPagingDecided"], "probed", "{body}");
    assert!(!body["warnings"].to_string().contains("upstream paging"), "{body}");
}

/// `auto` paging with an upstream that does not answer: maxpagesize, with a warning.
#[tokio::test]
async fn an_inconclusive_paging_probe_assumes_maxpagesize_with_a_warning() {
    let gw = Gateway::with_config(Emu::fresh(), |c| {
        c.upstream = format!("http://127.0.0.1:{}/api/data/v9.2/", crate::harness::free_port());
        c.resilience.max_retries = 0;
        c.read.paging_source = ats_gateway::graphql::context::DialectSource::Auto;
    });
    let (_, body) = gw.get("/readyz").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["upstreamPaging"], "maxpagesize", "{body}");
    assert!(
        body["warnings"]
            .to_string()
            .contains("upstream paging: maxpagesize assumed"),
        "{body}"
    );
}

/// A response's fields come in the order the query selects them, also when the first one waits
/// for the upstream and the one after it does not: GraphQL orders a response map as its selection
/// set. (The other tests compare parsed JSON, which does not keep key order; this one reads the
/// text.)
#[tokio::test]
async fn fields_come_back_in_selection_order_even_when_the_first_waits() {
    let gw = shared_gateway();
    let body = response_text(
        gw,
        "{ recruitingRequests(first: 2) { nodes { location { city } id } } __typename }",
    )
    .await;
    let at = |key: &str| {
        body.find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {body}"))
    };
    assert!(at("recruitingRequests") < at("__typename"), "{body}");
    assert!(at("location") < at("id"), "{body}");
}

/// Property fields are resolved while their selection is collected (async-graphql's
/// `Field::immediate`, vendored), the others later: the answer is the same as if each had waited
/// its turn. Leaves between fields that wait keep their place, aliases and repeated selections of
/// one field (merged into one object) included, and a leaf's value is what the upstream has.
#[tokio::test]
async fn leaves_resolved_in_place_keep_their_place_among_fields_that_wait() {
    let gw = shared_gateway();
    let query = "{ recruitingRequests(first: 2) { nodes { status positions { positionId } id \
                 first: description location { city } positions { description } description } } }";
    let body = response_text(gw, query).await;
    let node = body.split("\"nodes\":[").nth(1).expect("nodes");
    let keys = first_object_keys(node);
    assert_eq!(
        keys,
        ["status", "positions", "id", "first", "location", "description"],
        "{body}"
    );
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(v.get("errors").is_none(), "{v}");
    let n = &v["data"]["recruitingRequests"]["nodes"][0];
    assert_eq!(n["first"], n["description"], "{n}");
    let position = &n["positions"][0];
    assert!(
        position["positionId"].is_string() && position["description"].is_string(),
        "merged: {n}"
    );
    let raw = gw
        .emu
        .first("mshr_hcmrecruitingrequestentities?$orderby=mshr_hcmrecruitingrequestentityid&$top=1")
        .await;
    assert_eq!(n["description"], raw["mshr_description"], "{n} against {raw}");
}

/// The answer to `query`, as the text that came (to read the order of its keys).
async fn response_text(gw: &Gateway, query: &str) -> String {
    client()
        .post(&gw.endpoint)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("request sent")
        .text()
        .await
        .expect("a body")
}

/// The keys of the JSON object `text` starts with, in the order the text has them (parsed JSON
/// here does not keep it).
fn first_object_keys(text: &str) -> Vec<String> {
    let (mut keys, mut depth, mut in_string, mut escaped, mut start) = (Vec::new(), 0, false, false, 0);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    in_string = false;
                    if depth == 1 && text[i + 1..].starts_with(':') {
                        keys.push(text[start..i].to_string());
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => (in_string, start) = (true, i + 1),
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    keys
}
