//! The playground: the GraphiQL page and its files as the gateway serves them, and the example
//! tabs run against the demo seed. (Its docs pane's introspection: `gateway_schema`.)

use crate::harness::{client, shared_gateway, Gateway};
use ats_gateway::server::playground::EXAMPLES;
use serde_json::{json, Value};

/// What Chromium sends when it navigates to a page.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8";

/// The gateway's root URL (its endpoint without `/graphql`).
fn base(gw: &Gateway) -> &str {
    gw.endpoint.trim_end_matches("/graphql")
}

async fn get(url: &str, accept: Option<&str>) -> reqwest::Response {
    let mut rb = client().get(url);
    if let Some(a) = accept {
        rb = rb.header("accept", a);
    }
    rb.send().await.expect("request sent")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The values of `attr="…"` in the tags named `tag` of `html`.
fn attributes(html: &str, tag: &str, attr: &str) -> Vec<String> {
    html.split(&format!("<{tag}"))
        .skip(1)
        .filter_map(|t| {
            let t = &t[..t.find('>')?];
            let start = t.find(&format!("{attr}=\""))? + attr.len() + 2;
            Some(t[start..start + t[start..].find('"')?].to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_page_is_served_at_the_root_and_to_browsers_at_graphql() {
    let gw = shared_gateway();
    let root = get(&format!("{}/", base(gw)), None).await;
    assert_eq!(root.status(), 200);
    assert_eq!(header(&root, "content-type"), "text/html; charset=utf-8");
    assert!(header(&root, "content-security-policy").contains("default-src 'self'"));
    let page = root.text().await.unwrap();
    assert!(page.contains(r#"<div id="graphiql">"#), "{page}");

    let browser = get(&gw.endpoint, Some(BROWSER_ACCEPT)).await;
    assert_eq!(browser.status(), 200);
    assert_eq!(header(&browser, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&browser, "vary"), "accept");
    assert_eq!(browser.text().await.unwrap(), page);

    // GraphQL clients still get GraphQL from GET and POST.
    let query = get(
        &format!("{}?query=%7B__typename%7D", gw.endpoint),
        Some("application/json"),
    )
    .await;
    assert_eq!(query.status(), 200);
    assert_eq!(header(&query, "vary"), "accept");
    assert_eq!(
        query.json::<Value>().await.unwrap(),
        json!({"data": {"__typename": "Query"}})
    );
    assert_eq!(
        gw.data("{ __typename }", json!({})).await,
        json!({"__typename": "Query"})
    );
}

#[tokio::test]
async fn the_bundle_is_served_and_nothing_is_loaded_from_elsewhere() {
    let gw = shared_gateway();
    let page = get(&format!("{}/", base(gw)), None).await.text().await.unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"),
        "the page names another origin: {page}"
    );
    let scripts = attributes(&page, "script", "src");
    let styles = attributes(&page, "link", "href")
        .into_iter()
        .filter(|h| h.ends_with(".css"))
        .collect::<Vec<_>>();
    assert_eq!(scripts, ["/playground/app.js"]);
    assert_eq!(styles, ["/playground/app.css"]);

    for (path, content_type) in [
        ("/playground/app.js", "text/javascript; charset=utf-8"),
        ("/playground/app.css", "text/css; charset=utf-8"),
    ] {
        let r = get(&format!("{}{path}", base(gw)), None).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), content_type, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.len() > 10_000, "{path} is {} bytes", body.len());
        if path.ends_with(".css") {
            // Fonts and icons are data: URLs; nothing is imported.
            for load in [
                "@import",
                "url(http",
                "url(\"http",
                "url('http",
                "url(//",
                "url(\"//",
                "url('//",
            ] {
                assert!(!body.contains(load), "{path} loads from elsewhere: {load}");
            }
        } else {
            for load in [
                "import(\"http",
                "import('http",
                "from\"http",
                "from \"http",
                "importScripts(",
            ] {
                assert!(!body.contains(load), "{path} loads from elsewhere: {load}");
            }
        }
    }
}

#[tokio::test]
async fn files_carry_an_etag_and_revalidate() {
    let gw = shared_gateway();
    for path in [
        "/",
        "/playground/app.js",
        "/playground/app.css",
        "/playground/examples.json",
    ] {
        let url = format!("{}{path}", base(gw));
        let first = get(&url, None).await;
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(header(&first, "cache-control"), "no-cache", "{path}");
        let etag = header(&first, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() > 2, "{path}: {etag}");
        let again = client().get(&url).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.text().await.unwrap(), "", "{path}");
        let changed = client()
            .get(&url)
            .header("if-none-match", "\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200, "{path}");
    }
}

#[test]
fn every_file_in_playground_examples_is_a_tab() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playground/examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = EXAMPLES
        .iter()
        .flat_map(|e| {
            let mut f = vec![format!("{}.graphql", e.name)];
            if e.variables.is_some() {
                f.push(format!("{}.variables.json", e.name));
            }
            f
        })
        .collect();
    listed.sort();
    assert_eq!(files, listed, "list new files in EXAMPLES (src/server/playground.rs)");
    for e in &EXAMPLES {
        let on_disk = std::fs::read_to_string(dir.join(format!("{}.graphql", e.name))).unwrap();
        assert_eq!(on_disk, e.query, "{}", e.name);
        assert!(
            e.query.starts_with("# "),
            "{} opens with a comment saying what it shows",
            e.name
        );
        if let Some(v) = e.variables {
            serde_json::from_str::<Value>(v).unwrap_or_else(|err| panic!("{}.variables.json: {err}", e.name));
        }
    }
}

/// Runs the tab `name` as the page would: its operation with its variables.
async fn run_example(gw: &Gateway, tabs: &[Value], name: &str, variables: Option<Value>) -> Value {
    let tab = tabs
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tab {name}"));
    let variables = variables.unwrap_or_else(|| match tab["variables"].as_str() {
        Some(v) => serde_json::from_str(v).unwrap(),
        None => json!({}),
    });
    gw.data(tab["query"].as_str().unwrap(), variables).await
}

#[tokio::test]
async fn every_example_tab_runs_against_the_demo_seed() {
    // The submission writes: a gateway of its own over the default demo seed.
    let gw = Gateway::start(200);
    let tabs: Vec<Value> = get(&format!("{}/playground/examples.json", base(&gw)), None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = tabs.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "recruiting-request",
            "candidate-with-person",
            "active-requests-page",
            "submit-candidate-to-hire",
            "activated-requests",
            "explain-upstream-requests"
        ]
    );

    let d = run_example(&gw, &tabs, "recruiting-request", None).await;
    let rr = &d["recruitingRequest"];
    assert_eq!(rr["recruitingRequestId"], "USMF-000001");
    assert_eq!(rr["positions"].as_array().unwrap().len(), 2, "{rr}");
    assert_eq!(rr["skills"].as_array().unwrap().len(), 2, "{rr}");
    assert_eq!(rr["educations"].as_array().unwrap().len(), 2, "{rr}");

    let d = run_example(&gw, &tabs, "candidate-with-person", None).await;
    let candidates = d["candidatesToHire"]["nodes"].as_array().unwrap();
    assert!(!candidates.is_empty(), "{d}");
    for c in candidates {
        assert_eq!(c["recruitingRequest"]["recruitingRequestId"], "USMF-000001");
        assert!(c["person"]["name"].is_string(), "{c}");
        assert!(!c["person"]["skills"].as_array().unwrap().is_empty(), "{c}");
    }

    let first = run_example(&gw, &tabs, "active-requests-page", None).await;
    let page = &first["recruitingRequests"];
    assert_eq!(page["edges"].as_array().unwrap().len(), 5, "{page}");
    assert_eq!(page["pageInfo"]["hasNextPage"], true, "{page}");
    let next = run_example(
        &gw,
        &tabs,
        "active-requests-page",
        Some(json!({"first": 5, "after": page["pageInfo"]["endCursor"]})),
    )
    .await;
    let next_ids: Vec<&Value> = next["recruitingRequests"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"]["recruitingRequestId"])
        .collect();
    assert!(!next_ids.is_empty());
    for e in page["edges"].as_array().unwrap() {
        assert_eq!(e["node"]["status"], "ACTIVE");
        assert!(!next_ids.contains(&&e["node"]["recruitingRequestId"]), "pages overlap");
    }

    let d = run_example(&gw, &tabs, "explain-upstream-requests", None).await;
    assert_eq!(d["recruitingRequests"]["nodes"].as_array().unwrap().len(), 3, "{d}");
    assert!(tabs
        .iter()
        .any(|t| t["headers"].as_str().is_some_and(|h| h.contains("X-ATS-Explain"))));

    let d = run_example(&gw, &tabs, "submit-candidate-to-hire", None).await;
    let p = &d["submitCandidateToHire"];
    assert_eq!(p["errors"], json!([]), "{p}");
    assert_eq!(p["recordsCreated"], 11, "a candidate, a person and 9 details: {p}");
    let person = &p["candidate"]["person"];
    assert_eq!(person["name"], "Evelyn Chambers");
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
        assert!(!person[kind].as_array().unwrap().is_empty(), "{kind}: {person}");
    }

    // The subscription tab, over GraphQL over SSE: its first event with the current matches.
    let tab = tabs.iter().find(|t| t["name"] == "activated-requests").unwrap();
    let mut sse = crate::harness::client()
        .post(&gw.endpoint)
        .header("accept", "text/event-stream")
        .json(&json!({"query": tab["query"], "variables": {"includeExisting": true}}))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), sse.chunk())
            .await
            .expect("an event")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text.split("data: ").nth(1).unwrap().split("\n\n").next().unwrap();
    let event: Value = serde_json::from_str(data).unwrap();
    let change = &event["data"]["recruitingRequestChanged"];
    assert_eq!(change["kind"], "CREATED", "{event}");
    assert_eq!(change["record"]["status"], "ACTIVE", "{event}");
}
