//! The embedded Dataverse emulator: a local OData v4 service for the 18 ATS entity sets over
//! SQLite, behaving as the Dataverse Web API does for HR virtual tables.
//!
//! - `store`: SQLite tables derived from the model, value conversion, sequences.
//! - `query`: `$filter` / `$orderby` / `$select` / `$expand` parsing and compilation to SQL.
//! - `read`: collection and record reads, expansion, paging.
//! - `write`: create (deep insert, `@odata.bind`, implicit person), update, delete.
//! - `metadata`: service document, CSDL `$metadata`, option-set definitions.
//! - `service`: dispatch of one OData request; `batch_exec`: `$batch` and change sets.
//! - `auth`: the token endpoint (Entra's grants) and bearer checking.
//! - `faults`: service protection (429), injected latency / 5xx / drops, request counters.
//! - `spelling`: an upstream that spells the model otherwise (renamed, omitted, extra
//!   properties), translated at the service's boundary.
//! - `dialect`: what is refused beyond Dataverse's rules (`--dialect odata4`, `--no-expand`).
//! - `error`: OData error bodies and Dataverse's error codes.
//! - `http`: the axum routes; `seed`: deterministic demo data; `ids`: F&O-style identifiers.

pub mod auth;
pub mod batch_exec;
pub mod dialect;
pub mod error;
pub mod faults;
pub mod http;
pub mod ids;
pub mod metadata;
pub mod query;
pub mod read;
pub mod seed;
pub mod service;
pub mod spelling;
pub mod store;
pub mod write;

#[cfg(test)]
mod tests;

use crate::model::model;
use faults::{FaultState, Faults};
use service::Service;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use store::Store;

/// Which data the emulator starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Seed {
    /// Deterministic, realistic demo data across all 18 entity sets.
    Demo,
    /// Empty tables.
    None,
}

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// SQLite file, or `None` for an in-memory database.
    pub db: Option<PathBuf>,
    pub seed: Seed,
    /// Number of recruiting requests in the demo seed (candidates are 2.5 times as many).
    pub seed_size: usize,
    pub faults: Faults,
    /// Show a progress bar while seeding large data sets.
    pub progress: bool,
    /// Token endpoint and bearer checking.
    pub auth: auth::AuthConfig,
    /// Whether `GlobalOptionSetDefinitions` is served. Off, it answers 404, as an OData service
    /// without Dataverse's metadata entity sets does (upstreams whose option-set labels cannot be
    /// read).
    pub option_set_definitions: bool,
    /// Dataverse, or plain OData v4 (no `Microsoft.Dynamics.CRM.*` functions; implies no
    /// `GlobalOptionSetDefinitions`). See [`dialect`].
    pub dialect: dialect::Dialect,
    /// Whether collection-valued navigation properties may be `$expand`ed (off: 400).
    pub collection_expand: bool,
    /// Whether a change set is all or nothing (default). Off, a change set whose part N fails
    /// keeps parts 1..N-1 committed and answers with part N's error, as an upstream that does
    /// not roll back a failed change set would.
    pub atomic_change_sets: bool,
    /// Whether `$batch` accepts change sets (default). Off, a batch holding one is refused whole
    /// (501, an OData error), as a service without change-set support answers; GET-only batches
    /// still work.
    pub change_sets: bool,
    /// Ignore `Prefer: odata.maxpagesize` as a plain OData service may (`--ignore-maxpagesize`):
    /// collections come whole, or in pages of `server_page_size` with the service's own
    /// `nextLink`s; `$top` limits either way. Never `Preference-Applied: odata.maxpagesize`.
    pub ignore_maxpagesize: bool,
    /// With `ignore_maxpagesize`: the service's own page size (`--server-page-size`).
    pub server_page_size: Option<usize>,
    /// How the upstream played spells the model: renamed, omitted and extra properties, omitted
    /// navigation properties (see [`spelling`]).
    pub spelling: spelling::SpellingSettings,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            db: None,
            seed: Seed::Demo,
            seed_size: 200,
            faults: Faults::default(),
            progress: false,
            auth: auth::AuthConfig::default(),
            option_set_definitions: true,
            dialect: dialect::Dialect::Dataverse,
            collection_expand: true,
            atomic_change_sets: true,
            change_sets: true,
            ignore_maxpagesize: false,
            server_page_size: None,
            spelling: spelling::SpellingSettings::default(),
        }
    }
}

/// Opens the store and seeds it; returns the routes' state.
pub fn build(config: &EmulatorConfig) -> Result<Arc<http::EmulatorState>, error::ODataError> {
    let naming = config
        .spelling
        .naming()
        .map_err(|e| error::ODataError::new(500, error::codes::SERVER, format!("spelling settings: {e}")))?;
    let store = Arc::new(Store::open(config.db.as_deref())?);
    if config.seed == Seed::Demo && store_is_empty(&store)? {
        seed_demo(&store, config.seed_size, config.progress)?;
    }
    Ok(Arc::new(http::EmulatorState {
        service: Service {
            store,
            writes: Default::default(),
            skip_tokens: Default::default(),
            paging: read::ServerPaging {
                ignore_maxpagesize: config.ignore_maxpagesize,
                server_page_size: config.server_page_size,
            },
            paging_stats: Default::default(),
            profile: dialect::Profile {
                dialect: config.dialect,
                collection_expand: config.collection_expand,
            },
            atomic_change_sets: config.atomic_change_sets,
            change_sets: config.change_sets,
            naming: Arc::new(naming),
            metadata_fails: config.spelling.metadata_fails,
        },
        faults: FaultState::new(config.faults.clone()),
        authority: auth::Authority::new(config.auth.clone())
            .map_err(|e| error::ODataError::new(500, error::codes::SERVER, e))?,
        option_set_definitions: config.option_set_definitions && config.dialect == dialect::Dialect::Dataverse,
        traceparents: Default::default(),
    }))
}

fn store_is_empty(store: &Store) -> Result<bool, error::ODataError> {
    for e in &model().entities {
        if store.count(e)? > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Inserts the demo seed in one transaction and moves the sequences past the seeded numbers.
fn seed_demo(store: &Store, size: usize, progress: bool) -> Result<(), error::ODataError> {
    let started = std::time::Instant::now();
    let rows = seed::demo_rows(size);
    let bar = if progress && rows.len() > 20_000 {
        let b = indicatif::ProgressBar::new(rows.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("seeding {bar:40} {pos}/{len} rows ({eta} left)")
                .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    store.transaction(|c| {
        for (i, row) in rows.iter().enumerate() {
            store::insert_row(c, row.entity, &row.values)?;
            if let Some(b) = &bar {
                if i % 1000 == 0 {
                    b.set_position(i as u64);
                }
            }
            for prop in row.entity.sequences.keys() {
                let company = write::company_of(row.entity, &row.values);
                let digits: String = row
                    .values
                    .get(prop)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .chars()
                    .rev()
                    .take_while(char::is_ascii_digit)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if let Ok(n) = digits.parse::<u64>() {
                    store::bump_sequence(c, &write::sequence_name(row.entity, prop, &company), n)?;
                }
            }
        }
        Ok(())
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // RecIds: continue after the highest seeded key of each table.
    store.transaction(|c| {
        for e in &model().entities {
            let max: Option<String> = c.query_row(
                &format!("SELECT MAX({}) FROM {}", store::quote(&e.primary_key), store::table(e)),
                [],
                |r| r.get(0),
            )?;
            if let Some(rec) = max.and_then(|m| u64::from_str_radix(&m.replace('-', "")[20..], 16).ok()) {
                store::bump_sequence(c, &format!("recid:{}", e.logical_name), rec)?;
            }
        }
        Ok(())
    })?;
    tracing::info!(
        rows = rows.len(),
        duration_ms = started.elapsed().as_millis() as u64,
        "emulator seeded with demo data"
    );
    Ok(())
}

/// A running emulator.
pub struct RunningEmulator {
    pub addr: SocketAddr,
    pub state: Arc<http::EmulatorState>,
    serving: crate::serving::Serving,
}

impl RunningEmulator {
    /// The OData service root URL.
    pub fn service_root(&self) -> String {
        format!("http://{}{}", self.addr, service::SERVICE_ROOT)
    }

    /// Stops accepting requests and waits for in-flight ones.
    pub async fn stop(self) {
        self.serving.stop().await;
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the emulator's store: {0}")]
    Store(#[from] error::ODataError),
    #[error("the emulator's set-up task failed: {0}")]
    Setup(String),
}

/// Binds `listen` and serves the emulator in the background.
pub async fn start(listen: SocketAddr, config: &EmulatorConfig) -> Result<RunningEmulator, StartError> {
    let cfg = config.clone();
    let state = tokio::task::spawn_blocking(move || build(&cfg))
        .await
        .map_err(|e| StartError::Setup(e.to_string()))??;
    serve(listen, state).await
}

/// Serves an emulator's existing state on `listen`: after [`RunningEmulator::stop`], the same
/// data (and faults) come back, as an upstream restarting would.
pub async fn serve(listen: SocketAddr, state: Arc<http::EmulatorState>) -> Result<RunningEmulator, StartError> {
    let (addr, serving) = crate::serving::Serving::bind(listen, http::router(state.clone()), "emulator")
        .await
        .map_err(|source| StartError::Bind { addr: listen, source })?;
    Ok(RunningEmulator { addr, state, serving })
}
