//! The built binary's command line: help and version on stdout with success, usage and config
//! errors on stderr with a failure. None of these starts a server.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(args)
        .env_remove("ATS_GATEWAY_CONFIG")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config file of its own for one test, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(name: &str, contents: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("ats-gw-cli-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Exit 0, the text on stdout, nothing on stderr.
fn printed(out: &Output, expected: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(stdout.contains(expected), "`{expected}` not on stdout: {stdout}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

/// A non-zero exit, nothing on stdout, a message containing each of `expected` on stderr.
fn refused(out: &Output, expected: &[&str]) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(stdout.is_empty(), "stdout: {stdout}");
    for e in expected {
        assert!(stderr.contains(e), "`{e}` not on stderr: {stderr}");
    }
}

#[test]
fn version_and_help_go_to_stdout_with_success() {
    printed(&run(&["--version"]), concat!("ats-gateway ", env!("CARGO_PKG_VERSION")));
    printed(&run(&["--help"]), "Usage: ats-gateway");
    printed(&run(&["serve", "--help"]), "--submission-strategy");
    printed(&run(&["help", "emulator"]), "--seed-size");
}

#[test]
fn help_wins_over_a_broken_config_file() {
    let file = ConfigFile::new("help", "listen = [\n");
    printed(&run(&["serve", "--config", file.path(), "--help"]), "--max-page-size");
}

#[test]
fn a_config_file_that_is_not_toml_is_an_error_naming_it() {
    let file = ConfigFile::new("toml", "listen = [\n");
    refused(
        &run(&["serve", "--config", file.path()]),
        &[file.path(), "not valid TOML"],
    );
    // Named as in the README, relative: the message starts like the binary's help and version.
    let dir = std::env::temp_dir().join(format!("ats-gw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ats-gateway.toml"), "listen = [\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args(["serve", "--config", "ats-gateway.toml"])
        .env_remove("ATS_GATEWAY_CONFIG")
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    refused(&out, &["ats-gateway.toml is not valid TOML"]);
}

#[test]
fn unknown_keys_and_bad_values_in_the_config_file_are_errors_naming_it() {
    let unknown = ConfigFile::new("unknown", "max-page-sise = 10\n");
    refused(
        &run(&["--config", unknown.path()]),
        &[unknown.path(), "`max-page-sise`"],
    );
    let bad = ConfigFile::new("bad-value", "max-page-size = \"many\"\n");
    refused(
        &run(&["serve", "--config", bad.path()]),
        &[bad.path(), "'many'", "--max-page-size"],
    );
    // `--config` before the subcommand: its value is not taken for the subcommand.
    let emulator = ConfigFile::new("emulator", "[emulator]\nseed-size = \"many\"\n");
    refused(
        &run(&["--config", emulator.path(), "emulator"]),
        &[emulator.path(), "--seed-size"],
    );
    refused(
        &run(&["--config", "/nonexistent/ats-gateway.toml"]),
        &["/nonexistent/ats-gateway.toml"],
    );
}

#[test]
fn usage_errors_go_to_stderr_with_a_failure() {
    refused(&run(&["--no-such-flag"]), &["--no-such-flag", "Usage"]);
    refused(&run(&["serve", "--max-page-size", "many"]), &["'many'"]);
    refused(&run(&["emulator", "--listen"]), &["--listen"]);
}
