//! ats-gateway: a GraphQL gateway over the Dynamics 365 Human Resources ATS integration API, with
//! an embedded Dataverse emulator.
//!
//! - [`model`]: the ATS entities, properties, relations, option sets and GraphQL names; the one
//!   place they are written down.
//! - [`batch`]: the OData `$batch` multipart codec, shared by both sides of the wire.
//! - [`emulator`]: the local Dataverse (SQLite store, `$metadata`, queries, writes, `$batch`,
//!   faults, demo seed).
//! - [`secret`]: values kept out of logs, and fingerprints standing in for them.
//! - [`cli`]: the command line and the wiring of a running process.

pub mod batch;
pub mod cli;
pub mod emulator;
pub mod graphql;
pub mod model;
pub mod odata;
pub mod secret;
pub mod server;
pub mod serving;
pub mod telemetry;
