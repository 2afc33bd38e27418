//! `$batch`: GET parts, change sets (all or nothing), Content-ID references, continue-on-error,
//! limits and malformed bodies. Bodies are written by hand here, as a client would.

use crate::harness::{client, Emu};
use serde_json::json;

const CT: &str = "multipart/mixed; boundary=\"batch_AAA123\"";

pub(crate) fn change_set_part(id: u32, method: &str, url: &str, body: &serde_json::Value) -> String {
    format!(
        "--changeset_BBB456\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\n{method} {url} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{body}\r\n"
    )
}

pub(crate) fn batch(parts: &[String], get: Option<&str>) -> String {
    let mut b = String::new();
    if let Some(g) = get {
        b.push_str(&format!("--batch_AAA123\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET {g} HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n"));
    }
    if !parts.is_empty() {
        b.push_str("--batch_AAA123\r\nContent-Type: multipart/mixed; boundary=\"changeset_BBB456\"\r\n\r\n");
        for p in parts {
            b.push_str(p);
        }
        b.push_str("--changeset_BBB456--\r\n");
    }
    b.push_str("--batch_AAA123--\r\n");
    b
}

pub(crate) async fn post_batch(emu: &Emu, body: String, prefer: Option<&str>) -> (u16, String) {
    let mut rb = client().post(emu.url("$batch")).header("Content-Type", CT).body(body);
    if let Some(p) = prefer {
        rb = rb.header("Prefer", p);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub(crate) async fn count(emu: &Emu, set: &str) -> u64 {
    let r = client().get(emu.url(&format!("{set}/$count"))).send().await.unwrap();
    r.text().await.unwrap().trim_start_matches('\u{feff}').parse().unwrap()
}

pub(crate) fn person(first: &str) -> serde_json::Value {
    json!({"mshr_firstname": first, "mshr_lastname": "Batch"})
}

#[tokio::test]
async fn change_set_with_references_commits_as_one() {
    let emu = Emu::fresh();
    let before = count(&emu, "mshr_hcmpersonskillentities").await;
    let parts = vec![
        change_set_part(1, "POST", "/api/data/v9.2/mshr_dirpersonentities", &person("Grace")),
        change_set_part(
            2,
            "POST",
            "/api/data/v9.2/mshr_hcmpersonskillentities",
            &json!({"mshr_FK_Person_id@odata.bind": "$1", "mshr_skillid": "Present", "mshr_ratingid": "Skills", "mshr_levelid": "3", "mshr_leveltype": 200000000, "mshr_leveldate": "2020-01-01", "mshr_verified": 200000001}),
        ),
        change_set_part(3, "PATCH", "$1", &json!({"mshr_knownas": "Amazing Grace"})),
    ];
    let (s, body) = post_batch(
        &emu,
        batch(
            &parts,
            Some("/api/data/v9.2/mshr_hcmratinglevelentities?$select=mshr_ratinglevelid"),
        ),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("--batchresponse_"), "{body}");
    assert!(body.contains("--changesetresponse_"), "{body}");
    assert!(body.contains("HTTP/1.1 200 OK"));
    assert_eq!(body.matches("HTTP/1.1 204 No Content").count(), 3, "{body}");
    assert!(body.contains("OData-EntityId: "));
    assert_eq!(count(&emu, "mshr_hcmpersonskillentities").await, before + 1);
    let (_, v) = emu.get("mshr_dirpersonentities?$filter=mshr_knownas eq 'Amazing Grace'&$expand=mshr_FK_HcmPersonSkillEntity_Person").await;
    assert_eq!(
        v["value"][0]["mshr_FK_HcmPersonSkillEntity_Person"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{v}"
    );
}

#[tokio::test]
async fn a_failing_part_rolls_back_the_whole_change_set() {
    let emu = Emu::fresh();
    let before = count(&emu, "mshr_dirpersonentities").await;
    let parts = vec![
        change_set_part(1, "POST", "/api/data/v9.2/mshr_dirpersonentities", &person("Kept")),
        change_set_part(2, "POST", "/api/data/v9.2/mshr_dirpersonentities", &person("AlsoKept")),
        change_set_part(
            3,
            "POST",
            "/api/data/v9.2/mshr_dirpersonentities",
            &json!({"mshr_partynumber": "HR1"}),
        ),
    ];
    let (s, body) = post_batch(&emu, batch(&parts, None), None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("read-only"), "{body}");
    assert_eq!(
        count(&emu, "mshr_dirpersonentities").await,
        before,
        "nothing of the change set remains"
    );
}

#[tokio::test]
async fn continue_on_error_runs_every_part() {
    let emu = Emu::fresh();
    let body = "--batch_AAA123\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/nope HTTP/1.1\r\n\r\n\r\n--batch_AAA123\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/mshr_hcmscreeningtypeentities?$top=1 HTTP/1.1\r\n\r\n\r\n--batch_AAA123--\r\n".to_string();
    let (s, text) = post_batch(&emu, body.clone(), Some("odata.continue-on-error")).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("HTTP/1.1 404") && text.contains("HTTP/1.1 200"), "{text}");
    let (s, text) = post_batch(&emu, body, None).await;
    assert_eq!(
        s, 404,
        "without continue-on-error the batch stops at the failure: {text}"
    );
    assert!(!text.contains("HTTP/1.1 200"));
}

#[tokio::test]
async fn unknown_content_id_reference_is_refused() {
    let emu = Emu::fresh();
    let parts = vec![change_set_part(1, "PATCH", "$7", &json!({"mshr_knownas": "x"}))];
    let (s, body) = post_batch(&emu, batch(&parts, None), None).await;
    assert_eq!(s, 400);
    assert!(
        body.contains("Content-ID Reference: '$7' does not exist in the batch context."),
        "{body}"
    );
}

#[tokio::test]
async fn more_than_1000_parts_is_refused() {
    let emu = Emu::fresh();
    let parts: Vec<String> = (1..=1001)
        .map(|i| change_set_part(i, "POST", "/api/data/v9.2/mshr_dirpersonentities", &person("Many")))
        .collect();
    let before = count(&emu, "mshr_dirpersonentities").await;
    let (s, body) = post_batch(&emu, batch(&parts, None), None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("1000"), "{body}");
    assert_eq!(count(&emu, "mshr_dirpersonentities").await, before);
}

#[tokio::test]
async fn malformed_multipart_bodies_are_a_clear_400() {
    let emu = Emu::fresh();
    let cases = [
        "--batch_AAA123\r\nContent-Type: application/http\r\n\r\nGET /api/data/v9.2/ HTTP/1.1\r\n\r\n".to_string(),
        "not multipart at all".to_string(),
        "--batch_AAA123\r\nContent-Type: text/plain\r\n\r\nhello\r\n--batch_AAA123--\r\n".to_string(),
    ];
    for c in cases {
        let (s, body) = post_batch(&emu, c.clone(), None).await;
        assert_eq!(s, 400, "{c:?}: {body}");
        assert!(body.contains("malformed"), "{body}");
    }
    let r = client()
        .post(emu.url("$batch"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
