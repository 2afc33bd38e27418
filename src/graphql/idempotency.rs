//! Idempotency keys of `submitCandidateToHire`, kept in a small SQLite file so that they survive a
//! gateway restart. A key belongs to a caller identity (two callers never share a key) and to the
//! hash of the input it was first used with.
//!
//! Why a local store rather than state derived from the upstream: the ATS entities have no column
//! meant for a client's request key, and writing one into free text (comments) would leak into HR's
//! screens. The cost is that keys live with the gateway's file: run replicas against one shared
//! file, or pin a caller to one replica.

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
             );
             UPDATE idempotency_keys SET state = 'abandoned' WHERE state = 'in_progress';",
        )?;
        Ok(IdempotencyStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `key` for `input_hash`, or says what it already holds.
    pub fn begin(&self, identity: &str, key: &str, input_hash: &str) -> rusqlite::Result<KeyState> {
        let conn = self.conn();
        let row: Option<(String, String, Option<String>, Option<String>)> = conn
            .query_row(
                "SELECT input_hash, state, candidate_id, strategy FROM idempotency_keys WHERE identity = ?1 AND key = ?2",
                [identity, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
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
            Some((hash, _, _, _)) if hash != input_hash => Ok(KeyState::Conflict),
            Some((_, state, Some(id), strategy)) if state == "completed" => Ok(KeyState::Completed {
                candidate_id: id,
                strategy: strategy.unwrap_or_default(),
            }),
            Some((_, state, _, _)) if state == "in_progress" => Ok(KeyState::InProgress),
            // A submission that failed, or was cut off by a restart, may run again.
            Some(_) => {
                conn.execute(
                    "UPDATE idempotency_keys SET state = 'in_progress' WHERE identity = ?1 AND key = ?2",
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
