//! The command line: `ats-gateway [serve]`, `ats-gateway emulator` and `ats-gateway doctor`
//! (`crate::doctor`), each flag with an `ATS_GATEWAY_*` environment twin; `auth`: the
//! authentication flags `serve` and `doctor` share.
//! `budget`: the upstream-budget flags of `serve` (read cache, per-operation limit, rate limit).

pub mod auth;
pub mod budget;

use crate::emulator::{
    self,
    faults::{Faults, Throttle},
    EmulatorConfig, Seed,
};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// A GraphQL gateway over the Dynamics 365 HR ATS integration API, with an embedded Dataverse
/// emulator.
#[derive(Debug, Parser)]
#[command(name = "ats-gateway", version, about)]
pub struct Cli {
    /// A TOML file of settings: top-level keys for `serve`, an `[emulator]` table for `emulator`;
    /// keys are the long flag names (`max-page-size` or `max_page_size`). Flags and environment
    /// variables win over the file; unknown keys are an error.
    #[arg(long, global = true, env = "ATS_GATEWAY_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Why the command line did not give a command to run.
#[derive(Debug)]
pub enum ArgsError {
    /// clap's own verdict: help or version (printed to stdout, success) or a usage error (stderr,
    /// exit code 2). [`clap::Error::print`] and [`clap::Error::exit_code`] tell which.
    Clap(clap::Error),
    /// The config file cannot be read, is not TOML, names an unknown setting or has a value its
    /// flag refuses; the message names the file.
    Config(String),
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgsError::Clap(e) => write!(f, "{}", e.render()),
            ArgsError::Config(m) => f.write_str(m),
        }
    }
}

/// Parses the command line, with the defaults of an optional config file (see `Cli::config`).
pub fn parse_args(mut args: Vec<std::ffi::OsString>) -> Result<Cli, ArgsError> {
    use clap::{CommandFactory, FromArgMatches};
    // No subcommand means `serve`. The global `--config` takes a value that is no subcommand.
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    let mut first_word = None;
    while let Some(w) = words.next() {
        if w == "--config" {
            words.next();
        } else if !w.starts_with('-') {
            first_word = Some(w);
            break;
        }
    }
    let has_subcommand = first_word.is_some_and(|w| matches!(&*w, "serve" | "emulator" | "doctor" | "help"));
    if !has_subcommand
        && !args
            .iter()
            .any(|a| a == "--help" || a == "-h" || a == "--version" || a == "-V")
    {
        args.insert(1.min(args.len()), "serve".into());
    }
    let first = Cli::try_parse_from(&args).map_err(ArgsError::Clap)?;
    let Some(path) = &first.config else { return Ok(first) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ArgsError::Config(format!("cannot read the config file {}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ArgsError::Config(format!("{} is not valid TOML: {e}", path.display())))?;
    let mut cmd = Cli::command();
    let mut serve_keys = toml::Table::new();
    for (k, v) in table {
        match (k.as_str(), v) {
            ("emulator", toml::Value::Table(t)) => cmd = apply_defaults(cmd, "emulator", &t, path)?,
            (_, v) => {
                serve_keys.insert(k, v);
            }
        }
    }
    cmd = apply_defaults(cmd, "serve", &serve_keys, path)?;
    cmd = apply_shared_defaults(cmd, "doctor", &serve_keys, path)?;
    // The command line alone parsed, so what fails now is a value from the file.
    let from_file = |e: clap::Error| {
        let rendered = e.render().to_string();
        let reason = rendered.trim_start_matches("error: ").trim_end();
        ArgsError::Config(format!("in the config file {}: {reason}", path.display()))
    };
    let matches = cmd.try_get_matches_from(&args).map_err(from_file)?;
    Cli::from_arg_matches(&matches).map_err(from_file)
}

/// Sets the file's values as the defaults of a subcommand's flags, refusing unknown keys.
fn apply_defaults(
    cmd: clap::Command,
    sub: &str,
    table: &toml::Table,
    path: &std::path::Path,
) -> Result<clap::Command, ArgsError> {
    let sc = cmd.find_subcommand(sub).expect("known subcommand").clone();
    let mut updates = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = sc
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
        else {
            let known: Vec<String> = sc
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .filter(|l| l != "config" && l != "help")
                .collect();
            return Err(ArgsError::Config(format!(
                "unknown setting `{key}` in {} for `{sub}`; the settings are: {}",
                path.display(),
                known.join(", ")
            )));
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        updates.push((arg.get_id().clone(), text));
    }
    Ok(cmd.mut_subcommand(sub, move |mut sc| {
        for (id, text) in updates {
            sc = sc.mut_arg(id, |a| a.default_value(text));
        }
        sc
    }))
}

/// `serve`'s settings that `sub` shares (the upstream and its auth, ...) become its defaults too;
/// the others are `serve`'s alone and skipped (`apply_defaults` has refused unknown keys).
fn apply_shared_defaults(
    cmd: clap::Command,
    sub: &str,
    table: &toml::Table,
    path: &std::path::Path,
) -> Result<clap::Command, ArgsError> {
    let sc = cmd.find_subcommand(sub).expect("known subcommand");
    let shared: toml::Table = table
        .iter()
        .filter(|(k, _)| {
            let long = k.replace('_', "-");
            sc.get_arguments().any(|a| a.get_long() == Some(long.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    apply_defaults(cmd, sub, &shared, path)
}

// Parsed once at start: the size of the larger variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default). Without --upstream it starts the embedded emulator with demo
    /// data and fronts it.
    Serve(ServeArgs),
    /// Run only the embedded Dataverse emulator.
    Emulator(EmulatorArgs),
    /// Check a real environment before running the gateway against it: one line per check
    /// (pass, fail or unknown, and the setting to use instead), then a verdict. Exit code 0 when
    /// the gateway can work against the service as configured, 1 when it cannot, 2 for a
    /// command-line or settings error.
    Doctor(crate::doctor::DoctorArgs),
}

/// Reads a duration such as `30s`, `500ms` or `2m`.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration such as 30s or 500ms: {e}"))
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address the gateway listens on.
    #[arg(long, env = "ATS_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// OData service root of the upstream, such as https://org.crm.dynamics.com/api/data/v9.2/.
    /// Without it the gateway starts the embedded emulator with demo data and fronts it.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_URL")]
    pub upstream: Option<String>,
    /// Address of the embedded emulator when no upstream is given.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_LISTEN", default_value = "127.0.0.1:7070")]
    pub emulator_listen: SocketAddr,
    /// Page size of list fields without `first`.
    #[arg(long, env = "ATS_GATEWAY_DEFAULT_PAGE_SIZE", default_value_t = 100)]
    pub default_page_size: usize,
    /// Largest `first` a client may ask for.
    #[arg(long, env = "ATS_GATEWAY_MAX_PAGE_SIZE", default_value_t = 500)]
    pub max_page_size: usize,
    /// How long reference data (rating levels, certificate and screening types) stays cached.
    #[arg(long, env = "ATS_GATEWAY_CACHE_TTL", default_value = "5m", value_parser = duration)]
    pub cache_ttl: std::time::Duration,
    /// How many reference-data pages the cache holds.
    #[arg(long, env = "ATS_GATEWAY_CACHE_CAPACITY", default_value_t = 10_000)]
    pub cache_capacity: u64,
    /// How long relation loaders wait to batch the keys of one level.
    #[arg(long, env = "ATS_GATEWAY_BATCH_DELAY", default_value = "3ms", value_parser = duration)]
    pub batch_delay: std::time::Duration,
    /// How often a subscription's watcher reads its set upstream (at least 5s, unless
    /// `--watch-interval-below-minimum`).
    #[arg(long, env = "ATS_GATEWAY_WATCH_INTERVAL", default_value = "30s", value_parser = duration)]
    pub watch_interval: std::time::Duration,
    /// Accept a `--watch-interval` under 5s: for tests against the emulator, never against a
    /// real upstream (every watcher costs one request per interval of the caller's budget).
    #[arg(long, env = "ATS_GATEWAY_WATCH_INTERVAL_BELOW_MINIMUM")]
    pub watch_interval_below_minimum: bool,
    /// The most records one subscription may watch; a filter matching more is refused.
    #[arg(long, env = "ATS_GATEWAY_WATCH_MAX_RECORDS", default_value_t = 50_000)]
    pub watch_max_records: usize,
    /// Fetch a list's first-level relations with `$expand` in the list's own request (one upstream
    /// request instead of 1 + one per relation): `auto` decides at start, pushing down the
    /// relations whose navigation properties the upstream's `$metadata` has, to-many ones only if
    /// one probe collection `$expand` works (Dataverse's virtual tables are not documented to
    /// support it); `on` (or `true`), `off` (or `false`).
    #[arg(long, env = "ATS_GATEWAY_EXPAND_PUSHDOWN", value_enum, default_value = "auto")]
    pub expand_pushdown: crate::graphql::context::ExpandPushdown,
    /// The upstream's query language: `dataverse` joins relations with
    /// `Microsoft.Dynamics.CRM.In`; `odata4` (plain OData v4) with `or` chains of `eq`, longer, so
    /// a join may take more requests; `auto` asks the upstream once at start (one request with a
    /// `Microsoft.Dynamics.CRM.In` filter: accepted → dataverse, 400 → odata4, anything else →
    /// dataverse with a warning).
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_DIALECT", value_enum, default_value = "auto")]
    pub upstream_dialect: UpstreamDialect,
    /// How upstream reads are limited: `maxpagesize` sends `Prefer: odata.maxpagesize` and
    /// follows the upstream's next links (Dataverse); `top` sends `$top` (and `$skip`, or follows
    /// the service's own next links) for a service that ignores the preference; `auto` asks the
    /// upstream once at start (one request with a page size of 1: honoured → maxpagesize, more
    /// rows → top, no answer → maxpagesize with a warning).
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_PAGING", value_enum, default_value = "auto")]
    pub upstream_paging: UpstreamPaging,
    /// Timeout of one upstream request (each attempt), from sending to the end of the body.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub upstream_timeout: std::time::Duration,
    /// Timeout of opening a connection to the upstream.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_CONNECT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub upstream_connect_timeout: std::time::Duration,
    /// Retries of an upstream read after a 5xx, a failed connection, a time-out or a cut-off
    /// response (429s retry as long as the deadline allows). Writes are retried only under an
    /// idempotency key, and only when the upstream certainly did nothing.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_MAX_RETRIES", default_value_t = 3)]
    pub upstream_max_retries: u32,
    /// First retry backoff; it doubles per retry, with jitter.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_BASE_BACKOFF", default_value = "200ms", value_parser = duration)]
    pub upstream_base_backoff: std::time::Duration,
    /// Longest retry backoff (a 429's Retry-After is honoured whatever its length, within the
    /// deadline).
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_MAX_BACKOFF", default_value = "5s", value_parser = duration)]
    pub upstream_max_backoff: std::time::Duration,
    /// Upstream requests in flight at once per caller identity; more wait in a queue. HR's
    /// published limit is 25 concurrent requests per user (Dataverse's 52): 8 leaves room for
    /// three replicas under one application user.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_CONCURRENCY", default_value_t = 8)]
    pub upstream_concurrency: usize,
    /// Upstream requests in flight at once per upstream identity over all replicas, such as 24
    /// (under HR's 25), on top of --upstream-concurrency. Needs --redis-url: each slot is a lease
    /// in Redis that a replica which dies gives back when it ends; costs two Redis round trips
    /// per upstream request. Without it (or while Redis is down) each replica counts its own.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_CONCURRENCY_TOTAL")]
    pub upstream_concurrency_total: Option<usize>,
    /// Upstream calls in a row that must fail (5xx, no connection, time-out), after their
    /// retries, to open the circuit breaker: then calls fail at once.
    #[arg(long, env = "ATS_GATEWAY_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,
    /// How long an open circuit breaker fails calls at once before one probe call tests the
    /// upstream again.
    #[arg(long, env = "ATS_GATEWAY_BREAKER_COOLDOWN", default_value = "10s", value_parser = duration)]
    pub breaker_cooldown: std::time::Duration,
    /// How submitCandidateToHire writes: one $batch change set, one deep insert, or flat POSTs
    /// with compensating deletes (for upstreams that refuse change sets on these tables).
    #[arg(long, env = "ATS_GATEWAY_SUBMISSION_STRATEGY", value_enum, default_value = "batch")]
    pub submission_strategy: crate::graphql::mutations::write::Strategy,
    /// SQLite file for the gateway's own state (idempotency keys), or `:memory:`.
    #[arg(long, env = "ATS_GATEWAY_STATE_DB", default_value = "ats-gateway-state.db")]
    pub state_db: String,
    /// How long an idempotency key is kept after its first use: a retry with the key within it
    /// replays the first result; after it the key is new (expired keys are deleted periodically).
    #[arg(long, env = "ATS_GATEWAY_IDEMPOTENCY_TTL", default_value = "24h", value_parser = duration)]
    pub idempotency_ttl: std::time::Duration,
    /// Redis URL (`redis://[:password@]host:port[/db]`) where replicas share their state:
    /// idempotency keys, so that a retry on another replica replays instead of writing twice,
    /// and persisted queries (APQ).
    /// Without it keys stay in --state-db and the gateway needs no Redis. Redis may be down at
    /// start; while it is, keyed submissions are refused (STATE_UNAVAILABLE) and reads go on.
    /// The password is never logged.
    #[arg(long, env = "ATS_GATEWAY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<crate::secret::Secret>,
    /// Accept `http://` webhook URLs (deliveries then travel unencrypted): for tests and
    /// receivers inside a trusted network.
    #[arg(long, env = "ATS_GATEWAY_WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub webhook_allow_http: bool,
    /// Accept webhook URLs whose address is loopback, private, link-local, unique-local or
    /// otherwise not public (refused by default: a webhook is otherwise a server-side request
    /// forgery hole into the gateway's network).
    #[arg(long, env = "ATS_GATEWAY_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub webhook_allow_private: bool,
    /// Timeout of one webhook delivery attempt, from connecting to the answer's status.
    #[arg(long, env = "ATS_GATEWAY_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub webhook_timeout: std::time::Duration,
    /// For tests: what the 5 s step of the webhook retry schedule (immediately, 5 s, 5 min,
    /// 30 min, 2 h, 5 h, 10 h, 10 h) becomes, every step scaled alike.
    #[arg(long, env = "ATS_GATEWAY_WEBHOOK_RETRY_BASE", default_value = "5s", value_parser = duration)]
    pub webhook_retry_base: std::time::Duration,
    /// Delivery attempts kept in each webhook's log (`webhookSubscriptions { deliveries }`).
    #[arg(long, env = "ATS_GATEWAY_WEBHOOK_LOG_SIZE", default_value_t = 50)]
    pub webhook_log_size: usize,
    /// Deepest query accepted, in nested fields; introspection fields do not count.
    #[arg(long, env = "ATS_GATEWAY_MAX_DEPTH", default_value_t = 12)]
    pub max_depth: usize,
    /// Highest query cost accepted (each field 1, times the items of the lists above it).
    #[arg(long, env = "ATS_GATEWAY_MAX_COST", default_value_t = 100_000)]
    pub max_cost: u64,
    /// Most aliases one query may use.
    #[arg(long, env = "ATS_GATEWAY_MAX_ALIASES", default_value_t = 30)]
    pub max_aliases: usize,
    /// Longest query text accepted, in characters.
    #[arg(long, env = "ATS_GATEWAY_MAX_QUERY_CHARS", default_value_t = 65_536)]
    pub max_query_chars: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ATS_GATEWAY_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,
    /// Size of the automatic-persisted-query cache, in bytes of query text (0: APQ off).
    #[arg(long, env = "ATS_GATEWAY_APQ_CACHE_BYTES", default_value_t = 16_777_216)]
    pub apq_cache_bytes: u64,
    /// Deadline of one GraphQL operation.
    #[arg(long, env = "ATS_GATEWAY_DEADLINE", default_value = "30s", value_parser = duration)]
    pub deadline: std::time::Duration,
    /// Whether the schema can be introspected (the playground needs it).
    #[arg(long, env = "ATS_GATEWAY_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspection: bool,
    /// Serve the schema as an Apollo Federation v2 subgraph: `@key`s on the entity types (`id`,
    /// and the readable keys), `_service { sdl }` and `_entities` for a router.
    #[arg(long, env = "ATS_GATEWAY_FEDERATION")]
    pub federation: bool,
    /// Origins allowed to call the gateway from a browser (CORS), comma-separated; `*` for any.
    /// Empty: same origin only.
    #[arg(long, env = "ATS_GATEWAY_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,
    /// A file holding the key (at least 32 bytes; a final newline is ignored) that signs list
    /// cursors, so that replicas sharing it accept each other's cursors. Without it each process
    /// signs with a random key of its own.
    #[arg(long, env = "ATS_GATEWAY_CURSOR_KEY_FILE")]
    pub cursor_key_file: Option<PathBuf>,
    /// Log lines as text or JSON.
    #[arg(long, env = "ATS_GATEWAY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
    /// Serve explain (`"extensions": {"explain": true}` or `X-ATS-Explain: true`: the upstream
    /// requests an operation made, in `extensions.explain`) with --upstream; always on with the
    /// embedded emulator.
    #[arg(long, env = "ATS_GATEWAY_EXPLAIN")]
    pub explain: bool,
    /// Show literal values (filter values, keys) in explain instead of `…`.
    #[arg(long, env = "ATS_GATEWAY_EXPLAIN_VALUES")]
    pub explain_values: bool,
    /// API key names (of --api-key) that may ask for explain, comma-separated. With neither this
    /// nor --explain-roles, every caller may.
    #[arg(long, env = "ATS_GATEWAY_EXPLAIN_API_KEYS", value_delimiter = ',')]
    pub explain_api_keys: Vec<String>,
    /// JWT roles (the `roles` claim) that may ask for explain, comma-separated.
    #[arg(long, env = "ATS_GATEWAY_EXPLAIN_ROLES", value_delimiter = ',')]
    pub explain_roles: Vec<String>,
    /// Authentication toward the upstream and of callers.
    #[command(flatten)]
    pub auth: auth::AuthArgs,
    /// The upstream budget: the read cache per upstream identity.
    #[command(flatten)]
    pub budget: budget::BudgetArgs,
    /// OpenTelemetry export (traces and metrics over OTLP).
    #[command(flatten)]
    pub otel: crate::telemetry::otel::OtelArgs,
}

/// `--upstream-paging`: a way of paging, or `auto` (probe the upstream at start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamPaging {
    #[default]
    Auto,
    Maxpagesize,
    Top,
}

impl UpstreamPaging {
    /// The paging to start with, and how it is decided.
    fn read_settings(self) -> (crate::odata::calls::Paging, crate::graphql::context::DialectSource) {
        use crate::graphql::context::DialectSource;
        use crate::odata::calls::Paging;
        match self {
            UpstreamPaging::Auto => (Paging::Maxpagesize, DialectSource::Auto),
            UpstreamPaging::Maxpagesize => (Paging::Maxpagesize, DialectSource::Configured),
            UpstreamPaging::Top => (Paging::Top, DialectSource::Configured),
        }
    }
}

/// `--upstream-dialect`: a dialect, or `auto` (probe the upstream at start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamDialect {
    #[default]
    Auto,
    Dataverse,
    Odata4,
}

impl ServeArgs {
    /// `--watch-interval` (at least [`crate::graphql::watch::MIN_INTERVAL`] without the escape
    /// hatch) and `--watch-max-records`.
    fn watch_config(&self) -> Result<crate::graphql::watch::WatchConfig, String> {
        let min = crate::graphql::watch::MIN_INTERVAL;
        if self.watch_interval < min && !self.watch_interval_below_minimum {
            return Err(format!(
                "--watch-interval must be at least {}s (each watcher reads its set upstream once per interval); --watch-interval-below-minimum allows less, for tests against the emulator",
                min.as_secs()
            ));
        }
        if self.watch_interval.is_zero() || self.watch_max_records == 0 {
            return Err("--watch-interval and --watch-max-records must be more than 0".into());
        }
        Ok(crate::graphql::watch::WatchConfig {
            interval: self.watch_interval,
            max_records: self.watch_max_records,
            ..Default::default()
        })
    }

    /// The read path's settings (`--default-page-size` … `--watch-*`).
    fn read_config(&self) -> Result<crate::graphql::context::ReadConfig, String> {
        Ok(crate::graphql::context::ReadConfig {
            default_first: self.default_page_size,
            max_first: self.max_page_size,
            cache_ttl: self.cache_ttl,
            cache_capacity: self.cache_capacity,
            batch_delay_ms: self.batch_delay.as_millis() as u64,
            expand_pushdown: self.expand_pushdown,
            read_cache: self.budget.read_cache(),
            coalesce_reads: self.budget.read_coalescing,
            dialect: match self.upstream_dialect {
                UpstreamDialect::Auto | UpstreamDialect::Dataverse => crate::odata::Dialect::Dataverse,
                UpstreamDialect::Odata4 => crate::odata::Dialect::Odata4,
            },
            dialect_source: match self.upstream_dialect {
                UpstreamDialect::Auto => crate::graphql::context::DialectSource::Auto,
                _ => crate::graphql::context::DialectSource::Configured,
            },
            paging: self.upstream_paging.read_settings().0,
            paging_source: self.upstream_paging.read_settings().1,
            watch: self.watch_config()?,
            ..Default::default()
        })
    }

    /// The gateway's settings; `emulator` as for [`auth::AuthArgs::upstream_auth`].
    pub fn gateway_config(
        &self,
        upstream: String,
        emulator: Option<SocketAddr>,
    ) -> Result<crate::server::GatewayConfig, String> {
        Ok(crate::server::GatewayConfig {
            upstream_auth: self.auth.upstream_auth(&upstream, emulator)?,
            caller_auth: self.auth.caller_auth()?,
            upstream,
            read: self.read_config()?,
            limits: crate::graphql::SchemaLimits {
                depth: self.max_depth,
                introspection: self.introspection,
                federation: self.federation,
                operation: crate::graphql::limits::Limits {
                    max_document_chars: self.max_query_chars,
                    max_aliases: self.max_aliases,
                    max_cost: self.max_cost,
                    default_first: self.default_page_size as u64,
                    deadline: self.deadline,
                    max_upstream_requests: self.budget.max_upstream_requests_per_operation,
                    ..Default::default()
                },
            },
            upstream_timeout: self.upstream_timeout,
            upstream_connect_timeout: self.upstream_connect_timeout,
            resilience: crate::odata::ResilienceConfig {
                max_retries: self.upstream_max_retries,
                base_backoff: self.upstream_base_backoff,
                max_backoff: self.upstream_max_backoff,
                concurrency_per_identity: self.upstream_concurrency.max(1),
                breaker_threshold: self.breaker_threshold.max(1),
                breaker_cooldown: self.breaker_cooldown,
                rate_limit: self.budget.upstream_rate_limit,
                shared_concurrency: self.upstream_concurrency_total.map(|n| n.max(1)),
            },
            write: crate::graphql::context::WriteConfig {
                strategy: self.submission_strategy,
                state_db: (self.state_db != ":memory:").then(|| std::path::PathBuf::from(&self.state_db)),
                idempotency_ttl: self.idempotency_ttl,
            },
            redis_url: self.redis_url.clone(),
            webhooks: self.webhook_config(),
            http: crate::server::HttpConfig {
                cors_origins: self.cors_allow_origin.clone(),
                max_body_bytes: self.max_body_bytes,
                apq_cache_bytes: self.apq_cache_bytes,
                explain: crate::graphql::explain::ExplainPolicy {
                    enabled: emulator.is_some() || self.explain,
                    values: self.explain_values,
                    api_keys: self.explain_api_keys.clone(),
                    roles: self.explain_roles.clone(),
                },
            },
            cursor_key: match &self.cursor_key_file {
                Some(path) => Some(crate::graphql::cursor::CursorKey::from_file(path)?),
                None => None,
            },
        })
    }
}

impl ServeArgs {
    /// The `--webhook-*` settings.
    fn webhook_config(&self) -> crate::graphql::webhooks::WebhookConfig {
        use crate::graphql::webhooks::{backoff::Backoff, guard::Policy, WebhookConfig};
        WebhookConfig {
            policy: Policy {
                allow_http: self.webhook_allow_http,
                allow_private: self.webhook_allow_private,
            },
            backoff: Backoff {
                base: self.webhook_retry_base,
            },
            timeout: self.webhook_timeout,
            log_size: self.webhook_log_size.max(1),
            ..Default::default()
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct EmulatorArgs {
    /// Address the emulator listens on.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// SQLite database file, or `:memory:`.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_DB", default_value = ":memory:")]
    pub db: String,
    /// Data to start with (only applied to an empty database).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_SEED", value_enum, default_value = "demo")]
    pub seed: Seed,
    /// Number of recruiting requests in the demo seed; candidates are 2.5 times as many.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_SEED_SIZE", default_value_t = 200)]
    pub seed_size: usize,
    /// Service protection: requests allowed per caller per window (0: unlimited).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_THROTTLE_REQUESTS", default_value_t = 0)]
    pub throttle_requests: u32,
    /// Service protection window, in seconds.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_THROTTLE_WINDOW_SECONDS", default_value_t = 300)]
    pub throttle_window_seconds: u64,
    /// Latency added to every OData request, in milliseconds.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of requests answered with 503 (0.0–1.0).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_ERROR_RATE", default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests whose connection is dropped before they are processed (0.0–1.0).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_DROP_RATE", default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Share of requests processed (writes committed) whose response is then lost (0.0–1.0).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_LOST_RESPONSE_RATE", default_value_t = 0.0)]
    pub lost_response_rate: f64,
    /// Require an `Authorization: Bearer` token from the emulator's own token endpoint
    /// (`/{tenant}/oauth2/v2.0/token`) on the OData routes, as Dataverse does. The token endpoint
    /// knows one application, `ats-gateway` with secret `emulator-only-secret`, and the users
    /// alice, bob and carol with password `demo`.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_REQUIRE_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_auth: bool,
    /// Lifetime of the tokens the emulator issues.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_TOKEN_LIFETIME", default_value = "1h", value_parser = duration)]
    pub token_lifetime: std::time::Duration,
    /// Answer 404 to `GlobalOptionSetDefinitions`, as an OData service without Dataverse's
    /// metadata entity sets does (the gateway then serves the documented option-set integers).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_NO_OPTION_SET_DEFINITIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_option_set_definitions: bool,
    /// The OData flavour served: `dataverse`, or `odata4` (plain OData v4: Dataverse functions such
    /// as `Microsoft.Dynamics.CRM.In` in `$filter` are a 400; implies --no-option-set-definitions).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_DIALECT", value_enum, default_value = "dataverse")]
    pub dialect: emulator::dialect::Dialect,
    /// Refuse `$expand` of collection-valued navigation properties with 400, as some virtual-table
    /// providers may.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_NO_EXPAND", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_expand: bool,
    /// Keep the parts of a failed change set before the failing one (each part its own write),
    /// as an upstream that does not roll back a failed change set would.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_NON_ATOMIC_CHANGE_SETS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub non_atomic_change_sets: bool,
    /// Refuse every `$batch` that holds a change set (501, an OData error), as a service without
    /// change-set support does; batches of GETs still work.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_NO_CHANGE_SETS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_change_sets: bool,
    /// Ignore `Prefer: odata.maxpagesize`, as a plain OData service may: collections come whole
    /// (or in pages of --server-page-size), `$top` limits them, and no `Preference-Applied`
    /// reports the page size.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_IGNORE_MAXPAGESIZE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub ignore_maxpagesize: bool,
    /// With --ignore-maxpagesize: serve collections in pages of this many rows, with the
    /// emulator's own (strict) `nextLink`s.
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_SERVER_PAGE_SIZE", requires = "ignore_maxpagesize", value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub server_page_size: Option<u32>,
    /// Property spellings of the upstream played (`--property-spelling`, `--omit-property`,
    /// `--extra-property`, `--omit-navigation`, `--metadata-fails`).
    #[command(flatten)]
    pub spelling: emulator::spelling::SpellingSettings,
}

impl EmulatorArgs {
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig {
            db: (self.db != ":memory:").then(|| PathBuf::from(&self.db)),
            seed: self.seed,
            seed_size: self.seed_size,
            progress: true,
            option_set_definitions: !self.no_option_set_definitions,
            dialect: self.dialect,
            collection_expand: !self.no_expand,
            atomic_change_sets: !self.non_atomic_change_sets,
            change_sets: !self.no_change_sets,
            ignore_maxpagesize: self.ignore_maxpagesize,
            server_page_size: self.server_page_size.map(|n| n as usize),
            spelling: self.spelling.clone(),
            auth: emulator::auth::AuthConfig {
                required: self.require_auth,
                token_lifetime: self.token_lifetime,
                ..Default::default()
            },
            faults: Faults {
                latency_ms: self.latency_ms,
                error_rate: self.error_rate,
                error_status: None,
                drop_rate: self.drop_rate,
                lost_response_rate: self.lost_response_rate,
                garbage: None,
                throttle: (self.throttle_requests > 0).then_some(Throttle {
                    requests: self.throttle_requests,
                    window_seconds: self.throttle_window_seconds,
                }),
                omit_entity_id: None,
            },
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Entry point of the binary.
pub async fn main() -> ExitCode {
    let cli = match parse_args(std::env::args_os().collect()) {
        Ok(c) => c,
        // Help and version go to stdout with success, usage errors to stderr with 2: clap's rules.
        Err(ArgsError::Clap(e)) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(ArgsError::Config(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let Some(command) = cli.command else {
        eprintln!("error: no command");
        return ExitCode::from(2);
    };
    let format = match &command {
        Command::Serve(a) => a.log_format,
        Command::Emulator(_) => crate::telemetry::LogFormat::Text,
        // Its report is its output; it sets up its own (quiet) logging.
        Command::Doctor(args) => return crate::doctor::main(args).await,
    };
    let otel = match &command {
        Command::Serve(a) => a.otel.settings(),
        _ => Ok(None),
    };
    let telemetry = otel.and_then(|o| crate::telemetry::init_telemetry(format, o.as_ref()));
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Emulator(args) => run_emulator(args).await,
        Command::Serve(args) => run_serve(args).await,
        Command::Doctor(_) => unreachable!("doctor returned above"),
    };
    // After the graceful shutdown: the spans and metrics still queued leave now.
    if let Some(t) = telemetry {
        t.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the process stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Emulator(#[from] emulator::StartError),
    #[error(transparent)]
    Gateway(#[from] crate::server::StartError),
    #[error("{0}")]
    Settings(String),
}

async fn run_emulator(args: EmulatorArgs) -> Result<(), RunError> {
    let running = emulator::start(args.listen, &args.config()).await?;
    println!("Dataverse emulator (OData v4) at {}", running.service_root());
    println!("  $metadata:        {}$metadata", running.service_root());
    println!("  request counters: http://{}/_emulator/stats", running.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn run_serve(args: ServeArgs) -> Result<(), RunError> {
    // Settings errors first, before the embedded emulator seeds its data.
    let (root, emulator_addr) = match &args.upstream {
        Some(url) => (url.clone(), None),
        None => (format!("http://{}/", args.emulator_listen), Some(args.emulator_listen)),
    };
    args.gateway_config(root, emulator_addr).map_err(RunError::Settings)?;
    let (emulator, upstream) = match &args.upstream {
        Some(url) => (None, url.clone()),
        None => {
            let config = EmulatorConfig {
                progress: true,
                auth: emulator::auth::AuthConfig {
                    required: args.auth.upstream_auth != auth::UpstreamAuthMode::None,
                    ..Default::default()
                },
                ..EmulatorConfig::default()
            };
            let running = emulator::start(args.emulator_listen, &config).await?;
            let root = running.service_root();
            (Some(running), root)
        }
    };
    let config = args
        .gateway_config(upstream.clone(), emulator.as_ref().map(|e| e.addr))
        .map_err(RunError::Settings)?;
    let gateway = crate::server::start(args.listen, &config).await?;
    println!("ats-gateway is up.");
    println!("  GraphQL endpoint:  {}", gateway.endpoint());
    println!("  playground:        http://{}/", gateway.addr);
    println!(
        "  upstream (OData):  {upstream}{}",
        if emulator.is_some() {
            "  (embedded emulator with demo data)"
        } else {
            ""
        }
    );
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    gateway.stop().await;
    if let Some(e) = emulator {
        e.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod paging_flag_tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_paging_flags_parse() {
        let parsed = |args: &[&str]| Cli::try_parse_from(std::iter::once("ats-gateway").chain(args.iter().copied()));
        let Ok(Cli {
            command: Some(Command::Emulator(e)),
            ..
        }) = parsed(&["emulator", "--ignore-maxpagesize", "--server-page-size", "7"])
        else {
            panic!("the emulator's paging flags parse");
        };
        let config = e.config();
        assert!(config.ignore_maxpagesize);
        assert_eq!(config.server_page_size, Some(7));
        assert!(
            parsed(&["emulator", "--server-page-size", "7"]).is_err(),
            "a server page size needs --ignore-maxpagesize"
        );
        assert!(parsed(&["emulator", "--ignore-maxpagesize", "--server-page-size", "0"]).is_err());
        use crate::graphql::context::DialectSource;
        use crate::odata::calls::Paging;
        assert_eq!(
            UpstreamPaging::Auto.read_settings(),
            (Paging::Maxpagesize, DialectSource::Auto)
        );
        assert_eq!(
            UpstreamPaging::Top.read_settings(),
            (Paging::Top, DialectSource::Configured)
        );
        let Ok(Cli {
            command: Some(Command::Serve(s)),
            ..
        }) = parsed(&["serve", "--upstream-paging", "top"])
        else {
            panic!("--upstream-paging parses");
        };
        assert_eq!(s.upstream_paging, UpstreamPaging::Top);
    }
}

#[cfg(test)]
mod budget_flag_tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_budget_flags_parse_into_the_settings() {
        let parsed = |args: &[&str]| Cli::try_parse_from(std::iter::once("ats-gateway").chain(args.iter().copied()));
        let Ok(Cli {
            command: Some(Command::Serve(s)),
            ..
        }) = parsed(&[
            "serve",
            "--upstream-rate-limit",
            "6000/5m",
            "--max-upstream-requests-per-operation",
            "20",
        ])
        else {
            panic!("the budget flags parse");
        };
        let limit = s.budget.upstream_rate_limit.expect("a limit");
        assert_eq!(
            (limit.requests, limit.window),
            (6000, std::time::Duration::from_secs(300))
        );
        assert_eq!(s.budget.max_upstream_requests_per_operation, 20);
        assert!(parsed(&["serve", "--upstream-rate-limit", "6000"]).is_err());
        let Ok(Cli {
            command: Some(Command::Serve(s)),
            ..
        }) = parsed(&["serve"])
        else {
            panic!("serve parses");
        };
        assert_eq!(s.budget.upstream_rate_limit, None, "no limit by default");
        assert_eq!(s.budget.max_upstream_requests_per_operation, 50);
    }
}

#[cfg(test)]
mod redis_flag_tests {
    use super::*;

    #[test]
    fn the_redis_url_comes_from_the_file_and_never_shows() {
        let file = std::env::temp_dir().join(format!("ats-redis-flag-{}.toml", std::process::id()));
        std::fs::write(&file, "redis-url = \"redis://:s3cret@cache.internal:6379/0\"\n").unwrap();
        let cli = parse_args(vec!["ats-gateway".into(), "--config".into(), file.clone().into()]);
        let _ = std::fs::remove_file(&file);
        let Ok(Cli {
            command: Some(Command::Serve(s)),
            ..
        }) = cli
        else {
            panic!("serve parses with redis-url from the file");
        };
        let config = s.gateway_config("http://127.0.0.1:1/".into(), None).unwrap();
        let url = config.redis_url.as_ref().expect("a Redis URL");
        assert_eq!(url.expose(), "redis://:s3cret@cache.internal:6379/0");
        assert!(!format!("{s:?} {config:?}").contains("s3cret"));
        let Ok(Cli {
            command: Some(Command::Serve(s)),
            ..
        }) = parse_args(vec!["ats-gateway".into()])
        else {
            panic!("serve parses");
        };
        assert!(s.redis_url.is_none(), "no Redis by default");
    }
}
