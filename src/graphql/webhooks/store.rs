//! Where webhook registrations, pending deliveries and the delivery log live ([`WebhookStore`]):
//! Redis under `--redis-url` (`super::shared`), else the gateway's SQLite state file (`--state-db`, shared with the idempotency keys on a connection of its
//! own), so that a restart loses nothing. A delivery is one row per (subscription, event id):
//! an event is enqueued once per subscription whatever repeats it, and kept, delivered or not,
//! for a day so that a repeat within it is recognised. A delivery being attempted is leased
//! (`leased_until`); the file belongs to one process, so leases left by a stopped process are
//! cleared at start and its deliveries resumed.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The store failed (the file, or its blocking task).
#[derive(Debug, thiserror::Error)]
#[error("webhook store: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// A registration as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: String,
    /// The caller identity (`server::auth`) it belongs to.
    pub identity: String,
    pub url: String,
    /// Event type names (`RECRUITING_REQUEST_CHANGED`, …).
    pub events: Vec<String>,
    /// The filter input per entity type, as given (JSON object).
    pub filter: serde_json::Value,
    pub description: Option<String>,
    /// `whsec_…`; never logged, never shown again after creation.
    pub secret: crate::secret::Secret,
    /// Why it was disabled (`None`: active).
    pub disabled_reason: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One attempt in the delivery log (as JSON in the Redis store's log).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    pub event_id: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
    /// Unix milliseconds.
    pub at: i64,
}

/// A delivery due now, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Due {
    pub subscription_id: String,
    pub event_id: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub url: String,
    pub secret: crate::secret::Secret,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Delivered (2xx).
    Delivered,
    /// Try again at this time (unix ms).
    RetryAt(i64),
    /// Out of attempts: the subscription is disabled with this reason.
    GiveUp(String),
}

/// Where webhooks are kept: the SQLite state file, or Redis under `--redis-url`.
#[derive(Clone)]
pub enum WebhookStore {
    Local(LocalStore),
    Shared(super::shared::SharedStore),
}

/// Forwards each method to the store in use.
macro_rules! delegate {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;)+) => {
        impl WebhookStore {
            $($(#[$doc])* pub async fn $name(&self $(, $arg: $ty)*) -> Result<$out, StoreError> {
                match self {
                    WebhookStore::Local(s) => s.$name($($arg),*).await,
                    WebhookStore::Shared(s) => s.$name($($arg),*).await,
                }
            })+
        }
    };
}

delegate! {
    /// See [`LocalStore::create`].
    fn create(&self, s: Subscription) -> ();
    /// See [`LocalStore::delete`].
    fn delete(&self, identity: &str, id: &str) -> bool;
    /// See [`LocalStore::list`].
    fn list(&self, identity: Option<&str>) -> Vec<Subscription>;
    /// See [`LocalStore::get`].
    fn get(&self, id: &str) -> Option<Subscription>;
    /// See [`LocalStore::attempts`].
    fn attempts(&self, id: &str, n: usize) -> Vec<Attempt>;
    /// See [`LocalStore::enqueue`].
    fn enqueue(&self, id: &str, event_id: &str, body: String, now: i64) -> bool;
    /// See [`LocalStore::claim_due`].
    fn claim_due(&self, now: i64, lease_ms: i64, limit: usize) -> Vec<Due>;
    /// See [`LocalStore::record`].
    fn record(&self, due: &Due, a: Attempt, next: Next, keep: usize) -> ();
    /// See [`LocalStore::pending`].
    fn pending(&self, id: &str) -> usize;
}

impl WebhookStore {
    /// The SQLite store (see [`LocalStore::open`]).
    pub fn open(path: Option<&Path>) -> Result<Self, StoreError> {
        LocalStore::open(path).map(WebhookStore::Local)
    }

    /// The Redis store, shared by the replicas.
    pub fn shared(state: Arc<crate::shared_state::SharedState>) -> Self {
        WebhookStore::Shared(super::shared::SharedStore::new(state))
    }
}

/// The SQLite store of webhooks. Cloning shares the connection.
#[derive(Clone)]
pub struct LocalStore {
    conn: Arc<Mutex<Connection>>,
}

/// Delivered or failed deliveries are kept this long (for recognising a repeated event).
const KEEP_MS: i64 = 24 * 3600 * 1000;

impl LocalStore {
    /// Opens (or creates) the tables in `path`; `None`: in memory. Clears the leases a stopped
    /// process left, so its deliveries are due again.
    pub fn open(path: Option<&Path>) -> Result<Self, StoreError> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS webhook_subscriptions (
                 id TEXT PRIMARY KEY,
                 identity TEXT NOT NULL,
                 url TEXT NOT NULL,
                 events TEXT NOT NULL,
                 filter TEXT NOT NULL,
                 description TEXT,
                 secret TEXT NOT NULL,
                 disabled_reason TEXT,
                 created_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS webhook_subscriptions_identity ON webhook_subscriptions (identity);
             CREATE TABLE IF NOT EXISTS webhook_deliveries (
                 subscription_id TEXT NOT NULL,
                 event_id TEXT NOT NULL,
                 body TEXT NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 due_at INTEGER NOT NULL,
                 leased_until INTEGER NOT NULL DEFAULT 0,
                 created_at INTEGER NOT NULL,
                 PRIMARY KEY (subscription_id, event_id)
             );
             CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, due_at);
             CREATE TABLE IF NOT EXISTS webhook_attempts (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 subscription_id TEXT NOT NULL,
                 event_id TEXT NOT NULL,
                 attempt INTEGER NOT NULL,
                 status INTEGER,
                 error TEXT,
                 latency_ms INTEGER NOT NULL,
                 at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS webhook_attempts_subscription ON webhook_attempts (subscription_id, seq);
             UPDATE webhook_deliveries SET leased_until = 0 WHERE state = 'pending';",
        )?;
        Ok(LocalStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on a blocking thread; it runs to the end even if the caller
    /// stops waiting.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError(format!("its task failed: {e}")))?
        .map_err(StoreError::from)
    }

    /// Stores a new registration.
    pub async fn create(&self, s: Subscription) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO webhook_subscriptions (id, identity, url, events, filter, description, secret, disabled_reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    s.id,
                    s.identity,
                    s.url,
                    serde_json::to_string(&s.events).unwrap_or_default(),
                    s.filter.to_string(),
                    s.description,
                    s.secret.expose(),
                    s.disabled_reason,
                    s.created_at
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Deletes `identity`'s registration `id` with its deliveries and log; `false`: it has none
    /// by that id (another caller's is not found either).
    pub async fn delete(&self, identity: &str, id: &str) -> Result<bool, StoreError> {
        let (identity, id) = (identity.to_string(), id.to_string());
        self.call(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM webhook_subscriptions WHERE id = ?1 AND identity = ?2",
                params![id, identity],
            )?;
            if n > 0 {
                tx.execute("DELETE FROM webhook_deliveries WHERE subscription_id = ?1", [&id])?;
                tx.execute("DELETE FROM webhook_attempts WHERE subscription_id = ?1", [&id])?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    /// `identity`'s registrations, oldest first; `None`: every identity's (for re-watching at
    /// start).
    pub async fn list(&self, identity: Option<&str>) -> Result<Vec<Subscription>, StoreError> {
        let identity = identity.map(str::to_string);
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, identity, url, events, filter, description, secret, disabled_reason, created_at
                 FROM webhook_subscriptions WHERE ?1 IS NULL OR identity = ?1 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([identity], subscription_row)?;
            rows.collect()
        })
        .await
    }

    /// The registration `id`, whoever's it is.
    pub async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT id, identity, url, events, filter, description, secret, disabled_reason, created_at
                 FROM webhook_subscriptions WHERE id = ?1",
                [id],
                subscription_row,
            )
            .optional()
        })
        .await
    }

    /// The last `n` attempts of registration `id`, newest first.
    pub async fn attempts(&self, id: &str, n: usize) -> Result<Vec<Attempt>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT event_id, attempt, status, error, latency_ms, at FROM webhook_attempts
                 WHERE subscription_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, n as i64], |r| {
                Ok(Attempt {
                    event_id: r.get(0)?,
                    attempt: r.get(1)?,
                    status: r.get(2)?,
                    error: r.get(3)?,
                    latency_ms: r.get::<_, i64>(4)? as u64,
                    at: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Enqueues event `event_id` for registration `id`, due at `now`; `false`: this event was
    /// enqueued for it before (or the registration is gone or disabled).
    pub async fn enqueue(&self, id: &str, event_id: &str, body: String, now: i64) -> Result<bool, StoreError> {
        let (id, event_id) = (id.to_string(), event_id.to_string());
        self.call(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (subscription_id, event_id, body, due_at, created_at)
                 SELECT id, ?2, ?3, ?4, ?4 FROM webhook_subscriptions WHERE id = ?1 AND disabled_reason IS NULL",
                params![id, event_id, body, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// Leases up to `limit` deliveries due at `now` (of active registrations) until
    /// `now + lease_ms`, and forgets deliveries settled over a day ago.
    pub async fn claim_due(&self, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Due>, StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE state != 'pending' AND created_at < ?1",
                [now - KEEP_MS],
            )?;
            let due = {
                let mut stmt = tx.prepare(
                    "SELECT d.subscription_id, d.event_id, d.body, d.attempts, s.url, s.secret
                     FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
                     WHERE d.state = 'pending' AND d.due_at <= ?1 AND d.leased_until <= ?1 AND s.disabled_reason IS NULL
                     ORDER BY d.due_at LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now, limit as i64], |r| {
                    Ok(Due {
                        subscription_id: r.get(0)?,
                        event_id: r.get(1)?,
                        body: r.get(2)?,
                        attempts: r.get(3)?,
                        url: r.get(4)?,
                        secret: crate::secret::Secret::new(r.get::<_, String>(5)?),
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            for d in &due {
                tx.execute(
                    "UPDATE webhook_deliveries SET leased_until = ?3 WHERE subscription_id = ?1 AND event_id = ?2",
                    params![d.subscription_id, d.event_id, now + lease_ms],
                )?;
            }
            tx.commit()?;
            Ok(due)
        })
        .await
    }

    /// Records attempt `a` of `due` and what follows; keeps the last `keep` attempts of the
    /// registration.
    pub async fn record(&self, due: &Due, a: Attempt, next: Next, keep: usize) -> Result<(), StoreError> {
        let (sub, event) = (due.subscription_id.clone(), due.event_id.clone());
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO webhook_attempts (subscription_id, event_id, attempt, status, error, latency_ms, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![sub, event, a.attempt, a.status, a.error, a.latency_ms as i64, a.at],
            )?;
            tx.execute(
                "DELETE FROM webhook_attempts WHERE subscription_id = ?1 AND seq NOT IN
                 (SELECT seq FROM webhook_attempts WHERE subscription_id = ?1 ORDER BY seq DESC LIMIT ?2)",
                params![sub, keep as i64],
            )?;
            let (state, due_at) = match &next {
                Next::Delivered => ("delivered", 0),
                Next::RetryAt(at) => ("pending", *at),
                Next::GiveUp(_) => ("failed", 0),
            };
            tx.execute(
                "UPDATE webhook_deliveries SET state = ?3, attempts = ?4, due_at = ?5, leased_until = 0
                 WHERE subscription_id = ?1 AND event_id = ?2",
                params![sub, event, state, a.attempt, due_at],
            )?;
            if let Next::GiveUp(reason) = &next {
                tx.execute(
                    "UPDATE webhook_subscriptions SET disabled_reason = ?2 WHERE id = ?1",
                    params![sub, reason],
                )?;
            }
            tx.commit()
        })
        .await
    }

    /// The deliveries of registration `id` still pending (for tests and diagnostics).
    pub async fn pending(&self, id: &str) -> Result<usize, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE subscription_id = ?1 AND state = 'pending'",
                [id],
                |r| r.get(0),
            )
        })
        .await
    }
}

fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    let events: String = r.get(3)?;
    let filter: String = r.get(4)?;
    Ok(Subscription {
        id: r.get(0)?,
        identity: r.get(1)?,
        url: r.get(2)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        filter: serde_json::from_str(&filter).unwrap_or_default(),
        description: r.get(5)?,
        secret: crate::secret::Secret::new(r.get::<_, String>(6)?),
        disabled_reason: r.get(7)?,
        created_at: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: &str, identity: &str) -> Subscription {
        Subscription {
            id: id.into(),
            identity: identity.into(),
            url: "https://example.com/hook".into(),
            events: vec!["RECRUITING_REQUEST_CHANGED".into()],
            filter: serde_json::json!({}),
            description: None,
            secret: crate::secret::Secret::new("whsec_AAAA"),
            disabled_reason: None,
            created_at: 1,
        }
    }

    fn attempt(n: u32) -> Attempt {
        Attempt {
            event_id: "e1".into(),
            attempt: n,
            status: Some(500),
            error: None,
            latency_ms: 3,
            at: 10,
        }
    }

    #[tokio::test]
    async fn an_event_is_enqueued_once_and_leased_once() {
        let s = LocalStore::open(None).unwrap();
        s.create(sub("w1", "alice")).await.unwrap();
        assert!(s.enqueue("w1", "e1", "{}".into(), 100).await.unwrap());
        assert!(
            !s.enqueue("w1", "e1", "{}".into(), 100).await.unwrap(),
            "a repeat is not enqueued"
        );
        assert!(!s.enqueue("nope", "e1", "{}".into(), 100).await.unwrap());
        let due = s.claim_due(100, 1000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(s.claim_due(200, 1000, 10).await.unwrap().is_empty(), "leased");
        s.record(&due[0], attempt(1), Next::RetryAt(500), 10).await.unwrap();
        assert!(s.claim_due(499, 1000, 10).await.unwrap().is_empty(), "not due yet");
        let again = s.claim_due(500, 1000, 10).await.unwrap();
        assert_eq!(again[0].attempts, 1);
        s.record(&again[0], attempt(2), Next::Delivered, 10).await.unwrap();
        assert_eq!(s.pending("w1").await.unwrap(), 0);
        assert!(
            !s.enqueue("w1", "e1", "{}".into(), 600).await.unwrap(),
            "delivered events are remembered"
        );
        let log = s.attempts("w1", 10).await.unwrap();
        assert_eq!(log.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[tokio::test]
    async fn giving_up_disables_and_the_log_is_bounded() {
        let s = LocalStore::open(None).unwrap();
        s.create(sub("w1", "alice")).await.unwrap();
        s.enqueue("w1", "e1", "{}".into(), 0).await.unwrap();
        let due = s.claim_due(0, 10, 10).await.unwrap();
        for n in 1..=5 {
            s.record(&due[0], attempt(n), Next::RetryAt(0), 3).await.unwrap();
        }
        assert_eq!(s.attempts("w1", 10).await.unwrap().len(), 3);
        s.record(&due[0], attempt(6), Next::GiveUp("gone".into()), 3)
            .await
            .unwrap();
        let got = s.get("w1").await.unwrap().unwrap();
        assert_eq!(got.disabled_reason.as_deref(), Some("gone"));
        assert!(
            !s.enqueue("w1", "e2", "{}".into(), 0).await.unwrap(),
            "a disabled registration takes no events"
        );
    }

    #[tokio::test]
    async fn a_registration_is_its_owners_only() {
        let s = LocalStore::open(None).unwrap();
        s.create(sub("w1", "alice")).await.unwrap();
        assert!(s.list(Some("bob")).await.unwrap().is_empty());
        assert!(!s.delete("bob", "w1").await.unwrap());
        assert_eq!(s.list(Some("alice")).await.unwrap().len(), 1);
        assert!(s.delete("alice", "w1").await.unwrap());
        assert!(s.list(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_restart_resumes_leased_deliveries() {
        let dir = std::env::temp_dir().join(format!("webhooks-{}.db", uuid::Uuid::new_v4()));
        {
            let s = LocalStore::open(Some(&dir)).unwrap();
            s.create(sub("w1", "alice")).await.unwrap();
            s.enqueue("w1", "e1", "{}".into(), 0).await.unwrap();
            assert_eq!(s.claim_due(0, 1_000_000, 10).await.unwrap().len(), 1);
        }
        let s = LocalStore::open(Some(&dir)).unwrap();
        assert_eq!(
            s.claim_due(1, 1000, 10).await.unwrap().len(),
            1,
            "the lease was cleared"
        );
        let _ = std::fs::remove_file(&dir);
    }
}
