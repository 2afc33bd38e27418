//! The upstream budget you can see, and keep: upstream requests per upstream identity in a sliding
//! window, and `--upstream-rate-limit` (such as `6000/5m`, Dataverse's service-protection limit
//! per user, application users included).
//!
//! Every request [`super::Upstream`] sends (each attempt: Dataverse counts retries too) is counted
//! for the identity it is sent as — `app:<client id>` under client credentials, `user:<token
//! fingerprint>` under on-behalf-of, the token's fingerprint under pass-through, `gateway` without
//! upstream auth — never a token. The counts live in buckets of one second (longer for windows
//! over five minutes: at most [`BUCKETS`] per identity), kept only while inside the window, so
//! memory is bounded by the identities active in the window; an idle identity is forgotten.
//!
//! With a limit, a request that would go over it waits until enough earlier requests leave the
//! window, if that moment comes before the operation's deadline; otherwise it fails at once,
//! unsent, with [`UpstreamErrorKind::BudgetSpent`] (`UPSTREAM_BUDGET_EXHAUSTED`). Readiness
//! probes are counted but never held back.
//!
//! Replicas share the limit through a [`SharedWindow`] (Redis under `--redis-url`, set with
//! [`UpstreamBudget::share`]): each request then asks it for a place in the window all replicas
//! fill (one round trip, only when a limit is set), and a shared window that fails falls back
//! to this process's own window for that request. Without one the limit is this process's
//! alone. The counts `/metrics` and `/readyz` show are always this process's.

use super::error::{UpstreamError, UpstreamErrorKind};
use futures::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// The window `/metrics` reports requests over (Dataverse's service-protection window).
pub const REPORT_WINDOW: Duration = Duration::from_secs(300);

/// Most buckets one identity holds: the window is split into this many (one second at least).
pub const BUCKETS: u64 = 300;

/// Identities labelled in `/metrics`, the busiest first (the rest are summed as `other`).
pub const MAX_IDENTITY_LABELS: usize = 50;

/// A budget of `requests` per `window` for each upstream identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u64,
    pub window: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// Reads `6000/5m`: a count, `/`, a duration (`300s`, `5m`, `1h`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not <requests>/<window>, such as 6000/5m");
        let (n, window) = s.split_once('/').ok_or_else(bad)?;
        let requests: u64 = n.trim().parse().map_err(|_| bad())?;
        let window = humantime::parse_duration(window.trim()).map_err(|_| bad())?;
        if requests == 0 || window < Duration::from_secs(1) {
            return Err(format!(
                "`{s}`: the budget needs at least one request and a window of 1s or more"
            ));
        }
        Ok(RateLimit { requests, window })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, humantime::format_duration(self.window))
    }
}

/// A sliding window of requests per upstream identity that several processes fill together.
pub trait SharedWindow: Send + Sync {
    /// Takes a place for one request of `identity` if fewer than `limit.requests` were taken
    /// in the last `limit.window`: `Ok(None)`; else `Ok(Some(wait))`, when the oldest leaves
    /// the window; `Err` says why the shared window could not be used.
    fn try_take<'a>(&'a self, identity: &'a str, limit: RateLimit) -> BoxFuture<'a, Result<Option<Duration>, String>>;
}

/// One identity's requests: `(bucket, count)` of the buckets with requests, oldest first.
#[derive(Debug, Default)]
struct Usage {
    buckets: VecDeque<(u64, u64)>,
}

impl Usage {
    /// Forgets the buckets before `first`.
    fn prune(&mut self, first: u64) {
        while self.buckets.front().is_some_and(|(b, _)| *b < first) {
            self.buckets.pop_front();
        }
    }

    /// Requests in the buckets from `first` on.
    fn since(&self, first: u64) -> u64 {
        self.buckets.iter().filter(|(b, _)| *b >= first).map(|(_, n)| n).sum()
    }

    fn add(&mut self, bucket: u64) {
        match self.buckets.back_mut() {
            Some((b, n)) if *b == bucket => *n += 1,
            _ => self.buckets.push_back((bucket, 1)),
        }
    }

    /// The oldest bucket from `first` on.
    fn oldest_since(&self, first: u64) -> Option<u64> {
        self.buckets.iter().map(|(b, _)| *b).find(|b| *b >= first)
    }
}

/// One identity's line in `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityUsage {
    /// The identity as counted (never a token: see the module docs), or `other`.
    pub identity: String,
    /// Requests over the last [`REPORT_WINDOW`].
    pub requests: u64,
    /// Requests over the limit's window, as a share of the limit (none without a limit).
    pub share: Option<f64>,
}

/// The requests of every upstream identity, and the limit they are held to.
#[derive(Debug)]
pub struct UpstreamBudget {
    limit: Option<RateLimit>,
    /// The length of one bucket.
    width: Duration,
    /// Buckets kept: the longer of the report window and the limit's.
    span: u64,
    start: Instant,
    usage: Mutex<HashMap<String, Usage>>,
    /// The window shared with other replicas, if any.
    shared: OnceLock<Arc<dyn SharedWindow>>,
}

impl std::fmt::Debug for dyn SharedWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedWindow")
    }
}

impl UpstreamBudget {
    pub fn new(limit: Option<RateLimit>) -> Self {
        let longest = limit.map_or(REPORT_WINDOW, |l| l.window.max(REPORT_WINDOW));
        let width = (longest / BUCKETS as u32).max(Duration::from_secs(1));
        UpstreamBudget {
            limit,
            width,
            span: buckets(longest, width),
            start: Instant::now(),
            usage: Mutex::default(),
            shared: OnceLock::new(),
        }
    }

    /// Shares the limit with other processes through `window` (once; later calls are ignored).
    pub fn share(&self, window: Arc<dyn SharedWindow>) {
        let _ = self.shared.set(window);
    }

    /// Whether the limit is shared with other processes.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    pub fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    fn bucket(&self, at: Instant) -> u64 {
        (at.duration_since(self.start).as_nanos() / self.width.as_nanos()) as u64
    }

    /// The first bucket inside a window of `window` ending in `now`'s bucket.
    fn first_within(&self, now: u64, window: Duration) -> u64 {
        (now + 1).saturating_sub(buckets(window, self.width))
    }

    /// Counts one request of `identity` without holding it back (readiness probes).
    pub fn record(&self, identity: &str) {
        let now = self.bucket(Instant::now());
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.entry(identity.to_string()).or_default().add(now);
    }

    /// Counts one request of `identity` if the limit allows it now; otherwise when it will.
    fn try_take(&self, identity: &str, at: Instant) -> Result<(), Instant> {
        let now = self.bucket(at);
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let mine = usage.entry(identity.to_string()).or_default();
        mine.prune(self.first_within(now, self.width * self.span as u32));
        if let Some(limit) = self.limit {
            let first = self.first_within(now, limit.window);
            if mine.since(first) >= limit.requests {
                // The oldest requests in the window leave it when their bucket does.
                let oldest = mine.oldest_since(first).unwrap_or(now);
                let leaves = oldest + buckets(limit.window, self.width);
                return Err(self.start + self.width * leaves as u32);
            }
        }
        mine.add(now);
        Ok(())
    }

    /// Counts one request of `identity` as the limit allows: now, or after a wait that ends
    /// before `deadline`; otherwise a [`UpstreamErrorKind::BudgetSpent`] error (nothing sent).
    pub async fn admit(&self, identity: &str, deadline: Instant) -> Result<(), UpstreamError> {
        if let (Some(limit), Some(shared)) = (self.limit, self.shared.get()) {
            loop {
                match shared.try_take(identity, limit).await {
                    Ok(None) => {
                        self.record(identity);
                        return Ok(());
                    }
                    Ok(Some(wait)) => {
                        let free_at = Instant::now() + wait;
                        if free_at >= deadline {
                            return Err(self.spent(free_at));
                        }
                        tokio::time::sleep_until(free_at).await;
                    }
                    // The shared window cannot be used: this process's own, for this request.
                    Err(_) => break,
                }
            }
        }
        loop {
            let Err(free_at) = self.try_take(identity, Instant::now()) else {
                return Ok(());
            };
            if free_at >= deadline {
                return Err(self.spent(free_at));
            }
            tokio::time::sleep_until(free_at).await;
        }
    }

    fn spent(&self, free_at: Instant) -> UpstreamError {
        let retry_in = free_at.saturating_duration_since(Instant::now());
        match self.limit {
            Some(limit) => spent_error(limit, retry_in, self.is_shared()),
            None => UpstreamError::not_sent(UpstreamErrorKind::BudgetSpent { retry_in }, "upstream budget spent"),
        }
    }

    /// Every identity's requests, the busiest first (at most [`MAX_IDENTITY_LABELS`], the rest
    /// summed as `other`); idle identities are forgotten on the way.
    pub fn usage(&self) -> Vec<IdentityUsage> {
        let now = self.bucket(Instant::now());
        let report_from = self.first_within(now, REPORT_WINDOW);
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.retain(|_, u| {
            u.prune(self.first_within(now, self.width * self.span as u32));
            !u.buckets.is_empty()
        });
        let mut lines: Vec<IdentityUsage> = usage
            .iter()
            .map(|(identity, u)| IdentityUsage {
                identity: identity.clone(),
                requests: u.since(report_from),
                share: self
                    .limit
                    .map(|l| u.since(self.first_within(now, l.window)) as f64 / l.requests as f64),
            })
            .collect();
        drop(usage);
        lines.sort_by(|a, b| {
            b.share
                .partial_cmp(&a.share)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.requests.cmp(&a.requests))
        });
        if lines.len() > MAX_IDENTITY_LABELS {
            let rest = lines.split_off(MAX_IDENTITY_LABELS - 1);
            lines.push(IdentityUsage {
                identity: "other".into(),
                requests: rest.iter().map(|l| l.requests).sum(),
                share: rest.iter().filter_map(|l| l.share).reduce(f64::max),
            });
        }
        lines
    }

    /// The largest share of the limit any identity has used in the limit's window.
    pub fn max_share(&self) -> Option<f64> {
        self.usage().iter().filter_map(|u| u.share).reduce(f64::max)
    }
}

/// The error of a request refused because `limit` is spent for `retry_in` more.
/// `shared`: the count is all replicas' (Redis), else this process's.
pub fn spent_error(limit: RateLimit, retry_in: Duration, shared: bool) -> UpstreamError {
    let counted = if shared {
        "counted over all replicas"
    } else {
        "counted per gateway process"
    };
    UpstreamError::not_sent(
        UpstreamErrorKind::BudgetSpent { retry_in },
        format!(
            "this gateway's upstream budget for the identity is spent (--upstream-rate-limit {limit}, {counted}); the next request fits in {} ms, after the operation's deadline, so nothing was sent. Retry later.",
            retry_in.as_millis()
        ),
    )
}

/// Buckets of `width` that cover `window`.
fn buckets(window: Duration, width: Duration) -> u64 {
    (window.as_nanos().div_ceil(width.as_nanos()) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_requests_per_window() {
        let l: RateLimit = "6000/5m".parse().unwrap();
        assert_eq!(
            l,
            RateLimit {
                requests: 6000,
                window: Duration::from_secs(300)
            }
        );
        assert_eq!(l.to_string(), "6000/5m");
        assert!("6000".parse::<RateLimit>().is_err());
        assert!("x/5m".parse::<RateLimit>().is_err());
        assert!("0/5m".parse::<RateLimit>().is_err());
        assert!("10/soon".parse::<RateLimit>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_over_the_limit_waits_for_the_window_or_fails_before_the_deadline() {
        let budget = UpstreamBudget::new(Some("3/10s".parse().unwrap()));
        let far = Instant::now() + Duration::from_secs(60);
        for _ in 0..3 {
            budget.admit("app:a", far).await.unwrap();
        }
        // Another identity has its own budget.
        budget
            .admit("user:b", Instant::now() + Duration::from_millis(1))
            .await
            .unwrap();
        let soon = Instant::now() + Duration::from_secs(5);
        let e = budget.admit("app:a", soon).await.unwrap_err();
        assert!(matches!(e.kind, UpstreamErrorKind::BudgetSpent { .. }), "{e:?}");
        assert_eq!(e.code(), "UPSTREAM_BUDGET_EXHAUSTED");
        let started = Instant::now();
        budget.admit("app:a", far).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(9) && waited <= Duration::from_secs(11),
            "{waited:?}"
        );
        let usage = budget.usage();
        assert_eq!(usage[0].identity, "app:a");
        assert_eq!(usage[0].requests, 4, "the report window is five minutes");
        assert_eq!(
            usage[0].share,
            Some(1.0 / 3.0),
            "the first three left the limit's window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_identities_are_forgotten_and_labels_are_bounded() {
        let budget = UpstreamBudget::new(None);
        for i in 0..(MAX_IDENTITY_LABELS + 10) {
            budget.record(&format!("user:{i}"));
        }
        let usage = budget.usage();
        assert_eq!(usage.len(), MAX_IDENTITY_LABELS);
        assert_eq!(usage.last().unwrap().identity, "other");
        assert_eq!(
            usage.iter().map(|u| u.requests).sum::<u64>(),
            MAX_IDENTITY_LABELS as u64 + 10
        );
        assert_eq!(usage[0].share, None);
        tokio::time::advance(REPORT_WINDOW + Duration::from_secs(2)).await;
        assert!(budget.usage().is_empty());
    }
}
