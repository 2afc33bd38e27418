//! Limits on what one operation may ask, and its deadline, as an async-graphql extension:
//!
//! - document size (characters of the query text),
//! - aliases (each alias is another copy of a field's work),
//! - cost: every field costs 1, and the fields under a list multiply by how many items it may
//!   return (`first`, or the default page size for connections and an estimate for relations),
//! - depth, with introspection left out (see `depth`),
//! - a deadline for the whole operation.
//!
//! The extension also records each operation's outcome and latency in the metrics, marks the
//! request's [`Executed`] flag when execution starts (see `execution`), and adds the operation's
//! warnings to its response (see `warnings`), and, when asked for, the operation's explain (see
//! `explain`: a recorder in scope, each field resolved as the cause of its calls), and, with
//! `--federation`, lets `_entities` items be null (see `federation`). It is the schema's only
//! extension: async-graphql runs the per-field hook of every extension that wants fields
//! (`resolves_fields`, a patch of the vendored async-graphql) around every field, so this one
//! wants them only when it uses them, and each one more would cost a layer on the hot path.

use super::depth::depth;
use super::errors::ErrorCode;
use super::execution::Executed;
use crate::model::{model, Cardinality};
use crate::telemetry::Metrics;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest, NextResolve,
    ResolveInfo,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Request, Response, ServerError, ServerResult, Value, Variables};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The limits (settings).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_document_chars: usize,
    pub max_aliases: usize,
    pub max_cost: u64,
    /// The page size a list field is costed at without `first`.
    pub default_first: u64,
    /// The number of children a to-many relation is costed at without `first`.
    pub relation_estimate: u64,
    pub deadline: Duration,
    /// Most upstream requests one operation may be estimated to cost (see `estimate`).
    pub max_upstream_requests: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_chars: 64 * 1024,
            max_aliases: 30,
            max_cost: 100_000,
            default_first: 100,
            relation_estimate: 10,
            deadline: Duration::from_secs(30),
            max_upstream_requests: 50,
        }
    }
}

/// The extension's factory.
pub struct LimitsExtension {
    limits: Arc<Limits>,
    max_depth: usize,
    metrics: Option<Arc<Metrics>>,
    /// Root list fields and to-many relation fields, from the model.
    lists: Arc<HashSet<String>>,
    relations: Arc<HashSet<String>>,
    /// The schema is a federation subgraph: `_entities` items may be null (see `federation`).
    federation: bool,
}

impl LimitsExtension {
    /// `max_depth`: the deepest nesting of fields outside introspection.
    pub fn new(limits: Limits, max_depth: usize, metrics: Option<Arc<Metrics>>) -> Self {
        let lists = model().entities.iter().map(|e| e.graphql.list_field.clone()).collect();
        let relations = model()
            .entities
            .iter()
            .flat_map(|e| {
                e.graphql
                    .relations
                    .iter()
                    .filter(|r| r.kind == Cardinality::Many)
                    .map(|r| r.field.clone())
            })
            .collect();
        LimitsExtension {
            limits: Arc::new(limits),
            max_depth,
            metrics,
            lists: Arc::new(lists),
            relations: Arc::new(relations),
            federation: false,
        }
    }

    /// With `on`, the schema is a federation subgraph (`--federation`).
    pub fn federation(self, on: bool) -> Self {
        LimitsExtension { federation: on, ..self }
    }
}

impl ExtensionFactory for LimitsExtension {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitsRun {
            limits: self.limits.clone(),
            max_depth: self.max_depth,
            metrics: self.metrics.clone(),
            lists: self.lists.clone(),
            relations: self.relations.clone(),
            federation: self.federation,
            explaining: Default::default(),
        })
    }
}

struct LimitsRun {
    limits: Arc<Limits>,
    max_depth: usize,
    metrics: Option<Arc<Metrics>>,
    lists: Arc<HashSet<String>>,
    relations: Arc<HashSet<String>>,
    federation: bool,
    /// Whether this request's operation is explained (see `explain`).
    explaining: std::sync::atomic::AtomicBool,
}

fn refuse(code: ErrorCode, message: String) -> ServerError {
    code.error(message).into_server_error(Default::default())
}

impl LimitsRun {
    fn first_arg(&self, field: &async_graphql::parser::types::Field, variables: &Variables) -> Option<u64> {
        let (_, v) = field.arguments.iter().find(|(n, _)| n.node.as_str() == "first")?;
        let value = v
            .node
            .clone()
            .into_const_with(|name| variables.get(&name).cloned().ok_or(()))
            .ok()?;
        match value {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// Cost and alias count of a selection set.
    fn walk(
        &self,
        doc: &ExecutableDocument,
        set: &SelectionSet,
        variables: &Variables,
        seen: &mut Vec<String>,
        aliases: &mut usize,
    ) -> u64 {
        let mut cost: u64 = 0;
        for sel in &set.items {
            match &sel.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    if f.alias.is_some() {
                        *aliases += 1;
                    }
                    let name = f.name.node.as_str();
                    let inner = self.walk(doc, &f.selection_set.node, variables, seen, aliases);
                    let multiplier = if self.lists.contains(name) {
                        self.first_arg(f, variables).unwrap_or(self.limits.default_first).max(1)
                    } else if self.relations.contains(name) {
                        self.first_arg(f, variables)
                            .unwrap_or(self.limits.relation_estimate)
                            .max(1)
                    } else {
                        1
                    };
                    cost = cost.saturating_add(1).saturating_add(multiplier.saturating_mul(inner));
                }
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.to_string();
                    // A fragment spread inside itself is a validation error later; count it once.
                    if seen.contains(&name) {
                        continue;
                    }
                    if let Some(frag) = doc.fragments.get(&s.node.fragment_name.node) {
                        seen.push(name);
                        cost = cost.saturating_add(self.walk(
                            doc,
                            &frag.node.selection_set.node,
                            variables,
                            seen,
                            aliases,
                        ));
                        seen.pop();
                    }
                }
                Selection::InlineFragment(i) => {
                    cost = cost.saturating_add(self.walk(doc, &i.node.selection_set.node, variables, seen, aliases));
                }
            }
        }
        cost
    }
}

#[async_trait::async_trait]
impl Extension for LimitsRun {
    /// Fields are wrapped (a boxed future each) only for what needs them: an explain being
    /// recorded (set by `execute`, before any field runs) and federation's null entities.
    fn resolves_fields(&self) -> bool {
        self.federation || self.explaining.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let request = request.data(super::warnings::MissingFields::default());
        next.run(ctx, crate::telemetry::otel::note_operation_name(request))
            .await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let chars = query.chars().count();
        if chars > self.limits.max_document_chars {
            return Err(refuse(
                ErrorCode::QueryTooLarge,
                format!(
                    "The query is {chars} characters long; at most {} are accepted.",
                    self.limits.max_document_chars
                ),
            ));
        }
        let doc = next.run(ctx, query, variables).await?;
        crate::telemetry::otel::record_operation(ctx, &doc);
        let mut aliases = 0;
        let mut cost: u64 = 0;
        for (_, op) in doc.operations.iter() {
            cost = cost.max(self.walk(
                &doc,
                &op.node.selection_set.node,
                variables,
                &mut Vec::new(),
                &mut aliases,
            ));
        }
        if aliases > self.limits.max_aliases {
            return Err(refuse(
                ErrorCode::TooManyAliases,
                format!(
                    "The query uses {aliases} aliases; at most {} are accepted.",
                    self.limits.max_aliases
                ),
            ));
        }
        if cost > self.limits.max_cost {
            return Err(refuse(
                ErrorCode::QueryTooCostly,
                format!("The query's cost is {cost} (each field 1, times the items of the lists above it); at most {} is accepted. Ask for smaller pages with `first`.", self.limits.max_cost),
            ));
        }
        let estimator = super::estimate::Estimator {
            default_first: self.limits.default_first,
            relation_estimate: self.limits.relation_estimate,
            variables,
        };
        let upstream = estimator.operation(&doc);
        if upstream > self.limits.max_upstream_requests {
            return Err(super::estimate::refusal(upstream, self.limits.max_upstream_requests));
        }
        if depth(&doc) > self.max_depth {
            // The message async-graphql's own limit gives.
            return Err(ServerError::new("Query is nested too deep.", None));
        }
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // Reached only by an operation that parsed, validated and was chosen.
        if let Some(executed) = ctx.data_opt::<Executed>() {
            executed.mark();
        }
        let started = Instant::now();
        // Upstream calls plan within 90% of the deadline: a retry wait that would end later is
        // not started, so the client gets the upstream's error (throttled, unavailable) rather
        // than DEADLINE_EXCEEDED. An attempt still in flight at the deadline ends with the latter.
        let upstream_deadline = tokio::time::Instant::now() + self.limits.deadline.mul_f64(0.9);
        let ends = tokio::time::Instant::now() + self.limits.deadline;
        let run = crate::odata::with_deadline(upstream_deadline, next.run(ctx, operation_name));
        let run = super::tasks::with_operation_end(ends, run);
        let run = tokio::time::timeout(self.limits.deadline, run);
        let recorder = super::explain::recorder_for(ctx.data_opt(), ctx.data_opt());
        self.explaining
            .store(recorder.is_some(), std::sync::atomic::Ordering::Relaxed);
        let timed = match &recorder {
            Some(r) => r.clone().run(run).await,
            None => run.await,
        };
        let resp = match timed {
            Ok(r) => r,
            Err(_) => Response::from_errors(vec![refuse(
                ErrorCode::DeadlineExceeded,
                format!(
                    "The operation did not finish within its deadline of {} ms.",
                    self.limits.deadline.as_millis()
                ),
            )]),
        };
        if let Some(m) = &self.metrics {
            m.graphql_request(operation_name, resp.is_ok(), started.elapsed());
        }
        let mut resp = resp;
        super::warnings::attach(ctx.data_opt(), &mut resp);
        if let Some(r) = recorder {
            resp.extensions.insert("explain".to_string(), r.to_value());
        }
        resp
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let entity_item = self.federation && super::federation::is_entity_item(&info);
        let result = if !self.explaining.load(std::sync::atomic::Ordering::Relaxed) || info.is_for_introspection {
            next.run(ctx, info).await
        } else {
            super::explain::at_path(info.path_node.to_string(), next.run(ctx, info)).await
        };
        match entity_item {
            true => super::federation::missing_as_null(result),
            false => result,
        }
    }
}
