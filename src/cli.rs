//! The command line: `ats-gateway [serve]` and `ats-gateway emulator`, each flag with an
//! `ATS_GATEWAY_*` environment twin.

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
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default). Without --upstream it starts the embedded emulator with demo
    /// data and fronts it.
    Serve(ServeArgs),
    /// Run only the embedded Dataverse emulator.
    Emulator(EmulatorArgs),
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
    /// How long reference data (rating levels, certificate and screening types) stays cached, in
    /// seconds.
    #[arg(long, env = "ATS_GATEWAY_CACHE_TTL_SECONDS", default_value_t = 300)]
    pub cache_ttl_seconds: u64,
    /// How many reference-data pages the cache holds.
    #[arg(long, env = "ATS_GATEWAY_CACHE_CAPACITY", default_value_t = 10_000)]
    pub cache_capacity: u64,
    /// How long relation loaders wait to batch the keys of one level, in milliseconds.
    #[arg(long, env = "ATS_GATEWAY_BATCH_DELAY_MS", default_value_t = 3)]
    pub batch_delay_ms: u64,
    /// Timeout of one upstream request, in seconds.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_TIMEOUT_SECONDS", default_value_t = 60)]
    pub upstream_timeout_seconds: u64,
    /// How submitCandidateToHire writes: one $batch change set, one deep insert, or flat POSTs
    /// with compensating deletes (for upstreams that refuse change sets on these tables).
    #[arg(long, env = "ATS_GATEWAY_SUBMISSION_STRATEGY", value_enum, default_value = "batch")]
    pub submission_strategy: crate::graphql::mutations::submit::Strategy,
    /// SQLite file for the gateway's own state (idempotency keys), or `:memory:`.
    #[arg(long, env = "ATS_GATEWAY_STATE_DB", default_value = "ats-gateway-state.db")]
    pub state_db: String,
    /// Deepest query accepted.
    #[arg(long, env = "ATS_GATEWAY_MAX_DEPTH", default_value_t = 12)]
    pub max_depth: usize,
}

impl ServeArgs {
    pub fn gateway_config(&self, upstream: String) -> crate::server::GatewayConfig {
        crate::server::GatewayConfig {
            upstream,
            read: crate::graphql::context::ReadConfig {
                default_first: self.default_page_size,
                max_first: self.max_page_size,
                cache_ttl: std::time::Duration::from_secs(self.cache_ttl_seconds),
                cache_capacity: self.cache_capacity,
                batch_delay_ms: self.batch_delay_ms,
            },
            limits: crate::graphql::SchemaLimits {
                depth: self.max_depth,
                ..Default::default()
            },
            upstream_timeout: std::time::Duration::from_secs(self.upstream_timeout_seconds),
            write: crate::graphql::context::WriteConfig {
                strategy: self.submission_strategy,
                state_db: (self.state_db != ":memory:").then(|| std::path::PathBuf::from(&self.state_db)),
            },
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
    /// Share of requests whose connection is dropped (0.0–1.0).
    #[arg(long, env = "ATS_GATEWAY_EMULATOR_DROP_RATE", default_value_t = 0.0)]
    pub drop_rate: f64,
}

impl EmulatorArgs {
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig {
            db: (self.db != ":memory:").then(|| PathBuf::from(&self.db)),
            seed: self.seed,
            seed_size: self.seed_size,
            progress: true,
            faults: Faults {
                latency_ms: self.latency_ms,
                error_rate: self.error_rate,
                error_status: None,
                drop_rate: self.drop_rate,
                throttle: (self.throttle_requests > 0).then_some(Throttle {
                    requests: self.throttle_requests,
                    window_seconds: self.throttle_window_seconds,
                }),
            },
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATS_GATEWAY_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
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
    init_tracing();
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        None => match Cli::parse_from(["ats-gateway", "serve"]).command {
            Some(c) => c,
            None => unreachable!("serve parses"),
        },
    };
    let result = match command {
        Command::Emulator(args) => run_emulator(args).await,
        Command::Serve(args) => run_serve(args).await,
    };
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
    let (emulator, upstream) = match &args.upstream {
        Some(url) => (None, url.clone()),
        None => {
            let config = EmulatorConfig {
                progress: true,
                ..EmulatorConfig::default()
            };
            let running = emulator::start(args.emulator_listen, &config).await?;
            let root = running.service_root();
            (Some(running), root)
        }
    };
    let gateway = crate::server::start(args.listen, &args.gateway_config(upstream.clone())).await?;
    println!("ats-gateway is up.");
    println!("  GraphQL endpoint:  {}", gateway.endpoint());
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
