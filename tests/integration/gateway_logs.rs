//! What the built binary logs at its default level: upstream failures with their entity set and
//! the query's shape, never the values a client filtered on (record contents).

use crate::harness::{came_up, client, free_port, Emu};
use ats_gateway::emulator::faults::Faults;
use serde_json::{json, Value};

/// Distinctive values, in an `eq` (with a quote, doubled in the OData literal), a `contains`
/// (LIKE-escaped), an `in` (a JSON array) and a nested relation filter. None may be logged.
const QUERY: &str = r#"{
  candidatesToHire(first: 5, filter: {or: [
    {firstName: {eq: "Zebulon O'Quxworth"}},
    {lastName: {contains: "Quxworth_Contains%"}},
    {partyNumber: {in: ["PN-Quxworth-In", "PN-Zebulon-In"]}}
  ]}) { nodes { id firstName } }
  people(first: 2) { nodes { id candidatesToHire(filter: {firstName: {eq: "Zebulon-Nested"}}) { id } } }
}"#;

const SECRETS: &[&str] = &["Zebulon", "Quxworth"];

async fn set_faults(emu: &Emu, faults: Value) {
    let r = client()
        .put(format!("{}faults", emu.admin))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "faults {faults}");
}

fn codes(v: &Value) -> Vec<&str> {
    v["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("(none)"))
                .collect()
        })
        .unwrap_or_default()
}

/// The log text without its ANSI colour codes (`ESC [ ... m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn filter_values_stay_out_of_the_logs_of_healthy_and_failing_calls() {
    let emu = Emu::with_faults(Faults::default());
    let port = free_port();
    let log = std::env::temp_dir().join(format!("ats-gw-redaction-log-{}", std::process::id()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &emu.root,
            "--state-db",
            ":memory:",
            "--upstream-max-retries",
            "1",
            "--upstream-base-backoff",
            "10ms",
            "--breaker-threshold",
            "1000",
        ])
        .env_remove("ATS_GATEWAY_LOG")
        .env_remove("ATS_GATEWAY_CONFIG")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let up = came_up(&base).await;
    let run = || async {
        client()
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": QUERY }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let healthy = if up { Some(run().await) } else { None };
    set_faults(&emu, json!({"errorRate": 1.0})).await;
    let server_errors = if up { Some(run().await) } else { None };
    set_faults(&emu, json!({"dropRate": 1.0})).await;
    let dropped = if up { Some(run().await) } else { None };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = without_colours(&std::fs::read_to_string(&log).unwrap());
    let _ = std::fs::remove_file(&log);
    assert!(up, "the gateway came up:\n{text}");

    let healthy = healthy.unwrap();
    assert!(codes(&healthy).is_empty(), "{healthy}");
    assert!(
        healthy["data"]["candidatesToHire"]["nodes"].as_array().is_some(),
        "{healthy}"
    );
    for failed in [server_errors.unwrap(), dropped.unwrap()] {
        let codes = codes(&failed);
        assert!(
            !codes.is_empty() && codes.iter().all(|c| *c == "UPSTREAM_UNAVAILABLE"),
            "{failed}"
        );
    }
    // The failures are logged with their entity set and the shape of the query.
    assert!(text.contains("upstream call failed"), "{text}");
    assert!(text.contains("upstream.status=503"), "the 5xx is logged:\n{text}");
    assert!(
        text.contains("upstream request failed"),
        "the dropped connection is logged:\n{text}"
    );
    assert!(text.contains("mshr_hcmcandidatetohireentities"), "{text}");
    assert!(
        text.contains("$filter=(mshr_firstname eq '…' or contains(mshr_lastname,'…') or Microsoft.Dynamics.CRM.In("),
        "the filter's shape is logged:\n{text}"
    );
    for secret in SECRETS {
        assert!(!text.contains(secret), "`{secret}` is in the logs:\n{text}");
    }
}
