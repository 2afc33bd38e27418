//! Integration tests: the real emulator (and gateway) over HTTP on 127.0.0.1.
//!
//! One test binary (fast to link) with a module per area. `harness` starts servers: a shared,
//! read-mostly emulator with the demo seed for read tests, and fresh ones for tests that write or
//! inject faults.

/// Runs the test `name(dialect: Dialect)` (a read, write or submission) against both gateway/emulator dialect pairs (`harness::Gateway::start_in`), as the
/// tests `name::dataverse` and `name::odata4`.
macro_rules! in_both_dialects {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn dataverse() {
                super::$name(Dialect::Dataverse).await
            }
            #[tokio::test]
            async fn odata4() {
                super::$name(Dialect::Odata4).await
            }
        }
    };
}

/// Runs the read test `name(profile: Profile)` against every upstream profile
/// (`harness::Profile`): Dataverse, plain OData v4, and plain OData v4 ignoring
/// `Prefer: odata.maxpagesize` (every row, or its own pages of 50), as the tests `name::dataverse`,
/// `name::odata4`, `name::odata4_top` and `name::odata4_top_paged`.
macro_rules! in_every_upstream {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn dataverse() {
                super::$name(Profile::DATAVERSE).await
            }
            #[tokio::test]
            async fn odata4() {
                super::$name(Profile::ODATA4).await
            }
            #[tokio::test]
            async fn odata4_top() {
                super::$name(Profile::ODATA4_TOP).await
            }
            #[tokio::test]
            async fn odata4_top_paged() {
                super::$name(Profile::ODATA4_TOP_PAGED).await
            }
        }
    };
}

mod cli;
mod doctor;
mod emulator_batch;
mod emulator_dialects;
mod emulator_errors;
mod emulator_faults;
mod emulator_reads;
mod emulator_writes;
mod error_codes;
mod filter_props;
mod gateway_auth;
mod gateway_budget;
mod gateway_change_sets;
mod gateway_churn;
mod gateway_cursors;
mod gateway_explain;
mod gateway_faults;
mod gateway_federation;
mod gateway_http;
mod gateway_logs;
mod gateway_metadata;
mod gateway_ops;
mod gateway_reads;
mod gateway_replicas;
mod gateway_schema;
mod gateway_subscriptions;
mod gateway_tracing;
mod gateway_webhooks;
mod gateway_writes;
mod harness;
mod playground;
mod redis_server;
mod shared_idempotency;
