//! What the built binary logs at its default level: upstream failures with their entity set and
//! the query's shape, never the values a client filtered on (record contents).

use crate::harness::{Emu, GatewayProcess};
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
    emu.set_faults(faults).await
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
    let log = std::env::temp_dir().join(format!("ats-gw-redaction-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let args = [
        "--upstream-max-retries",
        "1",
        "--upstream-base-backoff",
        "10ms",
        "--breaker-threshold",
        "1000",
    ];
    let mut gw = GatewayProcess::start(&emu.root, &args, &[], Some(&log)).await;
    let body = json!({ "query": QUERY });
    let healthy = gw.post(&body).await;
    set_faults(&emu, json!({"errorRate": 1.0})).await;
    let server_errors = gw.post(&body).await;
    set_faults(&emu, json!({"dropRate": 1.0})).await;
    let dropped = gw.post(&body).await;
    gw.stop();
    let text = without_colours(&std::fs::read_to_string(&log).unwrap());
    let _ = std::fs::remove_file(&log);

    assert!(codes(&healthy).is_empty(), "{healthy}");
    assert!(
        healthy["data"]["candidatesToHire"]["nodes"].as_array().is_some(),
        "{healthy}"
    );
    for failed in [server_errors, dropped] {
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
