//! Service protection and fault injection, for tests and demos: a request budget per caller per
//! window answering 429 with `Retry-After`, injected latency, a 5xx rate, connections dropped
//! before the work (nothing happened) or after it (the work is done, the response is lost), and
//! garbage in successful responses, a create answered without saying which record it created;
//! and the counters of requests received (and of faults
//! injected) that tests read and reset.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
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
    /// Share of requests (0.0–1.0) whose connection is dropped without a complete response,
    /// before the request is processed.
    pub drop_rate: f64,
    /// Share of requests (0.0–1.0) that are processed (writes committed) and whose response is
    /// then lost the same way: the client cannot tell this from a drop.
    pub lost_response_rate: f64,
    /// Successful responses made unreadable.
    pub garbage: Option<Garbage>,
    /// Service protection: at most `requests` per caller per `window_seconds`.
    pub throttle: Option<Throttle>,
    /// One create answered without its `OData-EntityId` and `Location` headers.
    pub omit_entity_id: Option<OmitEntityId>,
}

/// The `nth` POST to `entity_set` (from 1, counted since the faults were set) is processed but
/// its answer does not say which record it created: a 204 without `OData-EntityId` or `Location`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OmitEntityId {
    pub entity_set: String,
    pub nth: u32,
}

/// A request budget per caller per time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Throttle {
    pub requests: u32,
    pub window_seconds: u64,
}

/// A share of successful responses whose body is damaged in one way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Garbage {
    /// Share of successful responses (0.0–1.0) damaged.
    pub rate: f64,
    pub kind: GarbageKind,
}

/// How a body is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GarbageKind {
    /// An HTML error page under a JSON content type.
    InvalidJson,
    /// The first half of the body, complete as far as HTTP goes.
    TruncatedJson,
    /// Every property of every record changes JSON type (strings become objects, numbers
    /// strings, booleans arrays).
    WrongTypes,
    /// A `$batch` response without its closing delimiter (other responses are left alone).
    UnclosedMultipart,
}

/// What to do with a request before it is served.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Serve,
    Throttled {
        retry_after: u64,
        limit: u32,
        window: u64,
    },
    ServerError,
    Drop,
    /// Serve, then drop the connection instead of sending the response.
    LoseResponse,
    /// Serve, then damage a successful response's body.
    Garbage(GarbageKind),
}

/// Requests received, in total and per first path segment (entity set, `$batch`, `$metadata`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    pub total: u64,
    pub by_entity_set: BTreeMap<String, u64>,
    /// Requests per caller identity (a hash of its credentials, never the credentials).
    pub by_caller: BTreeMap<String, u64>,
    /// Faults injected, by kind (`throttled`, `serverError`, `drop`, `lostResponse`, `garbage`,
    /// `omitEntityId`).
    pub injected: BTreeMap<String, u64>,
}

/// The emulator's mutable fault and counter state.
#[derive(Default)]
pub struct FaultState {
    faults: Mutex<Faults>,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
    counts: Mutex<RequestCounts>,
    /// POSTs per entity set since the faults were set, for [`OmitEntityId`].
    posts: Mutex<HashMap<String, u32>>,
}

/// A stable, non-reversible name for the caller behind an `Authorization` header.
pub fn caller_identity(authorization: Option<&str>) -> String {
    match authorization {
        None => "anonymous".to_string(),
        Some(a) => format!("caller-{}", crate::secret::fingerprint(a)),
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
        self.posts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Counts a POST to `segment` and says whether its answer must not name the created record
    /// (see [`OmitEntityId`]); counted as injected `omitEntityId`.
    pub fn omits_entity_id(&self, segment: &str) -> bool {
        let Some(f) = self.faults().omit_entity_id.filter(|f| f.entity_set == segment) else {
            return false;
        };
        let mut posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        let n = posts.entry(segment.to_string()).or_default();
        *n += 1;
        let omit = *n == f.nth;
        if omit {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            *c.injected.entry("omitEntityId".to_string()).or_default() += 1;
        }
        omit
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
        let verdict = self.decide(caller);
        let kind = match verdict {
            Verdict::Serve => None,
            Verdict::Throttled { .. } => Some("throttled"),
            Verdict::ServerError => Some("serverError"),
            Verdict::Drop => Some("drop"),
            Verdict::LoseResponse => Some("lostResponse"),
            Verdict::Garbage(_) => Some("garbage"),
        };
        if let Some(kind) = kind {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            *c.injected.entry(kind.to_string()).or_default() += 1;
        }
        verdict
    }

    fn decide(&self, caller: &str) -> Verdict {
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
        if f.lost_response_rate > 0.0 && rand::random::<f64>() < f.lost_response_rate {
            return Verdict::LoseResponse;
        }
        match &f.garbage {
            Some(g) if g.rate > 0.0 && rand::random::<f64>() < g.rate => Verdict::Garbage(g.kind),
            _ => Verdict::Serve,
        }
    }
}

/// Damages a successful response's body as `kind` says (other responses are left alone).
pub fn damage(kind: GarbageKind, status: u16, headers: &[(String, String)], body: Vec<u8>) -> Vec<u8> {
    if !(200..300).contains(&status) || body.is_empty() {
        return body;
    }
    match kind {
        GarbageKind::InvalidJson => b"<html><body><h1>Service temporarily unavailable</h1></body></html>".to_vec(),
        GarbageKind::TruncatedJson => body[..body.len() / 2].to_vec(),
        GarbageKind::WrongTypes => {
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return body;
            };
            match v.get_mut("value") {
                Some(serde_json::Value::Array(rows)) => rows.iter_mut().for_each(retype_record),
                _ => retype_record(&mut v),
            }
            serde_json::to_vec(&v).unwrap_or(body)
        }
        GarbageKind::UnclosedMultipart => {
            let boundary = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .and_then(|(_, v)| crate::batch::boundary_from_content_type(v).ok());
            let Some(boundary) = boundary else { return body };
            let close = format!("--{boundary}--");
            match body.windows(close.len()).rposition(|w| w == close.as_bytes()) {
                Some(at) => body[..at].to_vec(),
                None => body,
            }
        }
    }
}

/// Gives every property of a record (not its annotations) a JSON type it should not have.
fn retype_record(record: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let Value::Object(map) = record else { return };
    for (key, value) in map.iter_mut() {
        if key.starts_with('@') || key.contains("@odata") || value.is_null() {
            continue;
        }
        *value = match value.take() {
            Value::String(s) => json!({ "unexpected": s }),
            Value::Number(n) => Value::String(format!("not a number: {n}")),
            Value::Bool(b) => json!([b]),
            _ => Value::String("unexpected".into()),
        };
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
        assert_eq!(s.counts().injected["throttled"], 1);
    }

    #[test]
    fn garbage_damages_only_successful_bodies() {
        let json = br#"{"@odata.context":"c","value":[{"a":"x","b":1,"c":true,"d":null}]}"#.to_vec();
        let v: serde_json::Value =
            serde_json::from_slice(&damage(GarbageKind::WrongTypes, 200, &[], json.clone())).unwrap();
        assert_eq!(v["value"][0]["a"]["unexpected"], "x");
        assert_eq!(v["value"][0]["b"], "not a number: 1");
        assert_eq!(v["value"][0]["c"][0], true);
        assert!(v["value"][0]["d"].is_null() && v["@odata.context"] == "c");
        assert_eq!(
            damage(GarbageKind::TruncatedJson, 200, &[], json.clone()).len(),
            json.len() / 2
        );
        assert_eq!(damage(GarbageKind::InvalidJson, 404, &[], json.clone()), json);
        let headers = [("Content-Type".to_string(), "multipart/mixed; boundary=b".to_string())];
        let batch = b"--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n--b--\r\n".to_vec();
        let cut = damage(GarbageKind::UnclosedMultipart, 200, &headers, batch);
        assert!(cut.ends_with(b"\r\n\r\n") && !cut.windows(5).any(|w| w == b"--b--"));
    }

    #[test]
    fn faults_read_from_json() {
        let f: Faults =
            serde_json::from_str(r#"{"lostResponseRate":0.5,"garbage":{"rate":1.0,"kind":"unclosedMultipart"}}"#)
                .unwrap();
        assert_eq!(f.lost_response_rate, 0.5);
        assert_eq!(f.garbage.unwrap().kind, GarbageKind::UnclosedMultipart);
        let s = FaultState::new(Faults {
            garbage: Some(Garbage {
                rate: 1.0,
                kind: GarbageKind::WrongTypes,
            }),
            ..Default::default()
        });
        assert_eq!(s.admit("x", "a"), Verdict::Garbage(GarbageKind::WrongTypes));
    }

    #[test]
    fn only_the_nth_post_to_the_set_omits_the_entity_id() {
        let f: Faults = serde_json::from_str(r#"{"omitEntityId":{"entitySet":"mshr_x","nth":2}}"#).unwrap();
        let s = FaultState::new(f.clone());
        let seen: Vec<bool> = ["mshr_x", "mshr_y", "mshr_x", "mshr_x"]
            .iter()
            .map(|set| s.omits_entity_id(set))
            .collect();
        assert_eq!(seen, [false, false, true, false]);
        assert_eq!(s.counts().injected["omitEntityId"], 1);
        s.set_faults(f);
        assert!(
            !s.omits_entity_id("mshr_x") && s.omits_entity_id("mshr_x"),
            "counted again"
        );
    }

    #[test]
    fn identities_do_not_reveal_credentials() {
        let id = caller_identity(Some("Bearer secret-token"));
        assert!(!id.contains("secret"));
        assert_eq!(id, caller_identity(Some("Bearer secret-token")));
    }
}
