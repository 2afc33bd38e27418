//! Webhooks: changes pushed to partner apps that cannot hold a socket, as Standard Webhooks
//! (<https://www.standardwebhooks.com/>) POSTs signed per registration.
//!
//! - `store`: registrations, pending deliveries and the delivery log, in the SQLite state file;
//!   `shared`: the same in Redis under `--redis-url`, for replicas.
//! - `deliver`: the dispatcher and one attempt (its own HTTP client, no redirects, bounded).
//! - `signing`: `whsec_` secrets and `webhook-signature`.
//! - `backoff`: Standard Webhooks' retry schedule (about a day), scalable for tests.
//! - `guard`: the SSRF guard (schemes, address classes, the delivery client's resolver).
//! - `watching`: a registration's watch over `graphql::watch`, its changes as webhook events.
//! - `schema`: `createWebhookSubscription`, `deleteWebhookSubscription`, `webhookSubscriptions`.
//!
//! [`Webhooks`] is the one face of these to the rest of the gateway. Changes come in through
//! [`Webhooks::on_change`] (one [`Change`] for one registration): the event is stored once per
//! registration (its id is the `webhook-id`, stable across retries) and the dispatcher is woken.
//! Ownership runs one way: `GatewayState` → `Webhooks` → the dispatcher task and the watch of
//! each registration ([`WatchGuard`]); those tasks hold the store and a `Notify`, never the
//! `Webhooks` or the state, so dropping the `Webhooks` aborts them all (no `Arc` cycle), and
//! deleting a registration drops its watch.

pub mod backoff;
pub mod deliver;
pub mod guard;
pub mod schema;
pub mod shared;
pub mod signing;
pub mod store;
pub mod watching;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{StoreError, Subscription, WebhookStore};
use tokio::sync::Notify;

/// The events a registration may ask for: the GraphQL enum value, the entity's GraphQL type
/// and the field of `WebhookFilterInput` holding its filter.
pub const EVENTS: [(&str, &str, &str); 3] = [
    ("RECRUITING_REQUEST_CHANGED", "RecruitingRequest", "recruitingRequest"),
    (
        "RECRUITING_REQUEST_POSITION_CHANGED",
        "RecruitingRequestPosition",
        "recruitingRequestPosition",
    ),
    ("CANDIDATE_TO_HIRE_CHANGED", "CandidateToHire", "candidateToHire"),
];

/// Settings (`--webhook-*`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub policy: guard::Policy,
    pub backoff: backoff::Backoff,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Attempts kept in a registration's delivery log.
    pub log_size: usize,
    /// Registrations one caller may hold.
    pub max_per_caller: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            policy: guard::Policy::default(),
            backoff: backoff::Backoff::default(),
            timeout: Duration::from_secs(10),
            log_size: 50,
            max_per_caller: 100,
        }
    }
}

/// One change of one record, for one registration (what a watcher reports).
#[derive(Debug, Clone)]
pub struct Change {
    /// The event id: deterministic for the change, so that replicas and repeats agree.
    pub id: String,
    /// The entity's GraphQL type (`RecruitingRequest`, …).
    pub entity: String,
    /// `CREATED`, `UPDATED` or `DELETED`.
    pub kind: String,
    /// The GraphQL names of the fields that changed (empty for `CREATED`, `DELETED`).
    pub changed_fields: Vec<String>,
    /// The record's primary key.
    pub key: String,
    /// The record as read, with GraphQL field names (`None` for `DELETED`).
    pub record: Option<serde_json::Value>,
    /// When the change was seen, unix milliseconds.
    pub seen_at: i64,
}

impl Change {
    /// The JSON body delivered: `{type, timestamp, data: {kind, changedFields, entity, key, record}}`.
    pub fn body(&self) -> String {
        let field = EVENTS
            .iter()
            .find(|(_, ty, _)| *ty == self.entity)
            .map(|(_, _, field)| *field)
            .unwrap_or(self.entity.as_str());
        let timestamp = jiff::Timestamp::from_millisecond(self.seen_at)
            .map(|t| t.to_string())
            .unwrap_or_default();
        serde_json::json!({
            "type": format!("{field}.{}", self.kind.to_lowercase()),
            "timestamp": timestamp,
            "data": {
                "kind": self.kind,
                "changedFields": self.changed_fields,
                "entity": self.entity,
                "key": self.key,
                "record": self.record,
            }
        })
        .to_string()
    }
}

/// Where changes are enqueued: the store and the dispatcher's bell. What a watch task holds.
#[derive(Clone)]
pub struct Inbox {
    store: WebhookStore,
    wake: Arc<Notify>,
}

impl Inbox {
    /// Stores `change` for registration `id` (once per event id) and wakes the dispatcher;
    /// `false`: already stored, or the registration is gone or disabled.
    pub async fn enqueue(&self, id: &str, change: &Change) -> Result<bool, StoreError> {
        let added = self
            .store
            .enqueue(id, &change.id, change.body(), deliver::now_ms())
            .await?;
        if added {
            self.wake.notify_one();
        }
        Ok(added)
    }
}

/// A task aborted when dropped: the dispatcher, or a registration's watch.
pub struct WatchGuard(tokio::task::AbortHandle);

impl WatchGuard {
    /// Spawns `work`, owned by the guard.
    pub fn spawn(work: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        WatchGuard(tokio::spawn(work).abort_handle())
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Tells whether a watch started (its start snapshot taken) or why not.
pub type Started = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Starts the watch of a registration: a task that feeds its changes to the inbox, owned by the
/// guard it returns, and answers `Started` once it watches. Set by whoever provides the
/// watching (`watching`, over `graphql::watch`).
pub type Watcher = Arc<dyn Fn(&Subscription, Inbox, Option<Started>) -> Option<WatchGuard> + Send + Sync>;

/// How long a registration waits for its watch's start snapshot.
const START_WAIT: Duration = Duration::from_secs(20);

/// How often the watches are held against the store's registrations: a registration made or
/// deleted on another replica, or disabled, is watched or released within this.
const SYNC: Duration = Duration::from_secs(10);

/// The watches of the active registrations, by registration id. Shared with the sync task;
/// holds no task of its own but the watches.
struct Watches {
    watcher: Mutex<Option<Watcher>>,
    guards: Mutex<HashMap<String, WatchGuard>>,
    inbox: Inbox,
}

impl Watches {
    fn watch(&self, s: &Subscription, started: Option<Started>) {
        let watcher = self.watcher.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(guard) = watcher.and_then(|w| w(s, self.inbox.clone(), started)) {
            self.guards
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(s.id.clone(), guard);
        }
    }

    /// Watches the active registrations of `subs` not watched yet, and releases the watches of
    /// registrations gone or disabled. Answers how many are watched.
    fn reconcile(&self, subs: &[Subscription]) -> usize {
        let active: HashMap<&str, &Subscription> = subs
            .iter()
            .filter(|s| s.disabled_reason.is_none())
            .map(|s| (s.id.as_str(), s))
            .collect();
        let missing: Vec<&Subscription> = {
            let mut guards = self.guards.lock().unwrap_or_else(|p| p.into_inner());
            guards.retain(|id, _| active.contains_key(id.as_str()));
            active
                .values()
                .filter(|s| !guards.contains_key(&s.id))
                .copied()
                .collect()
        };
        for s in missing {
            self.watch(s, None);
        }
        self.guards.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn release(&self, id: &str) {
        self.guards.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    fn clear(&self) {
        self.guards.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Holds the watches against the store every [`SYNC`].
async fn sync(store: WebhookStore, watches: Arc<Watches>) {
    loop {
        tokio::time::sleep(SYNC).await;
        match store.list(None).await {
            Ok(subs) => {
                watches.reconcile(&subs);
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: registrations not read"),
        }
    }
}

/// The webhooks of one gateway.
pub struct Webhooks {
    pub store: WebhookStore,
    pub config: WebhookConfig,
    inbox: Inbox,
    /// Why registrations are refused in this configuration (`None`: accepted).
    refused: Option<String>,
    watches: Arc<Watches>,
    /// The dispatcher and the sync of the watches.
    tasks: Mutex<Vec<WatchGuard>>,
}

/// What a caller asks to register (checked by [`Webhooks::register`]).
#[derive(Debug, Clone)]
pub struct Registration {
    pub url: String,
    pub events: Vec<String>,
    /// `{recruitingRequest: {...}, …}`: the filter per entity, as given.
    pub filter: serde_json::Value,
    pub description: Option<String>,
}

/// Why a registration or deletion failed.
#[derive(Debug)]
pub enum RegisterError {
    /// The caller's input (`BAD_USER_INPUT`).
    BadInput(String),
    /// The store.
    Store(StoreError),
}

impl From<StoreError> for RegisterError {
    fn from(e: StoreError) -> Self {
        RegisterError::Store(e)
    }
}

impl Webhooks {
    /// Opens the store, starts the dispatcher. `refused`: why this gateway cannot watch for a
    /// registration (on-behalf-of and pass-through: no upstream token of its own to poll with).
    pub fn start(store: WebhookStore, config: WebhookConfig, refused: Option<String>) -> Result<Self, String> {
        let wake = Arc::new(Notify::new());
        let dispatcher = deliver::Dispatcher {
            store: store.clone(),
            client: deliver::client(config.policy, config.timeout)?,
            policy: config.policy,
            backoff: config.backoff,
            timeout: config.timeout,
            log_size: config.log_size,
        };
        let run = WatchGuard::spawn(dispatcher.run(wake.clone()));
        let inbox = Inbox {
            store: store.clone(),
            wake,
        };
        Ok(Webhooks {
            watches: Arc::new(Watches {
                watcher: Mutex::new(None),
                guards: Mutex::default(),
                inbox: inbox.clone(),
            }),
            inbox,
            store,
            config,
            refused,
            tasks: Mutex::new(vec![run]),
        })
    }

    /// Stops the dispatcher and every watch (at shutdown: a watch's poller holds the gateway
    /// state, which holds these guards, so they are released here rather than left to `Drop`).
    /// Deliveries in flight stay leased until the next start, which sends them again.
    pub fn shutdown(&self) {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.watches.clear();
    }

    /// Where changes for registrations go.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Sets the watcher and watches every active registration in the store (at start: the
    /// registrations of before a restart are watched again), then every [`SYNC`] holds the
    /// watches against the store (registrations made, deleted or disabled elsewhere).
    pub async fn watch_all(&self, watcher: Watcher) -> Result<usize, StoreError> {
        *self.watches.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
        let task = WatchGuard::spawn(sync(self.store.clone(), self.watches.clone()));
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        self.sync_now().await
    }

    /// Holds the watches against the store now; answers how many are watched.
    pub async fn sync_now(&self) -> Result<usize, StoreError> {
        let subs = self.store.list(None).await?;
        Ok(self.watches.reconcile(&subs))
    }

    fn watch(&self, s: &Subscription, started: Option<Started>) {
        self.watches.watch(s, started);
    }

    /// Registrations being watched now.
    pub fn watched(&self) -> usize {
        self.watches.guards.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Stores `change` for registration `id` and wakes the dispatcher (see [`Inbox::enqueue`]).
    pub async fn on_change(&self, id: &str, change: &Change) -> Result<bool, StoreError> {
        self.inbox.enqueue(id, change).await
    }

    /// Registers a webhook for `identity`: checks it (the SSRF guard with the URL's resolved
    /// addresses, the events, the filter), stores it with a fresh secret and starts watching.
    pub async fn register(
        &self,
        identity: &str,
        r: Registration,
    ) -> Result<(Subscription, crate::secret::Secret), RegisterError> {
        if let Some(why) = &self.refused {
            return Err(RegisterError::BadInput(why.clone()));
        }
        check_registration(&r, self.config.policy)
            .await
            .map_err(RegisterError::BadInput)?;
        if self.store.list(Some(identity)).await?.len() >= self.config.max_per_caller {
            return Err(RegisterError::BadInput(format!(
                "a caller may hold at most {} webhook subscriptions: delete one first",
                self.config.max_per_caller
            )));
        }
        let secret = signing::new_secret();
        let s = Subscription {
            id: format!("wh_{}", uuid::Uuid::new_v4().simple()),
            identity: identity.to_string(),
            url: r.url,
            events: r.events,
            filter: r.filter,
            description: r.description,
            secret: secret.clone(),
            disabled_reason: None,
            created_at: deliver::now_ms(),
        };
        self.store.create(s.clone()).await?;
        let (started, watching) = tokio::sync::oneshot::channel();
        self.watch(&s, Some(started));
        // Changes from the answer on are delivered: the watch's start snapshot is taken first.
        let why = match tokio::time::timeout(START_WAIT, watching).await {
            Ok(Ok(Ok(()))) | Ok(Err(_)) => None,
            Ok(Ok(Err(why))) => Some(why),
            Err(_) => Some("the upstream did not answer the watch's first read in time; retry".to_string()),
        };
        if let Some(why) = why {
            self.delete(identity, &s.id).await?;
            return Err(RegisterError::BadInput(format!("the webhook cannot watch: {why}")));
        }
        tracing::info!(webhook = %s.id, events = ?s.events, "webhook registered");
        Ok((s, secret))
    }

    /// Deletes `identity`'s registration `id` and releases its watch; `false`: none by that id.
    pub async fn delete(&self, identity: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete(identity, id).await?;
        if deleted {
            self.watches.release(id);
            tracing::info!(webhook = %id, "webhook deleted");
        }
        Ok(deleted)
    }
}

/// Checks a registration's events, filter, description and URL (scheme, address literal,
/// resolved addresses).
async fn check_registration(r: &Registration, policy: guard::Policy) -> Result<(), String> {
    if r.url.len() > 2048 {
        return Err("the webhook URL is longer than 2048 characters".into());
    }
    if r.events.is_empty() {
        return Err("`events` names no event".into());
    }
    if let Some(map) = r.filter.as_object() {
        for field in map.keys() {
            let Some((event, ..)) = EVENTS.iter().find(|(_, _, f)| f == field) else {
                return Err(format!("`filter.{field}` is no entity of the events"));
            };
            if !r.events.iter().any(|e| e == event) {
                return Err(format!(
                    "`filter.{field}` filters {event}, which `events` does not name"
                ));
            }
        }
    }
    if r.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
        return Err("`description` is longer than 500 characters".into());
    }
    let url = guard::check_url(&r.url, policy)?;
    guard::check_resolved(&url, policy).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn sub(id: &str, disabled: Option<&str>) -> Subscription {
        Subscription {
            id: id.into(),
            identity: "alice".into(),
            url: "https://example.com/hook".into(),
            events: vec!["RECRUITING_REQUEST_CHANGED".into()],
            filter: serde_json::json!({}),
            description: None,
            secret: signing::new_secret(),
            disabled_reason: disabled.map(str::to_string),
            created_at: 1,
        }
    }

    /// Registrations made, deleted or disabled behind this gateway's back (another replica, the
    /// dispatcher) are watched or released at the next sync.
    #[tokio::test]
    async fn watches_follow_the_store() {
        let store = WebhookStore::open(None).unwrap();
        store.create(sub("w1", None)).await.unwrap();
        store.create(sub("w2", None)).await.unwrap();
        store.create(sub("w3", Some("failed"))).await.unwrap();
        let webhooks = Webhooks::start(store.clone(), WebhookConfig::default(), None).unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let counted = started.clone();
        let watcher: Watcher = Arc::new(move |_: &Subscription, _: Inbox, _: Option<Started>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Some(WatchGuard::spawn(std::future::pending()))
        });
        assert_eq!(
            webhooks.watch_all(watcher).await.unwrap(),
            2,
            "the disabled one is not watched"
        );
        store.delete("alice", "w1").await.unwrap();
        store.create(sub("w4", None)).await.unwrap();
        assert_eq!(webhooks.sync_now().await.unwrap(), 2);
        assert_eq!(started.load(Ordering::SeqCst), 3, "w4 started, w2 kept, w1 released");
        assert!(webhooks.delete("alice", "w2").await.unwrap());
        assert_eq!(webhooks.watched(), 1);
        webhooks.shutdown();
        assert_eq!(webhooks.watched(), 0);
    }
}
