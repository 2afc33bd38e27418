//! The GraphQL schema of the ATS graph, built at start from the model with async-graphql's dynamic
//! schema, so that no entity or field name is written twice.
//!
//! - `types`: object types, connections, enums, scalars, filter and order inputs.
//! - `resolve`: root fields, properties, relations, connections.
//! - `loaders`: batched to-one and to-many loads (no N+1).
//! - `filter`: typed filters and orders compiled to OData, refused early when inexpressible.
//! - `cursor`: opaque, signed, query-bound cursors that carry the upstream `@odata.nextLink` position.
//! - `budget`: the upstream budget: reads coalesced and cached per upstream identity.
//! - `context`: shared state (upstream, labels, caches, settings) and the caller of a request.
//! - `shared_reference`: reference data's second cache level in Redis (`--redis-url`), so that
//!   replicas fetch it upstream once between them.
//! - `errors`: GraphQL errors with stable `extensions.code`; `warnings`: the operation's
//!   `extensions.warnings` (fields whose property the upstream lacks).
//! - `execution`: whether an operation was executed or stopped at parsing or validation.
//! - `depth`: the depth limit, which introspection does not count against.
//! - `tasks`: the loader batches an operation spawns, aborted when it ends or is dropped.
//! - `estimate`: the upstream requests a query may cost, refused above the per-operation limit.
//! - `limits`: size, aliases, cost, depth and the deadline of an operation.
//! - `idempotency`: the store of `submitCandidateToHire`'s idempotency keys.
//! - `mutations`: the submission, and create/update/delete for every writable entity.
//! - `prefetch`: look-ahead loading of a page's relations, level by level.
//! - `federation`: the schema as an Apollo Federation v2 subgraph (`--federation`): keys,
//!   `_service`, `_entities` through the loaders.
//! - `subscription`: the `Subscription` root (changes pushed from `watch`).
//! - `watch`: the change watchers behind subscriptions: one poller per (identity, entity,
//!   filter), diffing by key and content hash.
//! - `webhooks`: webhook registrations, signed deliveries with retries, the SSRF guard.
//!
//! Never imports axum: the HTTP side lives in `server`.

pub mod budget;
pub mod context;
pub mod cursor;
pub mod depth;
pub mod errors;
pub mod estimate;
pub mod execution;
pub mod explain;
pub mod federation;
pub mod filter;
pub mod idempotency;
pub mod limits;
pub mod loaders;
pub mod mutations;
pub mod prefetch;
pub mod resolve;
pub mod shared_reference;
pub mod subscription;
pub mod tasks;
pub mod types;
pub mod warnings;
pub mod watch;
pub mod webhooks;

use crate::graphql::loaders::Cache;
use async_graphql::dataloader::DataLoader;
use async_graphql::dynamic::{Object, Schema, SchemaError};
use context::{GatewayState, RequestCtx};
use loaders::{ChildLoader, RecordLoader};
use std::sync::Arc;

/// Limits applied to every operation.
#[derive(Debug, Clone)]
pub struct SchemaLimits {
    pub depth: usize,
    pub introspection: bool,
    /// Size, aliases, cost and deadline (see `limits`).
    pub operation: limits::Limits,
    /// Serve the schema as an Apollo Federation v2 subgraph (`--federation`; see `federation`).
    pub federation: bool,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        SchemaLimits {
            depth: 12,
            introspection: true,
            operation: limits::Limits::default(),
            federation: false,
        }
    }
}

/// Builds the executable schema over `state`.
pub fn build_schema(state: Option<Arc<GatewayState>>, limits: &SchemaLimits) -> Result<Schema, SchemaError> {
    let query = Object::new("Query").description(
        "The Dynamics 365 Human Resources recruiting data: recruiting requests with their positions, skills, education and location; candidates to hire with the person behind them and the person's details; and the reference data they use.",
    );
    let builder = Schema::build("Query", Some("Mutation"), Some("Subscription"));
    let (mut builder, query) = types::register(builder, query, limits.federation);
    if limits.federation {
        builder = federation::enable(builder);
    }
    let (builder, mut mutation) = mutations::register(builder);
    let (builder, hook_queries, hook_mutations) = webhooks::schema::register(builder);
    let query = hook_queries.into_iter().fold(query, |q, f| q.field(f));
    mutation = hook_mutations.into_iter().fold(mutation, |m, f| m.field(f));
    let (mut builder, subscription) = subscription::register(builder);
    builder = builder.register(query).register(mutation).register(subscription);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    let metrics = state.as_ref().map(|s| s.metrics.clone());
    builder = builder.extension(
        limits::LimitsExtension::new(limits.operation.clone(), limits.depth, metrics).federation(limits.federation),
    );
    if let Some(state) = state {
        builder = builder.data(state);
    }
    builder.finish()
}

/// The schema's SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(None, &SchemaLimits::default())
        .expect("the schema builds")
        .sdl()
}

/// Request data for one operation: the caller and fresh, request-scoped loaders.
pub fn request_data(
    state: &Arc<GatewayState>,
    caller: RequestCtx,
) -> (
    RequestCtx,
    DataLoader<RecordLoader, Cache>,
    DataLoader<ChildLoader, Cache>,
) {
    // The loaders wait this long after the first key for the others of the same level: the
    // resolvers of a page of parents enqueue their keys within a short time, and a batch sent
    // too early costs a second upstream request for the stragglers.
    let delay = std::time::Duration::from_millis(state.config.batch_delay_ms);
    // Both loaders spawn their batches in the operation's scope, which aborts them when the
    // operation's data (these loaders) is dropped: see `tasks`.
    let scope = tasks::TaskScope::new();
    let spawner = move |batch: futures::future::BoxFuture<'static, ()>| scope.spawn(batch);
    let records = DataLoader::with_cache(
        RecordLoader {
            state: state.clone(),
            request: caller.clone(),
            plans: Default::default(),
        },
        spawner.clone(),
        Cache::new(),
    )
    .delay(delay);
    let children = DataLoader::with_cache(
        ChildLoader {
            state: state.clone(),
            request: caller.clone(),
            plans: Default::default(),
        },
        spawner,
        Cache::new(),
    )
    .delay(delay);
    (caller, records, children)
}
