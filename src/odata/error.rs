//! Upstream errors: one [`UpstreamError`] for every way a call to Dataverse can fail, with a
//! stable GraphQL `extensions.code` ([`UpstreamError::code`]).
//!
//! The message is the upstream's `error.message` when the body is Dataverse-shaped
//! (`{"error":{"code":"0x...","message":"..."}}`, contract §7); otherwise a plain description of
//! what went wrong (truncated body, invalid JSON, wrong shape, connection reset, ...). Messages
//! never hold an `Authorization` value: none is ever passed in here.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// What kind of failure, for the caller's decisions (retry, map to GraphQL, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    NotFound,
    BadRequest,
    Unauthorized,
    /// On-behalf-of only: Entra wants the user back at sign-in (Conditional Access, MFA) before it
    /// exchanges the token. `claims` is the challenge the client's next sign-in must carry.
    InteractionRequired {
        claims: Option<String>,
    },
    Forbidden,
    /// 429, or an F&O "error of type 429" wrapped in a 400 (contract §8). `retry_after` is the
    /// `Retry-After` header when one came.
    Throttled {
        retry_after: Option<Duration>,
    },
    /// 5xx, a refused connection, or F&O's wrapped `InternalServerError`.
    Unavailable,
    /// Not sent: the circuit breaker is open because the upstream kept failing (see
    /// [`super::resilience`]). Same GraphQL code as `Unavailable`; never retried.
    CircuitOpen {
        /// When the breaker lets the next request through to test the upstream.
        retry_in: Duration,
    },
    Timeout,
    /// Not sent: this gateway's own budget for the identity (`--upstream-rate-limit`) is spent
    /// and frees up only after the operation's deadline (see [`super::rate_limit`]).
    BudgetSpent {
        /// When the next request of the identity fits in the budget.
        retry_in: Duration,
    },
    /// A 2xx whose body is not what OData promises (invalid JSON, truncated, wrong shape).
    InvalidResponse,
    /// More rows match than the caller allowed (see [`super::calls::collect_all`]).
    TooManyRows,
    Other,
}

/// Whether the request reached the upstream, as far as the gateway can tell. Writes depend on it:
/// only one that certainly did nothing may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A complete response arrived (an error status or a body that cannot be read as promised).
    Answered,
    /// Never sent: the connection could not be made, or the gateway refused before sending
    /// (open circuit, no free slot before the deadline, bad credentials header).
    NotSent,
    /// Sent, but no complete response came back (reset, time-out, truncated body): the upstream
    /// may or may not have done the work.
    Unknown,
}

/// A failed upstream call. Cheap to clone (the optional source sits behind an `Arc`) so that one
/// failure can be handed to every GraphQL field that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub kind: UpstreamErrorKind,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    pub message: String,
    /// Dataverse's `error.code` (`0x80040265`, ...) when the body carried one that is not empty.
    pub upstream_code: Option<String>,
    /// Whether the upstream got the request (see [`Delivery`]).
    pub delivery: Delivery,
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// At most this much of an unexpected body is quoted in a message.
const SNIPPET: usize = 200;

impl UpstreamError {
    /// An error about a response that arrived (or a refusal before sending: see
    /// [`UpstreamError::not_sent`]).
    pub fn new(kind: UpstreamErrorKind, status: Option<u16>, message: impl Into<String>) -> Self {
        UpstreamError {
            kind,
            status,
            message: message.into(),
            upstream_code: None,
            delivery: Delivery::Answered,
            source: None,
        }
    }

    /// An error raised before the request left the gateway.
    pub fn not_sent(kind: UpstreamErrorKind, message: impl Into<String>) -> Self {
        UpstreamError {
            delivery: Delivery::NotSent,
            ..Self::new(kind, None, message)
        }
    }

    /// The stable `extensions.code` for GraphQL errors.
    pub fn code(&self) -> &'static str {
        match self.kind {
            UpstreamErrorKind::NotFound => "UPSTREAM_NOT_FOUND",
            UpstreamErrorKind::BadRequest => "UPSTREAM_BAD_REQUEST",
            UpstreamErrorKind::Unauthorized => "UPSTREAM_UNAUTHORIZED",
            UpstreamErrorKind::InteractionRequired { .. } => "INTERACTION_REQUIRED",
            UpstreamErrorKind::Forbidden => "UPSTREAM_FORBIDDEN",
            UpstreamErrorKind::Throttled { .. } => "UPSTREAM_THROTTLED",
            UpstreamErrorKind::Unavailable | UpstreamErrorKind::CircuitOpen { .. } => "UPSTREAM_UNAVAILABLE",
            UpstreamErrorKind::Timeout => "UPSTREAM_TIMEOUT",
            UpstreamErrorKind::BudgetSpent { .. } => "UPSTREAM_BUDGET_EXHAUSTED",
            UpstreamErrorKind::InvalidResponse => "UPSTREAM_INVALID_RESPONSE",
            UpstreamErrorKind::TooManyRows => "UPSTREAM_TOO_MANY_ROWS",
            UpstreamErrorKind::Other => "UPSTREAM_ERROR",
        }
    }

    /// Whether the same request may succeed later unchanged (throttling, 5xx, time-outs, and a
    /// response cut off on its way). An open circuit is not: it says to stop asking for a while.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            UpstreamErrorKind::Throttled { .. } | UpstreamErrorKind::Unavailable | UpstreamErrorKind::Timeout
        ) || (self.delivery == Delivery::Unknown && self.kind == UpstreamErrorKind::InvalidResponse)
    }

    /// Whether the upstream certainly did nothing with the request, so that even a write may be
    /// sent again: it was never sent, or the upstream refused it before doing any work (429, and
    /// 503 from Dataverse's front end, both answered before the request is processed). Other 5xx
    /// answers to a write can come from a proxy that gave up while the upstream went on, so they
    /// do not count.
    pub fn certainly_not_processed(&self) -> bool {
        match self.delivery {
            Delivery::NotSent => true,
            Delivery::Unknown => false,
            Delivery::Answered => matches!(self.kind, UpstreamErrorKind::Throttled { .. }) || self.status == Some(503),
        }
    }

    /// Whether the upstream may have done the work although the call failed: no complete answer
    /// came back, or a success came back whose body could not be read.
    pub fn outcome_unknown(&self) -> bool {
        match self.delivery {
            Delivery::Unknown => true,
            Delivery::NotSent => false,
            Delivery::Answered => {
                self.status.is_none_or(|s| (200..300).contains(&s)) || matches!(self.status, Some(500 | 502 | 504))
            }
        }
    }

    /// A 2xx body that is not what OData promised.
    pub fn invalid_response(status: Option<u16>, what: &str, body: &[u8]) -> Self {
        Self::new(
            UpstreamErrorKind::InvalidResponse,
            status,
            format!("upstream response {what}; body starts: {}", snippet(body)),
        )
    }

    /// An error for a non-success status, from its body and `Retry-After` header.
    pub fn from_status(status: u16, retry_after: Option<&str>, body: &[u8]) -> Self {
        let parsed = dataverse_error(body);
        let kind = match status {
            400 => UpstreamErrorKind::BadRequest,
            401 => UpstreamErrorKind::Unauthorized,
            403 => UpstreamErrorKind::Forbidden,
            404 => UpstreamErrorKind::NotFound,
            408 => UpstreamErrorKind::Timeout,
            429 => UpstreamErrorKind::Throttled {
                retry_after: retry_after.and_then(parse_retry_after),
            },
            500..=599 => UpstreamErrorKind::Unavailable,
            _ => UpstreamErrorKind::Other,
        };
        let (code, message) = match parsed {
            Some((code, message)) => (code, message),
            None if body.is_empty() => (None, format!("upstream answered HTTP {status} with an empty body")),
            None => (
                None,
                format!("upstream answered HTTP {status}; body starts: {}", snippet(body)),
            ),
        };
        // F&O failures come back wrapped in a 400 plug-in error (contract §0, §8): a wrapped 429
        // is throttling and a wrapped InternalServerError an F&O outage or time-out, both worth
        // a retry, so they are classified by their text.
        let kind = match kind {
            UpstreamErrorKind::BadRequest if message.contains("returned an error of type 429") => {
                UpstreamErrorKind::Throttled { retry_after: None }
            }
            UpstreamErrorKind::BadRequest if message.contains("returned an error of type InternalServerError") => {
                UpstreamErrorKind::Unavailable
            }
            k => k,
        };
        UpstreamError {
            kind,
            status: Some(status),
            message,
            upstream_code: code,
            delivery: Delivery::Answered,
            source: None,
        }
    }

    /// An error from the HTTP client itself: no (complete) response.
    pub fn from_transport(e: reqwest::Error, reading_body: bool) -> Self {
        let (kind, what) = if e.is_timeout() {
            (UpstreamErrorKind::Timeout, "timed out")
        } else if reading_body {
            // The status line arrived but the body did not: cut short, reset, or undecodable.
            (
                UpstreamErrorKind::InvalidResponse,
                "body was truncated or the connection was reset while reading it",
            )
        } else if e.is_connect() {
            (UpstreamErrorKind::Unavailable, "could not connect")
        } else {
            (
                UpstreamErrorKind::Unavailable,
                "failed before a response arrived (connection reset?)",
            )
        };
        // reqwest's Display can name the URL, whose query carries record contents: not kept.
        let e = e.without_url();
        let message = format!("upstream request {what}: {}", error_chain(&e));
        // A failed connect never sent anything; anything later may have reached the upstream.
        let delivery = if e.is_connect() && !reading_body {
            Delivery::NotSent
        } else {
            Delivery::Unknown
        };
        UpstreamError {
            kind,
            status: e.status().map(|s| s.as_u16()),
            message,
            upstream_code: None,
            delivery,
            source: Some(Arc::new(e)),
        }
    }
}

/// `Retry-After` in seconds (Dataverse sends whole seconds; fractions are accepted). The
/// HTTP-date form is not used by Dataverse and yields `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

/// `(code, message)` from a Dataverse error body, `None` when it is not one.
pub fn dataverse_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let message = e.get("message")?.as_str()?.to_string();
    let code = e
        .get("code")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Some((code, message))
}

/// The first bytes of a body, lossily decoded, for a message.
pub fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty)".to_string();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
    let mut s: String = text.chars().filter(|c| !c.is_control() || *c == ' ').collect();
    if body.len() > SNIPPET {
        s.push_str("...");
    }
    format!("{s:?}")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds_and_codes() {
        let body = br#"{"error":{"code":"0x80060888","message":"Resource not found for the segment 'x'."}}"#;
        let e = UpstreamError::from_status(404, None, body);
        assert_eq!(e.kind, UpstreamErrorKind::NotFound);
        assert_eq!(e.code(), "UPSTREAM_NOT_FOUND");
        assert_eq!(e.message, "Resource not found for the segment 'x'.");
        assert_eq!(e.upstream_code.as_deref(), Some("0x80060888"));
        let cases = [
            (400, "UPSTREAM_BAD_REQUEST"),
            (401, "UPSTREAM_UNAUTHORIZED"),
            (403, "UPSTREAM_FORBIDDEN"),
            (429, "UPSTREAM_THROTTLED"),
            (500, "UPSTREAM_UNAVAILABLE"),
            (503, "UPSTREAM_UNAVAILABLE"),
            (408, "UPSTREAM_TIMEOUT"),
            (412, "UPSTREAM_ERROR"),
        ];
        for (status, code) in cases {
            assert_eq!(UpstreamError::from_status(status, None, b"").code(), code, "{status}");
        }
    }

    #[test]
    fn throttling_reads_retry_after_and_wrapped_messages() {
        let e = UpstreamError::from_status(429, Some("7"), b"");
        assert_eq!(
            e.kind,
            UpstreamErrorKind::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(e.is_retryable());
        let wrapped = br#"{"error":{"code":"0x80040265","message":"A token was obtained to call Finance and Operations, but Finance and Operations returned an error of type 429."}}"#;
        let e = UpstreamError::from_status(400, None, wrapped);
        assert_eq!(e.kind, UpstreamErrorKind::Throttled { retry_after: None });
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn non_dataverse_bodies_are_described() {
        let e = UpstreamError::from_status(502, None, b"<html>Bad gateway</html>");
        assert!(e.message.contains("HTTP 502"), "{}", e.message);
        assert!(e.message.contains("Bad gateway"), "{}", e.message);
        let long = vec![b'x'; 1000];
        let e = UpstreamError::from_status(500, None, &long);
        assert!(e.message.len() < 300 && e.message.contains("..."), "{}", e.message);
        let e = UpstreamError::from_status(500, None, b"");
        assert!(e.message.contains("empty body"));
    }
}
