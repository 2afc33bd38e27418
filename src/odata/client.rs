//! The HTTP client: one pooled `reqwest::Client` behind [`Upstream`], sending the OData headers
//! of contract §12 on every call and turning every failure into an [`UpstreamError`]. The calls
//! themselves (pages, `nextLink`s as §3 requires, writes) are in [`super::calls`].
//!
//! Every exchange goes through [`super::resilience`]: a deadline, retries by [`RetryPolicy`],
//! slots per caller identity and the circuit breaker (see that module for the rules).
//!
//! The `Authorization` header each call carries comes from [`super::auth::TokenSource`] (by the
//! upstream auth mode: none, the caller's own, an application token, an on-behalf-of token); it
//! is marked sensitive (so HTTP-level debug logs redact it) and never logged or put in an error.
//! A 401 from the upstream makes one token refresh and one more attempt (the upstream did nothing
//! with a request it refused to authenticate, so even a write may go again). Absolute URLs (next
//! links) are only followed to the configured service root's origin, so a forged next link cannot
//! send the caller's token elsewhere.

use super::error::{UpstreamError, UpstreamErrorKind};
use super::resilience::{self, CircuitBreaker, CircuitState, Gates, Health, ResilienceConfig, RetryPolicy};
use crate::telemetry::otel;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Dataverse never returns more than 5000 rows per page, whatever is asked (contract §3).
pub const MAX_PAGE_SIZE: usize = 5000;

/// Where and how to reach the upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Such as `https://org.crm.dynamics.com/api/data/v9.2/`; a missing final `/` is added.
    pub service_root: String,
    /// Timeout of one attempt, from sending to the end of the body.
    pub timeout: Duration,
    /// Timeout of opening a connection.
    pub connect_timeout: Duration,
    pub user_agent: String,
    /// Retries, concurrency per caller, circuit breaker.
    pub resilience: ResilienceConfig,
    /// How calls authenticate.
    pub auth: super::auth::UpstreamAuth,
}

impl UpstreamConfig {
    /// Defaults: 60 s per request (F&O virtual tables are slow, contract §13),
    /// 10 s to connect, and [`ResilienceConfig::default`].
    pub fn new(service_root: impl Into<String>) -> Self {
        UpstreamConfig {
            service_root: service_root.into(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("ats-gateway/", env!("CARGO_PKG_VERSION")).to_string(),
            resilience: ResilienceConfig::default(),
            auth: super::auth::UpstreamAuth::None,
        }
    }
}

/// The upstream client. Share one per process (it holds the connection pool and the counters).
#[derive(Debug)]
pub struct Upstream {
    http: reqwest::Client,
    config: UpstreamConfig,
    pub(super) root: Url,
    requests: AtomicU64,
    per_set: Mutex<BTreeMap<String, u64>>,
    observer: std::sync::OnceLock<ObserverSlot>,
    /// Slots per identity over all replicas (`--upstream-concurrency-total` under `--redis-url`).
    shared_slots: std::sync::OnceLock<SharedSlotsSlot>,
    /// Told about every 429 pause this process starts (to share it with other replicas).
    pause_hook: std::sync::OnceLock<PauseHookSlot>,
    breaker: CircuitBreaker,
    gates: Gates,
    /// Requests per upstream identity in the window, and `--upstream-rate-limit`.
    budget: super::rate_limit::UpstreamBudget,
    tokens: super::auth::TokenSource,
    /// How the upstream spells the model (from its `$metadata`; see [`super::spelling`]).
    naming: std::sync::RwLock<std::sync::Arc<crate::model::naming::Naming>>,
}

/// Holds the observer; `Debug` says only whether one is set.
pub struct ObserverSlot(Observer);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// Called with an upstream identity and the pause a 429 put on it (its `Retry-After`), each
/// time this process starts one: `--redis-url` shares it with the other replicas. It must not
/// block (the call that saw the 429 is waiting).
pub type PauseHook = std::sync::Arc<dyn Fn(&str, Duration) + Send + Sync>;

/// Holds the pause hook; `Debug` says only that one is set.
pub struct PauseHookSlot(PauseHook);

impl std::fmt::Debug for PauseHookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PauseHook")
    }
}

/// Holds the shared slots; `Debug` says only that they are set.
pub struct SharedSlotsSlot(std::sync::Arc<dyn resilience::SharedSlots>);

impl std::fmt::Debug for SharedSlotsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSlots")
    }
}

/// How often a call waiting for a slot over all replicas asks again.
const SHARED_SLOT_POLL: Duration = Duration::from_millis(25);

/// One upstream exchange, as metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamEvent<'a> {
    /// The entity set (or `$batch`, `$metadata`, …) the request addressed.
    pub entity_set: &'a str,
    /// The HTTP status, or `None` when no response arrived.
    pub status: Option<u16>,
    pub elapsed: Duration,
    /// 1 for the first attempt of a call, 2 for its first retry, ...
    pub attempt: u32,
}

/// A callback told about every upstream exchange (for metrics).
pub type Observer = std::sync::Arc<dyn Fn(&UpstreamEvent<'_>) + Send + Sync>;

/// A response as received: status, headers, complete body.
pub(super) struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(super) fn error(&self) -> UpstreamError {
        UpstreamError::from_status(self.status, self.header("retry-after"), &self.body)
    }
}

impl Upstream {
    pub fn new(mut config: UpstreamConfig) -> Result<Self, UpstreamError> {
        if !config.service_root.ends_with('/') {
            config.service_root.push('/');
        }
        let root = Url::parse(&config.service_root).map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Other,
                None,
                format!("service root {:?} is not a URL: {e}", config.service_root),
            )
        })?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| UpstreamError::from_transport(e, false))?;
        let r = &config.resilience;
        Ok(Upstream {
            tokens: super::auth::TokenSource::new(config.auth.clone(), http.clone(), config.resilience.clone()),
            http,
            breaker: CircuitBreaker::new(r.breaker_threshold, r.breaker_cooldown),
            gates: Gates::new(r.concurrency_per_identity),
            budget: super::rate_limit::UpstreamBudget::new(r.rate_limit),
            config,
            root,
            requests: AtomicU64::new(0),
            per_set: Mutex::new(BTreeMap::new()),
            observer: std::sync::OnceLock::new(),
            pause_hook: std::sync::OnceLock::new(),
            shared_slots: std::sync::OnceLock::new(),
            naming: Default::default(),
        })
    }

    /// How the upstream spells the model (the model's own names until [`Upstream::set_naming`]).
    pub fn naming(&self) -> std::sync::Arc<crate::model::naming::Naming> {
        self.naming.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets how the upstream spells the model (after `$metadata` reconciliation at start).
    pub fn set_naming(&self, naming: crate::model::naming::Naming) {
        *self.naming.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(naming);
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Upstream slots in use and calls waiting for one (for `/metrics`).
    pub fn slot_usage(&self) -> &resilience::SlotUsage {
        self.gates.usage()
    }

    /// Requests per upstream identity in the window, and the budget they are held to.
    pub fn budget(&self) -> &super::rate_limit::UpstreamBudget {
        &self.budget
    }

    /// The circuit breaker's state (for `/readyz`).
    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// The upstream credentials (mode, token requests).
    pub fn tokens(&self) -> &super::auth::TokenSource {
        &self.tokens
    }

    /// HTTP requests sent so far (a `$batch` is one; each retry is one).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Operations per first path segment (entity set, `$batch`, `GlobalOptionSetDefinitions`):
    /// each part of a batch is counted under its own entity set as well, so this shows the load
    /// on each table; the envelopes are counted under `$batch`.
    pub fn requests_by_entity_set(&self) -> Vec<(String, u64)> {
        let map = self.per_set.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The absolute URL for a relative one, or an absolute one checked to be on the upstream.
    pub fn absolute_url(&self, url_or_relative: &str) -> Result<String, UpstreamError> {
        if url_or_relative.starts_with("http://") || url_or_relative.starts_with("https://") {
            let url = Url::parse(url_or_relative).map_err(|e| {
                UpstreamError::new(
                    UpstreamErrorKind::InvalidResponse,
                    None,
                    format!("bad upstream link: {e}"),
                )
            })?;
            if url.origin() != self.root.origin() {
                return Err(UpstreamError::new(
                    UpstreamErrorKind::InvalidResponse,
                    None,
                    format!(
                        "refusing to follow a link to another host ({})",
                        url.origin().ascii_serialization()
                    ),
                ));
            }
            Ok(url_or_relative.to_string())
        } else {
            Ok(format!(
                "{}{}",
                self.config.service_root,
                url_or_relative.trim_start_matches('/')
            ))
        }
    }

    pub(super) fn count(&self, absolute: &str) {
        let segment = first_segment(&self.config.service_root, absolute);
        let mut map = self.per_set.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(segment).or_default() += 1;
    }

    /// Sets the callback told about every upstream exchange (once; later calls are ignored).
    /// Holds each identity to `--upstream-concurrency-total` requests in flight over all replicas
    /// through `slots` (once; later calls are ignored; nothing happens without the setting).
    pub fn set_shared_slots(&self, slots: std::sync::Arc<dyn resilience::SharedSlots>) {
        let _ = self.shared_slots.set(SharedSlotsSlot(slots));
    }

    /// Sets the hook told about each 429 pause this process starts (once; later calls are
    /// ignored).
    pub fn set_pause_hook(&self, hook: PauseHook) {
        let _ = self.pause_hook.set(PauseHookSlot(hook));
    }

    /// Pauses `identity` for `pause` because another replica saw a 429 for it: its calls wait
    /// (or fail at once, if the pause outlasts their deadline) as after a 429 of this process.
    /// The hook is not told (the pause is not this process's to share).
    pub fn pause_identity(&self, identity: &str, pause: Duration) {
        self.gates.gate(identity).pause(Instant::now() + pause);
    }

    pub fn set_observer(&self, observer: Observer) {
        self.tokens.set_observer(observer.clone());
        let _ = self.observer.set(ObserverSlot(observer));
    }

    fn observe(&self, url: &str, status: Option<u16>, started: Instant, attempt: u32) {
        if let Some(o) = self.observer.get() {
            let set = first_segment(&self.config.service_root, url);
            (o.0)(&UpstreamEvent {
                entity_set: &set,
                status,
                elapsed: started.elapsed(),
                attempt,
            });
        }
    }

    /// Sends one request and reads the whole body, retrying as `policy` allows within the
    /// deadline (see [`resilience`]). Every call goes through here. An error status comes back
    /// as `Ok` (callers read `$batch` bodies whatever the status); `Err` means no complete
    /// response, or none sent.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &str,
        auth: Option<&str>,
        extra: &[(&str, String)],
        body: Option<(String, Vec<u8>)>,
        policy: RetryPolicy,
    ) -> Result<Raw, UpstreamError> {
        let started = Instant::now();
        let deadline = resilience::current_deadline().unwrap_or(started + self.config.timeout);
        let mut headers = request_headers(&method, extra, body.as_ref().map(|(ct, _)| ct.as_str()));
        let credential = self.credential(auth, deadline).await?;
        set_authorization(&mut headers, &credential)?;
        let body = body.map(|(_, bytes)| bytes::Bytes::from(bytes));
        let admission = self.breaker.admit().map_err(|retry_in| {
            UpstreamError::not_sent(
                UpstreamErrorKind::CircuitOpen { retry_in },
                format!(
                    "the upstream keeps failing, so the gateway is not calling it for now (circuit open; next try in {} ms)",
                    retry_in.as_millis()
                ),
            )
        })?;
        let call = Call {
            method: &method,
            url,
            auth,
            body,
            policy,
            deadline,
        };
        let span = otel::upstream_span(&method, || first_segment(&self.config.service_root, url));
        otel::inject_traceparent(&span, &mut headers);
        let mut tries = Tries {
            trace: otel::CallTrace::new(span.clone()),
            ..Default::default()
        };
        let attempts = self.attempts(&call, headers, credential, admission, &mut tries);
        let result = tracing::Instrument::instrument(attempts, span).await;
        if let Some(log) = resilience::current_call_log() {
            log.record(&tries.report(&call, extra, started, &result));
        }
        result
    }

    /// The attempts of one call: each in a slot of the caller's gate; a 401 refreshes the token
    /// once; other failures are retried as the policy, the retry budget, the breaker and the
    /// deadline allow. The admission is finished with the call's health.
    async fn attempts(
        &self,
        call: &Call<'_>,
        mut headers: HeaderMap,
        mut credential: super::auth::Credential,
        admission: resilience::Admission<'_>,
        tries: &mut Tries,
    ) -> Result<Raw, UpstreamError> {
        let gate = self.gates.gate(&credential.identity);
        for attempt in 1.. {
            let waiting = Instant::now();
            let entered = match tries.held.take() {
                Some(permit) => gate.wait_out_pause(call.deadline).await.map(|()| permit),
                None => gate.enter(call.deadline).await,
            };
            let entered = self.admit(entered, &credential.identity, call.deadline).await;
            let permit = match entered {
                Ok(p) => p,
                Err(e) => return finish(admission, Health::Neutral, Err(e)),
            };
            tries.trace.slot_waited(waiting.elapsed());
            let outcome = self
                .exchange(call.method, call.url, headers.clone(), call.body.clone(), attempt)
                .await;
            tries
                .trace
                .answered(attempt, outcome.as_ref().ok().map(|raw| raw.status));
            let failure = match &outcome {
                Ok(raw) if (200..300).contains(&raw.status) => None,
                Ok(raw) => Some(raw.error()),
                Err(e) => Some(e.clone()),
            };
            let Some(err) = failure else {
                return finish(admission, Health::Healthy, outcome);
            };
            if err.status == Some(401) && !tries.refreshed && self.tokens.can_refresh() {
                // An expired or revoked token: one new token, one more attempt.
                tries.refreshed = true;
                drop(permit);
                self.tokens.rejected(&credential).await;
                match self.credential(call.auth, call.deadline).await {
                    Ok(c) => credential = c,
                    Err(e) => return finish(admission, Health::Neutral, Err(e)),
                }
                set_authorization(&mut headers, &credential)?;
                continue;
            }
            let retry = self.retry_wait(call, (&credential.identity, &gate), &err, tries, &admission);
            let Some((wait, throttled)) = retry else {
                self.log_failure(call, &err, attempt);
                return finish(admission, Health::of(&err), outcome);
            };
            tracing::debug!(
                method = %call.method,
                url = %super::redact::redact_url(call.url),
                upstream.status = err.status,
                error.code = err.code(),
                attempt,
                wait_ms = wait.as_millis() as u64,
                "upstream call failed; retrying"
            );
            // A throttled caller keeps its slot while it waits (the whole identity is paused
            // anyway), so that it goes first when the pause ends; other failures give it up.
            if throttled {
                tries.held = Some(permit);
                tries.throttled += 1;
            } else {
                drop(permit);
                tries.retries += 1;
            }
            tries.trace.retry_wait(wait);
            tokio::time::sleep(wait).await;
        }
        unreachable!("the attempts loop returns")
    }

    /// After a slot of this process: the identity's budget (each attempt spends it: Dataverse
    /// counts retries too), then, with `--upstream-concurrency-total`, a slot over all replicas
    /// (kept with the local slot, across a throttled retry too).
    async fn admit(
        &self,
        entered: Result<resilience::Slot, UpstreamError>,
        identity: &str,
        deadline: Instant,
    ) -> Result<resilience::Slot, UpstreamError> {
        let slot = entered?;
        self.budget.admit(identity, deadline).await?;
        let (Some(shared), Some(limit)) = (self.shared_slots.get(), self.config.resilience.shared_concurrency) else {
            return Ok(slot);
        };
        if slot.has_shared() {
            return Ok(slot);
        }
        loop {
            // The lease outlasts anything the call may still do: its deadline, then one attempt.
            let lease = deadline.saturating_duration_since(Instant::now()) + self.config.timeout;
            match shared.0.try_take(identity, limit, lease).await {
                Ok(Some(taken)) => return Ok(slot.with_shared(taken)),
                // Redis cannot be used: this process's slots only, for this call.
                Err(_) => return Ok(slot),
                Ok(None) if Instant::now() + SHARED_SLOT_POLL >= deadline => {
                    return Err(UpstreamError::not_sent(
                        UpstreamErrorKind::Throttled { retry_after: None },
                        "too many requests of this caller are in flight over all gateway replicas (--upstream-concurrency-total): no slot freed up before the deadline",
                    ))
                }
                Ok(None) => tokio::time::sleep(SHARED_SLOT_POLL).await,
            }
        }
    }

    /// How long to wait before retrying `err`, and whether it was a throttle (which pauses the
    /// caller's whole gate until its `Retry-After`); `None`: not retried (the policy, the retry
    /// budget, an open breaker or the deadline says no).
    fn retry_wait(
        &self,
        call: &Call<'_>,
        (identity, gate): (&str, &resilience::Gate),
        err: &UpstreamError,
        tries: &Tries,
        admission: &resilience::Admission<'_>,
    ) -> Option<(Duration, bool)> {
        let cfg = &self.config.resilience;
        let throttle = match err.kind {
            UpstreamErrorKind::Throttled { retry_after } => Some(retry_after),
            _ => None,
        };
        let wait = match throttle {
            Some(retry_after) => {
                let wait = resilience::throttle_wait(cfg, retry_after, tries.throttled + 1);
                let pause = retry_after.unwrap_or(wait);
                gate.pause(Instant::now() + pause);
                if let Some(hook) = self.pause_hook.get() {
                    (hook.0)(identity, pause);
                }
                wait
            }
            None => resilience::backoff(cfg, tries.retries + 1),
        };
        let within_budget = match throttle {
            Some(_) => tries.throttled < resilience::MAX_THROTTLED_RETRIES,
            None => tries.retries < cfg.max_retries,
        };
        let breaker_allows = admission.is_probe() || !self.breaker.is_open();
        let retry = call.policy.allows(err) && within_budget && breaker_allows && Instant::now() + wait < call.deadline;
        retry.then_some((wait, throttle.is_some()))
    }

    /// Logs a call that failed for good: an outage or a broken answer is the operator's business
    /// (a refusal is the caller's); the URL's literal values are hidden.
    fn log_failure(&self, call: &Call<'_>, err: &UpstreamError, attempts: u32) {
        if err.is_retryable() || err.kind == UpstreamErrorKind::InvalidResponse {
            tracing::warn!(
                method = %call.method,
                entity_set = %first_segment(&self.config.service_root, call.url),
                url = %super::redact::redact_url(call.url),
                upstream.status = err.status,
                error.code = err.code(),
                attempts,
                "upstream call failed"
            );
        }
    }

    /// The readiness probe: one GET of the service document with the gateway's own credential,
    /// within `timeout`, taking **no slot** of the per-identity gates (so it never queues behind
    /// callers) and never retried, except once with a fresh token after a 401. The circuit
    /// breaker admits it like any call (an open breaker refuses it; after the cool-down it may be
    /// the probe that closes the breaker). `Ok` carries the status of whatever answer came.
    pub async fn probe_ungated(&self, timeout: Duration) -> Result<u16, UpstreamError> {
        let deadline = Instant::now() + timeout;
        let url = self.absolute_url("")?;
        let admission = self.breaker.admit().map_err(|retry_in| {
            UpstreamError::not_sent(
                UpstreamErrorKind::CircuitOpen { retry_in },
                format!("circuit open; next try in {} ms", retry_in.as_millis()),
            )
        })?;
        let attempts = async {
            let mut headers = HeaderMap::new();
            headers.insert("accept", HeaderValue::from_static("application/json"));
            headers.insert("odata-maxversion", HeaderValue::from_static("4.0"));
            headers.insert("odata-version", HeaderValue::from_static("4.0"));
            let mut credential = self.credential(None, deadline).await?;
            for attempt in 1..=2 {
                set_authorization(&mut headers, &credential)?;
                self.budget.record(&credential.identity);
                let raw = self
                    .exchange(&Method::GET, &url, headers.clone(), None, attempt)
                    .await?;
                if raw.status == 401 && attempt == 1 && self.tokens.can_refresh() {
                    self.tokens.rejected(&credential).await;
                    credential = self.credential(None, deadline).await?;
                    continue;
                }
                return Ok(raw.status);
            }
            unreachable!("the second attempt returns")
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(Ok(status)) => {
                admission.finish(Health::of(&UpstreamError::from_status(status, None, b"")));
                Ok(status)
            }
            Ok(Err(e)) => {
                admission.finish(Health::of(&e));
                Err(e)
            }
            Err(_) => {
                admission.finish(Health::Failed);
                Err(UpstreamError::not_sent(
                    UpstreamErrorKind::Timeout,
                    format!("no answer within {} ms", timeout.as_millis()),
                ))
            }
        }
    }

    /// The credential for a call, obtained within the deadline.
    async fn credential(
        &self,
        caller: Option<&str>,
        deadline: Instant,
    ) -> Result<super::auth::Credential, UpstreamError> {
        match tokio::time::timeout_at(deadline, self.tokens.credential(caller)).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::not_sent(
                UpstreamErrorKind::Timeout,
                "no upstream token could be obtained before the deadline",
            )),
        }
    }

    /// One attempt: send and read the whole body. It is not cut off at the deadline: the
    /// operation's own timeout drops it then (and says DEADLINE_EXCEEDED), and outside an
    /// operation the HTTP client's timeout is the deadline.
    async fn exchange(
        &self,
        method: &Method,
        url: &str,
        headers: HeaderMap,
        body: Option<bytes::Bytes>,
        attempt: u32,
    ) -> Result<Raw, UpstreamError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.count(url);
        let mut req = self.http.request(method.clone(), url).headers(headers);
        if let Some(bytes) = body {
            req = req.body(bytes);
        }
        let started = Instant::now();
        let resp = req.send().await.map_err(|e| {
            // reqwest's message names the URL; the redacted one is logged instead.
            let e = e.without_url();
            tracing::warn!(%method, url = %super::redact::redact_url(url), error = %e, attempt, "upstream request failed");
            self.observe(url, None, started, attempt);
            UpstreamError::from_transport(e, false)
        })?;
        let status = resp.status().as_u16();
        self.observe(url, Some(status), started, attempt);
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            let e = e.without_url();
            tracing::warn!(%method, url = %super::redact::redact_url(url), status, error = %e, attempt, "upstream body could not be read");
            UpstreamError::from_transport(e, true)
        })?;
        tracing::debug!(%method, url = %super::redact::redact_url(url), status, attempt, duration_ms = started.elapsed().as_millis() as u64, "upstream");
        Ok(Raw { status, headers, body })
    }
}

/// One call as [`Upstream::send`] received it.
struct Call<'a> {
    method: &'a Method,
    url: &'a str,
    auth: Option<&'a str>,
    body: Option<bytes::Bytes>,
    policy: RetryPolicy,
    deadline: Instant,
}

/// What the attempts of one call have used so far.
#[derive(Default)]
struct Tries {
    retries: u32,
    throttled: u32,
    refreshed: bool,
    /// The slot a throttled attempt kept for the next one.
    held: Option<resilience::Slot>,
    /// Attempts sent, and the time spent waiting for slots and between attempts: what the call's
    /// span records (tracing on: `telemetry::otel`) and explain shows.
    trace: otel::CallTrace,
}

impl Tries {
    /// The call as a [`resilience::CallLog`] is told about it.
    fn report<'a>(
        &self,
        call: &'a Call<'_>,
        headers: &'a [(&'a str, String)],
        started: Instant,
        result: &'a Result<Raw, UpstreamError>,
    ) -> resilience::CallReport<'a> {
        resilience::CallReport {
            method: call.method.as_str(),
            url: call.url,
            headers,
            body: call.body.as_deref(),
            started,
            elapsed: started.elapsed(),
            answer: result
                .as_ref()
                .ok()
                .map(|raw| (raw.status, raw.header("content-type"), &raw.body[..])),
            error: result.as_ref().err().map(UpstreamError::code),
            attempts: self.trace.attempts(),
            slot_wait: self.trace.slot_wait(),
            retry_wait: self.trace.retry_waits(),
        }
    }
}

/// Finishes the breaker's admission of a call with `health` and returns its result.
fn finish<T>(admission: resilience::Admission<'_>, health: Health, result: T) -> T {
    admission.finish(health);
    result
}

/// The OData headers of contract §12 for a request, the call's own (`extra`) and its content type.
fn request_headers(method: &Method, extra: &[(&str, String)], content_type: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert("odata-maxversion", HeaderValue::from_static("4.0"));
    headers.insert("odata-version", HeaderValue::from_static("4.0"));
    if method == Method::GET {
        // Avoids stale cached collection expands (contract §2, §12).
        headers.insert("if-none-match", HeaderValue::from_static("null"));
    }
    for (name, value) in extra {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header names here are constants");
        let value = HeaderValue::from_str(value).expect("header values here are built from ASCII");
        headers.append(name, value);
    }
    if let Some(content_type) = content_type {
        let value = HeaderValue::from_str(content_type).expect("content types here are ASCII");
        headers.insert(CONTENT_TYPE, value);
    }
    headers
}

/// Puts the credential's `Authorization` header (marked sensitive) on a request, or none.
fn set_authorization(headers: &mut HeaderMap, credential: &super::auth::Credential) -> Result<(), UpstreamError> {
    headers.remove(AUTHORIZATION);
    if let Some(value) = &credential.header {
        let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
            UpstreamError::not_sent(
                UpstreamErrorKind::Unauthorized,
                "the Authorization value is not a valid HTTP header value",
            )
        })?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    Ok(())
}

/// The first path segment after the service root (`mshr_x` from `.../mshr_x(id)?$select=a`), of
/// an absolute URL, an origin-relative path (`/api/data/v9.2/mshr_x`, as `$batch` parts may
/// have) or a URL relative to the root (`mshr_x(id)`); `(root)` for the root itself.
pub fn first_segment(root: &str, url: &str) -> String {
    let by_path = || -> Option<String> {
        let root_path = Url::parse(root).ok()?.path().to_string();
        let path = match url.starts_with('/') {
            true => url.to_string(),
            false => Url::parse(url).ok()?.path().to_string(),
        };
        path.strip_prefix(&root_path).map(str::to_string)
    };
    let rest = match url.strip_prefix(root) {
        Some(r) => r.to_string(),
        None if !url.contains("://") && !url.starts_with('/') => url.to_string(),
        None => by_path().unwrap_or_default(),
    };
    let end = rest.find(['(', '?', '/', '#']).unwrap_or(rest.len());
    match &rest[..end] {
        "" => "(root)".to_string(),
        seg => seg.to_string(),
    }
}
