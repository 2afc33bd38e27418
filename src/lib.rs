//! ats-gateway: a GraphQL gateway over the Dynamics 365 Human Resources ATS integration API, with
//! an embedded Dataverse emulator.
//!
//! - [`model`]: the ATS entities, properties, relations, option sets and GraphQL names; the one
//!   place they are written down.
//! - [`batch`]: the OData `$batch` multipart codec, shared by both sides of the wire.
//! - [`odata`]: the gateway's upstream client (queries, filters, paging, `$metadata`
//!   reconciliation, errors, credentials, retries, slots, the circuit breaker).
//! - [`graphql`]: the dynamic schema, resolvers, loaders, cursors, limits and mutations.
//! - [`server`]: the HTTP routes (GraphQL over HTTP, playground, health, metrics) and caller
//!   authentication.
//! - [`emulator`]: the local Dataverse (SQLite store, `$metadata`, queries, writes, `$batch`,
//!   faults, demo seed, a local Entra).
//! - [`doctor`]: `ats-gateway doctor`, a compatibility report for a real environment (reach,
//!   auth, `$metadata`, option sets, paging, `In`, `$expand`, `$batch`, change sets) with an exit code.
//! - [`secret`]: values kept out of logs, and the SHA-256 fingerprints standing in for them.
//! - [`shared_state`]: the Redis connection replicas share state through (`--redis-url`): round
//!   trips and errors for `/metrics`, health for `/readyz`.
//! - [`telemetry`]: metrics (Prometheus) and logging setup.
//! - [`serving`]: one axum server on a listener, with graceful shutdown.
//! - [`cli`]: the command line and the wiring of a running process.
//! - [`vocabulary`]: the OData both sides share: operators, literal formats, the `$expand` limit.

pub mod batch;
pub mod cli;
pub mod doctor;
pub mod emulator;
pub mod graphql;
pub mod model;
pub mod odata;
pub mod secret;
pub mod server;
pub mod serving;
pub mod shared_state;
pub mod telemetry;
pub mod vocabulary;
