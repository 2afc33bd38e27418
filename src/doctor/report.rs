//! The report: aligned lines and a one-line verdict for people, one JSON object for scripts.
//!
//! ```text
//! ats-gateway doctor: http://127.0.0.1:7070/api/data/v9.2/
//! settings: auth none, dialect auto, submission strategy batch, expand pushdown auto
//!
//!   reachability       pass     service document read (auth none); 18 of the model's 18 entity sets listed
//!   in-function        fail     Microsoft.Dynamics.CRM.In refused with 400: ...
//!                               fix: --upstream-dialect odata4
//!
//! verdict: usable as configured
//! ```

use super::{Outcome, Settings, Status};
use serde_json::{json, Value};

/// Every check's outcome, in order, for one upstream and its settings.
#[derive(Debug, Clone)]
pub struct Report {
    /// The service root, as [`shown_url`] prints it.
    pub upstream: String,
    pub settings: Settings,
    pub lines: Vec<(&'static str, Outcome)>,
}

/// The URL without user info, query or fragment (where a secret could hide).
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

impl Report {
    /// Whether the gateway can work against the service with these settings: no line blocks.
    pub fn usable(&self) -> bool {
        !self.lines.iter().any(|(_, o)| o.blocking)
    }

    /// The names of the lines that block.
    fn blocking(&self) -> Vec<&'static str> {
        self.lines.iter().filter(|(_, o)| o.blocking).map(|(n, _)| *n).collect()
    }

    /// The names of the lines that could not tell.
    fn unknown(&self) -> Vec<&'static str> {
        let unknown = self.lines.iter().filter(|(_, o)| o.status == Status::Unknown);
        unknown.map(|(n, _)| *n).collect()
    }

    fn settings_line(&self) -> String {
        let s = &self.settings;
        format!(
            "auth {}, dialect {}, submission strategy {}, expand pushdown {}",
            s.auth_mode,
            value_name(&s.dialect),
            value_name(&s.strategy),
            value_name(&s.pushdown)
        )
    }

    /// The one-line verdict.
    pub fn verdict(&self) -> String {
        let unknown = self.unknown();
        match (self.usable(), unknown.is_empty()) {
            (false, _) => format!("NOT usable as configured (blocked by: {})", self.blocking().join(", ")),
            (true, true) => "usable as configured".to_string(),
            (true, false) => format!(
                "usable as configured, as far as doctor could tell (unknown: {})",
                unknown.join(", ")
            ),
        }
    }

    /// Aligned lines (name, status, detail, then `fix:` under the detail), then the verdict.
    pub fn to_human(&self) -> String {
        let width = self.lines.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut out = format!(
            "ats-gateway doctor: {}\nsettings: {}\n\n",
            self.upstream,
            self.settings_line()
        );
        for (name, o) in &self.lines {
            out.push_str(&format!("  {name:<width$}  {:<7}  {}\n", o.status.name(), o.detail));
            if let Some(fix) = &o.fix {
                out.push_str(&format!("  {:<width$}  {:<7}  fix: {fix}\n", "", ""));
            }
        }
        out.push_str(&format!("\nverdict: {}\n", self.verdict()));
        out
    }

    /// One JSON object: `upstream`, `settings`, `checks` (`name`, `status`, `detail`, `fix`,
    /// `blocking`), `usable`, `verdict`.
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .lines
            .iter()
            .map(|(name, o)| {
                json!({
                    "name": name,
                    "status": o.status.name(),
                    "detail": o.detail,
                    "fix": o.fix,
                    "blocking": o.blocking,
                })
            })
            .collect();
        let s = &self.settings;
        json!({
            "upstream": self.upstream,
            "settings": {
                "auth": s.auth_mode,
                "dialect": value_name(&s.dialect),
                "paging": value_name(&s.paging),
                "submissionStrategy": value_name(&s.strategy),
                "expandPushdown": value_name(&s.pushdown),
            },
            "checks": checks,
            "usable": self.usable(),
            "verdict": self.verdict(),
        })
    }

    /// How many lines have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.lines.iter().filter(|(_, o)| o.status == status).count()
    }
}

/// A setting's command-line spelling.
fn value_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::UpstreamDialect;
    use crate::doctor::Pushdown;
    use crate::graphql::mutations::write::Strategy;

    fn report(lines: Vec<(&'static str, Outcome)>) -> Report {
        Report {
            upstream: shown_url("https://user:pw@org.example.com/api/data/v9.2/?token=abc#x"),
            settings: Settings {
                dialect: UpstreamDialect::Dataverse,
                paging: crate::cli::UpstreamPaging::Auto,
                strategy: Strategy::Flat,
                pushdown: Pushdown::Auto,
                auth_mode: "none",
                caller_tokens_only: false,
            },
            lines,
        }
    }

    #[test]
    fn the_shown_url_has_no_user_info_or_query() {
        let r = report(vec![]);
        assert_eq!(r.upstream, "https://org.example.com/api/data/v9.2/");
        assert_eq!(shown_url("not a url"), "(not a URL)");
    }

    #[test]
    fn human_lines_are_aligned_and_end_with_the_verdict() {
        let r = report(vec![
            ("reachability", Outcome::pass("ok")),
            (
                "in",
                Outcome::fail("refused").fix("--upstream-dialect odata4").blocking(true),
            ),
        ]);
        let text = r.to_human();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ats-gateway doctor: https://org.example.com/api/data/v9.2/");
        assert_eq!(
            lines[1],
            "settings: auth none, dialect dataverse, submission strategy flat, expand pushdown auto"
        );
        assert_eq!(lines[3], "  reachability  pass     ok");
        assert_eq!(lines[4], "  in            fail     refused");
        assert_eq!(lines[5], "                         fix: --upstream-dialect odata4");
        assert_eq!(
            *lines.last().unwrap(),
            "verdict: NOT usable as configured (blocked by: in)"
        );
        assert!(!r.usable());
    }

    #[test]
    fn json_has_every_check_and_the_verdict() {
        let r = report(vec![
            ("a", Outcome::pass("ok")),
            ("b", Outcome::unknown("?")),
            ("c", Outcome::fail("no").fix("--x").blocking(false)),
        ]);
        let v = r.to_json();
        assert_eq!(v["usable"], true);
        assert_eq!(v["checks"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["checks"][0],
            json!({"name": "a", "status": "pass", "detail": "ok", "fix": null, "blocking": false})
        );
        assert_eq!(v["checks"][2]["fix"], "--x");
        assert_eq!(v["settings"]["submissionStrategy"], "flat");
        assert_eq!(
            v["verdict"],
            "usable as configured, as far as doctor could tell (unknown: b)"
        );
        assert_eq!((r.count(Status::Pass), r.count(Status::Fail)), (1, 1));
    }
}
