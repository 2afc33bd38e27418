//! Errors in Dataverse's shape: status, code and a message that says what is wrong.

use crate::harness::shared;

const RR: &str = "mshr_hcmrecruitingrequestentities";

async fn error(path: &str) -> (u16, String, String) {
    let (s, v) = shared().get(path).await;
    (
        s,
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn bad_filter_syntax_is_a_400_that_says_where() {
    let (s, code, msg) = error(&format!("{RR}?$filter=mshr_description eq 'O'Bryan'")).await;
    assert_eq!(s, 400);
    assert_eq!(code, "0x80060888");
    assert!(msg.contains("position"), "{msg}");
    let (s, _, msg) = error(&format!("{RR}?$filter=mshr_status eq")).await;
    assert_eq!(s, 400, "{msg}");
}

#[tokio::test]
async fn unknown_property_is_named() {
    let (s, _, msg) = error(&format!("{RR}?$filter=mshr_nope eq 1")).await;
    assert_eq!(s, 400);
    assert!(msg.contains("Could not find a property named 'mshr_nope'"), "{msg}");
    let (s, _, msg) = error(&format!("{RR}?$select=mshr_nope")).await;
    assert_eq!(s, 400);
    assert!(msg.contains("mshr_nope"), "{msg}");
    let (s, _, _) = error(&format!("{RR}?$orderby=mshr_nope")).await;
    assert_eq!(s, 400);
    let (s, _, msg) = error(&format!("{RR}?$expand=mshr_nope")).await;
    assert_eq!(s, 400, "{msg}");
}

#[tokio::test]
async fn unsupported_query_options_are_refused() {
    for opt in ["$skip=10", "$search=x", "$format=json"] {
        let (s, _, msg) = error(&format!("{RR}?{opt}")).await;
        assert_eq!(s, 400, "{opt}");
        assert!(msg.contains(opt.split('=').next().unwrap()), "{msg}");
    }
}

#[tokio::test]
async fn expand_rules_and_limits() {
    let (s, _, msg) = error(&format!("{RR}?$expand=mshr_FK_Recruiter_id($top=1)")).await;
    assert_eq!(s, 400);
    assert!(
        msg.starts_with("Only $select and $filter clause can be provided"),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_records_and_sets_are_404() {
    let (s, _, msg) = error(&format!("{RR}(00000000-0000-0000-0000-000000000001)")).await;
    assert_eq!(s, 404);
    assert_eq!(
        msg,
        "mshr_hcmrecruitingrequestentity With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist"
    );
    let (s, code, msg) = error("mshr_hcmrecruitingrequestentitiess").await;
    assert_eq!(s, 404);
    assert_eq!(code, "0x80060888");
    assert_eq!(
        msg,
        "Resource not found for the segment 'mshr_hcmrecruitingrequestentitiess'."
    );
    let (s, _, msg) = error(&format!("{RR}(mshr_recruitingrequestid='USMF-000001')")).await;
    assert_eq!(s, 400, "alternate keys are not supported on virtual tables: {msg}");
}
