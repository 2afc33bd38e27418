//! Cursors are signed: only cursors a gateway (or a replica sharing its `--cursor-key-file`)
//! issued for the same query are accepted, and a refused cursor costs no upstream request.

use crate::harness::{Emu, Gateway, Profile};
use base64::Engine;
use serde_json::{json, Value};

const PAGE: &str = "query($first: Int, $after: String) { recruitingRequests(first: $first, after: $after, orderBy: [{recruitingRequestId: ASC}]) { pageInfo { hasNextPage endCursor } edges { cursor node { recruitingRequestId } } } }";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn ids(d: &Value) -> Vec<String> {
    d["recruitingRequests"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["recruitingRequestId"].as_str().unwrap().to_string())
        .collect()
}

/// Another handle on the same emulator (the gateways of a test share one upstream).
fn same(emu: &Emu) -> Emu {
    Emu {
        root: emu.root.clone(),
        admin: emu.admin.clone(),
        _stop: emu._stop.clone(),
    }
}

/// A query with `after: cursor` that must be refused with BAD_USER_INPUT without any upstream
/// request; returns the error message.
async fn refused(gw: &Gateway, cursor: &str) -> String {
    let (requests, v) = gw
        .upstream_requests(gw.query(PAGE, json!({"first": 1, "after": cursor})))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{cursor}: {v}");
    assert!(v["data"].is_null() || v["data"]["recruitingRequests"].is_null(), "{v}");
    assert_eq!(requests, 0, "a refused cursor sends nothing upstream: {v}");
    v["errors"][0]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn valid_cursors_page_and_forged_ones_cost_nothing_upstream() {
    let gw = Gateway::start(30);
    let all = ids(&gw.data(PAGE, json!({"first": 30})).await);
    assert_eq!(all.len(), 30);
    // Page by 7 with the cursors the gateway hands out: the same rows, in order.
    let (mut seen, mut after, mut cursors) = (Vec::new(), Value::Null, Vec::new());
    loop {
        let d = gw.data(PAGE, json!({"first": 7, "after": after})).await;
        seen.extend(ids(&d));
        cursors.extend(
            d["recruitingRequests"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["cursor"].as_str().unwrap().to_string()),
        );
        if !d["recruitingRequests"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = d["recruitingRequests"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, all, "cursors page through every row once");
    // The upstream link relative to the service root (here about 230 characters, its skip token
    // 32), the page size and index, 5 bytes of header and a 16-byte tag, in base64.
    assert!(cursors.iter().all(|c| c.len() < 400), "compact cursors: {cursors:?}");
    // A cursor in the middle of a page resumes right after its row.
    let d = gw.data(PAGE, json!({"first": 2, "after": cursors[10]})).await;
    assert_eq!(ids(&d), all[11..13]);

    // Hand-built JSON positions, as the unsigned cursors were: row 4999 of the first page would
    // make `first: 1` fetch 5000 rows. No such cursor is accepted, and none reaches upstream.
    for forged in [
        json!({"t": null, "i": 4999}),
        json!({"q": 0, "t": null, "i": 4999}),
        json!({"i": u64::MAX}),
    ] {
        let message = refused(&gw, &b64(forged.to_string().as_bytes())).await;
        assert!(message.contains("not a cursor this gateway issued"), "{message}");
    }
    // A real cursor with any one byte flipped.
    let real = unb64(&cursors[3]);
    for at in [0, 1, real.len() / 2, real.len() - 1] {
        let mut altered = real.clone();
        altered[at] ^= 0x20;
        refused(&gw, &b64(&altered)).await;
    }
    // A real cursor (right query, right format) whose index is edited to row 4999.
    let at = real.windows(5).position(|w| w == b"\"i\":3").expect("the index");
    let edited = [&real[..at], b"\"i\":4999", &real[at + 5..]].concat();
    refused(&gw, &b64(&edited)).await;
    // A real cursor of another query (another order).
    let desc = gw
        .data(
            "{ recruitingRequests(first: 2, orderBy: [{recruitingRequestId: DESC}]) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let other = desc["recruitingRequests"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let message = refused(&gw, &other).await;
    assert!(message.contains("different query"), "{message}");
    assert!(refused(&gw, "garbage!").await.contains("not a cursor"));
}

#[tokio::test]
async fn a_cursor_of_another_gateway_is_refused() {
    let emu = Emu::fresh();
    let other_emu = same(&emu);
    let a = Gateway::over(emu);
    let b = Gateway::over(other_emu);
    let d = a.data(PAGE, json!({"first": 2})).await;
    let cursor = d["recruitingRequests"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(a.data(PAGE, json!({"first": 1, "after": cursor})).await["recruitingRequests"]["edges"][0].is_object());
    // Same upstream, same query, but each gateway signs with a random key of its own.
    let message = refused(&b, &cursor).await;
    assert!(message.contains("another gateway"), "{message}");
}

#[tokio::test]
async fn gateways_sharing_a_cursor_key_file_accept_each_others_cursors() {
    let dir = std::env::temp_dir().join(format!("ats-gw-cursor-key-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("cursor.key");
    std::fs::write(&key_file, format!("{}\n", "0123456789abcdef".repeat(4))).unwrap();
    // One replica reads the key file from its flag, the other from its TOML config file.
    let from_flag = ats_gateway::cli::parse_args(
        ["ats-gateway", "serve", "--cursor-key-file", key_file.to_str().unwrap()]
            .map(Into::into)
            .to_vec(),
    )
    .unwrap();
    let toml = dir.join("gateway.toml");
    std::fs::write(&toml, format!("cursor-key-file = {:?}\n", key_file.to_str().unwrap())).unwrap();
    let from_toml = ats_gateway::cli::parse_args(
        ["ats-gateway", "--config", toml.to_str().unwrap()]
            .map(Into::into)
            .to_vec(),
    )
    .unwrap();
    let key_of = |cli: ats_gateway::cli::Cli| match cli.command {
        Some(ats_gateway::cli::Command::Serve(args)) => {
            args.gateway_config("http://127.0.0.1:1/".into(), None)
                .unwrap()
                .cursor_key
        }
        other => panic!("not serve: {other:?}"),
    };
    let (key_a, key_b) = (key_of(from_flag), key_of(from_toml));
    assert!(key_a.is_some() && key_b.is_some());
    assert!(!format!("{key_a:?}").contains("0123"), "the key is never printed");

    let emu = Emu::fresh();
    let other_emu = same(&emu);
    let a = Gateway::with_config(emu, |c| c.cursor_key = key_a);
    let b = Gateway::with_config(other_emu, |c| c.cursor_key = key_b);
    let all = ids(&a.data(PAGE, json!({"first": 6})).await);
    let d = a.data(PAGE, json!({"first": 3})).await;
    let cursor = d["recruitingRequests"]["pageInfo"]["endCursor"].clone();
    let d = b.data(PAGE, json!({"first": 3, "after": cursor})).await;
    assert_eq!(ids(&d), all[3..6], "b continues where a's page ended");
    let cursor = d["recruitingRequests"]["edges"][0]["cursor"].clone();
    let d = a.data(PAGE, json!({"first": 1, "after": cursor})).await;
    assert_eq!(ids(&d), all[4..5], "and a continues from b's cursors");

    // A key file too short to be a key stops the gateway from starting.
    std::fs::write(&key_file, "too short\n").unwrap();
    let short = ats_gateway::cli::parse_args(
        ["ats-gateway", "serve", "--cursor-key-file", key_file.to_str().unwrap()]
            .map(Into::into)
            .to_vec(),
    )
    .unwrap();
    let Some(ats_gateway::cli::Command::Serve(args)) = short.command else {
        panic!("not serve")
    };
    let err = args.gateway_config("http://127.0.0.1:1/".into(), None).unwrap_err();
    assert!(err.contains("at least 32 bytes") && !err.contains("too short"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ids and cursors of a page, and its `pageInfo`.
fn page(d: &Value) -> (Vec<String>, Vec<String>, bool, Value) {
    let c = &d["recruitingRequests"];
    let edges = c["edges"].as_array().unwrap();
    let cursors: Vec<String> = edges
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        c["pageInfo"]["endCursor"],
        cursors.last().map_or(Value::Null, |c| json!(c))
    );
    (
        ids(d),
        cursors,
        c["pageInfo"]["hasNextPage"].as_bool().unwrap(),
        c["pageInfo"]["endCursor"].clone(),
    )
}

// Against the strict emulator of every profile: by next links with the chain's page size, or by
// `$top` and `$skip` (and the service's own next links) where the page size is ignored.
in_every_upstream!(cursors_follow_next_links_across_page_sizes_without_gaps);
async fn cursors_follow_next_links_across_page_sizes_without_gaps(profile: Profile) {
    // A service that pages by itself does so here by 7 rows, so that reads span its pages.
    let profile = Profile {
        server_page_size: profile.server_page_size.map(|_| 7),
        ..profile
    };
    let gw = Gateway::start_profile(profile, 40);
    // Rows 18..28 after pages of 6: two 6-row upstream pages; by `$top`, one request for 11 rows,
    // or two where the service pages by 7.
    let continued = match (profile.ignores_maxpagesize, profile.server_page_size) {
        (true, None) => 1,
        _ => 2,
    };
    let all = ids(&gw.data(PAGE, json!({"first": 40})).await);
    assert_eq!(all.len(), 40);
    // Three pages of 6: each continuation after a whole upstream page is one request.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for n in 0..3 {
        let (requests, v) = gw
            .upstream_requests(gw.query(PAGE, json!({"first": 6, "after": after})))
            .await;
        assert_eq!(requests, 1, "page {n} costs one upstream request: {v}");
        let (got, _, more, end) = page(&v["data"]);
        assert!(more);
        seen.extend(got);
        after = end;
    }
    assert_eq!(seen, all[..18]);
    // Another `first` goes on from the same place, reading the 6-row pages in order.
    let (requests, v) = gw
        .upstream_requests(gw.query(PAGE, json!({"first": 10, "after": after})))
        .await;
    let (got, cursors, more, _) = page(&v["data"]);
    assert_eq!(got, all[18..28], "no gap, no repeat");
    assert!(more);
    assert_eq!(requests, continued, "rows 18..28: {v}");
    // From a cursor in the middle of an upstream page, with a smaller `first`.
    let (requests, v) = gw
        .upstream_requests(gw.query(PAGE, json!({"first": 3, "after": cursors[1]})))
        .await;
    assert_eq!(page(&v["data"]).0, all[20..23]);
    assert_eq!(requests, 1);
    // To the end with a large `first`: no next page, and the last cursor continues to nothing.
    let (got, _, more, end) = page(&gw.data(PAGE, json!({"first": 100, "after": cursors[9]})).await);
    assert_eq!(got, all[28..]);
    assert!(!more);
    let (got, _, more, end2) = page(&gw.data(PAGE, json!({"first": 5, "after": end})).await);
    assert!(got.is_empty() && !more && end2.is_null());
    // `first` equal to what is left: the last page knows there is nothing after it.
    let d = gw.data(PAGE, json!({"first": 4, "after": cursors[9]})).await;
    let (_, _, more, _) = page(&d);
    assert!(more, "8 rows are left after row 27");
    let d = gw.data(PAGE, json!({"first": 12, "after": cursors[9]})).await;
    let (got, _, more, _) = page(&d);
    assert_eq!(got.len(), 12);
    assert!(!more, "exactly the 12 rows that were left");
}

in_every_upstream!(a_continuation_may_select_more_than_its_first_page);
async fn a_continuation_may_select_more_than_its_first_page(profile: Profile) {
    let gw = Gateway::start_profile(profile, 12);
    let q = "query($after: String) { recruitingRequests(first: 4, after: $after, orderBy: [{recruitingRequestId: ASC}]) { totalCount pageInfo { endCursor } nodes { recruitingRequestId description } } }";
    let all = gw.data(q, json!({"after": null})).await;
    let full = gw
        .data("{ recruitingRequests(first: 12, orderBy: [{recruitingRequestId: ASC}]) { nodes { recruitingRequestId description } } }", json!({}))
        .await;
    let narrow = gw.data(PAGE, json!({"first": 4})).await;
    let after = narrow["recruitingRequests"]["pageInfo"]["endCursor"].clone();
    let d = gw.data(q, json!({"after": after})).await;
    assert_eq!(d["recruitingRequests"]["totalCount"], 12);
    assert_eq!(
        d["recruitingRequests"]["nodes"].as_array().unwrap()[..],
        full["recruitingRequests"]["nodes"].as_array().unwrap()[4..8]
    );
    assert_eq!(all["recruitingRequests"]["totalCount"], 12);
}

in_every_upstream!(ties_of_a_non_unique_order_are_broken_by_id_across_pages);
async fn ties_of_a_non_unique_order_are_broken_by_id_across_pages(profile: Profile) {
    let profile = Profile {
        server_page_size: profile.server_page_size.map(|_| 5),
        ..profile
    };
    let gw = Gateway::start_profile(profile, 40);
    let q = "query($first: Int, $after: String) { recruitingRequests(first: $first, after: $after, orderBy: [{status: ASC}]) { pageInfo { hasNextPage endCursor } edges { cursor node { recruitingRequestId status id } } } }";
    let one = gw.data(q, json!({"first": 40})).await;
    let nodes = one["recruitingRequests"]["edges"].as_array().unwrap();
    let statuses: std::collections::BTreeSet<String> = nodes.iter().map(|e| e["node"]["status"].to_string()).collect();
    assert!(statuses.len() < nodes.len() / 2, "the order has ties: {statuses:?}");
    // Within one status, ids ascend.
    for w in nodes.windows(2) {
        if w[0]["node"]["status"] == w[1]["node"]["status"] {
            assert!(w[0]["node"]["id"].as_str() < w[1]["node"]["id"].as_str(), "{w:?}");
        }
    }
    let all = ids(&one);
    for size in [3, 7] {
        let (mut seen, mut after) = (Vec::new(), Value::Null);
        loop {
            let (got, _, more, end) = page(&gw.data(q, json!({"first": size, "after": after})).await);
            seen.extend(got);
            if !more {
                break;
            }
            after = end;
        }
        assert_eq!(seen, all, "pages of {size}: every row once, in the one-page order");
    }
}

/// `first: 3` against a service that ignores `odata.maxpagesize` (200 recruiting requests): one
/// upstream request, with `$top`, that reads 4 rows (the fourth says a next page exists), and the
/// next page is one more such request. Paged by the preference instead, the same query would read
/// every row.
#[tokio::test]
async fn first_3_against_an_upstream_that_ignores_the_page_size_reads_4_rows() {
    let emu = Emu::start(Profile::ODATA4_TOP.emulator(200));
    let gw = Gateway::over_profile(Profile::ODATA4_TOP, emu);
    let (_, readyz) = gw.get("/readyz").await;
    let readyz: Value = serde_json::from_str(&readyz).unwrap();
    assert_eq!(readyz["upstreamPaging"], "top", "{readyz}");
    let (requests, v) = gw.upstream_requests(gw.query(PAGE, json!({"first": 3}))).await;
    let (got, _, more, end) = page(&v["data"]);
    assert_eq!((got.len(), more), (3, true), "{v}");
    let stats = gw.emu.stats().await;
    assert_eq!(requests, 1, "{stats}");
    assert_eq!(stats["topReads"], 1, "the request carried $top: {stats}");
    assert!(stats["rowsServed"].as_u64().unwrap() <= 4, "{stats}");
    let (requests, v) = gw
        .upstream_requests(gw.query(PAGE, json!({"first": 3, "after": end})))
        .await;
    let (next, _, _, _) = page(&v["data"]);
    let stats = gw.emu.stats().await;
    assert_eq!(requests, 1, "{stats}");
    assert!(stats["rowsServed"].as_u64().unwrap() <= 4, "{stats}");
    let all = ids(&gw.data(PAGE, json!({"first": 6})).await);
    assert_eq!([got, next].concat(), all, "no gap, no repeat");

    // The same query paged by the preference the service ignores reads all 200 rows.
    let by_preference = Gateway::with_config(same(&gw.emu), |c| {
        c.read.dialect = ats_gateway::odata::Dialect::Odata4;
        c.read.paging = ats_gateway::odata::calls::Paging::Maxpagesize;
    });
    by_preference
        .upstream_requests(by_preference.query(PAGE, json!({"first": 3})))
        .await;
    assert!(gw.emu.stats().await["rowsServed"].as_u64().unwrap() >= 200);
}
