//! Whether an operation was executed, or stopped before: at parsing, validation, or choosing the
//! operation.
//!
//! async-graphql answers both cases with a `Response` whose `data` is `null`, but they differ for
//! clients: a response to an operation that never ran has no `data` entry at all, and over HTTP it
//! gets another status code (GraphQL over HTTP, "Status Codes"). The schema's [`TrackExecution`]
//! extension sets the request's [`Executed`] flag when execution starts; the HTTP side reads it.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::Response;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Request data: set once the operation passed parsing and validation and started executing.
#[derive(Debug, Clone, Default)]
pub struct Executed(Arc<AtomicBool>);

impl Executed {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The schema extension that sets [`Executed`] for requests that carry one.
pub struct TrackExecution;

impl ExtensionFactory for TrackExecution {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TrackExecution)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for TrackExecution {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(executed) = ctx.data_opt::<Executed>() {
            executed.0.store(true, Ordering::Release);
        }
        next.run(ctx, operation_name).await
    }
}
