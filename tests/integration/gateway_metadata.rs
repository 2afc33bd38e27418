//! `$metadata` reconciliation: the gateway against emulators that spell the model otherwise
//! (`--property-spelling`, `--omit-property`, `--extra-property`, `--omit-navigation`), that
//! refuse collection `$expand`, or whose `$metadata` cannot be read.

use crate::harness::{Emu, Gateway};
use ats_gateway::emulator::spelling::SpellingSettings;
use ats_gateway::emulator::EmulatorConfig;
use ats_gateway::graphql::context::{ExpandPushdown, ReadConfig};
use serde_json::{json, Value};

const CANONICAL: &str = "query($n: Int) { recruitingRequests(first: $n) { nodes { id recruitingRequestId description status
    positions { positionId status description } skills { skillId ratingLevelId } educations { educationLevelId educationDisciplineId }
    location { description city } recruiter { name partyNumber } } } }";

fn spelled(spelling: SpellingSettings) -> Emu {
    Emu::start(EmulatorConfig {
        seed_size: 20,
        spelling,
        ..Default::default()
    })
}

fn auto() -> ReadConfig {
    ReadConfig {
        expand_pushdown: ExpandPushdown::Auto,
        ..Default::default()
    }
}

async fn readyz(gw: &Gateway) -> Value {
    let (status, body) = gw.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("readyz is JSON")
}

fn differences(ready: &Value) -> Vec<String> {
    ready["metadata"]["differences"]
        .as_array()
        .map(|l| l.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_property_the_upstream_lacks_resolves_to_null_with_one_warning() {
    let emu = spelled(SpellingSettings {
        omit_properties: vec!["mshr_hcmrecruitingrequestentities.mshr_description".into()],
        ..Default::default()
    });
    // The upstream refuses the property, as Dataverse refuses a name it does not have.
    let (status, body) = emu
        .get("mshr_hcmrecruitingrequestentities?$select=mshr_description")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "0x80060888");
    assert_eq!(
        body["error"]["message"],
        "Could not find a property named 'mshr_description' on type 'Microsoft.Dynamics.CRM.mshr_hcmrecruitingrequestentity'."
    );
    let gw = Gateway::over(emu);
    let q = "{ recruitingRequests(first: 3) { nodes { id description recruitingRequestId } }
        again: recruitingRequests(first: 2) { nodes { description } } }";
    let v = gw.query(q, json!({})).await;
    assert!(v.get("errors").is_none(), "{v}");
    let nodes = v["data"]["recruitingRequests"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes
        .iter()
        .all(|n| n["description"].is_null() && n["recruitingRequestId"].is_string()));
    let warnings = v["extensions"]["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "one warning per operation: {v}");
    assert_eq!(warnings[0]["code"], "PROPERTY_MISSING_UPSTREAM");
    assert_eq!(warnings[0]["properties"], json!(["RecruitingRequest.description"]));
    // Filtering or sorting on it is refused before any upstream request.
    for q in [
        "{ recruitingRequests(first: 3, filter: {description: {eq: \"x\"}}) { nodes { id } } }",
        "{ recruitingRequests(first: 3, orderBy: [{description: ASC}]) { nodes { id } } }",
    ] {
        let (requests, v) = gw.upstream_requests(gw.query(q, json!({}))).await;
        assert_eq!(v["errors"][0]["extensions"]["code"], "PROPERTY_MISSING_UPSTREAM", "{v}");
        assert_eq!(requests, 0, "{q}");
    }
    let ready = readyz(&gw).await;
    assert!(
        differences(&ready)
            .iter()
            .any(|l| l.starts_with("mshr_hcmrecruitingrequestentity.mshr_description: missing upstream")),
        "{ready}"
    );
}

#[tokio::test]
async fn a_disputed_spelling_is_resolved_from_metadata_for_reads_and_writes() {
    let emu = spelled(SpellingSettings {
        property_spellings: vec!["mshr_dirpartycontactentity.mshr_ismobilephone=mshr_ismobile".into()],
        ..Default::default()
    });
    let (status, _) = emu.get("mshr_dirpartycontactentities?$select=mshr_ismobilephone").await;
    assert_eq!(status, 400, "the model's spelling is not the upstream's");
    let gw = Gateway::over(emu);
    let ready = readyz(&gw).await;
    assert!(
        differences(&ready).contains(
            &"mshr_dirpartycontactentity.mshr_ismobilephone: spelled mshr_ismobile upstream (mapped both ways)"
                .to_string()
        ),
        "{ready}"
    );
    // Read and filter under the model's field; the upstream sees its own spelling.
    let d = gw
        .data(
            "{ partyContacts(first: 50, filter: {isMobile: {eq: false}}) { nodes { id isMobile } } }",
            json!({}),
        )
        .await;
    let nodes = d["partyContacts"]["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty() && nodes.iter().all(|n| n["isMobile"] == false), "{d}");
    let id = nodes[0]["id"].as_str().unwrap().to_string();
    let path = format!("mshr_dirpartycontactentities({id})?$select=mshr_ismobile");
    let before = gw.emu.get(&path).await.1["mshr_ismobile"].clone();
    // Write it: the body goes up under the upstream's spelling.
    let m = "mutation($id: ID!) { updatePartyContact(id: $id, input: {isMobile: true}) { errors { code message } record { isMobile } } }";
    let d = gw.data(m, json!({"id": id})).await;
    assert_eq!(d["updatePartyContact"]["errors"], json!([]), "{d}");
    assert_eq!(d["updatePartyContact"]["record"]["isMobile"], true);
    let after = gw.emu.get(&path).await.1["mshr_ismobile"].clone();
    assert!(after.is_i64() && after != before, "{before} -> {after}");
}

#[tokio::test]
async fn pushdown_turns_itself_on_and_to_many_off_against_no_expand() {
    let on = Gateway::over_with(Emu::fresh(), auto());
    let off = Gateway::over_with(
        Emu::start(EmulatorConfig {
            seed_size: 20,
            collection_expand: false,
            ..Default::default()
        }),
        auto(),
    );
    let ready = readyz(&on).await;
    assert_eq!(ready["expandPushdown"]["toMany"], true, "{ready}");
    assert_eq!(ready["expandPushdown"]["toOne"], true, "{ready}");
    assert_eq!(ready["metadata"]["status"], "matches the model", "{ready}");
    let ready = readyz(&off).await;
    assert_eq!(ready["expandPushdown"]["toMany"], false, "{ready}");
    assert_eq!(ready["expandPushdown"]["toOne"], true, "{ready}");
    let (requests, with) = on.upstream_requests(on.query(CANONICAL, json!({"n": 10}))).await;
    assert!(with.get("errors").is_none(), "{with}");
    assert_eq!(requests, 1, "the canonical query in one request");
    let (requests, without) = off.upstream_requests(off.query(CANONICAL, json!({"n": 10}))).await;
    assert!(without.get("errors").is_none(), "{without}");
    assert!(requests > 1, "to-many relations load separately: {requests}");
    assert_eq!(with["data"], without["data"], "the same seed, the same data");
}

#[tokio::test]
async fn a_missing_navigation_property_is_neither_expanded_nor_pushed_down() {
    let nav = "mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest";
    let emu = spelled(SpellingSettings {
        omit_navigations: vec![format!("mshr_hcmrecruitingrequestentity.{nav}")],
        ..Default::default()
    });
    let (status, _) = emu
        .get(&format!("mshr_hcmrecruitingrequestentities?$expand={nav}"))
        .await;
    assert_eq!(status, 400);
    let gw = Gateway::over_with(emu, auto());
    let (requests, v) = gw.upstream_requests(gw.query(CANONICAL, json!({"n": 10}))).await;
    assert!(v.get("errors").is_none(), "{v}");
    let nodes = v["data"]["recruitingRequests"]["nodes"].as_array().unwrap();
    assert!(
        nodes.iter().any(|n| !n["positions"].as_array().unwrap().is_empty()),
        "{v}"
    );
    assert_eq!(requests, 2, "the list with its other relations, then the positions");
}

#[tokio::test]
async fn extra_properties_are_listed_in_readyz() {
    let emu = spelled(SpellingSettings {
        extra_properties: vec!["mshr_hcmcandidatetohireentities.cr123_referralsource".into()],
        ..Default::default()
    });
    let (status, row) = emu
        .get("mshr_hcmcandidatetohireentities?$top=1&$select=cr123_referralsource")
        .await;
    assert_eq!(status, 200, "{row}");
    assert!(
        row["value"][0]
            .as_object()
            .unwrap()
            .contains_key("cr123_referralsource"),
        "{row}"
    );
    let gw = Gateway::over(emu);
    let ready = readyz(&gw).await;
    assert!(
        differences(&ready).contains(
            &"mshr_hcmcandidatetohireentity.cr123_referralsource: extra (customer) property upstream".to_string()
        ),
        "{ready}"
    );
    assert_eq!(
        ready["metadata"]["detail"]["entities"]["mshr_hcmcandidatetohireentity"]["extra"],
        json!(["cr123_referralsource"])
    );
    gw.data("{ candidatesToHire(first: 2) { nodes { id } } }", json!({}))
        .await;
}

#[tokio::test]
async fn a_failed_metadata_read_leaves_the_model_and_warns() {
    let emu = spelled(SpellingSettings {
        metadata_fails: true,
        ..Default::default()
    });
    let gw = Gateway::over_with(emu, auto());
    let ready = readyz(&gw).await;
    assert_eq!(ready["metadata"]["status"], "failed", "{ready}");
    let warnings = ready["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("upstream $metadata: not read at start")),
        "{ready}"
    );
    assert_eq!(ready["expandPushdown"]["toOne"], false, "{ready}");
    let v = gw.query(CANONICAL, json!({"n": 3})).await;
    assert!(v.get("errors").is_none() && v.get("extensions").is_none(), "{v}");
    assert!(
        v["data"]["recruitingRequests"]["nodes"][0]["description"].is_string(),
        "{v}"
    );
}
