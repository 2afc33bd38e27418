//! The Redis store of idempotency keys (`--redis-url`), shared by the gateway's replicas.
//!
//! A key is two Redis keys, both in the gateway's namespace and named by a SHA-256 of the caller
//! identity and the client's key (never the key itself):
//!
//! - the *record* `ats-gateway:idem:<hash>`, a hash (`input_hash`, `state`, `candidate_id`,
//!   `strategy`, `probe`, `prepared`) that expires `ttl` after the key's first use, as the SQLite
//!   rows do;
//! - the *lease* `ats-gateway:idem:<hash>:lease`, holding a random token of the claim that runs
//!   the key now, with a Redis expiry. While it exists the key is in progress.
//!
//! Claiming is one Lua script (atomic on the server): a new key, or a free one (failed,
//! `unknown`, or `in_progress` whose lease expired because its holder died), is taken with
//! `SET lease token PX`; a key under a live lease is in progress. Every later change by the
//! holder (prepare, complete, release, unknown, renew) is a script that first checks that the
//! lease still holds the claim's token, so a claim whose lease expired can never overwrite what
//! the replica that took the key over records.
//!
//! A [`SharedClaim`] renews its lease in a task of its own every [`RENEW_EVERY`] while it lives;
//! the claim aborts that task when it is settled or dropped, so a dropped submission stops
//! renewing and a killed replica's lease expires after at most [`LEASE`]. Before the write goes
//! out, `prepare` also stretches the lease to the operation's upstream deadline (plus a margin):
//! the write cannot still be on its way when the lease expires, even if Redis became unreachable
//! meanwhile. A holder that died after preparing leaves the record `in_progress` and `prepared`:
//! whoever takes the key over gets it as `unknown` and looks upstream before writing again.

use super::{KeyState, Probe, StoreError};
use crate::shared_state::{SharedState, StateUnavailable};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// How long a claim holds its key without renewing it: how long a replica that died before its
/// write leaves the key in progress.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a live claim renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How long past the operation's upstream deadline a prepared write's lease lasts: an upstream
/// request in flight at the deadline may still be processed a little later.
const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// Claims a key. KEYS: record, lease. ARGV: input hash, token, lease ms, ttl ms. Answers the
/// state, and for `completed` the candidate and strategy, for `unknown` the probe.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local hash = redis.call('HGET', KEYS[1], 'input_hash')
local held = redis.call('EXISTS', KEYS[2]) == 1
if not hash then
  if held then return {'in_progress'} end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'input_hash', ARGV[1], 'state', 'in_progress', 'prepared', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return {'reserved'}
end
if hash ~= ARGV[1] then return {'conflict'} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'completed' then
  return {'completed', redis.call('HGET', KEYS[1], 'candidate_id') or '', redis.call('HGET', KEYS[1], 'strategy') or ''}
end
if held then return {'in_progress'} end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if state == 'unknown' or (state == 'in_progress' and redis.call('HGET', KEYS[1], 'prepared') == '1') then
  redis.call('HSET', KEYS[1], 'state', 'in_progress', 'prepared', '1')
  return {'unknown', redis.call('HGET', KEYS[1], 'probe') or ''}
end
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'prepared', '0')
redis.call('HDEL', KEYS[1], 'probe')
return {'reserved'}
"#,
    )
});

/// A change by the key's holder, only while its lease holds its token. KEYS: record, lease, and
/// for `complete` the candidate's marker. ARGV: token, op, lease ms, ttl ms, then the op's
/// values. Answers 1, or 0 when the lease is not (or no longer) this claim's.
static FENCED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local op = ARGV[2]
if op == 'renew' or op == 'prepare' then
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  if op == 'prepare' then
    redis.call('HSET', KEYS[1], 'prepared', '1')
    if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'probe', ARGV[5]) end
  end
  return 1
end
if op == 'complete' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'candidate_id', ARGV[5], 'strategy', ARGV[6])
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
elseif op == 'release' then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'prepared', '0')
else
  redis.call('HSET', KEYS[1], 'state', 'unknown', 'prepared', '1')
end
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('DEL', KEYS[2])
return 1
"#,
    )
});

/// The Redis store: the connection and the keys' time-to-live.
#[derive(Clone)]
pub struct SharedStore {
    state: Arc<SharedState>,
    ttl: Duration,
}

impl SharedStore {
    pub fn new(state: Arc<SharedState>, ttl: Duration) -> Self {
        SharedStore { state, ttl }
    }

    /// The record's Redis key for `identity`'s `key`.
    fn record(&self, identity: &str, key: &str) -> String {
        let name = crate::secret::sha256_hex(format!("{identity}\n{key}").as_bytes());
        self.state.key("idem", &name)
    }

    /// The marker saying a completed key stands for `candidate_id`.
    fn marker(&self, candidate_id: &str) -> String {
        self.state.key("idem-candidate", &candidate_id.to_ascii_lowercase())
    }

    /// Claims `key` for `input_hash` (see [`CLAIM`]). A caller that stops waiting after the
    /// script ran leaves a lease nobody renews: the key is free again after [`LEASE`].
    pub async fn begin(
        &self,
        identity: &str,
        key: &str,
        input_hash: &str,
    ) -> Result<(KeyState, Option<SharedClaim>), StoreError> {
        let record = self.record(identity, key);
        let lease = format!("{record}:lease");
        let token = uuid::Uuid::new_v4().to_string();
        let (r, l, t, h) = (record.clone(), lease.clone(), token.clone(), input_hash.to_string());
        let (lease_ms, ttl_ms) = (millis(LEASE), millis(self.ttl));
        let reply: Vec<String> = self
            .state
            .call("claim an idempotency key", |mut c| async move {
                CLAIM
                    .key(r)
                    .key(l)
                    .arg(h)
                    .arg(t)
                    .arg(lease_ms)
                    .arg(ttl_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let state = match reply.first().map(String::as_str) {
            Some("reserved") => KeyState::Reserved,
            Some("in_progress") => KeyState::InProgress,
            Some("conflict") => KeyState::Conflict,
            Some("completed") => KeyState::Completed {
                candidate_id: reply.get(1).cloned().unwrap_or_default(),
                strategy: reply.get(2).cloned().unwrap_or_default(),
            },
            Some("unknown") => KeyState::Unknown {
                probe: reply.get(1).and_then(|p| serde_json::from_str(p).ok()),
            },
            other => return Err(StoreError::new(format!("unexpected answer from Redis: {other:?}"))),
        };
        let claim = matches!(state, KeyState::Reserved | KeyState::Unknown { .. }).then(|| {
            let holder = Holder {
                state: self.state.clone(),
                record,
                lease,
                token,
                ttl: self.ttl,
            };
            SharedClaim {
                renewal: holder.clone().renew_in_background(),
                holder,
                maybe_written: matches!(state, KeyState::Unknown { .. }),
                settled: false,
            }
        });
        Ok((state, claim))
    }

    /// Of `candidate_ids`, those some completed key (of any caller, on any replica) stands for.
    pub async fn claimed(&self, candidate_ids: &[String]) -> Result<Vec<String>, StoreError> {
        if candidate_ids.is_empty() {
            return Ok(Vec::new());
        }
        let markers: Vec<String> = candidate_ids.iter().map(|id| self.marker(id)).collect();
        let found: Vec<Option<String>> = self
            .state
            .call("read candidate markers", |mut c| async move {
                redis::cmd("MGET").arg(markers).query_async(&mut c).await
            })
            .await?;
        Ok(candidate_ids
            .iter()
            .zip(found)
            .filter(|(_, m)| m.is_some())
            .map(|(id, _)| id.clone())
            .collect())
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX).max(1)
}

/// What a claim needs to act on its key (and what its renewal task holds: not the claim).
#[derive(Clone)]
struct Holder {
    state: Arc<SharedState>,
    record: String,
    lease: String,
    token: String,
    ttl: Duration,
}

impl Holder {
    /// Runs [`FENCED`]'s `op` with `lease` (ms) and `values`: whether the lease was this claim's.
    async fn fenced(&self, op: &'static str, lease: u64, values: [String; 2]) -> Result<bool, StateUnavailable> {
        let mut keys = vec![self.record.clone(), self.lease.clone()];
        if op == "complete" {
            keys.push(self.marker_of(&values[0]));
        }
        let (token, ttl) = (self.token.clone(), millis(self.ttl));
        let answer: i64 = self
            .state
            .call("update an idempotency key", |mut c| async move {
                let mut invocation = FENCED.prepare_invoke();
                for k in keys {
                    invocation.key(k);
                }
                invocation
                    .arg(token)
                    .arg(op)
                    .arg(lease)
                    .arg(ttl)
                    .arg(&values[0])
                    .arg(&values[1]);
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(answer == 1)
    }

    fn marker_of(&self, candidate_id: &str) -> String {
        self.state.key("idem-candidate", &candidate_id.to_ascii_lowercase())
    }

    /// Renews the lease every [`RENEW_EVERY`] until aborted or the lease is lost.
    fn renew_in_background(self) -> tokio::task::AbortHandle {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match self.fenced("renew", millis(LEASE), Default::default()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("an idempotency key's lease expired while its submission ran");
                        return;
                    }
                    // The lease may still hold: try again at the next turn.
                    Err(e) => tracing::warn!(error = %e, "could not renew an idempotency key's lease"),
                }
            }
        })
        .abort_handle()
    }

    /// Settles the key with `op` (`release` or `unknown`), logging a failure.
    async fn settle(&self, op: &'static str) {
        match self.fenced(op, 0, Default::default()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(op, "an idempotency key's lease had expired before it was settled"),
            Err(e) => tracing::error!(error = %e, op, "could not record an idempotency key's state; its lease expires"),
        }
    }
}

/// A key held by one submission on this replica, while its lease is renewed. See
/// [`super::KeyClaim`] for the rules; dropped unsettled, it settles the key in a task of its own
/// (or, without a runtime, lets the lease expire).
pub struct SharedClaim {
    holder: Holder,
    renewal: tokio::task::AbortHandle,
    maybe_written: bool,
    settled: bool,
}

impl std::fmt::Debug for SharedClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedClaim")
            .field("maybe_written", &self.maybe_written)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl SharedClaim {
    pub fn maybe_written(&self) -> bool {
        self.maybe_written
    }

    pub fn nothing_written(&mut self) {
        self.maybe_written = false;
    }

    /// Records the probe and that the write may go out, and stretches the lease past the
    /// operation's upstream deadline. `Err` when Redis cannot record it or the lease is lost: the
    /// write must not go out then.
    pub async fn prepare(&mut self, probe: Option<&Probe>) -> Result<(), StoreError> {
        let probe = match probe {
            Some(p) => serde_json::to_string(p).map_err(|e| StoreError::new(e.to_string()))?,
            None => String::new(),
        };
        let until_deadline = crate::odata::resilience::current_deadline()
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or_default();
        let lease = LEASE.max(until_deadline + DEADLINE_MARGIN);
        match self
            .holder
            .fenced("prepare", millis(lease), [probe, String::new()])
            .await?
        {
            true => {
                self.maybe_written = true;
                Ok(())
            }
            false => Err(StoreError::new("the key's lease expired before its write")),
        }
    }

    pub async fn complete(mut self, candidate_id: &str, strategy: &str) {
        self.stop();
        let values = [candidate_id.to_string(), strategy.to_string()];
        match self.holder.fenced("complete", 0, values).await {
            Ok(true) => {}
            // Another replica took the key over (this one was cut off from Redis past the
            // lease): it looks upstream and finds this candidate, which no marker hides.
            Ok(false) => {
                tracing::warn!(candidate.id = %candidate_id, "an idempotency key's lease had expired before its candidate was recorded")
            }
            Err(e) => {
                tracing::error!(error = %e, candidate.id = %candidate_id, "could not record an idempotency key's candidate; the next use of the key looks upstream")
            }
        }
    }

    pub async fn release(mut self) {
        self.stop();
        self.holder.settle("release").await
    }

    pub async fn mark_unknown(mut self) {
        self.stop();
        self.holder.settle("unknown").await
    }

    /// Marks the claim settled and stops renewing its lease.
    fn stop(&mut self) {
        self.settled = true;
        self.renewal.abort();
    }
}

impl Drop for SharedClaim {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.settled {
            return;
        }
        tracing::warn!(
            write_may_have_happened = self.maybe_written,
            "a submission under an idempotency key was cancelled"
        );
        let op = if self.maybe_written { "unknown" } else { "release" };
        let holder = self.holder.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { holder.settle(op).await });
        }
    }
}
