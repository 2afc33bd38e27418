//! `odata`: the gateway's upstream client, everything about talking OData v4 to Dataverse (the
//! HR ATS virtual tables). The contract is `shared/dataverse-web-api.md`; section numbers in
//! comments refer to it.
//!
//! - [`escape`]: string literals (`'` doubled), `LIKE` wildcard escaping, percent-encoding of
//!   option values, the JSON array of `Microsoft.Dynamics.CRM.In`, typed literals (GUID, date,
//!   date-time, numbers).
//! - [`filter`]: the typed [`Filter`] AST and [`compile`], checked against the model.
//! - [`query`]: [`ODataQuery`] / [`Expand`] to relative URLs, and [`children_of`] for batched
//!   "children of these parents" reads within a URL length budget.
//! - [`client`]: [`Upstream`], the pooled HTTP client: one `send` for every exchange (headers,
//!   credentials, retries, the 401 refresh), request counters. [`calls`]: pages, paging
//!   ([`calls::collect_all`]: by `nextLink` or by `$top`), JSON documents, writes; [`batch_calls`]: `$batch`.
//! - [`auth`]: the upstream credentials by mode ([`UpstreamAuth`]): tokens cached and refreshed.
//! - [`record`]: [`Record`], one record read, shared, with the records an `$expand` brought
//!   apart from its properties.
//! - [`response`]: body parsing shared by top-level calls and `$batch` parts ([`Page`],
//!   [`WriteResult`], [`part_result`], ...).
//! - [`error`]: [`UpstreamError`] with its kinds, whether the request was delivered, and stable
//!   GraphQL codes.
//! - [`resilience`]: deadline, retries and backoff, concurrency per caller, circuit breaker
//!   ([`ResilienceConfig`]), applied to every exchange.
//! - [`redact`]: upstream URLs as they may be logged, every literal value hidden.
//! - [`shared_reads`]: identical reads in flight share one request; [`read_cache`]: the
//!   short-lived read cache per upstream identity (both keyed and used by `graphql::budget`).
//! - [`rate_limit`]: requests per upstream identity in a sliding window (`/metrics`), and
//!   `--upstream-rate-limit`, held by this process alone.
//! - [`metadata`]: the upstream's `$metadata` held against the model at start
//!   ([`metadata::read_and_reconcile`]); [`spelling`]: the upstream's names in the URLs and
//!   bodies sent and the model's in the rows read.
//! - [`options`]: [`OptionSetLabels`], documented option values <-> the environment's integers.
//!
//! Entity and property names never appear in this code: they all come from [`crate::model`].

pub mod auth;
pub mod batch_calls;
pub mod calls;
pub mod client;
pub mod error;
pub mod escape;
pub mod filter;
pub mod metadata;
pub mod options;
pub mod query;
pub mod rate_limit;
pub mod read_cache;
pub mod record;
pub mod redact;
pub mod resilience;
pub mod response;
pub mod shared_reads;
pub mod spelling;

#[cfg(test)]
mod tests;

pub use auth::{EntraApp, UpstreamAuth};
pub use client::{Upstream, UpstreamConfig, MAX_PAGE_SIZE};
pub use error::{Delivery, UpstreamError, UpstreamErrorKind};
pub use filter::{compile, compile_for, compile_with_labels, CmpOp, Filter, FilterError, Literal, StrFunc};
pub use options::OptionSetLabels;
pub use query::{children_of, children_of_with_budget, Dialect, Expand, ODataQuery, DEFAULT_URL_BUDGET};
pub use record::{Expanded, Record, UpstreamRecord};
pub use reqwest::Method;
pub use resilience::{with_deadline, CircuitState, ResilienceConfig, RetryPolicy};
pub use response::{part_page, part_result, part_write, Page, WriteResult};
