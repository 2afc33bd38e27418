//! Watching the upstream for changes: one poller per question, shared by all who ask it.
//!
//! The HR virtual tables have no change tracking, so the gateway polls. A question is a
//! [`WatchKey`]: (caller identity, entity, compiled `$filter`). Every subscriber with the same
//! key shares one poller, which reads the matching records every `--watch-interval` through the
//! normal paged read path (slots, throttling, breaker and budget of the caller's upstream
//! identity; the read cache bypassed), selecting the primary key and the entity's properties,
//! and diffs them by primary key and content hash ([`snapshot`]: about 24 bytes and two per
//! property per record, never the record). A set above `--watch-max-records` is refused.
//!
//! # API (a contract: the webhooks build on it)
//!
//! - [`WatchKey::new`]`(state, caller, entity, filter)`: the key of a question, the filter a
//!   `<Type>Filter` GraphQL value compiled by the filter compiler (bad input is a GraphQL error).
//! - [`subscribe`]`(state, key, include_existing) -> Result<`[`Subscription`]`, `[`WatchError`]`>`:
//!   waits for the poller's first read (a new question) or joins the running poller; a
//!   [`Subscription`] is a `Stream<Item = Result<Arc<ChangeEvent>, WatchError>>`. The start
//!   snapshot emits nothing unless `include_existing`, which emits every current match as
//!   `CREATED` first. An error ends the stream (the set grew past the limit, the upstream
//!   refused the credentials). Dropping the `Subscription` unsubscribes; the last one to leave
//!   aborts the poller and frees its memory.
//! - [`ChangeEvent`]: `id` (deterministic from the watch key, record key, kind and content
//!   hash: replicas and retries agree), `kind`, `entity`, `key`, `changed_fields` (GraphQL
//!   names; empty for `CREATED` and `DELETED`), `record` (the watched properties as the upstream
//!   returned them; `None` for `DELETED`), `notices` (such as a 429 backoff that delayed it).
//! - [`Watchers`]: the registry in `GatewayState::watchers` (its [`WatchConfig`] from the
//!   command line); [`Watchers::active`] and [`Watchers::subscribers`] for `/metrics`.
//!
//! A read gets one interval (at least 5 s) as its deadline, so retries and `Retry-After` waits
//! past it are not started. Under a 429 that outlasts it (or an unavailable upstream, an open
//! breaker, a spent budget) the poller backs off, doubling the interval up to 16 times it, and
//! says so in the `notices` of the next events: changes are delayed, never lost, since the next
//! read is diffed against the last. Each poller's broadcast channel holds
//! [`WatchConfig::buffer`] events; a subscriber further behind is told how many it missed.

pub mod poller;
pub mod snapshot;

pub use snapshot::ChangeKind;

use super::context::{GatewayState, RequestCtx};
use crate::model::Entity;
use crate::odata::UpstreamError;
use futures::Stream;
use poller::{Message, PollShared, Status};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

/// The shortest interval `--watch-interval` accepts without the test-only escape hatch.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// How the pollers poll.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Between two reads of a set (`--watch-interval`).
    pub interval: Duration,
    /// The largest set one poller watches (`--watch-max-records`).
    pub max_records: usize,
    /// Events a subscriber may fall behind by before it is told it missed some (the channel of
    /// each poller holds this many, about 50 bytes each).
    pub buffer: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            interval: Duration::from_secs(30),
            max_records: 50_000,
            buffer: 1024,
        }
    }
}

/// A question: whose upstream identity, which entity, which records. Two keys are the same
/// question when identity, entity and filter are; the credentials ride along for the polls.
#[derive(Clone)]
pub struct WatchKey {
    pub identity: String,
    pub entity: &'static Entity,
    /// The compiled `$filter`, `None` for the whole entity set.
    pub filter: Option<String>,
    /// The `Authorization` value the polls send upstream (pass-through and on-behalf-of); not
    /// part of the key's identity, never logged.
    authorization: Option<String>,
}

impl std::fmt::Debug for WatchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchKey")
            .field("identity", &self.identity)
            .field("entity", &self.entity.entity_set)
            .field("filter", &self.filter.as_ref().map(|_| "…"))
            .finish()
    }
}

impl PartialEq for WatchKey {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
            && self.entity.entity_set == other.entity.entity_set
            && self.filter == other.filter
    }
}

impl Eq for WatchKey {}

impl Hash for WatchKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity.hash(state);
        self.entity.entity_set.hash(state);
        self.filter.hash(state);
    }
}

impl WatchKey {
    /// The question "changes of `entity` matching `filter` (a `<Type>Filter` value, or null)"
    /// asked by `caller`. The filter goes through the filter compiler: what it refuses is a
    /// GraphQL error (`BAD_USER_INPUT`) here, before any upstream call.
    pub fn new(
        state: &GatewayState,
        caller: &RequestCtx,
        entity: &'static Entity,
        filter: Option<&async_graphql::Value>,
    ) -> Result<WatchKey, async_graphql::Error> {
        let filter = match filter {
            Some(v) if !matches!(v, async_graphql::Value::Null) => Some(super::filter::compile_filter(
                entity,
                v,
                &state.labels(),
                state.config.dialect,
            )?),
            _ => None,
        };
        super::warnings::refuse_missing(&state.upstream.naming(), entity, filter.as_deref(), &[])?;
        Ok(WatchKey {
            identity: caller.identity.clone(),
            entity,
            filter,
            authorization: caller.authorization.clone(),
        })
    }

    /// A stable digest of the question (SHA-256 hex of identity, entity set and filter), the
    /// root of its events' ids.
    pub fn digest(&self) -> String {
        let text = format!(
            "{}\n{}\n{}",
            self.identity,
            self.entity.entity_set,
            self.filter.as_deref().unwrap_or("")
        );
        crate::secret::sha256_hex(text.as_bytes())
    }
}

/// One change of a watched record.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// Unique and deterministic: SHA-256 hex of the watch key, record key, kind and content hash.
    pub id: String,
    pub kind: ChangeKind,
    pub entity: &'static Entity,
    /// The record's primary key (GUID text).
    pub key: String,
    /// GraphQL names of the properties whose value changed (`UPDATED` only).
    pub changed_fields: Vec<&'static str>,
    /// The watched properties as the upstream returned them; `None` for `DELETED`.
    pub record: Option<crate::odata::Record>,
    /// What the subscriber should know about how the event came (a backoff that delayed it, a
    /// subscriber that fell behind).
    pub notices: Vec<String>,
}

/// Why a watch could not start or ended.
#[derive(Debug, Clone)]
pub enum WatchError {
    /// More records match than `--watch-max-records`.
    TooManyRecords { limit: usize, entity_set: String },
    /// The upstream refused a read in a way waiting will not fix.
    Upstream(UpstreamError),
    /// The upstream returned something the watcher cannot diff.
    Invalid(String),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::TooManyRecords { limit, entity_set } => write!(
                f,
                "More than {limit} records of {entity_set} match this filter, more than one watch may hold (--watch-max-records); subscribe with a narrower filter."
            ),
            WatchError::Upstream(e) => write!(f, "{}", e.message),
            WatchError::Invalid(why) => write!(f, "The upstream returned what cannot be watched: {why}."),
        }
    }
}

impl WatchError {
    /// The GraphQL error a client gets, with a stable `extensions.code`.
    pub fn to_graphql(&self) -> async_graphql::Error {
        use super::errors::ErrorCode;
        match self {
            WatchError::TooManyRecords { .. } => ErrorCode::UpstreamTooManyRows.error(self.to_string()),
            WatchError::Upstream(e) => super::errors::upstream_error(e),
            WatchError::Invalid(_) => ErrorCode::UpstreamInvalidResponse.error(self.to_string()),
        }
    }
}

/// The pollers running, by question.
pub struct Watchers {
    config: WatchConfig,
    pollers: Arc<Mutex<HashMap<WatchKey, Weak<Poller>>>>,
    subscribers: Arc<AtomicUsize>,
    next_subscriber: AtomicU64,
}

impl Watchers {
    pub fn new(config: WatchConfig) -> Watchers {
        Watchers {
            config,
            pollers: Arc::default(),
            subscribers: Arc::default(),
            next_subscriber: AtomicU64::new(1),
        }
    }

    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Pollers running (one per distinct question with a subscriber).
    pub fn active(&self) -> usize {
        let pollers = self.pollers.lock().unwrap_or_else(|p| p.into_inner());
        pollers.values().filter(|p| p.strong_count() > 0).count()
    }

    /// Subscriptions open.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }
}

/// A running poller: dropped with its last subscription, it aborts its task.
pub struct Poller {
    key: WatchKey,
    shared: Arc<PollShared>,
    task: tokio::task::AbortHandle,
    registry: Weak<Mutex<HashMap<WatchKey, Weak<Poller>>>>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(registry) = self.registry.upgrade() {
            let mut pollers = registry.lock().unwrap_or_else(|p| p.into_inner());
            // A poller started for the same question since is kept.
            if pollers.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                pollers.remove(&self.key);
            }
        }
    }
}

/// Subscribes to the changes of `key`'s records (see the module docs).
pub async fn subscribe(
    state: &Arc<GatewayState>,
    key: WatchKey,
    include_existing: bool,
) -> Result<Subscription, WatchError> {
    let watchers = &state.watchers;
    let poller = {
        let mut pollers = watchers.pollers.lock().unwrap_or_else(|p| p.into_inner());
        match pollers.get(&key).and_then(Weak::upgrade) {
            Some(p) => p,
            None => {
                let p = start_poller(state, key.clone());
                pollers.insert(key, Arc::downgrade(&p));
                p
            }
        }
    };
    let id = watchers.next_subscriber.fetch_add(1, Ordering::Relaxed);
    let receiver = poller.shared.tx.subscribe();
    if include_existing {
        poller.shared.want_existing(id);
    }
    let mut status = poller.shared.status.subscribe();
    let ready = status.wait_for(|s| !matches!(s, Status::Starting)).await;
    if let Ok(s) = ready {
        if let Status::Failed(e) = &*s {
            return Err(e.clone());
        }
    }
    watchers.subscribers.fetch_add(1, Ordering::Relaxed);
    Ok(Subscription {
        id,
        receiver: tokio_stream::wrappers::BroadcastStream::new(receiver),
        waiting_existing: include_existing,
        after_seq: 0,
        lagged: None,
        ended: false,
        _counted: Counted(watchers.subscribers.clone()),
        _poller: poller,
    })
}

fn start_poller(state: &Arc<GatewayState>, key: WatchKey) -> Arc<Poller> {
    let shared = PollShared::new(state.watchers.config.buffer);
    let task = tokio::spawn(poller::run(state.clone(), key.clone(), shared.clone())).abort_handle();
    Arc::new(Poller {
        key,
        shared,
        task,
        registry: Arc::downgrade(&state.watchers.pollers),
    })
}

/// Keeps the subscriber gauge up while a subscription lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The events of one subscriber; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    receiver: tokio_stream::wrappers::BroadcastStream<Message>,
    /// Waiting for the current matches (`include_existing`): other events are skipped until
    /// they came.
    waiting_existing: bool,
    /// Events of reads up to this one were covered by the current matches sent.
    after_seq: u64,
    /// Events missed by falling behind, told in the next event's notices.
    lagged: Option<u64>,
    ended: bool,
    _counted: Counted,
    _poller: Arc<Poller>,
}

impl Subscription {
    /// Whether `message` is for this subscriber; updates what it waits for.
    fn accept(&mut self, message: Message) -> Option<Result<Arc<ChangeEvent>, WatchError>> {
        match message {
            Message::Event { event, seq, to: None } if !self.waiting_existing && seq > self.after_seq => {
                Some(Ok(event))
            }
            Message::Event {
                event, to: Some(to), ..
            } if to == self.id => Some(Ok(event)),
            Message::ExistingSent { to, seq } if to == self.id => {
                self.waiting_existing = false;
                self.after_seq = seq;
                None
            }
            Message::Failed(e) => {
                self.ended = true;
                Some(Err((*e).clone()))
            }
            _ => None,
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Arc<ChangeEvent>, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            let message = match Pin::new(&mut self.receiver).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    *self.lagged.get_or_insert(0) += n;
                    continue;
                }
                Poll::Ready(Some(Ok(m))) => m,
            };
            if let Some(out) = self.accept(message) {
                let Some(missed) = self.lagged.take() else {
                    return Poll::Ready(Some(out));
                };
                return Poll::Ready(Some(out.map(|e| {
                    let mut e = (*e).clone();
                    e.notices.push(format!(
                        "This subscriber fell behind and missed {missed} events; read the current state to catch up."
                    ));
                    Arc::new(e)
                })));
            }
        }
    }
}
