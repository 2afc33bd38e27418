//! Service protection and fault injection, for tests and demos: a request budget per caller per
//! window answering 429 with `Retry-After`, injected latency, a 5xx rate and dropped connections;
//! and the counters of requests received that tests read and reset.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Faults to inject, settable at start (flags) and at run time (`PUT /_emulator/faults`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Faults {
    /// Added to every OData request before it is answered.
    pub latency_ms: u64,
    /// Share of requests (0.0–1.0) answered with an error.
    pub error_rate: f64,
    /// The status of injected errors (default 503; 400 imitates an F&O business-logic failure).
    pub error_status: Option<u16>,
    /// Share of requests (0.0–1.0) whose connection is dropped without a complete response.
    pub drop_rate: f64,
    /// Service protection: at most `requests` per caller per `window_seconds`.
    pub throttle: Option<Throttle>,
}

/// A request budget per caller per time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Throttle {
    pub requests: u32,
    pub window_seconds: u64,
}

/// What to do with a request before it is served.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Serve,
    Throttled { retry_after: u64, limit: u32, window: u64 },
    ServerError,
    Drop,
}

/// Requests received, in total and per first path segment (entity set, `$batch`, `$metadata`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    pub total: u64,
    pub by_entity_set: BTreeMap<String, u64>,
    /// Requests per caller identity (a hash of its credentials, never the credentials).
    pub by_caller: BTreeMap<String, u64>,
}

/// The emulator's mutable fault and counter state.
#[derive(Default)]
pub struct FaultState {
    faults: Mutex<Faults>,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
    counts: Mutex<RequestCounts>,
}

/// A stable, non-reversible name for the caller behind an `Authorization` header.
pub fn caller_identity(authorization: Option<&str>) -> String {
    match authorization {
        None => "anonymous".to_string(),
        Some(a) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            a.hash(&mut h);
            format!("caller-{:016x}", h.finish())
        }
    }
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        FaultState {
            faults: Mutex::new(faults),
            ..Default::default()
        }
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = f;
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn counts(&self) -> RequestCounts {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset_counts(&self) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = RequestCounts::default();
    }

    /// Counts a request and decides its fate.
    pub fn admit(&self, segment: &str, caller: &str) -> Verdict {
        {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.total += 1;
            *c.by_entity_set.entry(segment.to_string()).or_default() += 1;
            *c.by_caller.entry(caller.to_string()).or_default() += 1;
        }
        let f = self.faults();
        if let Some(t) = &f.throttle {
            let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let window = Duration::from_secs(t.window_seconds.max(1));
            let entry = w.entry(caller.to_string()).or_insert((now, 0));
            if now.duration_since(entry.0) >= window {
                *entry = (now, 0);
            }
            if entry.1 >= t.requests {
                let left = window.saturating_sub(now.duration_since(entry.0));
                return Verdict::Throttled {
                    retry_after: left.as_secs_f64().ceil().max(1.0) as u64,
                    limit: t.requests,
                    window: t.window_seconds,
                };
            }
            entry.1 += 1;
        }
        if f.drop_rate > 0.0 && rand::random::<f64>() < f.drop_rate {
            return Verdict::Drop;
        }
        if f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate {
            return Verdict::ServerError;
        }
        Verdict::Serve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_per_caller() {
        let s = FaultState::new(Faults {
            throttle: Some(Throttle {
                requests: 2,
                window_seconds: 60,
            }),
            ..Default::default()
        });
        assert_eq!(s.admit("x", "a"), Verdict::Serve);
        assert_eq!(s.admit("x", "a"), Verdict::Serve);
        assert!(matches!(
            s.admit("x", "a"),
            Verdict::Throttled {
                limit: 2,
                window: 60,
                ..
            }
        ));
        assert_eq!(s.admit("x", "b"), Verdict::Serve);
        assert_eq!(s.counts().total, 4);
    }

    #[test]
    fn identities_do_not_reveal_credentials() {
        let id = caller_identity(Some("Bearer secret-token"));
        assert!(!id.contains("secret"));
        assert_eq!(id, caller_identity(Some("Bearer secret-token")));
    }
}
