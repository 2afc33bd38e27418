//! Upstream resilience: what [`super::Upstream::send`] does around every HTTP exchange.
//!
//! - **Deadline.** Every call has one: the GraphQL operation's, put in scope with
//!   [`with_deadline`] (a task-local, so that it reaches resolvers and loader tasks without
//!   being threaded through every signature), or, outside an operation (start-up, `/readyz`),
//!   one upstream timeout from the call's start. Queueing, `Retry-After` waits and backoff stop at
//!   it: a wait that would end later is not started, and the call fails with the upstream's own
//!   error at once. An attempt in flight is not cut: the operation's timeout drops it (with
//!   `DEADLINE_EXCEEDED`), and outside an operation the HTTP client's timeout bounds it.
//! - **Retries** ([`RetryPolicy`]): reads retry throttling, 5xx, time-outs and cut-off
//!   responses; a write retries only when it certainly did nothing (a write protected by an
//!   idempotency key), and an ordinary write never. A 429 waits its `Retry-After` (plus a little
//!   jitter, so a crowd does not return at the same instant); everything else waits a jittered
//!   exponential backoff.
//! - **Concurrency per identity** ([`Gates`]): at most `concurrency_per_identity` requests of one
//!   caller are in flight; the rest queue (fairly) until a slot frees or the deadline passes. A
//!   429 pauses the whole identity until its `Retry-After`, so queued requests wait instead of
//!   collecting 429s of their own. Under `--redis-url` the pause is announced to the other
//!   replicas (`Upstream::set_pause_hook`), and theirs are held here
//!   (`Upstream::pause_identity`; see `shared_state`).
//! - **Circuit breaker** ([`CircuitBreaker`]): after `breaker_threshold` calls in a row failed
//!   with outage symptoms (5xx, refused connections, time-outs) even after their retries, calls
//!   fail at once for `breaker_cooldown`; then one call goes through as a probe, and its success
//!   closes the breaker again.

use super::error::{UpstreamError, UpstreamErrorKind};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Retry, concurrency and circuit-breaker settings of an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceConfig {
    /// Retries of a call after 5xx answers, failed connections, time-outs or cut-off responses.
    /// Throttled calls retry as long as the deadline allows (at most [`MAX_THROTTLED_RETRIES`]).
    pub max_retries: u32,
    /// The first backoff; each retry doubles it, up to `max_backoff`. The wait is drawn between
    /// half of it and all of it.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Requests of one caller identity in flight at once. Dataverse refuses more than 52 per
    /// user, and HR's published limit for its OData endpoints is 25 (contract §8), with the advice
    /// to stay at 10 or below per environment: 8 stays under that, and lets three gateway
    /// replicas share one application user within HR's 25.
    pub concurrency_per_identity: usize,
    /// Calls in a row that must fail with outage symptoms to open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker fails calls at once before it lets a probe through.
    pub breaker_cooldown: Duration,
    /// The budget of requests per upstream identity and window (`--upstream-rate-limit`), held
    /// by this process, or by all replicas under `--redis-url` (see [`super::rate_limit`]); none
    /// by default.
    pub rate_limit: Option<super::rate_limit::RateLimit>,
    /// Requests of one upstream identity in flight at once over all replicas
    /// (`--upstream-concurrency-total`, through [`SharedSlots`] under `--redis-url`), on top of
    /// `concurrency_per_identity`; none by default.
    pub shared_concurrency: Option<usize>,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            max_retries: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            concurrency_per_identity: 8,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(10),
            shared_concurrency: None,
            rate_limit: None,
        }
    }
}

/// Retries of one call answered 429, whatever `max_retries` says: throttling is the upstream
/// asking to wait, and the deadline is the real bound. This cap only stops an upstream that
/// keeps answering `Retry-After: 0`.
pub const MAX_THROTTLED_RETRIES: u32 = 16;

/// Which failures of a call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// A read: any transient failure (see [`UpstreamError::is_retryable`]).
    Idempotent,
    /// A write protected by an idempotency key: only transient failures that certainly did
    /// nothing upstream (see [`UpstreamError::certainly_not_processed`]). A lost response is
    /// left to the caller, who can look upstream for what the write left behind.
    UnlessProcessed,
    /// An ordinary write: never sent twice.
    Never,
}

impl RetryPolicy {
    /// Whether `e` may be retried under this policy (budgets aside).
    pub fn allows(self, e: &UpstreamError) -> bool {
        match self {
            RetryPolicy::Never => false,
            RetryPolicy::Idempotent => e.is_retryable(),
            RetryPolicy::UnlessProcessed => e.is_retryable() && e.certainly_not_processed(),
        }
    }
}

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `f` with `deadline` as the deadline of every upstream call it makes.
pub async fn with_deadline<F: Future>(deadline: Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The deadline in scope (see [`with_deadline`]), if any.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

tokio::task_local! {
    static CALL_LOG: std::sync::Arc<dyn CallLog>;
}

/// One upstream call as it ended, for a [`CallLog`] (an operation's explain: `graphql::explain`).
#[derive(Debug, Clone, Copy)]
pub struct CallReport<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// The call's own headers (`prefer`: its page size) and request body (a `$batch`'s parts).
    pub headers: &'a [(&'a str, String)],
    pub body: Option<&'a [u8]>,
    /// When the call started (before its slot wait) and how long it took in all.
    pub started: Instant,
    pub elapsed: Duration,
    /// The last attempt's answer: status, `Content-Type` and body; `None` when none came.
    pub answer: Option<(u16, Option<&'a str>, &'a [u8])>,
    /// The error code of a call that failed without an answer.
    pub error: Option<&'static str>,
    pub attempts: u32,
    /// Time spent waiting for slots (and the rate limit), and in retry waits.
    pub slot_wait: Duration,
    pub retry_wait: Duration,
}

/// Told about every upstream call made in its scope ([`with_call_log`]).
pub trait CallLog: Send + Sync {
    fn record(&self, call: &CallReport<'_>);
    /// The log as `Any`, for its owner to find its own type again.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// `f` with `log` told about every upstream call it makes.
pub fn with_call_log<F: Future>(log: std::sync::Arc<dyn CallLog>, f: F) -> impl Future<Output = F::Output> {
    CALL_LOG.scope(log, f)
}

/// The call log in scope (see [`with_call_log`]), if any.
pub fn current_call_log() -> Option<std::sync::Arc<dyn CallLog>> {
    CALL_LOG.try_with(|l| l.clone()).ok()
}

/// The wait before retry number `retry` (1-based) after a failure that was not throttling:
/// `base · 2^(retry-1)`, capped, drawn from its upper half ("equal jitter": never a herd, never
/// a retry at once).
pub fn backoff(config: &ResilienceConfig, retry: u32) -> Duration {
    let exp = config
        .base_backoff
        .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
    let full = exp.min(config.max_backoff);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// The wait before retrying a 429: its `Retry-After` plus up to a tenth more (at most one
/// second), so that the callers it stopped do not all return at the same instant; without the
/// header, the backoff.
pub fn throttle_wait(config: &ResilienceConfig, retry_after: Option<Duration>, retry: u32) -> Duration {
    match retry_after {
        Some(d) => {
            let spread = (d / 10).min(Duration::from_secs(1)).max(config.base_backoff / 2);
            d.max(config.base_backoff / 2) + spread.mul_f64(rand::random::<f64>())
        }
        None => backoff(config, retry),
    }
}

/// What a call's outcome says about the upstream's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered (whatever the answer).
    Healthy,
    /// An outage symptom: 5xx, no connection, a time-out.
    Failed,
    /// Says nothing: throttling (the upstream is well, the caller is busy), or the gateway's own
    /// deadline or queue cut the call short.
    Neutral,
}

impl Health {
    /// The health an error shows. (A call cancelled by the operation's deadline records nothing:
    /// see [`Admission`].)
    pub fn of(e: &UpstreamError) -> Health {
        match e.kind {
            UpstreamErrorKind::Unavailable | UpstreamErrorKind::Timeout => Health::Failed,
            UpstreamErrorKind::Throttled { .. }
            | UpstreamErrorKind::CircuitOpen { .. }
            | UpstreamErrorKind::BudgetSpent { .. } => Health::Neutral,
            _ => Health::Healthy,
        }
    }
}

/// The breaker's state, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    /// Failing fast; the next probe in `retry_in`.
    Open {
        retry_in: Duration,
    },
    /// One probe is testing the upstream.
    HalfOpen,
}

#[derive(Debug)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// A circuit breaker over whole calls (after their retries), so that an upstream whose errors
/// retries cure never trips it, and one that is down trips it after `threshold` calls.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

/// Leave to make one call: [`CircuitBreaker::admit`] gives it, [`Admission::finish`] returns it.
/// Dropped unfinished (the call was cancelled), it says nothing about the upstream.
#[derive(Debug)]
pub struct Admission<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    done: bool,
}

impl Admission<'_> {
    /// Whether this call is the probe of a half-open breaker.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records how the call went.
    pub fn finish(mut self, health: Health) {
        self.done = true;
        self.breaker.record(self.probe, health);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record(self.probe, Health::Neutral);
        }
    }
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a call through, or says how long the breaker stays open.
    pub fn admit(&self) -> Result<Admission<'_>, Duration> {
        let mut state = self.lock();
        let probe = match &*state {
            BreakerState::Closed { .. } => false,
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now < *until {
                    return Err(*until - now);
                }
                *state = BreakerState::HalfOpen;
                tracing::info!("circuit half-open: probing the upstream");
                true
            }
            // A probe is out: everyone else waits for its verdict.
            BreakerState::HalfOpen => return Err(Duration::ZERO),
        };
        Ok(Admission {
            breaker: self,
            probe,
            done: false,
        })
    }

    fn record(&self, probe: bool, health: Health) {
        let mut state = self.lock();
        match (health, &mut *state) {
            (Health::Healthy, BreakerState::HalfOpen) if probe => {
                tracing::info!("circuit closed: the upstream answers again");
                *state = BreakerState::Closed { failures: 0 };
            }
            (Health::Healthy, BreakerState::Closed { failures }) => *failures = 0,
            (Health::Failed, BreakerState::HalfOpen) if probe => {
                tracing::warn!(
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "circuit open again: the probe failed"
                );
                *state = BreakerState::Open {
                    until: Instant::now() + self.cooldown,
                };
            }
            (Health::Failed, BreakerState::Closed { failures }) => {
                *failures += 1;
                if *failures >= self.threshold {
                    tracing::warn!(
                        failures = *failures,
                        cooldown_ms = self.cooldown.as_millis() as u64,
                        "circuit open: the upstream keeps failing; failing fast"
                    );
                    *state = BreakerState::Open {
                        until: Instant::now() + self.cooldown,
                    };
                }
            }
            // A probe that said nothing: the next call probes instead.
            (Health::Neutral, BreakerState::HalfOpen) if probe => {
                *state = BreakerState::Open { until: Instant::now() };
            }
            _ => {}
        }
    }

    /// Whether calls are failing fast now (a probe in flight counts as open).
    pub fn is_open(&self) -> bool {
        !matches!(self.state(), CircuitState::Closed)
    }

    pub fn state(&self) -> CircuitState {
        match &*self.lock() {
            BreakerState::Closed { .. } => CircuitState::Closed,
            BreakerState::Open { until } => CircuitState::Open {
                retry_in: until.saturating_duration_since(Instant::now()),
            },
            BreakerState::HalfOpen => CircuitState::HalfOpen,
        }
    }
}

/// One caller identity's slots toward the upstream, and the pause a 429 put on it.
#[derive(Debug)]
pub struct Gate {
    slots: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
    usage: Arc<SlotUsage>,
}

/// Slots taken and callers waiting for one, over all identities (for `/metrics`).
#[derive(Debug, Default)]
pub struct SlotUsage {
    in_use: AtomicI64,
    waiting: AtomicI64,
}

impl SlotUsage {
    /// Slots held now.
    pub fn in_use(&self) -> i64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Calls waiting for a slot now.
    pub fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A slot of an upstream identity over all replicas (see [`SharedSlots`]): dropped, it frees the
/// slot.
pub type SharedSlot = Box<dyn Send + Sync>;

/// Slots of an upstream identity that several processes share (Redis under `--redis-url`).
pub trait SharedSlots: Send + Sync {
    /// Takes one of `limit` slots of `identity`, leased for `lease` (a holder that dies without
    /// freeing it gives it back when the lease ends): `Ok(Some(slot))`; `Ok(None)` when all are
    /// taken; `Err` says why the shared slots cannot be used now.
    fn try_take<'a>(
        &'a self,
        identity: &'a str,
        limit: usize,
        lease: Duration,
    ) -> futures::future::BoxFuture<'a, Result<Option<SharedSlot>, String>>;
}

/// One upstream slot, held while a call is in flight; dropped (also when the call is cancelled),
/// it frees the slot, and the shared slot it holds, if any.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    usage: Arc<SlotUsage>,
    shared: Option<SharedSlot>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("shared", &self.shared.is_some()).finish()
    }
}

impl Slot {
    /// Whether it holds a slot over all replicas too.
    pub fn has_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// This slot, holding `shared` too.
    pub fn with_shared(mut self, shared: SharedSlot) -> Self {
        self.shared = Some(shared);
        self
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.usage.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a call waiting for a slot for as long as it lives.
struct Waiting<'a>(&'a SlotUsage);

impl<'a> Waiting<'a> {
    fn new(usage: &'a SlotUsage) -> Self {
        usage.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(usage)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    /// Until when the identity is paused by a 429, if it is.
    pub fn paused_until(&self) -> Option<Instant> {
        let p = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        p.filter(|t| *t > Instant::now())
    }

    /// Pauses the identity until `until` (a later pause wins).
    pub fn pause(&self, until: Instant) {
        let mut p = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// Waits for a slot and for the end of any pause, both before `deadline`; otherwise a
    /// throttling error that says so (nothing was sent).
    pub async fn enter(&self, deadline: Instant) -> Result<Slot, UpstreamError> {
        self.check_pause(deadline)?;
        let waiting = Waiting::new(&self.usage);
        let acquired = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await;
        drop(waiting);
        let permit = match acquired {
            Ok(Ok(p)) => {
                self.usage.in_use.fetch_add(1, Ordering::Relaxed);
                Slot {
                    _permit: p,
                    usage: self.usage.clone(),
                    shared: None,
                }
            }
            _ => {
                return Err(UpstreamError::not_sent(
                    UpstreamErrorKind::Throttled { retry_after: None },
                    "too many requests of this caller are already waiting for the upstream: no slot freed up before the deadline",
                ))
            }
        };
        self.wait_out_pause(deadline).await?;
        Ok(permit)
    }

    /// Sleeps through a pause that ends before `deadline`; refuses at once if it ends later.
    pub async fn wait_out_pause(&self, deadline: Instant) -> Result<(), UpstreamError> {
        self.check_pause(deadline)?;
        if let Some(until) = self.paused_until() {
            tokio::time::sleep_until(until).await;
        }
        Ok(())
    }

    fn check_pause(&self, deadline: Instant) -> Result<(), UpstreamError> {
        match self.paused_until() {
            Some(until) if until > deadline => {
                let wait = until.saturating_duration_since(Instant::now());
                Err(UpstreamError::not_sent(
                    UpstreamErrorKind::Throttled {
                        retry_after: Some(wait),
                    },
                    format!(
                        "the upstream throttles this caller for another {} s, longer than the operation may wait",
                        wait.as_secs_f64().ceil() as u64
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The gates of all upstream identities (the application, a user, a fingerprint of a forwarded
/// token: see [`super::auth::Credential`]).
#[derive(Debug)]
pub struct Gates {
    per_identity: usize,
    map: Mutex<HashMap<u64, Arc<Gate>>>,
    usage: Arc<SlotUsage>,
}

/// Above this many identities, idle gates are dropped when a new one is made.
const GATES_KEPT: usize = 1024;

impl Gates {
    pub fn new(per_identity: usize) -> Self {
        Gates {
            per_identity: per_identity.max(1),
            map: Mutex::new(HashMap::new()),
            usage: Arc::default(),
        }
    }

    /// Slots in use and callers waiting, over all identities.
    pub fn usage(&self) -> &SlotUsage {
        &self.usage
    }

    /// The gate of an upstream identity.
    pub fn gate(&self, identity: &str) -> Arc<Gate> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        identity.hash(&mut h);
        let key = h.finish();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = map.get(&key) {
            return g.clone();
        }
        if map.len() >= GATES_KEPT {
            let now = Instant::now();
            map.retain(|_, g| {
                Arc::strong_count(g) > 1
                    || g.slots.available_permits() < self.per_identity
                    || g.paused_until
                        .lock()
                        .map(|p| p.is_some_and(|t| t > now))
                        .unwrap_or(true)
            });
        }
        let gate = Arc::new(Gate {
            slots: Arc::new(Semaphore::new(self.per_identity)),
            paused_until: Mutex::new(None),
            usage: self.usage.clone(),
        });
        map.insert(key, gate.clone());
        gate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> UpstreamError {
        UpstreamError::from_status(503, None, b"")
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let c = ResilienceConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..Default::default()
        };
        for _ in 0..100 {
            let b1 = backoff(&c, 1);
            assert!(
                b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100),
                "{b1:?}"
            );
            let b3 = backoff(&c, 3);
            assert!(
                b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400),
                "{b3:?}"
            );
            let b9 = backoff(&c, 40);
            assert!(
                b9 >= Duration::from_millis(500) && b9 <= Duration::from_millis(1000),
                "{b9:?}"
            );
            let t = throttle_wait(&c, Some(Duration::from_secs(2)), 1);
            assert!(t >= Duration::from_secs(2) && t <= Duration::from_millis(2200), "{t:?}");
        }
    }

    #[test]
    fn policies_decide_what_may_be_sent_again() {
        let throttled = UpstreamError::from_status(429, Some("1"), b"");
        let bad = UpstreamError::from_status(400, None, b"");
        let gateway_timeout = UpstreamError::from_status(504, None, b"");
        let refused = UpstreamError::not_sent(UpstreamErrorKind::Unavailable, "could not connect");
        let lost = UpstreamError {
            delivery: crate::odata::error::Delivery::Unknown,
            ..UpstreamError::new(UpstreamErrorKind::InvalidResponse, Some(200), "truncated")
        };
        for e in [&throttled, &unavailable(), &gateway_timeout, &refused, &lost] {
            assert!(RetryPolicy::Idempotent.allows(e), "{e:?}");
            assert!(!RetryPolicy::Never.allows(e));
        }
        assert!(!RetryPolicy::Idempotent.allows(&bad));
        assert!(RetryPolicy::UnlessProcessed.allows(&throttled));
        assert!(RetryPolicy::UnlessProcessed.allows(&unavailable()));
        assert!(RetryPolicy::UnlessProcessed.allows(&refused));
        assert!(
            !RetryPolicy::UnlessProcessed.allows(&gateway_timeout),
            "a proxy may have given up"
        );
        assert!(
            !RetryPolicy::UnlessProcessed.allows(&lost),
            "the write may have happened"
        );
        assert!(lost.outcome_unknown() && gateway_timeout.outcome_unknown());
        assert!(!throttled.outcome_unknown() && !refused.outcome_unknown() && !bad.outcome_unknown());
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_after_failed_calls_and_closes_after_a_probe() {
        let b = CircuitBreaker::new(2, Duration::from_secs(10));
        b.admit().unwrap().finish(Health::Failed);
        b.admit().unwrap().finish(Health::Healthy);
        b.admit().unwrap().finish(Health::Failed);
        assert_eq!(b.state(), CircuitState::Closed, "a success resets the count");
        b.admit().unwrap().finish(Health::Neutral);
        b.admit().unwrap().finish(Health::Failed);
        assert!(matches!(b.state(), CircuitState::Open { .. }));
        assert!(b.admit().is_err());
        tokio::time::advance(Duration::from_secs(11)).await;
        let probe = b.admit().unwrap();
        assert!(probe.is_probe());
        assert!(b.admit().is_err(), "one probe at a time");
        probe.finish(Health::Failed);
        assert!(matches!(b.state(), CircuitState::Open { .. }), "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(11)).await;
        drop(b.admit().unwrap());
        let probe = b.admit().expect("a cancelled probe hands over to the next call");
        probe.finish(Health::Healthy);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(Health::of(&unavailable()), Health::Failed);
        assert_eq!(Health::of(&UpstreamError::from_status(404, None, b"")), Health::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn gates_queue_per_identity_and_honour_pauses() {
        let gates = Gates::new(2);
        let alice = gates.gate("alice");
        let deadline = Instant::now() + Duration::from_secs(5);
        let p1 = alice.enter(deadline).await.unwrap();
        let _p2 = alice.enter(deadline).await.unwrap();
        let bob = gates.gate("bob");
        let _b = bob.enter(deadline).await.expect("another identity has its own slots");
        let e = alice
            .enter(Instant::now() + Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "UPSTREAM_THROTTLED");
        assert_eq!(e.delivery, crate::odata::error::Delivery::NotSent);
        drop(p1);
        let _p3 = alice.enter(deadline).await.unwrap();
        bob.pause(Instant::now() + Duration::from_secs(60));
        let e = bob.enter(deadline).await.unwrap_err();
        assert!(e.message.contains("throttles this caller"), "{}", e.message);
        let carol = gates.gate("carol");
        carol.pause(Instant::now() + Duration::from_secs(1));
        let started = Instant::now();
        let _c = carol.enter(deadline).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1), "waited out the pause");
    }
}
