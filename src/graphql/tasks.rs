//! The tasks an operation spawns: its loaders' batches.
//!
//! async-graphql's `DataLoader` runs each batch in a task of its own, which holds the loader (and
//! through it the request's memo and the upstream calls in flight). A client that hangs up drops
//! the operation, but not those tasks. So every batch is spawned through the operation's
//! [`TaskScope`]: when the operation ends or is dropped, its request data, and with it the scope,
//! is dropped, and every batch still running is aborted (dropping its upstream call, and the slot
//! that call holds). As a backstop, a batch never outlives the operation's deadline (plus a
//! grace period, so that a batch is never cut while a resolver of a live operation waits for it:
//! async-graphql's loader panics if a batch vanishes under a waiting resolver).

use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::Instant;

tokio::task_local! {
    /// When the current operation's own timeout fires (set by `limits`).
    static OPERATION_ENDS: Instant;
}

/// Runs `f` as an operation that ends at `ends`.
pub async fn with_operation_end<F: std::future::Future>(ends: Instant, f: F) -> F::Output {
    OPERATION_ENDS.scope(ends, f).await
}

/// How long past the operation's end a batch may still run before it is stopped regardless.
const GRACE: Duration = Duration::from_secs(1);

/// `work` as it may run in a task of its own: with the operation's upstream deadline (a
/// task-local, which would not follow it into the task otherwise) in scope, and stopped one grace
/// period after the operation's end at the latest (then `None`; dropped, the guards it holds
/// settle what it held). Captures the operation's deadlines where it is called.
fn bounded<T>(
    what: &'static str,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> impl std::future::Future<Output = Option<T>> {
    let upstream = crate::odata::resilience::current_deadline();
    let ends = OPERATION_ENDS.try_with(|t| *t).ok();
    let work = super::explain::carry(work);
    async move {
        let work = async move {
            match upstream {
                Some(d) => crate::odata::with_deadline(d, work).await,
                None => work.await,
            }
        };
        match ends {
            Some(ends) => match tokio::time::timeout_at(ends + GRACE, work).await {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!("{what} outlived its operation's deadline and was stopped");
                    None
                }
            },
            None => Some(work.await),
        }
    }
}

/// Runs `work` in a task of its own that the operation cannot cancel (a write that must finish
/// or compensate once it started), bounded as [`bounded`] says. The operation awaits the handle.
pub fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<Option<T>> {
    tokio::spawn(bounded("detached work", work))
}

/// Batches still running for one operation; dropped, it aborts them.
#[derive(Debug, Default)]
pub struct TaskScope {
    running: Mutex<Vec<AbortHandle>>,
}

impl TaskScope {
    pub fn new() -> Arc<TaskScope> {
        Arc::default()
    }

    /// Spawns a batch of this operation, bounded as [`bounded`] says.
    pub fn spawn(&self, batch: BoxFuture<'static, ()>) {
        let task = bounded("a loader batch", crate::telemetry::otel::carry(batch));
        let handle = tokio::spawn(task).abort_handle();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|h| !h.is_finished());
        running.push(handle);
    }

    /// Batches not yet finished (for tests).
    pub fn running(&self) -> usize {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.iter().filter(|h| !h.is_finished()).count()
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|p| p.into_inner());
        for h in running.drain(..) {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn dropping_the_scope_aborts_its_batches() {
        let dropped = Arc::new(AtomicBool::new(false));
        let scope = TaskScope::new();
        let guard = SetOnDrop(dropped.clone());
        scope.spawn(Box::pin(async move {
            let _guard = guard;
            futures::future::pending::<()>().await;
        }));
        tokio::task::yield_now().await;
        assert_eq!(scope.running(), 1);
        assert!(!dropped.load(Ordering::SeqCst));
        drop(scope);
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the batch's resources were not released");
    }

    #[tokio::test(start_paused = true)]
    async fn batches_stop_after_the_operations_end() {
        let dropped = Arc::new(AtomicBool::new(false));
        let scope = TaskScope::new();
        let guard = SetOnDrop(dropped.clone());
        let ends = Instant::now() + Duration::from_secs(2);
        with_operation_end(ends, async {
            scope.spawn(Box::pin(async move {
                let _guard = guard;
                futures::future::pending::<()>().await;
            }))
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!dropped.load(Ordering::SeqCst), "within the grace period");
        tokio::time::sleep(GRACE + Duration::from_millis(10)).await;
        assert!(dropped.load(Ordering::SeqCst), "stopped after its operation's end");
        assert_eq!(scope.running(), 0);
    }

    #[tokio::test]
    async fn detached_work_finishes_when_its_operation_is_dropped() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let operation = async move {
            detached(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                flag.store(true, Ordering::SeqCst);
            })
            .await
        };
        // The operation is dropped right after it started the work.
        let _ = tokio::time::timeout(Duration::from_millis(5), operation).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(done.load(Ordering::SeqCst), "the work ran to its end");
    }
}
