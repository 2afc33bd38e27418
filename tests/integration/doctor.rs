//! `ats-gateway doctor`: the built binary against emulators playing each kind of service
//! (Dataverse, plain OData v4, no change sets, non-atomic change sets, an upstream that needs
//! tokens) and against nothing. Each test reads the human report, the `--json` report and the
//! exit code.

use crate::emulator_batch::{batch, change_set_part, person, post_batch};
use crate::gateway_writes::counts;
use crate::harness::{free_port, Dialect, Emu};
use ats_gateway::emulator::{self, EmulatorConfig, Seed};
use serde_json::Value;
use std::process::Command;

/// One run of `ats-gateway doctor --upstream <upstream> <args>`: exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn doctor(upstream: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(["doctor", "--upstream", upstream])
        .args(args)
        .env_remove("ATS_GATEWAY_CONFIG")
        .env_remove("ATS_GATEWAY_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    /// The report line of `check` (`  <name>  <status>  <detail>`), and its `fix:` line if any.
    fn line(&self, check: &str) -> (String, Option<String>) {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.split_whitespace().next() == Some(check))
            .unwrap_or_else(|| panic!("no line for {check}:\n{}", self.stdout));
        let fix = lines
            .get(at + 1)
            .map(|l| l.trim())
            .filter(|l| l.starts_with("fix: "))
            .map(str::to_owned);
        (lines[at].to_string(), fix)
    }

    /// The status word of `check`'s line.
    fn status(&self, check: &str) -> String {
        let (line, _) = self.line(check);
        line.split_whitespace().nth(1).unwrap_or_default().to_string()
    }

    fn verdict(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("verdict: "))
            .unwrap_or_else(|| panic!("no verdict:\n{}", self.stdout))
    }

    fn json(&self) -> Value {
        assert_eq!(self.stdout.lines().count(), 1, "one JSON object: {}", self.stdout);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// The `--json` report's check called `name`.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

/// Every check of the list is in the report, in order.
fn has_every_check(report: &Value) {
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = ats_gateway::doctor::CHECKS.iter().map(|c| c.name).collect();
    assert_eq!(names, expected);
}

fn emulator(tune: impl FnOnce(&mut EmulatorConfig)) -> Emu {
    let mut config = EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 20,
        ..EmulatorConfig::default()
    };
    tune(&mut config);
    Emu::start(config)
}

#[tokio::test]
async fn against_a_dataverse_emulator_every_check_passes() {
    let emu = emulator(|_| {});
    let before = counts(&emu).await;
    let human = doctor(&emu.root, &[], &[]);
    assert_eq!(human.code, 0, "{}{}", human.stdout, human.stderr);
    for c in ats_gateway::doctor::CHECKS {
        assert_eq!(human.status(c.name), "pass", "{}", human.stdout);
    }
    assert!(human.stdout.starts_with(&format!("ats-gateway doctor: {}\n", emu.root)));
    assert!(human.line("change-sets").0.contains("atomic: "), "{}", human.stdout);
    assert_eq!(human.verdict(), "usable as configured");
    assert!(human.stderr.is_empty(), "{}", human.stderr);

    let json = doctor(&emu.root, &["--json"], &[]);
    assert_eq!(json.code, 0);
    let report = json.json();
    has_every_check(&report);
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "pass" && c["fix"].is_null()));
    assert_eq!(report["usable"], true);
    assert_eq!(counts(&emu).await, before, "doctor leaves nothing behind");
}

#[tokio::test]
async fn against_plain_odata4_the_in_line_fails_and_blocks_only_a_forced_dataverse_dialect() {
    let emu = Emu::fresh_in(Dialect::Odata4);
    for (dialect, code) in [("auto", 0), ("odata4", 0), ("dataverse", 1)] {
        let human = doctor(&emu.root, &["--upstream-dialect", dialect], &[]);
        assert_eq!(human.code, code, "{dialect}: {}", human.stdout);
        assert_eq!(human.status("in-function"), "fail", "{}", human.stdout);
        assert_eq!(
            human.line("in-function").1.as_deref(),
            Some("fix: --upstream-dialect odata4")
        );
        // No GlobalOptionSetDefinitions: documented integers, which doctor cannot vouch for.
        assert_eq!(human.status("option-sets"), "unknown", "{}", human.stdout);
        for ok in ["reachability", "paging", "collection-expand", "batch", "change-sets"] {
            assert_eq!(human.status(ok), "pass", "{ok}: {}", human.stdout);
        }
        let report = doctor(&emu.root, &["--upstream-dialect", dialect, "--json"], &[]).json();
        has_every_check(&report);
        let line = check(&report, "in-function");
        assert_eq!(line["status"], "fail");
        assert_eq!(line["fix"], "--upstream-dialect odata4");
        assert_eq!(line["blocking"], code == 1);
        assert_eq!(report["usable"], code == 0, "{report}");
    }
    let forced = doctor(&emu.root, &["--upstream-dialect", "dataverse"], &[]);
    assert_eq!(forced.verdict(), "NOT usable as configured (blocked by: in-function)");
}

#[tokio::test]
async fn an_emulator_without_change_sets_refuses_them_and_still_runs_get_batches() {
    let emu = emulator(|c| c.change_sets = false);
    let get = "/api/data/v9.2/mshr_hcmratinglevelentities?$select=mshr_ratinglevelid";
    let (status, body) = post_batch(&emu, batch(&[], Some(get)), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("HTTP/1.1 200 OK"), "{body}");
    let before = counts(&emu).await;
    let part = change_set_part(1, "POST", "/api/data/v9.2/mshr_dirpersonentities", &person("Refused"));
    let (status, body) = post_batch(&emu, batch(&[part], Some(get)), None).await;
    assert_eq!(status, 501, "{body}");
    let error: Value = serde_json::from_str(&body).expect("an OData error");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Change sets are not supported"));
    assert_eq!(counts(&emu).await, before, "nothing of a refused batch runs");
}

#[tokio::test]
async fn refused_change_sets_fail_with_the_flat_fix_and_block_only_strategies_that_need_them() {
    let emu = emulator(|c| c.change_sets = false);
    let before = counts(&emu).await;
    for (strategy, code) in [("batch", 1), ("deep-insert", 1), ("flat", 0)] {
        let human = doctor(&emu.root, &["--submission-strategy", strategy], &[]);
        assert_eq!(human.code, code, "{strategy}: {}", human.stdout);
        let (line, fix) = human.line("change-sets");
        assert!(line.contains("fail") && line.contains("refused"), "{line}");
        assert_eq!(fix.as_deref(), Some("fix: --submission-strategy flat"));
        assert_eq!(human.status("batch"), "pass", "GET-only batches work: {}", human.stdout);
        let report = doctor(&emu.root, &["--submission-strategy", strategy, "--json"], &[]).json();
        let line = check(&report, "change-sets");
        assert_eq!(line["status"], "fail");
        assert_eq!(line["fix"], "--submission-strategy flat");
        assert_eq!(report["usable"], code == 0, "{report}");
    }
    assert_eq!(counts(&emu).await, before);
}

#[tokio::test]
async fn non_atomic_change_sets_are_reported_and_nothing_is_left_behind() {
    let emu = emulator(|c| c.atomic_change_sets = false);
    let before = counts(&emu).await;
    let human = doctor(&emu.root, &[], &[]);
    assert_eq!(human.code, 0, "{}", human.stdout);
    let (line, fix) = human.line("change-sets");
    assert!(line.contains("pass"), "{line}");
    assert!(line.contains("not atomic (the gateway compensates)"), "{line}");
    assert!(line.contains("doctor deleted its 1 test record"), "{line}");
    assert_eq!(fix, None);
    assert_eq!(counts(&emu).await, before, "doctor deleted what the change set kept");

    let json = doctor(&emu.root, &["--json"], &[]);
    assert_eq!(json.code, 0);
    let report = json.json();
    let line = check(&report, "change-sets");
    assert_eq!(line["status"], "pass");
    assert!(line["detail"]
        .as_str()
        .unwrap()
        .starts_with("not atomic (the gateway compensates)"));
    assert_eq!(report["usable"], true);
    assert_eq!(counts(&emu).await, before);
}

#[tokio::test]
async fn an_unreachable_upstream_fails_reachability_and_leaves_the_rest_unknown() {
    let root = format!("http://127.0.0.1:{}/api/data/v9.2/", free_port());
    let human = doctor(&root, &[], &[]);
    assert_eq!(human.code, 1, "{}", human.stdout);
    let (line, _) = human.line("reachability");
    assert!(line.contains("fail") && line.contains("unreachable"), "{line}");
    assert_eq!(human.status("change-sets"), "unknown");
    assert_eq!(human.verdict(), "NOT usable as configured (blocked by: reachability)");

    let json = doctor(&root, &["--json"], &[]);
    assert_eq!(json.code, 1);
    let report = json.json();
    has_every_check(&report);
    assert_eq!(check(&report, "reachability")["status"], "fail");
    assert_eq!(check(&report, "reachability")["blocking"], true);
    let rest = &report["checks"].as_array().unwrap()[1..];
    assert!(rest.iter().all(|c| c["status"] == "unknown"), "{report}");
    assert_eq!(report["usable"], false);
}

#[tokio::test]
async fn client_credentials_are_used_and_a_refused_secret_is_never_printed() {
    let emu = Emu::with_auth(std::time::Duration::from_secs(3600));
    let token_url = emu.token_url();
    let args = [
        "--upstream-auth",
        "client-credentials",
        "--token-url",
        &token_url,
        "--client-id",
        emulator::auth::DEMO_CLIENT_ID,
    ];
    let good = doctor(
        &emu.root,
        &args,
        &[("ATS_GATEWAY_CLIENT_SECRET", emulator::auth::DEMO_CLIENT_SECRET)],
    );
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(
        good.line("reachability").0.contains("auth client-credentials"),
        "{}",
        good.stdout
    );
    assert!(!good.stdout.contains(emulator::auth::DEMO_CLIENT_SECRET));

    let wrong = "not-the-secret-4c1d9e";
    for extra in [&[][..], &["--json"][..]] {
        let run = doctor(
            &emu.root,
            &[&args[..], extra].concat(),
            &[("ATS_GATEWAY_CLIENT_SECRET", wrong)],
        );
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(
            run.stdout.contains("no token through client-credentials"),
            "{}",
            run.stdout
        );
        assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
    }
}

#[test]
fn help_lists_the_settings_doctor_judges_against() {
    let out = Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(["doctor", "--help"])
        .env_remove("ATS_GATEWAY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--upstream ",
        "--upstream-auth",
        "--upstream-dialect",
        "--submission-strategy",
        "--expand-pushdown",
        "--caller-token",
        "--json",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn settings_errors_exit_2_without_checking() {
    let clap_error = Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(["doctor"])
        .env_remove("ATS_GATEWAY_CONFIG")
        .env_remove("ATS_GATEWAY_UPSTREAM_URL")
        .output()
        .unwrap();
    assert_eq!(clap_error.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&clap_error.stderr).contains("--upstream"));
    let run = doctor(
        "https://org.example.com/api/data/v9.2/",
        &["--upstream-auth", "client-credentials"],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("--tenant-id"), "{}", run.stderr);
}

#[tokio::test]
async fn a_config_file_shared_with_serve_gives_doctor_its_upstream_and_settings() {
    let emu = emulator(|c| c.change_sets = false);
    let path = std::env::temp_dir().join(format!("ats-gw-doctor-{}.toml", std::process::id()));
    // serve's own settings (listen, max-page-size) are skipped; the shared ones apply.
    let text = format!(
        "upstream = \"{}\"\nlisten = \"127.0.0.1:0\"\nmax-page-size = 10\nsubmission-strategy = \"flat\"\n",
        emu.root
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(["--config", path.to_str().unwrap(), "doctor", "--json"])
        .env_remove("ATS_GATEWAY_CONFIG")
        .env_remove("ATS_GATEWAY_UPSTREAM_URL")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["upstream"], emu.root.as_str());
    assert_eq!(report["settings"]["submissionStrategy"], "flat");
    assert_eq!(check(&report, "change-sets")["blocking"], false);
}

#[tokio::test]
async fn pass_through_checks_as_the_caller_whose_token_doctor_is_given() {
    let emu = Emu::with_auth(std::time::Duration::from_secs(3600));
    let args = ["--upstream-auth", "pass-through"];
    let without = doctor(&emu.root, &args, &[]);
    assert_eq!(without.status("reachability"), "unknown", "{}", without.stdout);
    assert!(without
        .line("reachability")
        .0
        .contains("ATS_GATEWAY_DOCTOR_CALLER_TOKEN"));
    assert_eq!(without.status("change-sets"), "unknown");

    let token = emu.user_token("carol", &format!("{}/.default", emu.origin())).await;
    let before = counts_as(&emu, &token).await;
    let with = doctor(&emu.root, &args, &[("ATS_GATEWAY_DOCTOR_CALLER_TOKEN", &token)]);
    assert_eq!(with.code, 0, "{}", with.stdout);
    for c in ats_gateway::doctor::CHECKS {
        assert_eq!(with.status(c.name), "pass", "{}", with.stdout);
    }
    assert_eq!(with.verdict(), "usable as configured");
    assert!(!with.stdout.contains(&token) && !with.stderr.contains(&token));
    assert_eq!(counts_as(&emu, &token).await, before, "doctor leaves nothing behind");
}

/// The record count of every entity set, read with a bearer token.
async fn counts_as(emu: &Emu, token: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in &ats_gateway::model::model().entities {
        let r = crate::harness::client()
            .get(emu.url(&format!("{}/$count", e.entity_set)))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        out.push((
            e.entity_set.clone(),
            text.trim_start_matches('\u{feff}').parse().unwrap(),
        ));
    }
    out
}
