//! `ats-gateway doctor`: a compatibility report for a real environment, before the gateway is
//! pointed at it.
//!
//! Doctor connects to the upstream the way the gateway would (the same upstream URL and auth
//! flags; in the pass-through and on-behalf-of modes, as the caller whose token it is given in
//! `ATS_GATEWAY_DOCTOR_CALLER_TOKEN`), runs each check of [`checks::CHECKS`] in order, and prints one line per check (pass,
//! fail or unknown, a detail, and on a failure the setting to use instead), then a verdict:
//!
//! - [`checks`]: one function per check, and the list that runs them;
//! - [`change_sets`]: the change-set check (a change set that must fail, then a look for what it
//!   left behind, which doctor deletes);
//! - [`report`]: the human and the `--json` rendering.
//!
//! A failed check *blocks* when the gateway cannot work against the service as configured
//! (`In` refused with `--upstream-dialect dataverse`, change sets refused with a strategy that
//! needs them, ...). The exit code is 0 when nothing blocks, 1 when something does (an
//! unreachable upstream, refused credentials, ...), 2 for a command line or settings error
//! (nothing was checked). Doctor writes only inside the change-set check, and removes what it
//! wrote. Secrets are never printed: credentials go in sensitive headers, and the upstream URL
//! is shown without user info or query.

pub mod change_sets;
pub mod checks;
pub mod report;

use crate::cli::auth::AuthArgs;
use crate::cli::{UpstreamDialect, UpstreamPaging};
use crate::graphql::mutations::write::Strategy;
use crate::odata::{Upstream, UpstreamConfig, UpstreamError};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

pub use checks::{Check, Outcome, Status, CHECKS};
pub use report::Report;

/// `ats-gateway doctor`: the upstream and the settings the gateway would run with.
#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    /// OData service root of the environment to check, such as
    /// https://org.crm.dynamics.com/api/data/v9.2/. Required (here, in the environment or as
    /// `upstream` in the config file, whose `serve` settings doctor shares).
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_URL")]
    pub upstream: Option<String>,
    /// The dialect the gateway would be run with (see `serve --help`): with `dataverse`, a
    /// refused `Microsoft.Dynamics.CRM.In` makes the service unusable as configured.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_DIALECT", value_enum, default_value = "auto")]
    pub upstream_dialect: UpstreamDialect,
    /// The paging the gateway would be run with (see `serve --help`): with `maxpagesize`, a
    /// service that ignores `Prefer: odata.maxpagesize` makes lists read more rows than asked.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_PAGING", value_enum, default_value = "auto")]
    pub upstream_paging: UpstreamPaging,
    /// The submission strategy the gateway would be run with: `batch` and `deep-insert` need
    /// change sets (deep insert falls back to one for an existing person), `flat` does not.
    #[arg(long, env = "ATS_GATEWAY_SUBMISSION_STRATEGY", value_enum, default_value = "batch")]
    pub submission_strategy: Strategy,
    /// The `$expand` pushdown the gateway would be run with: `on` needs collection `$expand`,
    /// `auto` turns itself off where it does not work, `off` never uses it.
    #[arg(long, env = "ATS_GATEWAY_EXPAND_PUSHDOWN", value_enum, default_value = "auto")]
    pub expand_pushdown: Pushdown,
    /// Timeout of one upstream request.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,
    /// Timeout of opening a connection to the upstream.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub upstream_connect_timeout: Duration,
    /// A caller's bearer token, for `--upstream-auth pass-through` (a Dataverse token) and
    /// `on-behalf-of` (a token for the gateway's API, exchanged as the gateway would): in those
    /// modes the gateway calls only as its callers, so without one doctor can only see that the
    /// service answers. Prefer the environment variable to the flag, which other users of the
    /// machine can see. Ignored in the other modes.
    #[arg(long, env = "ATS_GATEWAY_DOCTOR_CALLER_TOKEN", hide_env_values = true)]
    pub caller_token: Option<crate::secret::Secret>,
    /// Print one JSON object (`checks`: name, status, detail, fix, blocking; `usable`) instead
    /// of aligned lines.
    #[arg(long, default_value_t = false)]
    pub json: bool,
    /// The upstream authentication flags of `serve` (the caller-authentication ones are accepted,
    /// so that one environment serves both commands, and ignored).
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `--expand-pushdown` as doctor judges it: the gateway's own setting.
pub use crate::graphql::context::ExpandPushdown as Pushdown;

/// The settings the checks judge the service against.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub dialect: UpstreamDialect,
    pub paging: UpstreamPaging,
    pub strategy: Strategy,
    pub pushdown: Pushdown,
    /// `--upstream-auth`'s name (`client-credentials`, ...).
    pub auth_mode: &'static str,
    /// Whether the gateway calls only with its callers' tokens (pass-through, on-behalf-of):
    /// doctor, which has no caller, then calls without a token.
    pub caller_tokens_only: bool,
}

/// What the checks share: the upstream client, configured as the gateway would be, and the
/// settings.
pub struct Doctor {
    pub upstream: Upstream,
    pub settings: Settings,
    /// For the one read whose response headers matter (`Preference-Applied`).
    http: reqwest::Client,
    /// `Bearer <caller token>`, the `Authorization` value of a caller (`--caller-token`).
    caller: Option<crate::secret::Secret>,
}

impl Doctor {
    /// The upstream client from the arguments; `Err` names a settings problem.
    pub fn new(args: &DoctorArgs) -> Result<Doctor, String> {
        let root = args
            .upstream
            .clone()
            .ok_or("doctor needs --upstream (or ATS_GATEWAY_UPSTREAM_URL, or `upstream` in the config file)")?;
        let auth = args.auth.upstream_auth(&root, None)?;
        let settings = Settings {
            dialect: args.upstream_dialect,
            paging: args.upstream_paging,
            strategy: args.submission_strategy,
            pushdown: args.expand_pushdown,
            auth_mode: auth.mode(),
            caller_tokens_only: auth.acts_only_for_callers(),
        };
        let mut config = UpstreamConfig::new(root);
        config.timeout = args.upstream_timeout;
        config.connect_timeout = args.upstream_connect_timeout;
        config.auth = auth;
        // One attempt per question: a retried answer would hide what the service does, and the
        // breaker must not stop the checks after a few expected refusals.
        config.resilience.max_retries = 0;
        config.resilience.breaker_threshold = u32::MAX;
        let upstream = Upstream::new(config).map_err(|e| e.message)?;
        let http = reqwest::Client::builder()
            .timeout(args.upstream_timeout)
            .connect_timeout(args.upstream_connect_timeout)
            .user_agent(concat!("ats-gateway-doctor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let caller = args.caller_token.as_ref().map(|t| {
            let token = t.expose().trim();
            let token = token.strip_prefix("Bearer ").unwrap_or(token);
            crate::secret::Secret::new(format!("Bearer {token}"))
        });
        Ok(Doctor {
            upstream,
            settings,
            http,
            caller,
        })
    }

    /// The caller's `Authorization` value every call is made for (`None`: doctor's own calls,
    /// as the gateway's own).
    pub fn auth(&self) -> Option<&str> {
        self.caller.as_ref().map(|s| s.expose())
    }

    /// Whether doctor has a caller's token to call with.
    pub fn has_caller(&self) -> bool {
        self.caller.is_some()
    }

    /// Runs every check of `checks` in order. Once a prerequisite check has not passed, the
    /// checks after it are `unknown` without running (they would only repeat its failure).
    pub async fn run(&self, checks: &[Check]) -> Report {
        let mut lines = Vec::with_capacity(checks.len());
        let mut stopped_by: Option<&'static str> = None;
        for check in checks {
            let outcome = match stopped_by {
                Some(name) => Outcome::unknown(format!("not run: the {name} check did not pass")),
                None => (check.run)(self).await,
            };
            if check.prerequisite && stopped_by.is_none() && outcome.status != Status::Pass {
                stopped_by = Some(check.name);
            }
            lines.push((check.name, outcome));
        }
        Report {
            upstream: report::shown_url(self.upstream.config().service_root.as_str()),
            settings: self.settings,
            lines,
        }
    }

    /// One page of `link` with `Prefer: odata.maxpagesize=<page_size>`, and the
    /// `Preference-Applied` header of the answer. Credentials come from the upstream's own
    /// token source; the header is marked sensitive.
    pub async fn get_page_preferring(
        &self,
        link: &str,
        page_size: usize,
    ) -> Result<(crate::odata::Page, Option<String>), UpstreamError> {
        use reqwest::header::{HeaderValue, AUTHORIZATION};
        let url = self.upstream.absolute_url(link)?;
        let credential = self.upstream.tokens().credential(self.auth()).await?;
        let mut rb = self
            .http
            .get(url)
            .header("accept", "application/json")
            .header("odata-maxversion", "4.0")
            .header("odata-version", "4.0")
            .header("if-none-match", "null")
            .header("prefer", format!("odata.maxpagesize={page_size}"));
        if let Some(secret) = &credential.header {
            let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                UpstreamError::not_sent(
                    crate::odata::UpstreamErrorKind::Unauthorized,
                    "the Authorization value is not a valid HTTP header value",
                )
            })?;
            value.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, value);
        }
        let response = rb
            .send()
            .await
            .map_err(|e| UpstreamError::from_transport(e.without_url(), false))?;
        let status = response.status().as_u16();
        let applied = response
            .headers()
            .get("preference-applied")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| UpstreamError::from_transport(e.without_url(), true))?;
        if !(200..300).contains(&status) {
            return Err(UpstreamError::from_status(status, None, &body));
        }
        Ok((crate::odata::response::parse_page(status, &body)?, applied))
    }
}

/// Logs go to stderr, off unless `ATS_GATEWAY_LOG` asks for them: the report is the output, and
/// the upstream client's warnings about the refusals doctor provokes would only repeat it.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATS_GATEWAY_LOG").unwrap_or_else(|_| "off".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Entry point of `ats-gateway doctor`: runs the checks, prints the report, and exits 0 (usable
/// as configured), 1 (not usable) or 2 (settings error, nothing checked).
pub async fn main(args: &DoctorArgs) -> ExitCode {
    init_logging();
    let doctor = match Doctor::new(args) {
        Ok(d) => d,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let report = doctor.run(CHECKS).await;
    let text = match args.json {
        true => format!("{}\n", report.to_json()),
        false => report.to_human(),
    };
    print!("{text}");
    match report.usable() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use futures::future::BoxFuture;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        doctor: DoctorArgs,
    }

    fn args(extra: &[&str]) -> DoctorArgs {
        let mut argv = vec!["doctor", "--upstream", "http://127.0.0.1:9/api/data/v9.2/"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("valid arguments").doctor
    }

    fn passes(_: &Doctor) -> BoxFuture<'_, Outcome> {
        Box::pin(async { Outcome::pass("ok") })
    }

    fn fails(_: &Doctor) -> BoxFuture<'_, Outcome> {
        Box::pin(async { Outcome::fail("no") })
    }

    fn never_runs(_: &Doctor) -> BoxFuture<'_, Outcome> {
        panic!("a check after a failed prerequisite ran")
    }

    #[tokio::test]
    async fn checks_after_a_failed_prerequisite_are_unknown_without_running() {
        let doctor = Doctor::new(&args(&[])).expect("settings");
        let list = [
            Check::new("first", passes),
            Check::prerequisite("gate", fails),
            Check::new("later", never_runs),
        ];
        let report = doctor.run(&list).await;
        let statuses: Vec<(&str, Status)> = report.lines.iter().map(|(n, o)| (*n, o.status)).collect();
        assert_eq!(
            statuses,
            [
                ("first", Status::Pass),
                ("gate", Status::Fail),
                ("later", Status::Unknown)
            ]
        );
        assert!(report.lines[2].1.detail.contains("the gate check did not pass"));
        assert!(!report.usable());
        let report = doctor
            .run(&[Check::prerequisite("gate", passes), Check::new("then", passes)])
            .await;
        assert!(report.usable());
        assert_eq!(report.verdict(), "usable as configured");
    }

    #[test]
    fn settings_parse_like_serve_and_accept_boolean_pushdown() {
        let a = args(&[]);
        assert_eq!(a.upstream_dialect, UpstreamDialect::Auto);
        assert_eq!(a.submission_strategy, Strategy::Batch);
        assert_eq!(a.expand_pushdown, Pushdown::Auto);
        assert_eq!(args(&["--expand-pushdown", "true"]).expand_pushdown, Pushdown::On);
        assert_eq!(args(&["--expand-pushdown", "false"]).expand_pushdown, Pushdown::Off);
        assert_eq!(args(&["--expand-pushdown", "off"]).expand_pushdown, Pushdown::Off);
        let err = Doctor::new(&args(&["--upstream-auth", "client-credentials"])).err();
        assert!(err.is_some_and(|e| e.contains("--tenant-id")));
        let none = Doctor::new(&DoctorArgs {
            upstream: None,
            ..args(&[])
        })
        .err();
        assert!(none.is_some_and(|e| e.contains("--upstream")));
    }
}
