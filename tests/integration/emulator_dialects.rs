//! The emulator's stricter profiles: plain OData v4 (`--dialect odata4`) and no collection
//! expands (`--no-expand`).

use crate::harness::Emu;
use ats_gateway::emulator::{dialect::Dialect, EmulatorConfig};
use serde_json::Value;

const RR: &str = "mshr_hcmrecruitingrequestentities";
const POSITIONS: &str = "mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest";
const IN: &str = r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_recruitingrequestid',PropertyValues=["USMF-000001","usmf-000002"])"#;

fn emu(dialect: Dialect, collection_expand: bool) -> Emu {
    Emu::start(EmulatorConfig {
        seed_size: 5,
        dialect,
        collection_expand,
        ..EmulatorConfig::default()
    })
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn assert_odata_error(status: u16, v: &Value, want: u16, needle: &str) {
    assert_eq!(status, want, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(v["error"]["code"].is_string(), "an OData error body: {v}");
    assert!(message.contains(needle), "{v}");
}

#[tokio::test]
async fn odata4_refuses_dataverse_functions_and_option_set_definitions() {
    let e = emu(Dialect::Odata4, true);
    let (s, v) = e.get(&format!("{RR}?$filter={}", enc(IN))).await;
    assert_odata_error(s, &v, 400, "Microsoft.Dynamics.CRM.In");
    // Also inside an expand's filter.
    let (s, v) = e
        .get(&format!(
            "{RR}?$expand={POSITIONS}($filter={})",
            enc(&IN.replace("mshr_recruitingrequestid", "mshr_positionid"))
        ))
        .await;
    assert_odata_error(s, &v, 400, "Microsoft.Dynamics.CRM.In");
    // Plain OData is served, `or` chains of `eq` included, case-insensitively.
    let (s, v) = e
        .get(&format!(
            "{RR}?$filter={}",
            enc("mshr_recruitingrequestid eq 'USMF-000001' or mshr_recruitingrequestid eq 'usmf-000002'")
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    let (s, v) = e.get("GlobalOptionSetDefinitions").await;
    assert_odata_error(s, &v, 404, "GlobalOptionSetDefinitions");
    let (s, _) = e.get(&format!("{RR}?$expand={POSITIONS}")).await;
    assert_eq!(s, 200, "collection expands are plain OData");
}

#[tokio::test]
async fn dataverse_dialect_serves_both() {
    let e = emu(Dialect::Dataverse, true);
    let (s, v) = e.get(&format!("{RR}?$filter={}", enc(IN))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 2, "In ignores case");
    let (s, _) = e.get("GlobalOptionSetDefinitions").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn no_expand_refuses_collection_expands_at_any_level() {
    let e = emu(Dialect::Dataverse, false);
    let (s, v) = e
        .get(&format!("{RR}?$expand={POSITIONS}($select=mshr_positionid)"))
        .await;
    assert_odata_error(s, &v, 400, POSITIONS);
    // Single-valued expands still work ...
    let candidates = "mshr_hcmcandidatetohireentities";
    let (s, v) = e
        .get(&format!(
            "{candidates}?$top=1&$expand=mshr_FK_Person_id($select=mshr_lastname)"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["value"][0]["mshr_FK_Person_id"].is_object(), "{v}");
    // ... but not a collection below them, and not on a single record either.
    let (s, v) = e
        .get(&format!(
            "{candidates}?$top=1&$expand=mshr_FK_Person_id($expand=mshr_FK_HcmPersonSkillEntity_Person)"
        ))
        .await;
    assert_odata_error(s, &v, 400, "mshr_FK_HcmPersonSkillEntity_Person");
    let id = e.first(&format!("{RR}?$top=1")).await["mshr_hcmrecruitingrequestentityid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = e.get(&format!("{RR}({id})?$expand={POSITIONS}")).await;
    assert_odata_error(s, &v, 400, POSITIONS);
    // The collection itself can be read through its own entity set or navigation.
    let (s, v) = e.get(&format!("{RR}({id})/{POSITIONS}")).await;
    assert_eq!(s, 200, "{v}");
}
