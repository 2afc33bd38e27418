//! Whether an operation was executed, or stopped before: at parsing, validation, or choosing the
//! operation.
//!
//! async-graphql answers both cases with a `Response` whose `data` is `null`, but they differ for
//! clients: a response to an operation that never ran has no `data` entry at all, and over HTTP it
//! gets another status code (GraphQL over HTTP, "Status Codes"). The schema's `limits` extension
//! sets the request's [`Executed`] flag when execution starts; the HTTP side reads it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Request data: set once the operation passed parsing and validation and started executing.
#[derive(Debug, Clone, Default)]
pub struct Executed(Arc<AtomicBool>);

impl Executed {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Execution started (called by the `limits` extension's execute hook).
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }
}
