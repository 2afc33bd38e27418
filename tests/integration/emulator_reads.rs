//! Reads against the emulator: service document, $metadata, query options, paging, the documented
//! recruiting-request example.

use crate::harness::{client, send, shared};
use serde_json::Value;

const RR: &str = "mshr_hcmrecruitingrequestentities";
const DOC_RR_ID: &str = "00000d6b-0000-0000-0000-005001000000";

#[tokio::test]
async fn service_document_lists_the_18_entity_sets() {
    let (s, v) = shared().get("").await;
    assert_eq!(s, 200);
    let sets = v["value"].as_array().unwrap();
    assert_eq!(sets.len(), 18);
    assert!(sets.iter().any(|s| s["name"] == RR && s["kind"] == "EntitySet"));
}

#[tokio::test]
async fn metadata_matches_the_snapshot() {
    let r = client().get(shared().url("$metadata")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/xml"));
    let body = r.text().await.unwrap();
    for nav in [
        "mshr_FK_Person_id",
        "mshr_FK_HcmPersonSkillEntity_Person",
        "mshr_FK_HcmPersonEducationEntity_Person",
        "mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest",
        "mshr_FK_HcmRecruitingRequestSkillEntity_RecruitingRequest",
        "mshr_FK_HcmRecruitingRequestEducationEntity_RecruitingRequest",
    ] {
        assert!(
            body.contains(&format!("NavigationProperty Name=\"{nav}\"")),
            "{nav} missing"
        );
    }
    insta::assert_snapshot!("metadata", body);
}

#[tokio::test]
async fn option_set_labels_are_served() {
    let (s, v) = shared()
        .get("GlobalOptionSetDefinitions(Name='mshr_hcmrecruitingrequeststatus')")
        .await;
    assert_eq!(s, 200, "{v}");
    let options = v["Options"].as_array().unwrap();
    assert_eq!(options.len(), 7);
    assert_eq!(options[5]["Value"], 200000005);
    assert_eq!(options[5]["Label"]["UserLocalizedLabel"]["Label"], "Active");
    let (s, _) = shared().get("GlobalOptionSetDefinitions(Name='nope')").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn documented_recruiting_request_expand_returns_the_documented_shape() {
    let path = format!(
        "{RR}({DOC_RR_ID})?$expand=mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest,mshr_FK_HcmRecruitingRequestSkillEntity_RecruitingRequest,mshr_FK_HcmRecruitingRequestEducationEntity_RecruitingRequest"
    );
    let (s, v) = shared().get(&path).await;
    assert_eq!(s, 200, "{v}");
    let doc: Value = serde_json::from_str(include_str!("fixtures/documented-recruiting-request.json")).unwrap();
    assert_same_shape(&doc, &v, "$");
    assert_eq!(v["mshr_recruitingrequestid"], "USMF-000001");
    assert_eq!(v["mshr_status"], 200000005);
    assert_eq!(
        v["mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Every key of `doc` is present in `got` (recursively, for objects and arrays of objects).
pub fn assert_same_shape(doc: &Value, got: &Value, at: &str) {
    match doc {
        Value::Object(m) => {
            for (k, v) in m {
                let g = got.get(k).unwrap_or_else(|| panic!("{at}.{k} is missing from {got}"));
                assert_same_shape(v, g, &format!("{at}.{k}"));
            }
        }
        Value::Array(items) => {
            let g = got.as_array().unwrap_or_else(|| panic!("{at} is not an array"));
            if let Some(first) = items.first() {
                assert!(!g.is_empty(), "{at} is empty");
                for item in g {
                    assert_same_shape(first, item, &format!("{at}[]"));
                }
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn select_returns_only_the_selected_properties_and_the_key() {
    let (s, v) = shared()
        .get(&format!("{RR}?$select=mshr_recruitingrequestid,mshr_status&$top=3"))
        .await;
    assert_eq!(s, 200, "{v}");
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // The keys, in the order a `Value` keeps them (sorted): a JSON object's have none.
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "mshr_hcmrecruitingrequestentityid",
            "mshr_recruitingrequestid",
            "mshr_status"
        ]
    );
    assert!(v["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("$metadata#mshr_hcmrecruitingrequestentities(mshr_recruitingrequestid,mshr_status)"));
}

async fn ids(filter: &str) -> Vec<String> {
    let q = percent_encoding::utf8_percent_encode(filter, percent_encoding::NON_ALPHANUMERIC).to_string();
    let (s, v) = shared()
        .get(&format!("{RR}?$select=mshr_recruitingrequestid&$filter={q}"))
        .await;
    assert_eq!(s, 200, "{filter}: {v}");
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mshr_recruitingrequestid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn filters_evaluate_each_operator() {
    assert_eq!(ids("mshr_recruitingrequestid eq 'USMF-000001'").await, ["USMF-000001"]);
    assert_eq!(
        ids("mshr_recruitingrequestid eq 'usmf-000001'").await,
        ["USMF-000001"],
        "case-insensitive"
    );
    assert_eq!(
        {
            let mut found = ids(r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_recruitingrequestid',PropertyValues=["uSmF-000001","USMF-000002"])"#).await;
            found.sort();
            found
        },
        ["USMF-000001", "USMF-000002"],
        "In ignores case too"
    );
    let guid = shared()
        .first(&format!("{RR}?$filter=mshr_recruitingrequestid eq 'USMF-000001'"))
        .await["mshr_hcmrecruitingrequestentityid"]
        .as_str()
        .unwrap()
        .to_uppercase();
    assert_eq!(
        ids(&format!("mshr_hcmrecruitingrequestentityid eq {guid}")).await,
        ["USMF-000001"],
        "GUIDs ignore case"
    );
    let all = ids("mshr_recruitingrequestid ne null").await;
    assert_eq!(all.len(), 200);
    let active = ids("mshr_status eq 200000005").await;
    let not_active = ids("not (mshr_status eq 200000005)").await;
    assert_eq!(active.len() + not_active.len(), 200);
    assert!(!active.is_empty() && !not_active.is_empty());
    let usmf = ids("mshr_dataareaid eq 'usmf'").await;
    let usmf_active = ids("mshr_dataareaid eq 'usmf' and mshr_status eq 200000005").await;
    let either = ids("(mshr_dataareaid eq 'usmf') or (mshr_status eq 200000005)").await;
    assert!(usmf_active.len() <= usmf.len());
    assert_eq!(either.len(), usmf.len() + active.len() - usmf_active.len());
    assert!(ids("startswith(mshr_recruitingrequestid,'USMF-')").await.len() == usmf.len());
    assert_eq!(
        ids("endswith(mshr_recruitingrequestid,'-000001')").await.len(),
        ids("contains(mshr_recruitingrequestid,'-000001')").await.len()
    );
    let early = ids("mshr_estimatedstartdate lt 2021-06-01").await;
    let late = ids("mshr_estimatedstartdate ge 2021-06-01").await;
    let none = ids("mshr_estimatedstartdate eq null").await;
    assert_eq!(early.len() + late.len() + none.len(), 200);
    assert_eq!(
        ids(&format!("mshr_hcmrecruitingrequestentityid eq {DOC_RR_ID}")).await,
        ["USMF-000001"]
    );
    assert_eq!(
        ids("mshr_compensationhighthreshold gt 92499.5 and mshr_recruitingrequestid eq 'USMF-000001'")
            .await
            .len(),
        1
    );
    assert_eq!(
        ids("Microsoft.Dynamics.CRM.In(PropertyName='mshr_recruitingrequestid',PropertyValues=[\"USMF-000001\",\"USMF-000002\"])").await.len(),
        2
    );
    assert!(ids("mshr_recruitingrequestid eq 'O''Bryan'").await.is_empty());
}

#[tokio::test]
async fn lookup_value_filters_join_children_to_parents() {
    let (s, v) = shared()
        .get(&format!("mshr_hcmrecruitingrequestpositionentities?$filter=_mshr_fk_recruitingrequest_id_value eq {DOC_RR_ID}&$select=mshr_positionid"))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut pos: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mshr_positionid"].as_str().unwrap())
        .collect();
    pos.sort();
    assert_eq!(pos, ["000426", "000461"]);
}

#[tokio::test]
async fn orderby_top_and_count() {
    let (s, v) = shared()
        .get(&format!(
            "{RR}?$select=mshr_recruitingrequestid&$orderby=mshr_recruitingrequestid desc&$top=5&$count=true"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["@odata.count"], 200);
    let got: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mshr_recruitingrequestid"].as_str().unwrap())
        .collect();
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(got, sorted);
    assert_eq!(got.len(), 5);
    assert!(
        v.get("@odata.nextLink").is_none(),
        "$top without paging has no next link"
    );
}

#[tokio::test]
async fn paging_follows_opaque_next_links_without_losing_rows() {
    let mut url = shared().url(&format!(
        "{RR}?$select=mshr_recruitingrequestid&$orderby=mshr_recruitingrequestid"
    ));
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = client()
            .get(&url)
            .header("Prefer", "odata.maxpagesize=70")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["preference-applied"], "odata.maxpagesize=70");
        let v: Value = r.json().await.unwrap();
        pages += 1;
        seen.extend(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["mshr_recruitingrequestid"].as_str().unwrap().to_string()),
        );
        match v["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), 200);
}

#[tokio::test]
async fn page_size_is_capped_at_5000() {
    let r = client()
        .get(shared().url(&format!("{RR}?$select=mshr_recruitingrequestid")))
        .header("Prefer", "odata.maxpagesize=10000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["preference-applied"], "odata.maxpagesize=5000");
}

#[tokio::test]
async fn expand_single_and_collection_with_nested_options() {
    let (s, v) = shared()
        .get(&format!(
            "{RR}?$select=mshr_recruitingrequestid&$filter=mshr_recruitingrequestid eq 'USMF-000001'&$expand=mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest($select=mshr_positionid;$filter=mshr_status eq 200000001),mshr_FK_Recruiter_id($select=mshr_partynumber)"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    let rr = &v["value"][0];
    let positions = rr["mshr_FK_HcmRecruitingRequestPositionEntity_RecruitingRequest"]
        .as_array()
        .unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0]["mshr_positionid"], "000426");
    assert!(positions[0].get("mshr_description").is_none());
    assert!(rr["mshr_FK_Recruiter_id"].is_object() || rr["mshr_FK_Recruiter_id"].is_null());
    // Candidate -> person -> skills: a two-level expand.
    let c = shared()
        .first("mshr_hcmcandidatetohireentities?$top=1&$select=mshr_candidateid&$expand=mshr_FK_Person_id($select=mshr_partynumber;$expand=mshr_FK_HcmPersonSkillEntity_Person($select=mshr_skillid))")
        .await;
    let skills = c["mshr_FK_Person_id"]["mshr_FK_HcmPersonSkillEntity_Person"]
        .as_array()
        .unwrap();
    assert!((2..=4).contains(&skills.len()), "{c}");
}

#[tokio::test]
async fn navigation_paths_and_properties() {
    let (s, v) = shared()
        .get(&format!(
            "{RR}({DOC_RR_ID})/mshr_FK_HcmRecruitingRequestSkillEntity_RecruitingRequest?$select=mshr_skillid"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    let (s, v) = shared().get(&format!("{RR}({DOC_RR_ID})/mshr_description")).await;
    assert_eq!(s, 200);
    assert_eq!(v["value"], "Project Manager");
    let r = client()
        .get(shared().url(&format!("{RR}/$count")))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap().trim_start_matches('\u{feff}'), "200");
}

#[tokio::test]
async fn formatted_values_when_annotations_are_asked_for() {
    let (s, v) = send(
        client()
            .get(shared().url(&format!("{RR}({DOC_RR_ID})?$select=mshr_status")))
            .header(
                "Prefer",
                "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\"",
            ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["mshr_status@OData.Community.Display.V1.FormattedValue"], "Active");
    let (_, plain) = shared().get(&format!("{RR}({DOC_RR_ID})?$select=mshr_status")).await;
    assert!(plain
        .get("mshr_status@OData.Community.Display.V1.FormattedValue")
        .is_none());
}

#[tokio::test]
async fn demo_seed_is_complete_and_referentially_intact() {
    let count = |set: &'static str| async move {
        let r = client()
            .get(shared().url(&format!("{set}/$count")))
            .send()
            .await
            .unwrap();
        r.text()
            .await
            .unwrap()
            .trim_start_matches('\u{feff}')
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(count(RR).await, 200);
    assert_eq!(count("mshr_hcmcandidatetohireentities").await, 500);
    for set in [
        "mshr_hcmpersoneducationentities",
        "mshr_hcmpersonprofessionalexperienceentities",
        "mshr_hcmpersonaddressentities",
        "mshr_dirpartycontactentities",
        "mshr_hcmpersonskillentities",
        "mshr_hcmpersoncertificateentities",
        "mshr_hcmpersonscreeningentities",
        "mshr_hcmpersonidentificationnumberentities",
    ] {
        let n = count(set).await;
        assert!((1000..=2000).contains(&n), "{set}: {n}");
    }
    for set in [
        "mshr_hcmratinglevelentities",
        "mshr_hcmcertificatetypeentities",
        "mshr_hcmscreeningtypeentities",
    ] {
        assert!(count(set).await > 0, "{set}");
    }
    // No orphan: a candidate's person lookup resolves.
    let c = shared().first("mshr_hcmcandidatetohireentities?$top=1&$orderby=mshr_candidateid desc&$expand=mshr_FK_Person_id($select=mshr_partynumber)").await;
    assert_eq!(c["mshr_FK_Person_id"]["mshr_partynumber"], c["mshr_partynumber"]);
}

/// GETs `url` with `Prefer: odata.maxpagesize=<size>`; the status and body.
async fn paged(url: &str, size: usize) -> (u16, Value) {
    send(client().get(url).header("Prefer", format!("odata.maxpagesize={size}"))).await
}

#[tokio::test]
async fn skip_tokens_are_bound_to_their_query_and_page_size() {
    let first = shared().url(&format!(
        "{RR}?$select=mshr_recruitingrequestid&$orderby=mshr_recruitingrequestid"
    ));
    let (s, v) = paged(&first, 5).await;
    assert_eq!(s, 200, "{v}");
    let next = v["@odata.nextLink"].as_str().unwrap().to_string();
    let token = next.split("$skiptoken=").nth(1).unwrap().to_string();
    assert!(!token.is_empty() && !token.contains("offset"), "opaque: {token}");
    // Unchanged, with the same page size: the next five rows.
    let (s, v2) = paged(&next, 5).await;
    assert_eq!(s, 200, "{v2}");
    assert_eq!(v2["value"].as_array().unwrap().len(), 5);
    assert_ne!(v2["value"][0], v["value"][0]);
    // Another page size, or none (5000 in effect).
    for size in [4, 6, 5000] {
        let (s, e) = paged(&next, size).await;
        assert_eq!(s, 400, "maxpagesize {size}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("$skiptoken"), "{e}");
    }
    let (s, _) = shared().get(next.strip_prefix(&shared().url("")).unwrap()).await;
    assert_eq!(s, 400, "without the page size");
    // Another query: another order, filter, select, $top, entity set, or an extra option.
    let others = [
        format!("{RR}?$select=mshr_recruitingrequestid&$orderby=mshr_recruitingrequestid desc"),
        format!(
            "{RR}?$select=mshr_recruitingrequestid&$orderby=mshr_recruitingrequestid&$filter=mshr_dataareaid eq 'usmf'"
        ),
        format!("{RR}?$select=mshr_recruitingrequestid,mshr_dataareaid&$orderby=mshr_recruitingrequestid"),
        format!("{RR}?$select=mshr_recruitingrequestid&$orderby=mshr_recruitingrequestid&$count=true"),
        format!("{RR}?$select=mshr_recruitingrequestid&$orderby=mshr_recruitingrequestid&$top=50"),
        "mshr_hcmcertificatetypeentities?$select=mshr_certificatetypeid".to_string(),
    ];
    for other in others {
        let (s, e) = paged(&shared().url(&format!("{other}&$skiptoken={token}")), 5).await;
        assert_eq!(s, 400, "{other}: {e}");
        assert_eq!(e["error"]["code"], "0x80060888", "{e}");
    }
    // The same query with its options in another order is the same query.
    let reordered = shared().url(&format!(
        "{RR}?$orderby=mshr_recruitingrequestid&$skiptoken={token}&$select=mshr_recruitingrequestid"
    ));
    let (s, v3) = paged(&reordered, 5).await;
    assert_eq!(s, 200, "{v3}");
    assert_eq!(v3["value"], v2["value"]);
    // Altered or made-up tokens, and the old plain offsets.
    use base64::Engine;
    let offset = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("page-offset:5");
    let mut altered = token.clone().into_bytes();
    altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
    for bad in [offset, String::from_utf8(altered).unwrap(), "x".into(), String::new()] {
        let url = format!("{first}&$skiptoken={bad}");
        let (s, e) = paged(&url, 5).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
    // A record read never pages, so no token goes with it.
    let (s, _) = shared().get(&format!("{RR}({DOC_RR_ID})?$skiptoken={token}")).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn top_still_limits_without_a_page_size() {
    let (s, v) = shared()
        .get(&format!("{RR}?$select=mshr_recruitingrequestid&$top=3"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 3);
    assert!(v.get("@odata.nextLink").is_none());
    // With a page size, $top is ignored (contract §2) and the next link pages on.
    let (s, v) = paged(
        &shared().url(&format!("{RR}?$select=mshr_recruitingrequestid&$top=3")),
        4,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 4);
    let next = v["@odata.nextLink"].as_str().unwrap();
    let (s, v) = paged(next, 4).await;
    assert_eq!(s, 200, "{v}");
}
