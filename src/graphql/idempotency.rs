//! Idempotency keys of `submitCandidateToHire`, kept in a small SQLite file so that they survive a
//! gateway restart. A key belongs to a caller identity (two callers never share a key) and to the
//! hash of the input it was first used with.
//!
//! Why a local store rather than state derived from the upstream: the ATS entities have no column
//! meant for a client's request key, and writing one into free text (comments) would leak into HR's
//! screens. The cost is that keys live with the gateway's file: run replicas against one shared
//! file, or pin a caller to one replica.
//!
//! A write whose response was lost may have happened. Its key is then `unknown`, with the
//! *probe* the submission prepared before writing: a query for candidates that look like this
//! submission's, and the ones that already looked so before (the baseline). The next use of the
//! key runs the probe first (see `mutations::recovery`): a new look-alike is this key's candidate;
//! none means nothing was written and the submission runs again. A gateway that stops while a
//! prepared write is out leaves the key `unknown` for the same reason.

use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// First use: the caller may go ahead (the key is now reserved).
    Reserved,
    /// A submission with this key is still running.
    InProgress,
    /// Done before, with the same input: here is the candidate it created.
    Completed { candidate_id: String, strategy: String },
    /// Used before with a different input.
    Conflict,
    /// An earlier write may or may not have happened: look upstream with the probe before
    /// running again (the key is reserved for this call now). `None`: no probe was prepared.
    Unknown { probe: Option<Probe> },
}

/// How to find upstream what a submission wrote: candidates matching `url` that are not in
/// `baseline` (those matched before the write).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// A relative OData URL selecting the primary keys of look-alike candidates.
    pub url: String,
    /// Look-alikes that existed before the write, lower-case GUIDs.
    pub baseline: Vec<String>,
}

/// The store of idempotency keys.
pub struct IdempotencyStore {
    conn: Mutex<Connection>,
}

impl IdempotencyStore {
    /// Opens (or creates) the store; `None` keeps it in memory (tests, or when losing keys on
    /// restart is acceptable).
    pub fn open(path: Option<&Path>) -> rusqlite::Result<Self> {
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
        Ok(IdempotencyStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `key` for `input_hash`, or says what it already holds.
    pub fn begin(&self, identity: &str, key: &str, input_hash: &str) -> rusqlite::Result<KeyState> {
        let conn = self.conn();
        type Row = (String, String, Option<String>, Option<String>, Option<String>);
        let row: Option<Row> = conn
            .query_row(
                "SELECT input_hash, state, candidate_id, strategy, probe FROM idempotency_keys WHERE identity = ?1 AND key = ?2",
                [identity, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        match row {
            None => {
                conn.execute(
                    "INSERT INTO idempotency_keys (identity, key, input_hash, state) VALUES (?1, ?2, ?3, 'in_progress')",
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
                conn.execute(
                    "UPDATE idempotency_keys SET state = 'in_progress' WHERE identity = ?1 AND key = ?2",
                    [identity, key],
                )?;
                let probe = probe.and_then(|p| serde_json::from_str(&p).ok());
                Ok(KeyState::Unknown { probe })
            }
            // A submission that failed, or was cut off by a restart before it wrote, may run again.
            Some(_) => {
                conn.execute(
                    "UPDATE idempotency_keys SET state = 'in_progress', probe = NULL WHERE identity = ?1 AND key = ?2",
                    [identity, key],
                )?;
                Ok(KeyState::Reserved)
            }
        }
    }

    /// Records the candidate a key created.
    pub fn complete(&self, identity: &str, key: &str, candidate_id: &str, strategy: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE idempotency_keys SET state = 'completed', candidate_id = ?3, strategy = ?4 WHERE identity = ?1 AND key = ?2",
            [identity, key, candidate_id, strategy],
        )?;
        Ok(())
    }

    /// Records how to find the submission's candidate, just before its write goes out.
    pub fn prepare(&self, identity: &str, key: &str, probe: &Probe) -> rusqlite::Result<()> {
        let probe = serde_json::to_string(probe).expect("a probe serializes");
        self.conn().execute(
            "UPDATE idempotency_keys SET probe = ?3 WHERE identity = ?1 AND key = ?2",
            [identity, key, &probe],
        )?;
        Ok(())
    }

    /// Marks a key whose write may or may not have happened: its next use looks first.
    pub fn mark_unknown(&self, identity: &str, key: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE idempotency_keys SET state = 'unknown' WHERE identity = ?1 AND key = ?2",
            [identity, key],
        )?;
        Ok(())
    }

    /// Of `candidate_ids`, those some completed key (of any caller) already stands for.
    pub fn claimed(&self, candidate_ids: &[String]) -> rusqlite::Result<Vec<String>> {
        if candidate_ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let marks = vec!["?"; candidate_ids.len()].join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT candidate_id FROM idempotency_keys WHERE state = 'completed' AND lower(candidate_id) IN ({marks})"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(candidate_ids), |r| r.get(0))?;
        rows.collect()
    }

    /// Releases a key whose submission wrote nothing, so that a retry runs again.
    pub fn release(&self, identity: &str, key: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE idempotency_keys SET state = 'failed' WHERE identity = ?1 AND key = ?2",
            [identity, key],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_replays_its_result_and_refuses_other_inputs() {
        let s = IdempotencyStore::open(None).unwrap();
        assert_eq!(s.begin("alice", "k1", "h1").unwrap(), KeyState::Reserved);
        assert_eq!(s.begin("alice", "k1", "h1").unwrap(), KeyState::InProgress);
        s.complete("alice", "k1", "c-1", "batch").unwrap();
        assert_eq!(
            s.begin("alice", "k1", "h1").unwrap(),
            KeyState::Completed {
                candidate_id: "c-1".into(),
                strategy: "batch".into()
            }
        );
        assert_eq!(s.begin("alice", "k1", "h2").unwrap(), KeyState::Conflict);
        assert_eq!(
            s.begin("bob", "k1", "h2").unwrap(),
            KeyState::Reserved,
            "keys are per caller"
        );
    }

    #[test]
    fn unknown_outcomes_keep_their_probe_and_survive_a_stop() {
        let dir = std::env::temp_dir().join(format!("ats-idem-unknown-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let probe = Probe {
            url: "x?$filter=a".into(),
            baseline: vec!["b".into()],
        };
        {
            let s = IdempotencyStore::open(Some(&dir)).unwrap();
            assert_eq!(s.begin("a", "k", "h").unwrap(), KeyState::Reserved);
            s.prepare("a", "k", &probe).unwrap();
            s.mark_unknown("a", "k").unwrap();
            assert_eq!(
                s.begin("a", "k", "h").unwrap(),
                KeyState::Unknown {
                    probe: Some(probe.clone())
                }
            );
            assert_eq!(
                s.begin("a", "k", "h").unwrap(),
                KeyState::InProgress,
                "reserved to look"
            );
            // Stopped while the prepared write was out.
        }
        let s = IdempotencyStore::open(Some(&dir)).unwrap();
        assert_eq!(
            s.begin("a", "k", "h").unwrap(),
            KeyState::Unknown { probe: Some(probe) }
        );
        s.complete("a", "k", "C-1", "BATCH").unwrap();
        assert_eq!(
            s.claimed(&["c-1".into(), "c-2".into()]).unwrap(),
            vec!["C-1".to_string()]
        );
        assert_eq!(s.begin("b", "k2", "h").unwrap(), KeyState::Reserved);
        drop(s);
        let s = IdempotencyStore::open(Some(&dir)).unwrap();
        assert_eq!(
            s.begin("b", "k2", "h").unwrap(),
            KeyState::Reserved,
            "stopped before preparing: nothing went out"
        );
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn released_keys_run_again_and_keys_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("ats-idem-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        {
            let s = IdempotencyStore::open(Some(&dir)).unwrap();
            assert_eq!(s.begin("a", "k", "h").unwrap(), KeyState::Reserved);
            s.release("a", "k").unwrap();
            assert_eq!(s.begin("a", "k", "h").unwrap(), KeyState::Reserved);
            s.complete("a", "k", "c", "flat").unwrap();
        }
        let s = IdempotencyStore::open(Some(&dir)).unwrap();
        assert!(matches!(s.begin("a", "k", "h").unwrap(), KeyState::Completed { .. }));
        let _ = std::fs::remove_file(&dir);
    }
}
