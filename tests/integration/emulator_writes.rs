//! Writes against the emulator: create, deep insert, update, delete, and their rules.

use crate::harness::{client, Emu};
use serde_json::{json, Value};

const CANDIDATES: &str = "mshr_hcmcandidatetohireentities";

fn entity_id(headers: &reqwest::header::HeaderMap) -> String {
    let url = headers["odata-entityid"].to_str().unwrap();
    url.rsplit_once('(').unwrap().1.trim_end_matches(')').to_string()
}

/// An existing recruiting request id of the seed, and one of its position ids.
async fn existing_request(emu: &Emu) -> (String, String) {
    let rr = emu
        .first("mshr_hcmrecruitingrequestentities?$filter=mshr_recruitingrequestid eq 'USMF-000001'&$expand=mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest($select=mshr_positionid)")
        .await;
    (
        rr["mshr_recruitingrequestid"].as_str().unwrap().to_string(),
        rr["mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest"][0]["mshr_positionid"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[tokio::test]
async fn documented_deep_insert_creates_candidate_person_and_details() {
    let emu = Emu::fresh();
    let (rr, pos) = existing_request(&emu).await;
    let mut body: Value = serde_json::from_str(include_str!("fixtures/documented-candidate-deep-insert.json")).unwrap();
    // The documented request refers to USMF-000141 of the docs' environment; use one of ours.
    body["mshr_recruitingrequestid"] = json!(rr);
    body["mshr_positionid"] = json!(pos);
    let (s, h, v) = emu.post(CANDIDATES, &body).await;
    assert_eq!(s, 204, "{v}");
    let url = h["odata-entityid"].to_str().unwrap();
    assert!(url.starts_with(&emu.url("mshr_hcmcandidatetohireentities(")), "{url}");
    let id = entity_id(&h);
    let (s, c) = emu
        .get(&format!("{CANDIDATES}({id})?$expand=mshr_FK_Person_id($expand=mshr_FK_HcmPersonSkillEntity_Person,mshr_FK_HcmPersonEducationEntity_Person)"))
        .await;
    assert_eq!(s, 200, "{c}");
    let person = &c["mshr_FK_Person_id"];
    assert_eq!(person["mshr_firstname"], "Evelyn");
    assert_eq!(c["mshr_firstname"], "Evelyn", "the candidate mirrors its person");
    assert_eq!(c["mshr_partynumber"], person["mshr_partynumber"]);
    assert!(person["mshr_partynumber"].as_str().unwrap().starts_with("HR"));
    assert!(!c["mshr_candidateid"].as_str().unwrap().is_empty());
    assert_eq!(
        c["mshr_applicantintegrationresult"], 200000000,
        "required integration result defaults to Not processed"
    );
    assert_eq!(
        c["_mshr_fk_recruitingrequest_id_value"],
        "00000d6b-0000-0000-0000-005001000000"
    );
    let skills = person["mshr_FK_HcmPersonSkillEntity_Person"].as_array().unwrap();
    assert_eq!(skills.len(), 2);
    for s in skills {
        assert_eq!(
            s["mshr_partynumber"], person["mshr_partynumber"],
            "mshr_partynumber links details to their person"
        );
        assert_eq!(s["_mshr_fk_person_id_value"], person["mshr_dirpersonentityid"]);
        assert!(s["mshr_primaryfield"]
            .as_str()
            .unwrap()
            .starts_with(person["mshr_partynumber"].as_str().unwrap()));
    }
    assert_eq!(
        person["mshr_FK_HcmPersonEducationEntity_Person"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn flat_candidate_post_creates_its_person_and_details_link_by_party_number() {
    let emu = Emu::fresh();
    let (rr, pos) = existing_request(&emu).await;
    let (s, h, v) = emu
        .post(CANDIDATES, &json!({"mshr_dataareaid": "usmf", "mshr_recruitingrequestid": rr, "mshr_positionid": pos, "mshr_firstname": "Ada", "mshr_lastname": "Lovelace"}))
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, c) = emu
        .get(&format!("{CANDIDATES}({})?$expand=mshr_FK_Person_id", entity_id(&h)))
        .await;
    let party = c["mshr_partynumber"].as_str().unwrap().to_string();
    assert_eq!(c["mshr_FK_Person_id"]["mshr_lastname"], "Lovelace");
    // A separate detail POST links by party number.
    let (s, h, v) = emu
        .post("mshr_hcmpersonskillentities", &json!({"mshr_partynumber": party, "mshr_skillid": "CustFocus", "mshr_ratingid": "Skills", "mshr_levelid": "4", "mshr_leveltype": 200000000, "mshr_leveldate": "2020-01-01T00:00:00Z", "mshr_verified": 200000000}))
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, skill) = emu
        .get(&format!("mshr_hcmpersonskillentities({})", entity_id(&h)))
        .await;
    assert_eq!(skill["_mshr_fk_person_id_value"], c["_mshr_fk_person_id_value"]);
    assert!(
        skill["_mshr_fk_ratinglevel_id_value"].is_string(),
        "level 4 resolves to a rating level: {skill}"
    );
}

#[tokio::test]
async fn return_representation_gives_201_with_assigned_ids() {
    let emu = Emu::fresh();
    let r = client()
        .post(emu.url("mshr_hcmrecruitingrequestentities?$select=mshr_recruitingrequestid,mshr_description"))
        .header("Prefer", "return=representation")
        .json(&json!({"mshr_dataareaid": "usrt", "mshr_description": "Forklift driver", "mshr_jobid": "Driver", "mshr_estimatedstartdate": "2027-01-04T00:00:00Z", "mshr_status": 200000000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["preference-applied"], "return=representation");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["mshr_recruitingrequestid"].as_str().unwrap().starts_with("USRT-"),
        "{v}"
    );
    assert!(v["mshr_hcmrecruitingrequestentityid"].is_string());
    assert!(v.get("mshr_jobid").is_none(), "$select shapes the representation");
}

#[tokio::test]
async fn read_only_properties_are_rejected_and_required_ones_enforced() {
    let emu = Emu::fresh();
    let (s, _, v) = emu
        .post(
            "mshr_hcmrecruitingrequestentities",
            &json!({"mshr_recruitingrequestid": "USMF-999999", "mshr_description": "x"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("read-only"), "{v}");
    let (s, _, v) = emu
        .post("mshr_hcmrecruitingrequestentities", &json!({"mshr_dataareaid": "usmf"}))
        .await;
    assert_eq!(s, 400);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("mshr_description") && msg.contains("mshr_jobid"), "{msg}");
    let (s, _, v) = emu
        .post("mshr_hcmrecruitingrequestentities", &json!({"mshr_nope": 1}))
        .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("mshr_nope"));
    let (s, _, v) = emu.post("mshr_hcmrecruitingrequestentities", &json!({"mshr_description": "x", "mshr_jobid": "j", "mshr_estimatedstartdate": "2027-01-01", "mshr_status": 12})).await;
    assert_eq!(s, 400, "an option value outside the set: {v}");
}

#[tokio::test]
async fn patch_updates_and_delete_removes() {
    let emu = Emu::fresh();
    let pos = emu
        .first("mshr_hcmrecruitingrequestpositionentities?$top=1&$filter=mshr_status eq 200000000")
        .await;
    let id = pos["mshr_hcmrecruitingrequestpositionentityid"].as_str().unwrap();
    let url = emu.url(&format!("mshr_hcmrecruitingrequestpositionentities({id})"));
    let r = client()
        .patch(&url)
        .json(&json!({"mshr_status": 200000001}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, v) = emu
        .get(&format!(
            "mshr_hcmrecruitingrequestpositionentities({id})?$select=mshr_status"
        ))
        .await;
    assert_eq!(v["mshr_status"], 200000001);
    let r = client()
        .patch(&url)
        .json(&json!({"mshr_positionid": "000001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "write-once properties cannot be updated");
    let r = client()
        .patch(&url)
        .header("If-None-Match", "*")
        .json(&json!({"mshr_status": 200000000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = client().delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (s, _) = emu
        .get(&format!("mshr_hcmrecruitingrequestpositionentities({id})"))
        .await;
    assert_eq!(s, 404);
    let r = client().delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
