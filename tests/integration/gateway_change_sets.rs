//! Change sets that may not be atomic: an emulator with `atomic_change_sets` off keeps the parts
//! of a failed change set before the failing one, and the gateway finds and deletes them.

use crate::emulator_batch::{batch, change_set_part, count, person, post_batch};
use crate::gateway_writes::{counts, full_input, submit};
use crate::harness::{emulator_dialect, Dialect, Emu, Gateway};
use ats_gateway::emulator::{EmulatorConfig, Seed};
use ats_gateway::graphql::context::WriteConfig;
use ats_gateway::graphql::mutations::write::Strategy;
use serde_json::{json, Value};

fn emulator(dialect: Dialect, atomic_change_sets: bool) -> Emu {
    Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 20,
        atomic_change_sets,
        dialect: emulator_dialect(dialect),
        ..EmulatorConfig::default()
    })
}

fn gateway(dialect: Dialect, atomic_change_sets: bool, strategy: Strategy) -> Gateway {
    Gateway::with_writes_in(
        dialect,
        emulator(dialect, atomic_change_sets),
        WriteConfig {
            strategy,
            state_db: None,
            ..Default::default()
        },
    )
}

/// The 34-record submission, refused by the upstream in its 20th part: parts are the person,
/// the candidate, 4 each of educations, experiences, addresses and contacts (3..18), then the
/// skills, whose second (part 20) has a rating level the upstream does not have.
async fn refused_input(emu: &Emu, tag: &str) -> Value {
    let mut input = full_input(emu, tag).await;
    input["skills"][1]["levelId"] = json!("99");
    input
}

#[tokio::test]
async fn a_non_atomic_emulator_keeps_the_parts_before_the_failing_one() {
    let emu = emulator(Dialect::Dataverse, false);
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
        change_set_part(4, "POST", "/api/data/v9.2/mshr_dirpersonentities", &person("NeverRun")),
    ];
    let (s, body) = post_batch(&emu, batch(&parts, None), None).await;
    assert_eq!(s, 400, "answers with the failing part's error: {body}");
    assert!(body.contains("read-only"), "{body}");
    assert_eq!(
        count(&emu, "mshr_dirpersonentities").await,
        before + 2,
        "parts 1 and 2 stay written, part 4 never ran"
    );
}

in_both_dialects!(a_refused_change_set_that_was_kept_is_compensated);
async fn a_refused_change_set_that_was_kept_is_compensated(dialect: Dialect) {
    let gw = gateway(dialect, false, Strategy::Batch);
    let input = refused_input(&gw.emu, "kept").await;
    let before = counts(&gw.emu).await;
    let p = submit(&gw, &input, None).await;
    let errors = p["errors"].as_array().unwrap();
    assert_eq!(errors[0]["code"], "UPSTREAM_REJECTED", "{p}");
    assert_eq!(errors[0]["part"], 20, "{p}");
    assert_eq!(errors[0]["path"], "skills[1]", "{p}");
    assert_eq!(errors.len(), 2, "one compensation report, no failure: {p}");
    let c = &errors[1];
    assert_eq!(c["code"], "COMPENSATED", "{p}");
    let m = c["message"].as_str().unwrap();
    // Parts 1..19: the person, the candidate and 17 details.
    assert!(m.contains("kept 19 records"), "{m}");
    assert!(m.contains("1 mshr_dirpersonentities"), "{m}");
    assert!(m.contains("1 mshr_hcmcandidatetohireentities"), "{m}");
    assert!(m.contains("4 mshr_hcmpersoneducationentities"), "{m}");
    assert!(m.contains("1 mshr_hcmpersonskillentities"), "{m}");
    assert!(p["candidateId"].is_null(), "{p}");
    assert_eq!(counts(&gw.emu).await, before, "nothing of the submission remains");
}

/// Submits a refused input that nothing of is kept: the only error is the refusal (no
/// compensation report) and every table's count is unchanged. Returns the payload and the
/// emulator's stats of the submission.
async fn refused_without_compensation(gw: &Gateway, tag: &str) -> (Value, Value) {
    let input = refused_input(&gw.emu, tag).await;
    let before = counts(&gw.emu).await;
    gw.emu.reset_stats().await;
    let p = submit(gw, &input, None).await;
    let stats = gw.emu.stats().await;
    let errors = p["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "no compensation: {p}");
    assert_eq!(errors[0]["code"], "UPSTREAM_REJECTED", "{p}");
    assert_eq!(counts(&gw.emu).await, before);
    (p, stats)
}

in_both_dialects!(against_an_atomic_upstream_the_check_is_one_read_and_finds_nothing);
async fn against_an_atomic_upstream_the_check_is_one_read_and_finds_nothing(dialect: Dialect) {
    let gw = gateway(dialect, true, Strategy::Batch);
    let (p, stats) = refused_without_compensation(&gw, "atomic").await;
    assert_eq!(p["errors"][0]["part"], 20, "{p}");
    // The validation read (one $batch), the change set (one $batch), and the look-up.
    assert_eq!(stats["total"], 3, "{stats}");
    assert_eq!(stats["byEntitySet"]["$batch"], 2, "{stats}");
    assert_eq!(stats["writes"], 0, "{stats}");
}

in_both_dialects!(a_refused_deep_insert_is_checked_with_one_read);
async fn a_refused_deep_insert_is_checked_with_one_read(dialect: Dialect) {
    // The emulator's deep insert is one write even with non-atomic change sets: the check runs
    // and finds nothing.
    let gw = gateway(dialect, false, Strategy::DeepInsert);
    let (_, stats) = refused_without_compensation(&gw, "deep").await;
    // The validation read, the refused POST, and the look-up.
    assert_eq!(stats["total"], 3, "{stats}");
}
