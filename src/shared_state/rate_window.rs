//! `--upstream-rate-limit` over all replicas: a sliding window per upstream identity in Redis.
//!
//! One sorted set per identity (`ats-gateway:budget:<SHA-256 of the identity>`), a member per
//! request scored by the time it was admitted. One Lua script per request, atomic in Redis,
//! drops the members older than the window, and either adds the request (fewer than the limit
//! remain) or answers how long until the oldest leaves the window. Times are Redis' own clock
//! (`TIME`), so the replicas' clocks need not agree. The set expires a window after its last
//! request, so an idle identity costs nothing. One round trip per upstream request, and only
//! when a limit is set; a failure falls back to the process's own window for that request
//! (`odata::rate_limit`).

use super::SharedState;
use crate::odata::rate_limit::{RateLimit, SharedWindow};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// KEYS[1]: the identity's set. ARGV: window (ms), limit, a member unique to this request.
/// Returns -1 when admitted, else the milliseconds until a place frees.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now + 1)
";

/// The window all replicas fill, in Redis.
pub struct RedisWindow {
    shared: Arc<SharedState>,
    script: redis::Script,
}

impl RedisWindow {
    pub fn new(shared: Arc<SharedState>) -> Self {
        RedisWindow {
            shared,
            script: redis::Script::new(TAKE),
        }
    }
}

impl SharedWindow for RedisWindow {
    fn try_take<'a>(&'a self, identity: &'a str, limit: RateLimit) -> BoxFuture<'a, Result<Option<Duration>, String>> {
        Box::pin(async move {
            let key = self.shared.identity_key("budget", identity);
            let member = self.shared.unique_member();
            let window_ms = limit.window.as_millis() as u64;
            let answer = self
                .shared
                .call("budget script", |mut c| async move {
                    self.script
                        .key(&key)
                        .arg(window_ms)
                        .arg(limit.requests)
                        .arg(&member)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await
                .map_err(|e| e.0)?;
            Ok((answer >= 0).then(|| Duration::from_millis(answer as u64)))
        })
    }
}
