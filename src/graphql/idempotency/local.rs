//! The SQLite store of idempotency keys (the default, one process): a small file so that keys
//! survive a gateway restart.
//!
//! The SQLite connection lives on a thread of its own (one writer, no async worker ever blocks on
//! the file): callers send it jobs and await their answers. A key a submission holds is a
//! [`LocalClaim`], an owned guard made on that thread: whatever drops it unsettled (a client that
//! hung up, a deadline, a lost answer in flight) sends the store what the key becomes, so no key
//! stays `in_progress`. Keys expire `ttl` after their first use: an expired key is a new key,
//! and the store thread deletes expired rows every so often. A stop while a prepared write was
//! out leaves the key `unknown` at the next start.

use super::{KeyState, Probe, StoreError, DEFAULT_TTL};
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// The SQLite store of idempotency keys: a handle to the thread that owns the connection.
#[derive(Clone)]
pub struct LocalStore {
    jobs: mpsc::Sender<Job>,
}

/// `'-N seconds'`: an SQLite date modifier for "N seconds ago".
fn ago(ttl: Duration) -> String {
    format!("-{} seconds", ttl.as_secs().max(1))
}

/// What a key found in the file holds, for the rules of [`LocalStore::begin`].
type Row = (String, String, Option<String>, Option<String>, Option<String>);

impl LocalStore {
    /// Opens (or creates) the store; `None` keeps it in memory (tests, or when losing keys on
    /// restart is acceptable). Keys expire `ttl` after their first use.
    pub fn open(path: Option<&Path>, ttl: Duration) -> rusqlite::Result<Self> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS idempotency_keys (
                 identity TEXT NOT NULL,
                 key TEXT NOT NULL,
                 input_hash TEXT NOT NULL,
                 state TEXT NOT NULL,
                 candidate_id TEXT,
                 strategy TEXT,
                 created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
                 PRIMARY KEY (identity, key)
             );",
        )?;
        // Files from before probes existed get the column.
        let has_probe: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('idempotency_keys') WHERE name = 'probe'",
            [],
            |r| r.get(0),
        )?;
        if !has_probe {
            conn.execute_batch("ALTER TABLE idempotency_keys ADD COLUMN probe TEXT;")?;
        }
        // Interrupted by a stop: a prepared write may have gone out; an unprepared one did not.
        conn.execute_batch(
            "UPDATE idempotency_keys SET state = CASE WHEN probe IS NULL THEN 'abandoned' ELSE 'unknown' END
             WHERE state = 'in_progress';",
        )?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let sweep_every = (ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
        std::thread::Builder::new()
            .name("idempotency-store".into())
            .spawn(move || serve(conn, queue, ttl, sweep_every))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(LocalStore { jobs })
    }

    /// Runs `f` on the store's thread and waits for its answer. The job runs even if the
    /// caller stops waiting.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::new("its thread has stopped"))?;
        rx.await
            .map_err(|_| StoreError::new("its thread has stopped"))?
            .map_err(StoreError::from)
    }

    /// Reserves `key` for `input_hash`, or says what it already holds. When the key is now
    /// this caller's (`Reserved`, `Unknown`), the claim comes with it.
    pub async fn begin(
        &self,
        identity: &str,
        key: &str,
        input_hash: &str,
    ) -> Result<(KeyState, Option<LocalClaim>), StoreError> {
        let jobs = self.jobs.clone();
        let (identity, key, input_hash) = (identity.to_string(), key.to_string(), input_hash.to_string());
        self.call(move |conn| {
            let state = begin(conn, &identity, &key, &input_hash)?;
            // Made here, on the store's thread: if the caller is gone before it receives the
            // claim, dropping it here settles the key.
            let claim = match &state {
                KeyState::Reserved | KeyState::Unknown { .. } => Some(LocalClaim {
                    jobs,
                    identity,
                    key,
                    maybe_written: matches!(state, KeyState::Unknown { .. }),
                    settled: false,
                }),
                _ => None,
            };
            Ok((state, claim))
        })
        .await
    }

    /// Of `candidate_ids`, those some completed key (of any caller) already stands for.
    pub async fn claimed(&self, candidate_ids: &[String]) -> Result<Vec<String>, StoreError> {
        if candidate_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = candidate_ids.to_vec();
        self.call(move |conn| {
            let marks = vec!["?"; ids.len()].join(", ");
            let mut stmt = conn.prepare(&format!(
                "SELECT candidate_id FROM idempotency_keys WHERE state = 'completed' AND lower(candidate_id) IN ({marks})"
            ))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(&ids), |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    /// How many keys the store holds (for tests and diagnostics).
    pub async fn keys(&self) -> Result<usize, StoreError> {
        self.call(|conn| conn.query_row("SELECT COUNT(*) FROM idempotency_keys", [], |r| r.get(0)))
            .await
    }

    /// Deletes the keys older than the TTL now (the thread also does it every so often).
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        self.call(|conn| TTL.with(|ttl| sweep(conn, *ttl.borrow()))).await
    }
}

thread_local! {
    /// The TTL of the store whose thread this is (set once by [`serve`]).
    static TTL: std::cell::RefCell<Duration> = const { std::cell::RefCell::new(DEFAULT_TTL) };
    /// On the store's thread: what claims dropped during a job left to do (a claim whose
    /// caller was gone before it could receive it). Run right after that job, before the next.
    static DEFERRED: std::cell::RefCell<Option<Vec<Job>>> = const { std::cell::RefCell::new(None) };
}

/// The store's thread: runs jobs in order, and sweeps expired keys when idle long enough.
fn serve(conn: Connection, queue: mpsc::Receiver<Job>, ttl: Duration, sweep_every: Duration) {
    TTL.with(|t| *t.borrow_mut() = ttl);
    DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
    let mut last_sweep = std::time::Instant::now();
    loop {
        match queue.recv_timeout(sweep_every) {
            Ok(job) => {
                job(&conn);
                let deferred = DEFERRED.with(|d| d.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default());
                for job in deferred {
                    job(&conn);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last_sweep.elapsed() >= sweep_every {
            last_sweep = std::time::Instant::now();
            if let Err(e) = sweep(&conn, ttl) {
                tracing::error!(error = %e, "could not delete expired idempotency keys");
            }
        }
    }
}

/// Deletes keys older than `ttl` that no submission holds.
fn sweep(conn: &Connection, ttl: Duration) -> rusqlite::Result<usize> {
    let n = conn.execute(
        "DELETE FROM idempotency_keys WHERE state != 'in_progress' AND created_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)",
        [ago(ttl)],
    )?;
    if n > 0 {
        tracing::info!(keys = n, "expired idempotency keys deleted");
    }
    Ok(n)
}

/// [`LocalStore::begin`], on the store's thread.
fn begin(conn: &Connection, identity: &str, key: &str, input_hash: &str) -> rusqlite::Result<KeyState> {
    let ttl = TTL.with(|t| *t.borrow());
    let row: Option<Row> = conn
        .query_row(
            "SELECT input_hash, state, candidate_id, strategy, probe FROM idempotency_keys
             WHERE identity = ?1 AND key = ?2
               AND (state = 'in_progress' OR created_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3))",
            [identity, key, &ago(ttl)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let set_state = |state: &str, clear_probe: bool| {
        let sql = match clear_probe {
            true => "UPDATE idempotency_keys SET state = ?3, probe = NULL WHERE identity = ?1 AND key = ?2",
            false => "UPDATE idempotency_keys SET state = ?3 WHERE identity = ?1 AND key = ?2",
        };
        conn.execute(sql, [identity, key, state])
    };
    match row {
        // New, or expired: a new key.
        None => {
            conn.execute(
                "INSERT OR REPLACE INTO idempotency_keys (identity, key, input_hash, state) VALUES (?1, ?2, ?3, 'in_progress')",
                [identity, key, input_hash],
            )?;
            Ok(KeyState::Reserved)
        }
        Some((hash, ..)) if hash != input_hash => Ok(KeyState::Conflict),
        Some((_, state, Some(id), strategy, _)) if state == "completed" => Ok(KeyState::Completed {
            candidate_id: id,
            strategy: strategy.unwrap_or_default(),
        }),
        Some((_, state, ..)) if state == "in_progress" => Ok(KeyState::InProgress),
        Some((_, state, _, _, probe)) if state == "unknown" => {
            set_state("in_progress", false)?;
            let probe = probe.and_then(|p| serde_json::from_str(&p).ok());
            Ok(KeyState::Unknown { probe })
        }
        // A submission that failed, or was cut off before it wrote, may run again.
        Some(_) => {
            set_state("in_progress", true)?;
            Ok(KeyState::Reserved)
        }
    }
}

/// A key held by one submission. Every way out settles it: [`LocalClaim::complete`],
/// [`LocalClaim::release`] or [`LocalClaim::mark_unknown`]. Dropped unsettled (the operation was
/// cancelled), it releases the key, or marks it `unknown` once a write may have gone out.
/// Settling sends the store its job at once, so it happens even if the caller stops waiting.
pub struct LocalClaim {
    jobs: mpsc::Sender<Job>,
    identity: String,
    key: String,
    /// A write under this key may have reached the upstream (this run's, or an earlier one's).
    maybe_written: bool,
    settled: bool,
}

impl std::fmt::Debug for LocalClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClaim")
            .field("maybe_written", &self.maybe_written)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl LocalClaim {
    /// Sends `sql` (with identity, key and `extra` as ?1, ?2, ?3...) to the store, returning a
    /// receiver of its outcome.
    fn send(&self, sql: &'static str, extra: Vec<String>) -> tokio::sync::oneshot::Receiver<rusqlite::Result<usize>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut params = vec![self.identity.clone(), self.key.clone()];
        params.extend(extra);
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(conn.execute(sql, rusqlite::params_from_iter(&params)));
        });
        // Dropped on the store's own thread: run right after the current job, so that no other
        // job sees the key in between.
        if DEFERRED.with(|d| d.borrow().is_some()) {
            DEFERRED.with(|d| d.borrow_mut().as_mut().map(|q| q.push(job)));
            return rx;
        }
        if self.jobs.send(job).is_err() {
            tracing::error!("could not record an idempotency key's state: the store's thread has stopped");
        }
        rx
    }

    async fn settle(mut self, sql: &'static str, extra: Vec<String>) {
        self.settled = true;
        let outcome = self.send(sql, extra).await;
        if let Ok(Err(e)) = outcome {
            tracing::error!(error = %e, "could not record an idempotency key's state");
        }
    }

    /// Whether the key was taken over from an attempt whose write may have happened.
    pub fn maybe_written(&self) -> bool {
        self.maybe_written
    }

    /// The look upstream found nothing: nothing was written, so a cancellation from now on
    /// until [`LocalClaim::prepare`] releases the key.
    pub fn nothing_written(&mut self) {
        self.maybe_written = false;
    }

    /// Records how to find the candidate, and that the write may go out from now on.
    pub async fn prepare(&mut self, probe: Option<&Probe>) {
        self.maybe_written = true;
        if let Some(probe) = probe {
            let probe = serde_json::to_string(probe).expect("a probe serializes");
            let rx = self.send(
                "UPDATE idempotency_keys SET probe = ?3 WHERE identity = ?1 AND key = ?2",
                vec![probe],
            );
            if let Ok(Err(e)) = rx.await {
                tracing::error!(error = %e, "could not record an idempotency key's probe");
            }
        }
    }

    /// Records the candidate the key created.
    pub async fn complete(self, candidate_id: &str, strategy: &str) {
        self.settle(
            "UPDATE idempotency_keys SET state = 'completed', candidate_id = ?3, strategy = ?4 WHERE identity = ?1 AND key = ?2",
            vec![candidate_id.to_string(), strategy.to_string()],
        )
        .await
    }

    /// Releases a key whose submission wrote nothing, so that a retry runs again.
    pub async fn release(self) {
        self.settle(RELEASE, Vec::new()).await
    }

    /// Marks a key whose write may or may not have happened: its next use looks first.
    pub async fn mark_unknown(self) {
        self.settle(MARK_UNKNOWN, Vec::new()).await
    }
}

const RELEASE: &str = "UPDATE idempotency_keys SET state = 'failed' WHERE identity = ?1 AND key = ?2";
const MARK_UNKNOWN: &str = "UPDATE idempotency_keys SET state = 'unknown' WHERE identity = ?1 AND key = ?2";

impl Drop for LocalClaim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        tracing::warn!(
            write_may_have_happened = self.maybe_written,
            "a submission under an idempotency key was cancelled"
        );
        let sql = if self.maybe_written { MARK_UNKNOWN } else { RELEASE };
        drop(self.send(sql, Vec::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(path: Option<&Path>) -> LocalStore {
        LocalStore::open(path, DEFAULT_TTL).unwrap()
    }

    async fn begin(s: &LocalStore, identity: &str, key: &str, hash: &str) -> (KeyState, Option<LocalClaim>) {
        s.begin(identity, key, hash).await.unwrap()
    }

    fn temp_file(name: &str) -> std::path::PathBuf {
        let f = std::env::temp_dir().join(format!("ats-idem-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&f);
        f
    }

    #[tokio::test]
    async fn a_key_replays_its_result_and_refuses_other_inputs() {
        let s = store(None);
        let (state, claim) = begin(&s, "alice", "k1", "h1").await;
        assert_eq!(state, KeyState::Reserved);
        assert_eq!(begin(&s, "alice", "k1", "h1").await.0, KeyState::InProgress);
        claim.unwrap().complete("c-1", "batch").await;
        assert_eq!(
            begin(&s, "alice", "k1", "h1").await.0,
            KeyState::Completed {
                candidate_id: "c-1".into(),
                strategy: "batch".into()
            }
        );
        assert_eq!(begin(&s, "alice", "k1", "h2").await.0, KeyState::Conflict);
        assert_eq!(
            begin(&s, "bob", "k1", "h2").await.0,
            KeyState::Reserved,
            "keys are per caller"
        );
    }

    #[tokio::test]
    async fn unknown_outcomes_keep_their_probe_and_survive_a_stop() {
        let file = temp_file("unknown");
        let probe = Probe {
            url: "x?$filter=a".into(),
            baseline: vec!["b".into()],
        };
        {
            let s = store(Some(&file));
            let (state, claim) = begin(&s, "a", "k", "h").await;
            assert_eq!(state, KeyState::Reserved);
            let mut claim = claim.unwrap();
            claim.prepare(Some(&probe)).await;
            claim.mark_unknown().await;
            let (state, claim) = begin(&s, "a", "k", "h").await;
            assert_eq!(
                state,
                KeyState::Unknown {
                    probe: Some(probe.clone())
                }
            );
            assert_eq!(
                begin(&s, "a", "k", "h").await.0,
                KeyState::InProgress,
                "reserved to look"
            );
            // Stopped while the prepared write was out.
            std::mem::forget(claim);
        }
        let s = store(Some(&file));
        let (state, claim) = begin(&s, "a", "k", "h").await;
        assert_eq!(state, KeyState::Unknown { probe: Some(probe) });
        claim.unwrap().complete("C-1", "BATCH").await;
        assert_eq!(
            s.claimed(&["c-1".into(), "c-2".into()]).await.unwrap(),
            vec!["C-1".to_string()]
        );
        let (state, claim) = begin(&s, "b", "k2", "h").await;
        assert_eq!(state, KeyState::Reserved);
        std::mem::forget(claim);
        drop(s);
        let s = store(Some(&file));
        assert_eq!(
            begin(&s, "b", "k2", "h").await.0,
            KeyState::Reserved,
            "stopped before preparing: nothing went out"
        );
        let _ = std::fs::remove_file(&file);
    }

    #[tokio::test]
    async fn released_keys_run_again_and_keys_survive_reopening() {
        let file = temp_file("reopen");
        {
            let s = store(Some(&file));
            let (state, claim) = begin(&s, "a", "k", "h").await;
            assert_eq!(state, KeyState::Reserved);
            claim.unwrap().release().await;
            let (state, claim) = begin(&s, "a", "k", "h").await;
            assert_eq!(state, KeyState::Reserved);
            claim.unwrap().complete("c", "flat").await;
        }
        let s = store(Some(&file));
        assert!(matches!(begin(&s, "a", "k", "h").await.0, KeyState::Completed { .. }));
        let _ = std::fs::remove_file(&file);
    }

    #[tokio::test]
    async fn a_dropped_claim_settles_its_key() {
        let s = store(None);
        let (_, claim) = begin(&s, "a", "before-write", "h").await;
        drop(claim);
        assert_eq!(
            begin(&s, "a", "before-write", "h").await.0,
            KeyState::Reserved,
            "cancelled before its write: the key runs again"
        );
        let (_, claim) = begin(&s, "a", "after-write", "h").await;
        let mut claim = claim.unwrap();
        claim.prepare(None).await;
        drop(claim);
        assert_eq!(
            begin(&s, "a", "after-write", "h").await.0,
            KeyState::Unknown { probe: None },
            "cancelled once its write may have gone out: the next use looks first"
        );
        // A claim taken over from an unknown outcome goes back to unknown when dropped.
        let (_, claim) = begin(&s, "a", "after-write", "h").await;
        assert_eq!(begin(&s, "a", "after-write", "h").await.0, KeyState::InProgress);
        drop(claim);
        assert_eq!(
            begin(&s, "a", "after-write", "h").await.0,
            KeyState::Unknown { probe: None }
        );
    }

    #[tokio::test]
    async fn a_begin_whose_caller_is_gone_leaves_no_key_in_progress() {
        let s = store(None);
        // The caller stops waiting at once: the job still runs, and its claim is dropped on the
        // store's thread.
        let pending = s.begin("a", "k", "h");
        drop(pending);
        // A second begin polled once and dropped: pending or not (the store's thread may already
        // have answered), a claim it got is released with it.
        let mut fut = Box::pin(s.begin("a", "k", "h"));
        if let std::task::Poll::Ready(answer) = futures::poll!(fut.as_mut()) {
            drop(answer);
        }
        drop(fut);
        // The next use sees the key free, whatever the first job did.
        let (state, _claim) = begin(&s, "a", "k", "h").await;
        assert_eq!(state, KeyState::Reserved);
    }

    #[tokio::test]
    async fn keys_expire_after_their_ttl() {
        let s = LocalStore::open(None, Duration::from_secs(1)).unwrap();
        let (_, claim) = begin(&s, "a", "k", "h").await;
        claim.unwrap().complete("c-1", "batch").await;
        let (_, claim) = begin(&s, "a", "held", "h").await;
        assert!(matches!(begin(&s, "a", "k", "h").await.0, KeyState::Completed { .. }));
        assert_eq!(s.keys().await.unwrap(), 2);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        s.sweep().await.unwrap();
        assert_eq!(
            s.keys().await.unwrap(),
            1,
            "the expired key is deleted, the held one kept"
        );
        let (state, _claim) = begin(&s, "a", "k", "other input").await;
        assert_eq!(state, KeyState::Reserved, "an expired key is a new key");
        drop(claim);
    }
}
