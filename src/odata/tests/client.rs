//! The client against the fake upstream: headers, paging, errors, `$batch`, writes, option sets.

use super::fake::{self, entity, KNOWN_ID, NEW_ID};
use crate::batch::{BatchRequestItem, BatchResponseItem};
use crate::model::model;
use crate::odata::*;
use serde_json::json;
use std::time::Duration;

const AUTH: &str = "Bearer secret-token-value";

fn upstream(root: &str) -> Upstream {
    let mut config = UpstreamConfig::new(root.trim_end_matches('/'));
    config.timeout = Duration::from_millis(1500);
    config.auth = crate::odata::UpstreamAuth::PassThrough;
    Upstream::new(config).unwrap()
}

/// Every row of `q` through [`calls::collect_all`], page by page with `up.get_page`.
async fn collect(
    up: &Upstream,
    q: &ODataQuery,
    paging: calls::Paging,
    auth: Option<&str>,
    limit: usize,
) -> Result<Vec<crate::odata::Record>, UpstreamError> {
    let url = q.to_relative_url();
    let fetch = |link: String, size: Option<usize>| async move { up.get_page(&link, auth, size).await };
    calls::collect_all(&url, paging, limit, &q.entity.entity_set, fetch).await
}

#[tokio::test]
async fn collect_all_follows_next_links_with_the_same_headers() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root);
    let mut q = ODataQuery::new(entity());
    q.select = vec![entity().primary_key.clone()];
    q.count = true;
    let rows = collect(&up, &q, calls::Paging::Maxpagesize, Some(AUTH), 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].target.ends_with("$skiptoken=2") && seen[2].target.ends_with("$skiptoken=3"));
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert_eq!(s.header("accept"), Some("application/json"));
        assert_eq!(s.header("odata-maxversion"), Some("4.0"));
        assert_eq!(s.header("odata-version"), Some("4.0"));
        assert_eq!(s.header("if-none-match"), Some("null"));
        // The page size is the limit and one more row, and the same on every page.
        assert_eq!(s.header("prefer"), Some("odata.maxpagesize=101"));
        assert_eq!(s.header("authorization"), Some(AUTH));
        assert!(s.header("user-agent").unwrap().starts_with("ats-gateway/"));
    }
    assert_eq!(up.requests_sent(), 3);
    assert_eq!(up.requests_by_entity_set(), vec![(entity().entity_set.clone(), 3)]);
}

#[tokio::test]
async fn collect_all_refuses_to_truncate_and_never_reads_past_the_limit() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root);
    let q = ODataQuery::new(entity());
    let e = collect(&up, &q, calls::Paging::Maxpagesize, None, 3).await.unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_TOO_MANY_ROWS");
    assert!(e.message.contains("more than 3 rows"), "{}", e.message);
    // Refused at the first page past the limit (pages of 2: the second), the third never read.
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
    // Exactly at the limit is fine.
    assert_eq!(
        collect(&up, &q, calls::Paging::Maxpagesize, None, 5)
            .await
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn collect_all_by_top_sends_top_and_no_page_size() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root);
    let q = ODataQuery::new(entity());
    // The fake pages by itself (2, 2, 1): its next links are followed unchanged.
    let rows = collect(&up, &q, calls::Paging::Top, None, 100).await.unwrap();
    assert_eq!(rows.len(), 5);
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].target.ends_with("$top=101"), "{}", seen[0].target);
    assert!(seen[1].target.ends_with("$skiptoken=2"), "{}", seen[1].target);
    assert!(seen.iter().all(|s| s.header("prefer").is_none()));
}

#[tokio::test]
async fn by_key_reads_are_one_row_pages_and_missing_rows_are_not_found() {
    let (_fake, root) = fake::start().await;
    let up = upstream(&root);
    let q = ODataQuery::by_key(entity(), KNOWN_ID).unwrap();
    let page = up.get_page(&q.to_relative_url(), None, None).await.unwrap();
    assert_eq!(page.value.len(), 1);
    let q = ODataQuery::by_key(entity(), NEW_ID).unwrap();
    let e = up.get_page(&q.to_relative_url(), None, None).await.unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_NOT_FOUND");
    assert_eq!(e.status, Some(404));
    assert!(e.message.contains("Does Not Exist"));
}

#[tokio::test]
async fn status_errors_are_classified() {
    let (_fake, root) = fake::start().await;
    let up = upstream(&root);
    let e = up.get_page("throttled", Some(AUTH), None).await.unwrap_err();
    assert_eq!(
        e.kind,
        UpstreamErrorKind::Throttled {
            retry_after: Some(Duration::from_secs(5))
        }
    );
    assert!(e.message.contains("6000"));
    assert!(!format!("{e} {e:?}").contains("secret-token"));
    let e = up.get_json("unavailable", None).await.unwrap_err();
    assert_eq!((e.code(), e.status), ("UPSTREAM_UNAVAILABLE", Some(503)));
    let e = up.get_json("html", None).await.unwrap_err();
    assert!(
        e.code() == "UPSTREAM_UNAVAILABLE" && e.message.contains("bad gateway"),
        "{}",
        e.message
    );
    let e = up.get_page("badjson", None, None).await.unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_INVALID_RESPONSE");
    assert!(e.message.contains("not valid JSON"), "{}", e.message);
    let e = up.get_page("slow", None, None).await.unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_TIMEOUT");
}

#[tokio::test]
async fn links_to_other_hosts_and_endless_paging_are_refused() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root);
    let e = up
        .get_page("http://127.0.0.2:9/api/data/v9.2/x", Some(AUTH), None)
        .await
        .unwrap_err();
    assert!(e.message.contains("another host"), "{}", e.message);
    let page = up.get_page("foreign", None, None).await.unwrap();
    let e = up
        .get_page(page.next_link.as_deref().unwrap(), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_INVALID_RESPONSE");
    assert_eq!(fake.seen.lock().unwrap().len(), 1, "nothing was sent to the other host");
    let mut q = ODataQuery::new(entity());
    q.filter = Some("loop".into());
    let e = collect(&up, &q, calls::Paging::Maxpagesize, None, 100)
        .await
        .unwrap_err();
    assert!(
        e.code() == "UPSTREAM_INVALID_RESPONSE" && e.message.contains("repeats"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn broken_connections_are_described() {
    let root = fake::raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"value\":[",
    )
    .await;
    let e = upstream(&root).get_page("x", None, None).await.unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_INVALID_RESPONSE");
    assert!(e.message.contains("truncated"), "{}", e.message);
    let root = fake::raw_server(b"").await;
    let e = upstream(&root).get_page("x", None, None).await.unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_UNAVAILABLE");
    assert!(e.message.contains("connection"), "{}", e.message);
}

#[tokio::test]
async fn batches_round_trip_and_stop_at_the_first_failure() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root);
    let set = &entity().entity_set;
    let get = up.batch_get_part(&ODataQuery::new(entity()).to_relative_url(), Some(10));
    let mut create = up.batch_write_part(&Method::POST, set, &json!({"x": 1}), Some("1".into()));
    let items = vec![
        BatchRequestItem::Request(get.clone()),
        BatchRequestItem::ChangeSet(vec![create.clone()]),
    ];
    let out = up.batch(items, Some(AUTH), true).await.unwrap();
    assert_eq!(out.len(), 2);
    let BatchResponseItem::Response(first) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(part_page(first).unwrap().value.len(), 1);
    let BatchResponseItem::ChangeSet(members) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(part_write(&members[0], set).unwrap().entity_id.as_deref(), Some(NEW_ID));
    {
        let seen = fake.seen.lock().unwrap();
        let s = seen.last().unwrap();
        assert_eq!(s.header("prefer"), Some("odata.continue-on-error"));
        assert!(s.header("content-type").unwrap().starts_with("multipart/mixed"));
        assert!(s.header("if-none-match").is_none());
    }
    assert_eq!(up.requests_sent(), 1);
    let counts = up.requests_by_entity_set();
    assert!(
        counts.contains(&("$batch".to_string(), 1)) && counts.contains(&(set.clone(), 2)),
        "{counts:?}"
    );
    create.url.push_str("?fail");
    let out = up
        .batch(vec![BatchRequestItem::ChangeSet(vec![create])], None, false)
        .await
        .unwrap();
    let BatchResponseItem::Response(failed) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(part_result(failed).unwrap_err().code(), "UPSTREAM_BAD_REQUEST");
    assert!(up.batch(vec![], None, false).await.unwrap().is_empty());
}

#[tokio::test]
async fn writes_send_json_and_read_ids() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root);
    let set = entity().entity_set.clone();
    let w = up
        .send_write(Method::POST, &set, &json!({"a": "b"}), Some(AUTH), false)
        .await
        .unwrap();
    assert_eq!((w.status, w.entity_id.as_deref(), w.body), (204, Some(NEW_ID), None));
    let by_key = format!("{set}({KNOWN_ID})");
    let w = up
        .send_write(Method::PATCH, &by_key, &json!({"a": "c"}), None, true)
        .await
        .unwrap();
    assert_eq!((w.status, w.entity_id.as_deref()), (200, Some(KNOWN_ID)));
    assert_eq!(w.body.unwrap()["a"], "c");
    let w = up
        .send_write(Method::DELETE, &by_key, &serde_json::Value::Null, None, false)
        .await
        .unwrap();
    assert_eq!(w.status, 204);
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen[0].header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(seen[0].body, br#"{"a":"b"}"#);
    assert!(seen[0].header("if-none-match").is_none() && seen[0].header("prefer").is_none());
    assert_eq!(seen[1].header("if-match"), Some("*"));
    assert_eq!(seen[1].header("prefer"), Some("return=representation"));
    assert!(seen[2].header("content-type").is_none() && seen[2].body.is_empty());
}

#[tokio::test]
async fn option_set_labels_load_by_label_and_fall_back() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root);
    let labels = OptionSetLabels::load(&up, Some(AUTH)).await;
    let sets = &model().option_sets;
    let first = &sets[0];
    for v in &first.values {
        assert_eq!(labels.to_upstream(&first.name, v.value), v.value + 1000);
        assert_eq!(
            labels.from_upstream(&first.name, v.value + 1000).unwrap().value,
            v.value
        );
    }
    let second = &sets[1];
    let v = &second.values[0];
    assert_eq!(labels.to_upstream(&second.name, v.value), v.value);
    assert_eq!(labels.fallbacks().len(), sets.len() - 1);
    assert_eq!(fake.seen.lock().unwrap().len(), sets.len());
    assert_eq!(
        up.requests_by_entity_set(),
        vec![("GlobalOptionSetDefinitions".to_string(), sets.len() as u64)]
    );
}

/// GraphQL resolvers run on a multi-threaded runtime: the client and its futures must be `Send`.
#[test]
fn the_client_and_its_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn shared<T: Send + Sync>() {}
    shared::<Upstream>();
    shared::<UpstreamError>();
    shared::<OptionSetLabels>();
    let up = upstream("http://127.0.0.1:9/api/data/v9.2/");
    let q = ODataQuery::new(entity());
    send(&collect(&up, &q, calls::Paging::Top, None, 1));
    send(&up.get_page("x", None, None));
    send(&up.get_json("x", None));
    send(&up.batch(vec![], None, false));
    send(&up.send_write(Method::POST, "x", &json!({}), None, false));
    send(&OptionSetLabels::load(&up, None));
}
