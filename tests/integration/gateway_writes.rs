//! Writes through the gateway: submitCandidateToHire (atomic, validated, idempotent) and the
//! per-entity create / update / delete mutations.

use crate::harness::{client, Dialect, Emu, Gateway};
use ats_gateway::graphql::context::WriteConfig;
use ats_gateway::graphql::mutations::write::Strategy;
use serde_json::{json, Value};

pub(crate) const SUBMIT: &str = "mutation($input: CandidateToHireSubmissionInput!, $key: String) {
  submitCandidateToHire(input: $input, idempotencyKey: $key) {
    candidateId strategy replayed recordsCreated
    errors { code message path part }
    candidate { id candidateId recruitingRequestId positionId comments
      person { firstName lastName partyNumber
        educations { educationLevelId startDate endDate } professionalExperiences { employerName employerLocation }
        addresses { locationId city } contacts { locator type } skills { skillId levelId ratingLevel { ratingLevelId } }
        certificates { certificateTypeId } screenings { screeningTypeId status } identificationNumbers { identificationNumber } } } } }";

/// A request id and one of its positions, from the emulator's seed.
pub(crate) async fn request_and_position(emu: &Emu) -> (String, String) {
    let rr = emu
        .first("mshr_hcmrecruitingrequestentities?$filter=mshr_recruitingrequestid eq 'USMF-000001'&$expand=mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest($select=mshr_positionid)")
        .await;
    (
        rr["mshr_recruitingrequestid"].as_str().unwrap().into(),
        rr["mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest"][0]["mshr_positionid"]
            .as_str()
            .unwrap()
            .into(),
    )
}

/// Values of reference data the details point at.
async fn reference(emu: &Emu, set: &str, prop: &str) -> String {
    emu.first(&format!("{set}?$select={prop}&$top=1")).await[prop]
        .as_str()
        .unwrap()
        .to_string()
}

/// A full submission: a new person and 4 of each of the 8 detail kinds (34 records).
pub(crate) async fn full_input(emu: &Emu, tag: &str) -> Value {
    let (rr, pos) = request_and_position(emu).await;
    let cert = reference(emu, "mshr_hcmcertificatetypeentities", "mshr_certificatetype").await;
    let screening = reference(emu, "mshr_hcmscreeningtypeentities", "mshr_screeningtypeid").await;
    let four = |f: &dyn Fn(usize) -> Value| (0..4).map(f).collect::<Vec<_>>();
    json!({
        "dataAreaId": "usmf", "recruitingRequestId": rr, "positionId": pos, "availabilityDate": "2027-03-01",
        "comments": format!("Submitted by the tests ({tag})"), "isWillingToRelocate": true,
        "person": {"firstName": format!("Evelyn{tag}"), "lastName": "Chambers", "gender": "FEMALE"},
        "educations": four(&|i| json!({"educationDisciplineId": "Business Mgmt", "educationLevelId": "Bachelor", "educationInstitutionId": "Cottonwood Univ", "startDate": format!("201{i}-02-21T00:00:00Z"), "endDate": format!("201{}-02-22T00:00:00Z", i + 4)})),
        "professionalExperiences": four(&|i| json!({"employerName": format!("Contoso {i}"), "employerPosition": "Analyst", "employerLocation": "Seattle", "startDate": format!("201{i}-01-01T00:00:00Z")})),
        "addresses": four(&|i| json!({"locationId": format!("LOC-{tag}-{i}"), "description": "Home", "roles": "Home", "city": "Redmond", "isPrimary": i == 0, "isPrivate": false})),
        "contacts": four(&|i| json!({"locationId": format!("C-{tag}-{i}"), "description": "Mobile", "type": "PHONE", "locator": format!("+1 555 010{i}"), "isMobile": true, "isInstantMessage": false, "isPrimary": i == 0, "isPrivate": false})),
        "skills": four(&|i| json!({"skillId": format!("Skill{i}"), "ratingId": "Skills", "levelId": "4", "levelType": "ACTUAL", "levelDate": "2020-01-01T00:00:00Z", "verified": false})),
        "certificates": four(&|i| json!({"certificateTypeId": cert, "startDate": format!("202{i}-01-01T00:00:00Z")})),
        "screenings": four(&|_| json!({"screeningTypeId": screening, "status": "PASS"})),
        "identificationNumbers": four(&|i| json!({"identificationNumber": format!("ID-{tag}-{i}"), "identificationTypeId": "SSN"})),
    })
}

pub(crate) async fn submit(gw: &Gateway, input: &Value, key: Option<&str>) -> Value {
    let v = gw.query(SUBMIT, json!({"input": input, "key": key})).await;
    assert!(v.get("errors").is_none(), "GraphQL errors: {v}");
    v["data"]["submitCandidateToHire"].clone()
}

/// Row counts of every entity set.
pub(crate) async fn counts(emu: &Emu) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in &ats_gateway::model::model().entities {
        let r = client()
            .get(emu.url(&format!("{}/$count", e.entity_set)))
            .send()
            .await
            .unwrap();
        out.push((
            e.entity_set.clone(),
            r.text().await.unwrap().trim_start_matches('\u{feff}').parse().unwrap(),
        ));
    }
    out
}

/// [`gateway`] in `dialect`, over an emulator of the same dialect.
fn gateway_in(dialect: Dialect, strategy: Strategy) -> Gateway {
    Gateway::with_writes_in(
        dialect,
        Emu::fresh_in(dialect),
        WriteConfig {
            strategy,
            state_db: None,
            ..Default::default()
        },
    )
}

in_both_dialects!(a_full_submission_is_one_write_request_and_reads_back_identical);
async fn a_full_submission_is_one_write_request_and_reads_back_identical(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Batch);
    let input = full_input(&gw.emu, "full").await;
    let before = counts(&gw.emu).await;
    gw.emu.reset_stats().await;
    let p = submit(&gw, &input, None).await;
    let stats = gw.emu.stats().await;
    assert_eq!(p["errors"], json!([]), "{p}");
    assert_eq!(p["recordsCreated"], 34);
    assert_eq!(p["strategy"], "BATCH");
    assert_eq!(stats["writes"], 1, "all 34 records in one write request: {stats}");
    assert!(stats["total"].as_u64().unwrap() <= 2 + 20, "{stats}");
    let after = counts(&gw.emu).await;
    let created: u64 = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).sum();
    assert_eq!(created, 34);
    let c = &p["candidate"];
    assert_eq!(c["comments"], input["comments"]);
    assert_eq!(c["recruitingRequestId"], input["recruitingRequestId"]);
    let person = &c["person"];
    assert_eq!(person["firstName"], "Evelynfull");
    for kind in [
        "educations",
        "professionalExperiences",
        "addresses",
        "contacts",
        "skills",
        "certificates",
        "screenings",
        "identificationNumbers",
    ] {
        assert_eq!(person[kind].as_array().unwrap().len(), 4, "{kind}");
    }
    let mut ids: Vec<&str> = person["identificationNumbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["identificationNumber"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ID-full-0", "ID-full-1", "ID-full-2", "ID-full-3"]);
    assert!(person["skills"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ratingLevel"]["ratingLevelId"] == "4"));
    let mut starts: Vec<&str> = person["educations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["startDate"].as_str().unwrap())
        .collect();
    starts.sort();
    assert_eq!(starts[0], "2010-02-21T00:00:00Z");
}

in_both_dialects!(an_invalid_submission_reports_every_problem_and_writes_nothing);
async fn an_invalid_submission_reports_every_problem_and_writes_nothing(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Batch);
    let mut input = full_input(&gw.emu, "bad").await;
    input["educations"][2]["startDate"] = json!("2030-01-01T00:00:00Z");
    input["professionalExperiences"][0]["employerLocation"] = json!("x".repeat(61));
    input["positionId"] = json!("no-such-position");
    input["availabilityDate"] = json!("2027-02-30");
    let before = counts(&gw.emu).await;
    let p = submit(&gw, &input, None).await;
    let paths: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap_or(""))
        .collect();
    assert!(
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["code"] == "VALIDATION_FAILED"),
        "{p}"
    );
    for expected in [
        "educations[2].startDate",
        "professionalExperiences[0].employerLocation",
        "positionId",
        "availabilityDate",
    ] {
        assert!(paths.contains(&expected), "{expected} not reported: {paths:?}");
    }
    assert!(p["candidate"].is_null() && p["candidateId"].is_null());
    assert_eq!(counts(&gw.emu).await, before, "nothing written");
    // Both a person and a party number, or neither, is refused too.
    let mut both = full_input(&gw.emu, "both").await;
    both["partyNumber"] = json!("HR000000001");
    let p = submit(&gw, &both, None).await;
    assert!(
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "partyNumber"),
        "{p}"
    );
    // Invalid enum values never reach the resolver: GraphQL refuses them.
    let mut bad_enum = full_input(&gw.emu, "enum").await;
    bad_enum["person"]["gender"] = json!("SOMETIMES");
    let v = gw.query(SUBMIT, json!({"input": bad_enum})).await;
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("SOMETIMES"), "{v}");
}

in_both_dialects!(an_upstream_failure_inside_the_change_set_leaves_nothing_behind);
async fn an_upstream_failure_inside_the_change_set_leaves_nothing_behind(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Batch);
    let mut input = full_input(&gw.emu, "reject").await;
    // The gateway cannot know rating level 99 is missing; the upstream rejects the 20th part.
    input["skills"][3]["levelId"] = json!("99");
    let before = counts(&gw.emu).await;
    let p = submit(&gw, &input, None).await;
    let e = &p["errors"][0];
    assert_eq!(e["code"], "UPSTREAM_REJECTED", "{p}");
    assert!(
        e["message"].as_str().unwrap().contains("99"),
        "the upstream's message: {e}"
    );
    assert_eq!(e["path"], "skills[3]");
    assert!(e["part"].as_u64().unwrap() > 2);
    assert_eq!(counts(&gw.emu).await, before, "the change set rolled back");
}

in_both_dialects!(a_retry_with_the_same_key_creates_nothing_and_keys_survive_a_restart);
async fn a_retry_with_the_same_key_creates_nothing_and_keys_survive_a_restart(dialect: Dialect) {
    let emu = Emu::fresh_in(dialect);
    let db = std::env::temp_dir().join(format!("ats-gw-idem-{}-{}.db", dialect.name(), std::process::id()));
    let _ = std::fs::remove_file(&db);
    let input = full_input(&emu, "idem").await;
    let first;
    {
        let gw = Gateway::with_writes_in(
            dialect,
            Emu {
                root: emu.root.clone(),
                admin: emu.admin.clone(),
                _stop: emu._stop.clone(),
            },
            WriteConfig {
                strategy: Strategy::Batch,
                state_db: Some(db.clone()),
                ..Default::default()
            },
        );
        first = submit(&gw, &input, Some("offer-42")).await;
        assert_eq!(first["errors"], json!([]), "{first}");
        let before = counts(&gw.emu).await;
        let again = submit(&gw, &input, Some("offer-42")).await;
        assert_eq!(again["replayed"], true);
        assert_eq!(again["candidateId"], first["candidateId"]);
        assert_eq!(again["candidate"]["id"], first["candidateId"]);
        assert_eq!(counts(&gw.emu).await, before, "a replay writes nothing");
        let mut other = input.clone();
        other["comments"] = json!("something else");
        let p = submit(&gw, &other, Some("offer-42")).await;
        assert_eq!(p["errors"][0]["code"], "IDEMPOTENCY_KEY_REUSED", "{p}");
    }
    // A new gateway process over the same state file.
    let gw = Gateway::with_writes_in(
        dialect,
        emu,
        WriteConfig {
            strategy: Strategy::Batch,
            state_db: Some(db.clone()),
            ..Default::default()
        },
    );
    let before = counts(&gw.emu).await;
    let p = submit(&gw, &input, Some("offer-42")).await;
    assert_eq!(p["replayed"], true, "{p}");
    assert_eq!(p["candidateId"], first["candidateId"]);
    assert_eq!(counts(&gw.emu).await, before);
    let _ = std::fs::remove_file(&db);
}

in_both_dialects!(an_internal_candidate_uses_an_existing_person);
async fn an_internal_candidate_uses_an_existing_person(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Batch);
    let person = gw
        .emu
        .first("mshr_dirpersonentities?$select=mshr_partynumber,mshr_firstname&$top=1&$orderby=mshr_partynumber")
        .await;
    let party = person["mshr_partynumber"].as_str().unwrap();
    let mut input = full_input(&gw.emu, "internal").await;
    input.as_object_mut().unwrap().remove("person");
    input["partyNumber"] = json!(party);
    let p = submit(&gw, &input, None).await;
    assert_eq!(p["errors"], json!([]), "{p}");
    assert_eq!(p["recordsCreated"], 33, "the candidate and 32 details, no new person");
    assert_eq!(p["candidate"]["person"]["partyNumber"], party);
    assert_eq!(p["candidate"]["person"]["firstName"], person["mshr_firstname"]);
    assert!(p["candidate"]["person"]["skills"].as_array().unwrap().len() >= 4);
    let mut unknown = input.clone();
    unknown["partyNumber"] = json!("HR999999999");
    let p = submit(&gw, &unknown, None).await;
    assert_eq!(p["errors"][0]["path"], "partyNumber", "{p}");
}

in_both_dialects!(the_deep_insert_strategy_writes_in_one_post);
async fn the_deep_insert_strategy_writes_in_one_post(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::DeepInsert);
    let input = full_input(&gw.emu, "deep").await;
    gw.emu.reset_stats().await;
    let p = submit(&gw, &input, None).await;
    assert_eq!(p["errors"], json!([]), "{p}");
    assert_eq!(p["strategy"], "DEEP_INSERT");
    assert_eq!(gw.emu.stats().await["writes"], 1);
    assert_eq!(p["candidate"]["person"]["contacts"].as_array().unwrap().len(), 4);
}

in_both_dialects!(the_flat_fallback_compensates_a_failure_in_the_middle);
async fn the_flat_fallback_compensates_a_failure_in_the_middle(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Flat);
    let ok = submit(&gw, &full_input(&gw.emu, "flat-ok").await, None).await;
    assert_eq!(ok["errors"], json!([]), "{ok}");
    assert_eq!(ok["strategy"], "FLAT");
    assert_eq!(ok["candidate"]["person"]["screenings"].as_array().unwrap().len(), 4);
    let mut input = full_input(&gw.emu, "flat-bad").await;
    input["skills"][1]["levelId"] = json!("99");
    let before = counts(&gw.emu).await;
    let p = submit(&gw, &input, None).await;
    assert_eq!(p["errors"][0]["code"], "UPSTREAM_REJECTED", "{p}");
    assert_eq!(
        p["errors"].as_array().unwrap().len(),
        1,
        "every compensating delete succeeded: {p}"
    );
    assert!(
        p["errors"][0]["part"].as_u64().unwrap() > 10,
        "it failed in the middle: {p}"
    );
    assert_eq!(counts(&gw.emu).await, before, "nothing half-written remains");
}

in_both_dialects!(a_flat_create_without_an_id_fails_and_is_compensated);
async fn a_flat_create_without_an_id_fails_and_is_compensated(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Flat);
    // The candidate (the 2nd create) and the 3rd education (the 5th). (The person is created
    // with its representation, whose body names it anyway.)
    for (set, nth, part) in [
        ("mshr_hcmcandidatetohireentities", 1, 2),
        ("mshr_hcmpersoneducationentities", 3, 5),
    ] {
        let input = full_input(&gw.emu, &format!("no-id-{nth}")).await;
        let before = counts(&gw.emu).await;
        let r = client()
            .put(format!("{}faults", gw.emu.admin))
            .json(&json!({"omitEntityId": {"entitySet": set, "nth": nth}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        gw.emu.reset_stats().await;
        let p = submit(&gw, &input, None).await;
        let stats = gw.emu.stats().await;
        assert_eq!(stats["injected"]["omitEntityId"], 1, "{set}: {stats}");
        assert_eq!(p["candidateId"], Value::Null, "{set}: {p}");
        let errors = p["errors"].as_array().unwrap();
        assert_eq!(errors[0]["code"], "UPSTREAM_INVALID_RESPONSE", "{set}: {p}");
        assert_eq!(errors[0]["part"], part, "{set}: {p}");
        // An empty-key `DELETE set()` would have failed and been reported as COMPENSATION_FAILED.
        assert_eq!(errors.len(), 1, "{set}: every compensating delete succeeded: {p}");
        assert_eq!(
            counts(&gw.emu).await,
            before,
            "{set}: nothing of the submission remains"
        );
    }
}

in_both_dialects!(create_update_and_delete_mutations);
async fn create_update_and_delete_mutations(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Batch);
    let pos = gw
        .emu
        .first("mshr_hcmrecruitingrequestpositionentities?$top=1&$filter=mshr_status eq 200000000")
        .await;
    let id = pos["mshr_hcmrecruitingrequestpositionentityid"].as_str().unwrap();
    let d = gw
        .data("mutation($id: ID!) { updateRecruitingRequestPosition(id: $id, input: {status: FILLED}) { errors { code } record { id status } } }", json!({"id": id}))
        .await;
    assert_eq!(
        d["updateRecruitingRequestPosition"]["record"]["status"], "FILLED",
        "{d}"
    );
    let d = gw
        .data("mutation { createCertificateType(input: {certificateType: \"Crane\", description: \"Crane operator\", requireRenewal: true}) { errors { code message } record { id certificateType requireRenewal } } }", json!({}))
        .await;
    let rec = &d["createCertificateType"]["record"];
    assert_eq!(rec["certificateType"], "Crane", "{d}");
    assert_eq!(rec["requireRenewal"], true);
    let new_id = rec["id"].as_str().unwrap();
    let d = gw
        .data(
            "mutation($id: ID!) { deleteCertificateType(id: $id) { id deleted errors { code } } }",
            json!({"id": new_id}),
        )
        .await;
    assert_eq!(d["deleteCertificateType"]["deleted"], true);
    let d = gw
        .data(
            "mutation($id: ID!) { deleteCertificateType(id: $id) { deleted errors { code message } } }",
            json!({"id": new_id}),
        )
        .await;
    assert_eq!(d["deleteCertificateType"]["deleted"], false);
    assert_eq!(
        d["deleteCertificateType"]["errors"][0]["code"], "UPSTREAM_REJECTED",
        "{d}"
    );
    let d = gw.data("mutation { createRecruitingRequest(input: {description: \"x\", jobId: \"j\", estimatedStartDate: \"2027-01-32\"}) { errors { code path } record { id } } }", json!({})).await;
    assert_eq!(
        d["createRecruitingRequest"]["errors"][0]["path"], "input.estimatedStartDate",
        "{d}"
    );
    let v = gw.query("mutation($id: ID!) { updateRecruitingRequestPosition(id: $id, input: {positionId: \"1\"}) { record { id } } }", json!({"id": id})).await;
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("positionId"),
        "write-once fields are not in update inputs: {v}"
    );
}

/// `v` as JSON text, the fields of every object written in reverse order (a `Value`'s own text
/// has them sorted).
fn reversed_text(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), reversed_text(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(reversed_text).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

in_both_dialects!(the_same_input_with_its_fields_in_another_order_replays);
async fn the_same_input_with_its_fields_in_another_order_replays(dialect: Dialect) {
    let gw = gateway_in(dialect, Strategy::Batch);
    let input = full_input(&gw.emu, "order").await;
    let first = submit(&gw, &input, Some("order-key")).await;
    assert_eq!(first["errors"], json!([]), "{first}");
    let reordered = reversed_text(&input);
    assert_ne!(reordered, input.to_string(), "the fields are sent in another order");
    assert_eq!(serde_json::from_str::<Value>(&reordered).unwrap(), input);
    let before = counts(&gw.emu).await;
    let body = format!(
        "{{\"query\":{},\"variables\":{{\"key\":\"order-key\",\"input\":{reordered}}}}}",
        Value::from(SUBMIT)
    );
    let again = client()
        .post(&gw.endpoint)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent")
        .json::<Value>()
        .await
        .expect("a JSON response");
    assert!(again.get("errors").is_none(), "GraphQL errors: {again}");
    let again = &again["data"]["submitCandidateToHire"];
    assert_eq!(again["replayed"], true, "the same submission: {again}");
    assert_eq!(again["candidateId"], first["candidateId"]);
    assert_eq!(counts(&gw.emu).await, before, "a replay writes nothing");
    // The same input as an inline literal (enums as enum values, not strings) is the same too.
    let inline = SUBMIT
        .replace(
            "mutation($input: CandidateToHireSubmissionInput!, $key: String)",
            "mutation($key: String)",
        )
        .replace("input: $input", &format!("input: {}", graphql_literal(&input)));
    let v = gw.query(&inline, json!({"key": "order-key"})).await;
    assert_eq!(v["data"]["submitCandidateToHire"]["replayed"], true, "{v}");
    let mut other = input.clone();
    other["comments"] = json!("another submission");
    let p = submit(&gw, &other, Some("order-key")).await;
    assert_eq!(p["errors"][0]["code"], "IDEMPOTENCY_KEY_REUSED", "{p}");
}

/// `v` as a GraphQL input literal, with the values of the input's enum fields as enum values.
fn graphql_literal(v: &Value) -> String {
    const ENUMS: [&str; 4] = ["gender", "type", "levelType", "status"];
    match v {
        // In reverse order, as the variables above were sent.
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .rev()
                .map(|(k, v)| match v {
                    Value::String(s) if ENUMS.contains(&k.as_str()) => format!("{k}: {s}"),
                    v => format!("{k}: {}", graphql_literal(v)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(items) => format!("[{}]", items.iter().map(graphql_literal).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

in_both_dialects!(idempotency_keys_expire_after_their_ttl);
async fn idempotency_keys_expire_after_their_ttl(dialect: Dialect) {
    let gw = Gateway::with_writes_in(
        dialect,
        Emu::fresh_in(dialect),
        WriteConfig {
            strategy: Strategy::Batch,
            state_db: None,
            idempotency_ttl: std::time::Duration::from_secs(1),
        },
    );
    let input = full_input(&gw.emu, "ttl").await;
    let first = submit(&gw, &input, Some("ttl-key")).await;
    assert_eq!(first["errors"], json!([]), "{first}");
    let again = submit(&gw, &input, Some("ttl-key")).await;
    assert_eq!(again["replayed"], true, "within the TTL: {again}");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut other = input.clone();
    other["comments"] = json!("a new submission under an expired key");
    let after = submit(&gw, &other, Some("ttl-key")).await;
    assert_eq!(after["errors"], json!([]), "an expired key is a new key: {after}");
    assert_eq!(after["replayed"], false);
    assert_ne!(after["candidateId"], first["candidateId"]);
}
