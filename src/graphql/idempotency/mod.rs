//! Idempotency keys of `submitCandidateToHire`. A key belongs to a caller identity (two callers
//! never share a key) and to the hash of the input it was first used with.
//!
//! - `local`: the SQLite store (`--state-db`), the default: keys survive a restart of the one
//!   process that owns the file.
//! - `shared`: the Redis store (`--redis-url`), for replicas: a key is claimed atomically under a
//!   lease its holder renews while it runs, so a dead replica's claim expires; outcomes (the
//!   candidate, or `unknown` after a lost answer) are seen by every replica.
//!
//! [`IdempotencyStore`] and [`KeyClaim`] are the one face of both to the mutations.
//!
//! Why a store of the gateway's own rather than state derived from the upstream: the ATS
//! entities have no column meant for a client's request key, and writing one into free text
//! (comments) would leak into HR's screens.
//!
//! A write whose response was lost may have happened. Its key is then `unknown`, with the
//! *probe* the submission prepared before writing: a query for candidates that look like this
//! submission's, and the ones that already looked so before (the baseline). The next use of the
//! key runs the probe first (see `mutations::recovery`): a new look-alike is this key's candidate;
//! none means nothing was written and the submission runs again. A gateway that stops (or dies)
//! while a prepared write is out leaves the key `unknown` for the same reason.

mod local;
mod shared;

pub use local::LocalStore;
pub use shared::{SharedStore, LEASE};

use std::time::Duration;

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

/// The store failed (the file, its thread, or Redis): keyed submissions cannot run safely.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store: {0}")]
pub struct StoreError(String);

impl StoreError {
    fn new(why: impl Into<String>) -> Self {
        StoreError(why.into())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<crate::shared_state::StateUnavailable> for StoreError {
    fn from(e: crate::shared_state::StateUnavailable) -> Self {
        StoreError(e.to_string())
    }
}

/// Keys are kept this long after their first use unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where the keys are.
#[derive(Clone)]
pub enum IdempotencyStore {
    /// This process's SQLite file (or memory).
    Local(LocalStore),
    /// Redis, shared by the replicas.
    Shared(SharedStore),
}

impl IdempotencyStore {
    /// The SQLite store (see [`LocalStore::open`]).
    pub fn open(path: Option<&std::path::Path>, ttl: Duration) -> rusqlite::Result<Self> {
        LocalStore::open(path, ttl).map(IdempotencyStore::Local)
    }

    /// The Redis store over `state`; keys expire `ttl` after their first use.
    pub fn shared(state: std::sync::Arc<crate::shared_state::SharedState>, ttl: Duration) -> Self {
        IdempotencyStore::Shared(SharedStore::new(state, ttl))
    }

    /// Reserves `key` for `input_hash`, or says what it already holds. When the key is now
    /// this caller's (`Reserved`, `Unknown`), the claim comes with it.
    pub async fn begin(
        &self,
        identity: &str,
        key: &str,
        input_hash: &str,
    ) -> Result<(KeyState, Option<KeyClaim>), StoreError> {
        Ok(match self {
            IdempotencyStore::Local(s) => {
                let (state, claim) = s.begin(identity, key, input_hash).await?;
                (state, claim.map(|c| KeyClaim(Claim::Local(c))))
            }
            IdempotencyStore::Shared(s) => {
                let (state, claim) = s.begin(identity, key, input_hash).await?;
                (state, claim.map(|c| KeyClaim(Claim::Shared(c))))
            }
        })
    }

    /// Of `candidate_ids`, those some completed key (of any caller) already stands for.
    pub async fn claimed(&self, candidate_ids: &[String]) -> Result<Vec<String>, StoreError> {
        match self {
            IdempotencyStore::Local(s) => s.claimed(candidate_ids).await,
            IdempotencyStore::Shared(s) => s.claimed(candidate_ids).await,
        }
    }

    /// Whether a key in progress may be held by another process, whose outcome is worth waiting
    /// for (Redis); a local key in progress is this process's own concurrent call.
    pub fn shared_between_replicas(&self) -> bool {
        matches!(self, IdempotencyStore::Shared(_))
    }
}

/// A key held by one submission. Every way out settles it: [`KeyClaim::complete`],
/// [`KeyClaim::release`] or [`KeyClaim::mark_unknown`]. Dropped unsettled (the operation was
/// cancelled), it releases the key, or marks it `unknown` once a write may have gone out.
#[derive(Debug)]
pub struct KeyClaim(Claim);

#[derive(Debug)]
enum Claim {
    Local(local::LocalClaim),
    Shared(shared::SharedClaim),
}

impl KeyClaim {
    /// Whether the key was taken over from an attempt whose write may have happened.
    pub fn maybe_written(&self) -> bool {
        match &self.0 {
            Claim::Local(c) => c.maybe_written(),
            Claim::Shared(c) => c.maybe_written(),
        }
    }

    /// The look upstream found nothing: nothing was written, so a cancellation from now on
    /// until [`KeyClaim::prepare`] releases the key.
    pub fn nothing_written(&mut self) {
        match &mut self.0 {
            Claim::Local(c) => c.nothing_written(),
            Claim::Shared(c) => c.nothing_written(),
        }
    }

    /// Records how to find the candidate, and that the write may go out from now on. `Err`:
    /// the store could not record it (Redis unreachable, or the key's lease lost), so the write
    /// must not go out.
    pub async fn prepare(&mut self, probe: Option<&Probe>) -> Result<(), StoreError> {
        match &mut self.0 {
            Claim::Local(c) => {
                c.prepare(probe).await;
                Ok(())
            }
            Claim::Shared(c) => c.prepare(probe).await,
        }
    }

    /// Records the candidate the key created.
    pub async fn complete(self, candidate_id: &str, strategy: &str) {
        match self.0 {
            Claim::Local(c) => c.complete(candidate_id, strategy).await,
            Claim::Shared(c) => c.complete(candidate_id, strategy).await,
        }
    }

    /// Releases a key whose submission wrote nothing, so that a retry runs again.
    pub async fn release(self) {
        match self.0 {
            Claim::Local(c) => c.release().await,
            Claim::Shared(c) => c.release().await,
        }
    }

    /// Marks a key whose write may or may not have happened: its next use looks first.
    pub async fn mark_unknown(self) {
        match self.0 {
            Claim::Local(c) => c.mark_unknown().await,
            Claim::Shared(c) => c.mark_unknown().await,
        }
    }
}
