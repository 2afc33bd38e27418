//! The GraphQL endpoint as the GraphQL over HTTP specification describes it: methods, media
//! types, status codes, malformed requests, and automatic persisted queries over GET and POST.

use crate::harness::{client, shared_gateway, Emu, Gateway};
use reqwest::header::{HeaderMap, ACCEPT, ALLOW, CONTENT_TYPE};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const GQL: &str = "application/graphql-response+json";
const GQL_UTF8: &str = "application/graphql-response+json; charset=utf-8";
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A response: status, headers and the body as JSON (`Null` when it is not JSON).
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
    }
}

async fn reply(rb: reqwest::RequestBuilder) -> Reply {
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// POSTs `body` as `application/json`, accepting `accept`. (reqwest sends `Accept: */*` when
/// told nothing, so every request here names one; see `no_accept_header_means_the_new_media_type`.)
async fn post(endpoint: &str, accept: &str, body: &Value) -> Reply {
    reply(client().post(endpoint).header(ACCEPT, accept).json(body)).await
}

/// GETs the endpoint with `params` in the URL query, accepting `accept`.
async fn get(endpoint: &str, accept: &str, params: &[(&str, &str)]) -> Reply {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    reply(client().get(format!("{endpoint}?{query}")).header(ACCEPT, accept)).await
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn persisted(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

#[tokio::test]
async fn get_runs_queries_with_variables() {
    let gw = shared_gateway();
    let r = get(&gw.endpoint, GQL, &[("query", "{ __typename }")]).await;
    assert_eq!((r.status, r.content_type()), (200, GQL_UTF8), "{}", r.body);
    assert_eq!(r.body, json!({"data": {"__typename": "Query"}}));

    let r = get(
        &gw.endpoint,
        "application/json",
        &[
            (
                "query",
                "query Page($n: Int) { recruitingRequests(first: $n) { nodes { id } } }",
            ),
            ("operationName", "Page"),
            ("variables", r#"{"n": 2}"#),
        ],
    )
    .await;
    assert_eq!((r.status, r.content_type()), (200, JSON_UTF8), "{}", r.body);
    assert_eq!(
        r.body["data"]["recruitingRequests"]["nodes"].as_array().unwrap().len(),
        2
    );
}

#[tokio::test]
async fn get_refuses_mutations_with_405_and_runs_nothing() {
    let gw = Gateway::start(3);
    let id = gw
        .data("{ recruitingRequests(first: 1) { nodes { id } } }", json!({}))
        .await["recruitingRequests"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delete = format!(r#"mutation {{ deleteRecruitingRequest(id: "{id}") {{ __typename }} }}"#);
    for accept in [GQL, "application/json"] {
        let r = get(&gw.endpoint, accept, &[("query", &delete)]).await;
        assert_eq!(r.status, 405, "{}", r.body);
        assert_eq!(r.headers.get(ALLOW).unwrap(), "POST");
        assert_eq!(r.code(), "METHOD_NOT_ALLOWED");
        assert!(r.body.get("data").is_none());
    }
    // The mutation picked out of several operations by name.
    let doc = format!(
        "query Q {{ __typename }} {}",
        delete.replacen("mutation", "mutation M", 1)
    );
    let r = get(&gw.endpoint, GQL, &[("query", &doc), ("operationName", "M")]).await;
    assert_eq!(r.status, 405, "{}", r.body);
    let r = get(&gw.endpoint, GQL, &[("query", &doc), ("operationName", "Q")]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let still = gw
        .data(
            "query($id: ID!) { recruitingRequest(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        still["recruitingRequest"]["id"],
        id.as_str(),
        "the GET deleted the record"
    );
}

#[tokio::test]
async fn post_needs_a_json_content_type() {
    let gw = shared_gateway();
    let body = r#"{"query": "{ __typename }"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/graphql"),
        Some("application/json; charset=latin1"),
        None,
    ] {
        let mut rb = client().post(&gw.endpoint).body(body);
        if let Some(ct) = content_type {
            rb = rb.header(CONTENT_TYPE, ct);
        }
        let r = reply(rb).await;
        assert_eq!(r.status, 415, "{content_type:?}: {}", r.body);
        assert_eq!(r.code(), "UNSUPPORTED_MEDIA_TYPE");
    }
    let r = reply(
        client()
            .post(&gw.endpoint)
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn accept_picks_the_response_media_type() {
    let gw = shared_gateway();
    let ok = json!({"query": "{ __typename }"});
    for (accept, status, content_type) in [
        (GQL, 200, GQL_UTF8),
        ("application/json", 200, JSON_UTF8),
        ("*/*", 200, JSON_UTF8),
        ("application/graphql-response+json, application/json", 200, GQL_UTF8),
        ("application/json, application/graphql-response+json", 200, JSON_UTF8),
        (
            "application/json;q=0.5, application/graphql-response+json",
            200,
            GQL_UTF8,
        ),
        ("text/html", 406, JSON_UTF8),
        ("application/json;q=0", 406, JSON_UTF8),
    ] {
        let r = post(&gw.endpoint, accept, &ok).await;
        assert_eq!(
            (r.status, r.content_type()),
            (status, content_type),
            "Accept {accept}: {}",
            r.body
        );
    }

    // A document that does not validate: 400 under the new media type, 200 under the legacy one,
    // and no `data` entry under either.
    let invalid = json!({"query": "{ noSuchField }"});
    let r = post(&gw.endpoint, GQL, &invalid).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.get("data").is_none() && r.body["errors"][0]["message"].is_string(),
        "{}",
        r.body
    );
    let r = post(&gw.endpoint, "application/json", &invalid).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.get("data").is_none() && r.body["errors"][0]["message"].is_string(),
        "{}",
        r.body
    );

    // A document that does not parse, and variables of the wrong type: the same.
    for bad in [
        json!({"query": "{"}),
        json!({"query": "query($n: Int!) { recruitingRequests(first: $n) { totalCount } }", "variables": {"n": "two"}}),
    ] {
        let r = post(&gw.endpoint, GQL, &bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.body.get("data").is_none(), "{}", r.body);
        let r = post(&gw.endpoint, "application/json", &bad).await;
        assert_eq!(r.status, 200, "{bad}: {}", r.body);
    }

    // An operation that ran keeps its `data`, and its 200, even when a field failed.
    let r = post(
        &gw.endpoint,
        GQL,
        &json!({"query": "{ recruitingRequest(id: \"not-a-guid\") { id } }"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("data").is_some(), "{}", r.body);
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_graphql_error() {
    let gw = shared_gateway();
    let raw = |body: &'static str| {
        client()
            .post(&gw.endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    };
    for (body, accept) in [
        (r#"{ "not a JSON"#, "application/json"),
        (r#"{ "not a JSON"#, GQL),
        ("", GQL),
        (r#"[{"query": "{ __typename }"}]"#, GQL),
        (r#"{"qeury": "{ __typename }"}"#, "application/json"),
        (r#"{"query": 0}"#, "application/json"),
        (r#"{"query": ["{ __typename }"]}"#, GQL),
        (r#"{"query": "{ __typename }", "operationName": false}"#, GQL),
        (r#"{"query": "{ __typename }", "variables": [7]}"#, "application/json"),
        (r#"{"query": "{ __typename }", "extensions": "yes"}"#, GQL),
    ] {
        let r = reply(raw(body).header(ACCEPT, accept)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.code(), "BAD_REQUEST", "{body}: {}", r.body);
        assert!(r.body["errors"][0]["message"].is_string());
        assert!(r.content_type().ends_with("; charset=utf-8"));
    }
    for params in [
        &[("query", "{ __typename }"), ("variables", "{not json")][..],
        &[("query", "{ __typename }"), ("query", "{ __typename }")][..],
        &[("operationName", "Q")][..],
    ] {
        let r = get(&gw.endpoint, GQL, params).await;
        assert_eq!(r.status, 400, "{params:?}: {}", r.body);
        assert_eq!(r.code(), "BAD_REQUEST");
    }
}

#[tokio::test]
async fn persisted_queries_register_then_run_by_hash() {
    let gw = shared_gateway();
    // A query no other test sends, so that its hash is unknown until this test registers it.
    let query = "query PersistedOverPost { recruitingRequests(first: 1) { totalCount } }";
    let hash = sha256_hex(query);
    let by_hash = json!({"extensions": persisted(&hash)});

    let r = post(&gw.endpoint, GQL, &by_hash).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(r.code(), "PERSISTED_QUERY_NOT_FOUND");
    let r = post(&gw.endpoint, "application/json", &by_hash).await;
    assert_eq!((r.status, r.code()), (200, "PERSISTED_QUERY_NOT_FOUND"), "{}", r.body);

    let r = post(
        &gw.endpoint,
        GQL,
        &json!({"query": query, "extensions": persisted(&hash)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let total = r.body["data"]["recruitingRequests"]["totalCount"].clone();
    assert!(total.is_u64(), "{}", r.body);

    let r = post(&gw.endpoint, GQL, &by_hash).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["recruitingRequests"]["totalCount"], total);
}

#[tokio::test]
async fn persisted_queries_refuse_a_wrong_hash_and_do_not_keep_invalid_queries() {
    let gw = shared_gateway();
    let query = "query PersistedWrongHash { __typename }";
    let wrong = sha256_hex("something else");
    let r = post(
        &gw.endpoint,
        GQL,
        &json!({"query": query, "extensions": persisted(&wrong)}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "PERSISTED_QUERY_HASH_MISMATCH"),
        "{}",
        r.body
    );
    let r = post(&gw.endpoint, GQL, &json!({"extensions": persisted(&wrong)})).await;
    assert_eq!(
        r.code(),
        "PERSISTED_QUERY_NOT_FOUND",
        "a mismatched query was kept: {}",
        r.body
    );

    for bad in [
        json!({"persistedQuery": {"version": 2, "sha256Hash": sha256_hex(query)}}),
        json!({"persistedQuery": {"version": 1, "sha256Hash": "abc"}}),
    ] {
        let r = post(&gw.endpoint, GQL, &json!({"query": query, "extensions": bad})).await;
        assert_eq!((r.status, r.code()), (400, "BAD_REQUEST"), "{}", r.body);
    }

    // A query that does not validate runs nowhere, so it is not kept either.
    let invalid = "query PersistedInvalid { noSuchField }";
    let hash = sha256_hex(invalid);
    let r = post(
        &gw.endpoint,
        GQL,
        &json!({"query": invalid, "extensions": persisted(&hash)}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(&gw.endpoint, GQL, &json!({"extensions": persisted(&hash)})).await;
    assert_eq!(r.code(), "PERSISTED_QUERY_NOT_FOUND", "{}", r.body);
}

#[tokio::test]
async fn persisted_queries_work_over_get() {
    let gw = shared_gateway();
    let query = "query PersistedOverGet { __typename }";
    let extensions = persisted(&sha256_hex(query)).to_string();

    let r = get(&gw.endpoint, GQL, &[("extensions", &extensions)]).await;
    assert_eq!((r.status, r.code()), (404, "PERSISTED_QUERY_NOT_FOUND"), "{}", r.body);
    let r = get(&gw.endpoint, GQL, &[("query", query), ("extensions", &extensions)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&gw.endpoint, GQL, &[("extensions", &extensions)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"data": {"__typename": "Query"}}));

    // A wrong hash over GET, and a persisted mutation run by its hash over GET.
    let wrong = persisted(&sha256_hex("other")).to_string();
    let r = get(&gw.endpoint, GQL, &[("query", query), ("extensions", &wrong)]).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "PERSISTED_QUERY_HASH_MISMATCH"),
        "{}",
        r.body
    );
    let mutation = "mutation PersistedMutation { __typename }";
    let mutation_ext = persisted(&sha256_hex(mutation));
    let r = post(
        &gw.endpoint,
        GQL,
        &json!({"query": mutation, "extensions": mutation_ext}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&gw.endpoint, GQL, &[("extensions", &mutation_ext.to_string())]).await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.headers.get(ALLOW).unwrap(), "POST");
}

/// Without `Accept` the gateway answers in `application/graphql-response+json`, as the
/// specification asks since its watershed. reqwest always sends `Accept`, so this one request is
/// written by hand.
#[tokio::test]
async fn no_accept_header_means_the_new_media_type() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = shared_gateway();
    let url: reqwest::Url = gw.endpoint.parse().unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    for (body, status) in [
        (r#"{"query":"{ __typename }"}"#, "200"),
        (r#"{"query":"{ noSuchField }"}"#, "400"),
    ] {
        let mut conn = tokio::net::TcpStream::connect(&host).await.unwrap();
        let request = format!(
            "POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        let head = response.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{body}: {response}");
        assert!(
            head.contains(&format!("content-type: {GQL_UTF8}")),
            "{body}: {response}"
        );
    }
}

/// The operation limits refuse a document before it runs (400, no `data`); the deadline stops an
/// operation that did run (200, `data: null`).
#[tokio::test]
async fn limit_refusals_never_ran_but_a_missed_deadline_did() {
    let gw = shared_gateway();
    let aliases: Vec<String> = (0..31).map(|i| format!("a{i}: __typename")).collect();
    let r = post(
        &gw.endpoint,
        GQL,
        &json!({"query": format!("{{ {} }}", aliases.join(" "))}),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, "TOO_MANY_ALIASES"), "{}", r.body);
    assert!(r.body.get("data").is_none(), "{}", r.body);

    let emu = Emu::with_faults(ats_gateway::emulator::faults::Faults {
        latency_ms: 1_500,
        ..Default::default()
    });
    let gw = Gateway::with_config(emu, |c| {
        c.limits.operation.deadline = std::time::Duration::from_millis(300)
    });
    let query = json!({"query": "{ recruitingRequests(first: 1) { nodes { id } } }"});
    let r = post(&gw.endpoint, GQL, &query).await;
    assert_eq!((r.status, r.code()), (200, "DEADLINE_EXCEEDED"), "{}", r.body);
    assert_eq!(r.body.get("data"), Some(&Value::Null), "{}", r.body);
}
