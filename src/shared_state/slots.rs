//! `--upstream-concurrency-total`: slots per upstream identity over all replicas, as leases in
//! Redis, so that a replica that dies gives its slots back.
//!
//! One sorted set per identity (`ats-gateway:slots:<SHA-256 of the identity>`), a member per slot
//! held, scored by when its lease ends. Taking a slot is one Lua script, atomic in Redis, timed
//! by Redis' clock: it drops the leases that ended, then adds one if fewer than the limit
//! remain. The lease outlasts anything its call may still do (the operation's deadline and one
//! upstream attempt), so a live holder never loses its slot; a dead one's slot comes back when
//! the lease ends. Freeing a slot (`ZREM`) runs in a task of its own when the slot is dropped
//! (the call ended, failed or was cancelled). Two round trips per upstream request, only with
//! the setting; a Redis that fails leaves the call to the process's own slots.

use super::SharedState;
use crate::odata::resilience::{SharedSlot, SharedSlots};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// KEYS[1]: the identity's set. ARGV: limit, lease (ms), a member unique to this slot.
/// Returns 1 when the slot is taken, else 0.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
";

/// The slots all replicas share, in Redis.
pub struct RedisSlots {
    shared: Arc<SharedState>,
    script: redis::Script,
}

impl RedisSlots {
    pub fn new(shared: Arc<SharedState>) -> Self {
        RedisSlots {
            shared,
            script: redis::Script::new(TAKE),
        }
    }
}

/// A slot held in Redis; dropped, it is freed (in a task of its own).
struct Held {
    shared: Arc<SharedState>,
    key: String,
    member: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime left: the lease ends by itself.
        };
        let (shared, key, member) = (
            self.shared.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.member),
        );
        runtime.spawn(async move {
            let _ = shared
                .call("slot ZREM", |mut c| async move {
                    redis::cmd("ZREM")
                        .arg(&key)
                        .arg(&member)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        });
    }
}

impl SharedSlots for RedisSlots {
    fn try_take<'a>(
        &'a self,
        identity: &'a str,
        limit: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Option<SharedSlot>, String>> {
        Box::pin(async move {
            let key = self.shared.identity_key("slots", identity);
            let member = self.shared.unique_member();
            let lease_ms = (lease.as_millis() as u64).max(1);
            let (k, m) = (key.clone(), member.clone());
            let taken = self
                .shared
                .call("slot script", |mut c| async move {
                    self.script
                        .key(&k)
                        .arg(limit)
                        .arg(lease_ms)
                        .arg(&m)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await
                .map_err(|e| e.0)?;
            let held = Held {
                shared: self.shared.clone(),
                key,
                member,
            };
            Ok((taken == 1).then(|| Box::new(held) as SharedSlot))
        })
    }
}
