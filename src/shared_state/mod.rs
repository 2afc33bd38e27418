//! State the gateway's replicas share, in Redis (`--redis-url`): the one connection of the
//! process, what it costs (`/metrics`: round trips and errors) and whether it works (`/readyz`).
//!
//! - [`SharedState`]: a `redis` [`ConnectionManager`] (one multiplexed connection, re-opened by
//!   the client itself after a loss), every command bounded by [`COMMAND_TIMEOUT`] so that a
//!   Redis that stopped answering costs a request at most that long; the keys' namespace.
//! - [`SharedState::shared_secret`]: a secret created once for all replicas (the cursor key
//!   when no `--cursor-key-file` is given).
//! - `pauses`: a 429's pause, seen by one replica, held by all ([`SharedState::share_pause`],
//!   [`SharedState::follow_pauses`]: a key per identity and a pub/sub announcement).
//! - `rate_window`: `--upstream-rate-limit` over all replicas, a sliding window per upstream
//!   identity (a sorted set and one Lua script per request).
//! - `slots`: `--upstream-concurrency-total`, slots per upstream identity over all replicas, as
//!   leases (a sorted set and one Lua script per slot taken) that a dead replica gives back.
//! - [`redact_url`]: the Redis URL as it may be logged (the password as `***`).
//!
//! Without `--redis-url` there is no `SharedState` and nothing here runs: the gateway keeps its
//! state in the local SQLite file and in memory. With it, Redis failing is not data loss: the
//! users of this module decide what a failure means (idempotency keys refuse keyed submissions
//! with `STATE_UNAVAILABLE` rather than risk a duplicate; reads never depend on Redis).
//!
//! Why the `redis` crate: it is the widely used, maintained client, and its `ConnectionManager`
//! reconnects by itself and can start without a server (`new_lazy_with_config`), so a gateway
//! starts and serves reads while Redis is down. `fred` offers the same with more machinery
//! (pools, its own reconnect policies) that one multiplexed connection does not need here.

mod pauses;
pub mod rate_window;
pub mod slots;

use crate::secret::Secret;
use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// Longest wait for one Redis command (a round trip), connecting included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a new connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Redis could not be used: unreachable, timed out, or it refused a command. The message holds
/// no credential (the URL is never part of it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared state (Redis) unavailable: {0}")]
pub struct StateUnavailable(pub String);

/// The process's connection to Redis, with its counters.
pub struct SharedState {
    manager: ConnectionManager,
    /// The URL with its password redacted, for logs and `/readyz`.
    url: String,
    /// Every key the gateway writes starts with this (`ats-gateway:`).
    prefix: String,
    round_trips: Counter,
    errors: Counter,
    /// The last failure, until a command succeeds again (for `/readyz`).
    last_error: Mutex<Option<String>>,
    /// The client, for connections of their own (a subscription cannot share the multiplexed one).
    client: redis::Client,
    /// This process among the replicas (random), so that it can skip its own announcements.
    origin: u64,
    /// Numbers this process's members of shared sets (see [`SharedState::unique_member`]).
    sequence: std::sync::atomic::AtomicU64,
    /// Tasks this state runs (the subscription to the pauses), aborted when it is dropped.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for SharedState {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Prepares the connection to `url` without opening it (the first command does, and Redis
    /// may be down at start). `round_trips` and `errors` are the `/metrics` counters it adds to.
    /// Fails only for a URL the client cannot read.
    pub fn connect(url: &Secret, round_trips: Counter, errors: Counter) -> Result<SharedState, String> {
        let redacted = redact_url(url.expose());
        let client = redis::Client::open(url.expose())
            .map_err(|e| format!("--redis-url {redacted} is not a Redis URL: {:?}", e.kind()))?;
        // Few reconnection attempts per command: a command waiting on a dead server fails fast
        // (the next command starts a new attempt); the timeouts bound each attempt.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("cannot set up the Redis connection to {redacted}: {:?}", e.kind()))?;
        Ok(SharedState {
            manager,
            url: redacted,
            prefix: "ats-gateway:".into(),
            round_trips,
            errors,
            last_error: Mutex::new(None),
            client,
            origin: rand::random(),
            sequence: Default::default(),
            tasks: Mutex::default(),
        })
    }

    /// The Redis URL with its password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A key of the gateway's namespace: `ats-gateway:<kind>:<name>`.
    pub fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// The key of `kind` for an upstream identity, named by its SHA-256 (an identity may hold
    /// a user's name; a key should not).
    pub fn identity_key(&self, kind: &str, identity: &str) -> String {
        self.key(kind, &crate::secret::sha256_hex(identity.as_bytes()))
    }

    /// A member no other request of any replica uses (this process's origin and a sequence
    /// number), for the sorted sets of the shared window and slots.
    pub fn unique_member(&self) -> String {
        let n = self.sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n}", self.origin)
    }

    /// Runs one exchange with Redis (`what` names it in errors): counted as a round trip,
    /// bounded by [`COMMAND_TIMEOUT`], a failure counted and remembered for `/readyz`.
    pub async fn call<T, F, Fut>(&self, what: &str, exchange: F) -> Result<T, StateUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.round_trips.inc();
        let outcome = match tokio::time::timeout(COMMAND_TIMEOUT, exchange(self.manager.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("{what}: {}", describe(&e))),
            Err(_) => Err(format!("{what}: no answer within {} ms", COMMAND_TIMEOUT.as_millis())),
        };
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(value) => {
                *last = None;
                Ok(value)
            }
            Err(why) => {
                self.errors.inc();
                *last = Some(why.clone());
                Err(StateUnavailable(why))
            }
        }
    }

    /// Whether Redis answers now: one `PING`. `Err` says why not.
    pub async fn health(&self) -> Result<(), String> {
        let pong = self
            .call("PING", |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await;
        pong.map(|_| ()).map_err(|e| e.0)
    }

    /// The secret `name` every replica shares: the value stored under it, or `fresh` if none was
    /// (stored then, once: `SET NX GET` is atomic, so replicas starting together agree on the
    /// first one written). Never expires.
    pub async fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StateUnavailable> {
        let key = self.key("secret", name);
        let before = self
            .call("SET NX GET", |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(fresh)
                    .arg("NX")
                    .arg("GET")
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await?;
        Ok(before.unwrap_or_else(|| fresh.to_vec()))
    }

    /// The last failure if no command succeeded since.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A Redis error as logged and shown: its kind and, for I/O errors, the cause; never the URL.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        format!("{:?}", e.kind())
    }
}

/// `url` as it may be logged: a password (and a user name's password) replaced by `***`; a URL
/// that does not parse is not shown at all.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(a URL that does not parse)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("redis://:s3cret@cache.internal:6380/2"),
            "redis://:***@cache.internal:6380/2"
        );
        assert_eq!(
            redact_url("rediss://gateway:s3cret@cache.internal/"),
            "rediss://gateway:***@cache.internal/"
        );
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(!redact_url("redis//:s3cret@x").contains("s3cret"));
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_not_a_wait() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Secret::new(format!("redis://:pw@127.0.0.1:{port}/"));
        let state = SharedState::connect(&url, Counter::default(), Counter::default()).unwrap();
        let why = state.health().await.expect_err("nothing listens there");
        assert!(!why.contains("pw"), "{why}");
        assert_eq!(state.last_error(), Some(why));
        assert!(!format!("{state:?}").contains(":pw@"));
    }
}
