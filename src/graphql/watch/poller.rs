//! The poll loop of one question: read the set, diff it, tell the subscribers, wait.

use super::snapshot::{key_text, Change, ChangeKind, Snapshot};
use super::{ChangeEvent, WatchError, WatchKey};
use crate::graphql::context::{GatewayState, RequestCtx};
use crate::odata::query::ODataQuery;
use crate::odata::{UpstreamError, UpstreamErrorKind};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};

/// What a poller tells its subscribers.
#[derive(Clone)]
pub enum Message {
    /// A change found by read `seq`; `to` one subscriber only (a current match it asked for).
    Event {
        event: Arc<ChangeEvent>,
        seq: u64,
        to: Option<u64>,
    },
    /// Subscriber `to` has every current match as of read `seq`.
    ExistingSent { to: u64, seq: u64 },
    /// The watch ended (boxed: every slot of the channel is as large as the largest message).
    Failed(Arc<WatchError>),
}

/// Where the poller is.
#[derive(Clone)]
pub enum Status {
    /// Before its first read.
    Starting,
    Running,
    Failed(WatchError),
}

/// What a poller's task shares with its subscribers (never the other way round: the task holds
/// no subscriber and no `Poller`, so dropping the last subscription ends it).
pub struct PollShared {
    pub tx: broadcast::Sender<Message>,
    pub status: watch::Sender<Status>,
    /// Subscribers waiting for the current matches, and the nudge to read now for them.
    waiting: Mutex<Vec<u64>>,
    wake: Notify,
}

impl PollShared {
    pub fn new(buffer: usize) -> Arc<PollShared> {
        Arc::new(PollShared {
            tx: broadcast::channel(buffer.max(16)).0,
            status: watch::channel(Status::Starting).0,
            waiting: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// Subscriber `id` wants every current match: read now rather than at the next interval.
    pub fn want_existing(&self, id: u64) {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).push(id);
        self.wake.notify_one();
    }
}

/// Polls `key` until aborted (its last subscriber left) or a read fails for good.
pub async fn run(state: Arc<GatewayState>, key: WatchKey, shared: Arc<PollShared>) {
    let config = state.watchers.config().clone();
    let naming = state.upstream.naming();
    let properties: Vec<String> = key
        .entity
        .properties
        .iter()
        .filter(|p| !naming.is_missing(key.entity, &p.name))
        .map(|p| p.name.clone())
        .collect();
    let mut snapshot = Snapshot::new(key.entity.primary_key.clone(), properties);
    let digest = key.digest();
    let mut seq = 0u64;
    let mut failures = 0u32;
    let mut notices: Vec<String> = Vec::new();
    loop {
        let wait = match read(&state, &key, &snapshot, config.max_records).await {
            Ok(rows) => {
                seq += 1;
                let changes = match snapshot.apply(&rows) {
                    Ok(c) => c,
                    Err(why) => return fail(&shared, WatchError::Invalid(why)),
                };
                let notes = std::mem::take(&mut notices);
                // The first read is the start snapshot: no events, only current matches.
                if seq > 1 {
                    for change in changes {
                        let event = event(&digest, &key, &snapshot, change, notes.clone());
                        let _ = shared.tx.send(Message::Event { event, seq, to: None });
                    }
                }
                send_existing(&shared, &digest, &key, &snapshot, &rows, seq);
                shared.status.send_replace(Status::Running);
                failures = 0;
                config.interval
            }
            Err(e) => match transient(&e) {
                Some(retry_after) => {
                    failures += 1;
                    let wait = backoff(config.interval, failures).max(retry_after.unwrap_or_default());
                    notices.push(format!(
                        "The upstream throttled or failed the watch's reads ({}); it backed off {} s, so changes may arrive late, none is lost.",
                        e.code(),
                        wait.as_secs()
                    ));
                    notices.dedup();
                    notices.truncate(4);
                    wait
                }
                None => return fail(&shared, fatal(e, config.max_records, &key)),
            },
        };
        shared.wait(wait).await;
    }
}

impl PollShared {
    /// Waits `wait`, or less when a subscriber is waiting for the current matches (a wake-up
    /// whose subscriber the last read served already does not cost another read).
    async fn wait(&self, wait: Duration) {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                _ = self.wake.notified() => {
                    if !self.waiting.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                        return;
                    }
                }
            }
        }
    }
}

fn fail(shared: &PollShared, e: WatchError) {
    tracing::warn!(error = %e, "a watch ended");
    shared.status.send_replace(Status::Failed(e.clone()));
    let _ = shared.tx.send(Message::Failed(Arc::new(e)));
}

/// The interval doubled per failure in a row, up to 16 times it.
fn backoff(interval: Duration, failures: u32) -> Duration {
    interval.saturating_mul(1 << failures.min(4))
}

/// `Some(Retry-After)` when waiting may fix `e`.
fn transient(e: &UpstreamError) -> Option<Option<Duration>> {
    match &e.kind {
        UpstreamErrorKind::Throttled { retry_after } => Some(*retry_after),
        UpstreamErrorKind::CircuitOpen { retry_in } | UpstreamErrorKind::BudgetSpent { retry_in } => {
            Some(Some(*retry_in))
        }
        UpstreamErrorKind::Unavailable | UpstreamErrorKind::Timeout => Some(None),
        _ => None,
    }
}

fn fatal(e: UpstreamError, limit: usize, key: &WatchKey) -> WatchError {
    match e.kind {
        UpstreamErrorKind::TooManyRows => WatchError::TooManyRecords {
            limit,
            entity_set: key.entity.entity_set.clone(),
        },
        _ => WatchError::Upstream(e),
    }
}

/// One complete read of the set, through the normal paged read path of the caller's identity,
/// bypassing the read cache (a poll must see the upstream).
async fn read(
    state: &Arc<GatewayState>,
    key: &WatchKey,
    snapshot: &Snapshot,
    limit: usize,
) -> Result<Vec<crate::odata::Record>, UpstreamError> {
    let rq = RequestCtx::new(key.authorization.clone(), key.identity.clone());
    rq.reuse.bypass_cache_if(std::iter::once("no-cache"));
    let q = ODataQuery {
        entity: key.entity,
        key: None,
        select: snapshot.properties().to_vec(),
        filter: key.filter.clone(),
        orderby: vec![(key.entity.primary_key.clone(), false)],
        top: None,
        expand: Vec::new(),
        count: false,
    };
    // A read gets one interval (at least the 5 s minimum): retries and `Retry-After` waits past
    // it are not started, so lasting throttling surfaces here (and the poller backs off, saying
    // so) rather than stalling it.
    let budget = state.watchers.config().interval.max(super::MIN_INTERVAL);
    let deadline = tokio::time::Instant::now() + budget;
    let url = q.to_relative_url();
    let rows = crate::odata::with_deadline(deadline, state.get_all(key.entity, &url, &rq, limit)).await?;
    state.metrics.watch_poll();
    Ok(rows)
}

/// The event of one change; its id is SHA-256 of the question, key, kind and content hash.
fn event(digest: &str, key: &WatchKey, snapshot: &Snapshot, change: Change, notices: Vec<String>) -> Arc<ChangeEvent> {
    let Change {
        kind,
        key: record_key,
        changed,
        hash,
        row,
    } = change;
    let record_key = key_text(record_key);
    let id_text = format!("{digest}\n{record_key}\n{}\n{hash:016x}", kind.as_str());
    let changed_fields = changed
        .into_iter()
        .filter_map(|i| snapshot.properties().get(i))
        .filter_map(|name| key.entity.properties.iter().find(|p| &p.name == name))
        .map(|p| p.graphql_field.as_str())
        .collect();
    Arc::new(ChangeEvent {
        id: crate::secret::sha256_hex(id_text.as_bytes()),
        kind,
        entity: key.entity,
        key: record_key,
        changed_fields,
        record: row,
        notices,
    })
}

/// Sends every current match, as `CREATED`, to the subscribers waiting for them.
fn send_existing(
    shared: &PollShared,
    digest: &str,
    key: &WatchKey,
    snapshot: &Snapshot,
    rows: &[crate::odata::Record],
    seq: u64,
) {
    let waiting = std::mem::take(&mut *shared.waiting.lock().unwrap_or_else(|p| p.into_inner()));
    for to in waiting {
        for row in rows {
            let Ok(record_key) = super::snapshot::record_key(row, &key.entity.primary_key) else {
                continue;
            };
            let change = Change {
                kind: ChangeKind::Created,
                key: record_key,
                changed: Vec::new(),
                hash: snapshot.content_hash(row),
                row: Some(row.clone()),
            };
            let event = event(digest, key, snapshot, change, Vec::new());
            let _ = shared.tx.send(Message::Event {
                event,
                seq,
                to: Some(to),
            });
        }
        let _ = shared.tx.send(Message::ExistingSent { to, seq });
    }
}
