//! The one place error codes are written down: [`ErrorCode`] lists every code the gateway can
//! return, as a GraphQL error's `extensions.code` or as a write payload's `errors[].code`, with
//! what it means and what the client should do. Everything that sets a code takes it from here,
//! and README.md's error table is checked against it (`readme_lists_every_code`).
//!
//! Also here: the constructors of the GraphQL errors that carry a code (bad input from the
//! client, upstream failures with the upstream's status and message).

use crate::odata::{UpstreamError, UpstreamErrorKind};
use async_graphql::{Error, ErrorExtensions};

/// Declares [`ErrorCode`]: each entry is the variant's doc text (also its README line, so write it
/// for clients), its name and its wire string. A new code is one more entry.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $wire:literal,)+) => {
        /// Every code the gateway returns, in `extensions.code` of a GraphQL error or in `code` of
        /// a write payload's `errors` (where each says it appears).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the README's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The string on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)+
                }
            }

            /// What the code means and what the client should do (the variant's doc text).
            pub fn description(self) -> String {
                let lines: &[&str] = match self {
                    $(ErrorCode::$variant => &[$($doc),+],)+
                };
                lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
            }
        }
    };
}

error_codes! {
    /// GraphQL error: an argument the gateway refuses before any upstream request (a filter
    /// Dataverse cannot run, a cursor it did not issue for this query, …). Fix the argument.
    BadUserInput = "BAD_USER_INPUT",
    /// GraphQL error: the document is longer than `--max-query-chars`. Send a shorter query.
    QueryTooLarge = "QUERY_TOO_LARGE",
    /// GraphQL error: the document uses more aliases than `--max-aliases`. Use fewer aliases.
    TooManyAliases = "TOO_MANY_ALIASES",
    /// GraphQL error: the query's cost (each field 1, times the items of the lists above it) is
    /// over `--max-cost`. Ask for smaller pages with `first`.
    QueryTooCostly = "QUERY_TOO_COSTLY",
    /// GraphQL error: the query may cost more upstream requests than
    /// `--max-upstream-requests-per-operation` (`estimatedUpstreamRequests`, `maxUpstreamRequests`);
    /// refused before any upstream request. Ask for fewer records with `first`, or fewer relations.
    TooManyUpstreamRequests = "TOO_MANY_UPSTREAM_REQUESTS",
    /// GraphQL error: the operation did not finish within `--deadline`. Retry later, or ask for
    /// less.
    DeadlineExceeded = "DEADLINE_EXCEEDED",
    /// GraphQL error: the upstream answered 404. The record or entity set is not there.
    UpstreamNotFound = "UPSTREAM_NOT_FOUND",
    /// GraphQL error: the upstream refused the request (400). The message is the upstream's; do
    /// not retry unchanged.
    UpstreamBadRequest = "UPSTREAM_BAD_REQUEST",
    /// GraphQL error: the upstream refused the gateway's credentials (401). An operator must fix
    /// the upstream auth settings.
    UpstreamUnauthorized = "UPSTREAM_UNAUTHORIZED",
    /// GraphQL error (HTTP 401 with a `WWW-Authenticate` claims challenge): Entra wants the user to
    /// sign in again (Conditional Access, MFA). Sign in with `extensions.claims`, then retry.
    InteractionRequired = "INTERACTION_REQUIRED",
    /// GraphQL error: the upstream forbids this to the caller (403). Ask for the permission.
    UpstreamForbidden = "UPSTREAM_FORBIDDEN",
    /// GraphQL error or payload: the upstream throttled the caller (429) past the retries that fit
    /// the deadline. Retry later.
    UpstreamThrottled = "UPSTREAM_THROTTLED",
    /// GraphQL error or payload: the upstream is down (5xx, refused connection) or the circuit
    /// breaker is open. Retry later.
    UpstreamUnavailable = "UPSTREAM_UNAVAILABLE",
    /// GraphQL error or payload: the upstream did not answer in time. Retry later.
    UpstreamTimeout = "UPSTREAM_TIMEOUT",
    /// GraphQL error or payload: the gateway's own budget of upstream requests for this upstream
    /// identity (`--upstream-rate-limit`, over all replicas under `--redis-url`, else per gateway
    /// process) is spent until after the operation's deadline, so nothing was sent. Retry later
    /// (a GraphQL error's `retryAfterMs` says when).
    UpstreamBudgetExhausted = "UPSTREAM_BUDGET_EXHAUSTED",
    /// GraphQL error or payload: the upstream's answer is not what OData promises (invalid JSON,
    /// truncated, wrong type). A write may have happened; report it to the operator.
    UpstreamInvalidResponse = "UPSTREAM_INVALID_RESPONSE",
    /// GraphQL error: more rows match than the gateway reads at once. Narrow the filter.
    UpstreamTooManyRows = "UPSTREAM_TOO_MANY_ROWS",
    /// GraphQL error or payload: the upstream failed with a status the gateway has no code for;
    /// `upstreamStatus` says which.
    UpstreamError = "UPSTREAM_ERROR",
    /// GraphQL error: a `filter` or `orderBy` uses a field whose property the upstream's
    /// `$metadata` lacks (refused before any upstream request). Also the code of the warning in
    /// `extensions.warnings` listing the selected fields that resolved to null for that reason.
    /// Leave the field out; ask the operator whether the column exists in this environment.
    PropertyMissingUpstream = "PROPERTY_MISSING_UPSTREAM",
    /// HTTP 401 refusal: the caller did not authenticate (`--caller-auth`). Send the credential
    /// the `WWW-Authenticate` header asks for.
    Unauthenticated = "UNAUTHENTICATED",
    /// HTTP 406 refusal: the client accepts neither `application/graphql-response+json` nor
    /// `application/json`. Accept one of them.
    NotAcceptable = "NOT_ACCEPTABLE",
    /// HTTP 415 refusal: a POST that is not `application/json`. Send JSON.
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE",
    /// HTTP 405 refusal: a mutation over GET. Send it with POST.
    MethodNotAllowed = "METHOD_NOT_ALLOWED",
    /// HTTP 403 refusal (200 under `application/json`): the request asks for explain
    /// (`extensions.explain` or `X-ATS-Explain`) and this gateway or caller may not have it
    /// (`--explain`, `--explain-api-keys`, `--explain-roles`); nothing ran. Send it without explain.
    ExplainNotAllowed = "EXPLAIN_NOT_ALLOWED",
    /// HTTP 400 refusal: not a well-formed GraphQL over HTTP request (invalid JSON, no `query`, a
    /// parameter of the wrong type, a batch). Fix the request.
    BadRequest = "BAD_REQUEST",
    /// HTTP 400 refusal: the persisted query's `sha256Hash` is not the hash of `query`. Send the
    /// right hash.
    PersistedQueryHashMismatch = "PERSISTED_QUERY_HASH_MISMATCH",
    /// HTTP 400 refusal (200 under `application/json`): persisted queries are off
    /// (`--apq-cache-bytes 0`). Send the query text.
    PersistedQueryNotSupported = "PERSISTED_QUERY_NOT_SUPPORTED",
    /// HTTP 404 refusal (200 under `application/json`): the gateway does not know the hash. Send
    /// the query with its hash once.
    PersistedQueryNotFound = "PERSISTED_QUERY_NOT_FOUND",
    /// Payload: the input is wrong at `path` (a type, a date order, a length, a record referred
    /// to that does not exist). Nothing was written; fix the input.
    ValidationFailed = "VALIDATION_FAILED",
    /// Payload: the upstream refused the write (400, 403, 404) with its message, at `part`.
    /// Nothing remains written; do not retry unchanged.
    UpstreamRejected = "UPSTREAM_REJECTED",
    /// Payload: the upstream kept part of a refused write, and the gateway deleted it again.
    /// Nothing remains written.
    Compensated = "COMPENSATED",
    /// Payload: part of a failed write could not be deleted again; the message names what
    /// remains. Clean it up before submitting again.
    CompensationFailed = "COMPENSATION_FAILED",
    /// Payload: a submission with this idempotency key is still running. Retry shortly with the
    /// same key.
    IdempotencyKeyInProgress = "IDEMPOTENCY_KEY_IN_PROGRESS",
    /// Payload: this idempotency key was used with another input. Use a new key for a new
    /// submission.
    IdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED",
    /// Payload: the upstream's answer to a submission under this key was lost and the gateway
    /// cannot tell yet whether it was written. Retry with the same key.
    IdempotencyOutcomeUnknown = "IDEMPOTENCY_OUTCOME_UNKNOWN",
    /// Payload: the store of idempotency keys (Redis under `--redis-url`, else the state
    /// database) cannot be reached, so a submission with a key was refused before anything was
    /// written (rather than risk a duplicate). Submissions without a key and reads still work.
    /// Retry with the same key shortly.
    StateUnavailable = "STATE_UNAVAILABLE",
    /// Payload: the upstream's answer to a submission without a key was lost: it may have been
    /// written. Check before submitting again (a key makes retries safe).
    OutcomeUnknown = "OUTCOME_UNKNOWN",
}

impl ErrorCode {
    /// The code of an upstream failure.
    pub fn upstream(kind: &UpstreamErrorKind) -> ErrorCode {
        match kind {
            UpstreamErrorKind::NotFound => ErrorCode::UpstreamNotFound,
            UpstreamErrorKind::BadRequest => ErrorCode::UpstreamBadRequest,
            UpstreamErrorKind::Unauthorized => ErrorCode::UpstreamUnauthorized,
            UpstreamErrorKind::InteractionRequired { .. } => ErrorCode::InteractionRequired,
            UpstreamErrorKind::Forbidden => ErrorCode::UpstreamForbidden,
            UpstreamErrorKind::Throttled { .. } => ErrorCode::UpstreamThrottled,
            UpstreamErrorKind::Unavailable | UpstreamErrorKind::CircuitOpen { .. } => ErrorCode::UpstreamUnavailable,
            UpstreamErrorKind::Timeout => ErrorCode::UpstreamTimeout,
            UpstreamErrorKind::BudgetSpent { .. } => ErrorCode::UpstreamBudgetExhausted,
            UpstreamErrorKind::InvalidResponse => ErrorCode::UpstreamInvalidResponse,
            UpstreamErrorKind::TooManyRows => ErrorCode::UpstreamTooManyRows,
            UpstreamErrorKind::Other => ErrorCode::UpstreamError,
        }
    }

    /// A GraphQL error with this code.
    pub fn error(self, message: impl Into<String>) -> Error {
        Error::new(message.into()).extend_with(|_, e| e.set("code", self.as_str()))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client sent something the gateway refuses before any upstream request.
pub fn bad_input(message: impl Into<String>) -> Error {
    ErrorCode::BadUserInput.error(message)
}

/// An upstream failure, with a stable code and the upstream's message.
pub fn upstream_error(err: &UpstreamError) -> Error {
    let code = ErrorCode::upstream(&err.kind);
    let status = err.status;
    let claims = match &err.kind {
        UpstreamErrorKind::InteractionRequired { claims } => claims.clone(),
        _ => None,
    };
    let retry_after = match err.kind {
        UpstreamErrorKind::BudgetSpent { retry_in } => Some(retry_in.as_millis() as u64),
        _ => None,
    };
    code.error(err.message.clone()).extend_with(|_, e| {
        if let Some(s) = status {
            e.set("upstreamStatus", s);
        }
        // The claims challenge the client passes to its next sign-in (MSAL: `claims`).
        if let Some(c) = &claims {
            e.set("claims", c.as_str());
        }
        if let Some(ms) = retry_after {
            e.set("retryAfterMs", ms);
        }
    })
}

/// README.md's error table, as [`ErrorCode`] renders it.
pub fn readme_table() -> String {
    let mut out = String::from("| code | meaning, and what to do |\n|---|---|\n");
    for code in ErrorCode::ALL {
        out.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.description()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wire_strings_are_unique_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
            assert!(!code.description().is_empty(), "{s} has no description");
        }
    }

    /// The odata layer names its failures in logs with `UpstreamError::code`; it must say what
    /// the client sees.
    #[test]
    fn upstream_codes_match_the_odata_layer() {
        let kinds = [
            UpstreamErrorKind::NotFound,
            UpstreamErrorKind::BadRequest,
            UpstreamErrorKind::Unauthorized,
            UpstreamErrorKind::InteractionRequired { claims: None },
            UpstreamErrorKind::Forbidden,
            UpstreamErrorKind::Throttled { retry_after: None },
            UpstreamErrorKind::Unavailable,
            UpstreamErrorKind::CircuitOpen {
                retry_in: Duration::from_secs(1),
            },
            UpstreamErrorKind::Timeout,
            UpstreamErrorKind::BudgetSpent {
                retry_in: Duration::from_secs(1),
            },
            UpstreamErrorKind::InvalidResponse,
            UpstreamErrorKind::TooManyRows,
            UpstreamErrorKind::Other,
        ];
        for kind in kinds {
            let e = UpstreamError::new(kind.clone(), None, "x");
            assert_eq!(ErrorCode::upstream(&kind).as_str(), e.code(), "{kind:?}");
        }
    }

    /// README.md's table lists every code, with its description, and nothing else.
    #[test]
    fn readme_lists_every_code() {
        let readme = include_str!("../../README.md");
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README.md's error table is not ErrorCode's; replace it with:\n\n{table}"
        );
        let is_code_row = |l: &&str| {
            let cell = l.strip_prefix("| `").and_then(|r| r.split_once("` |")).map(|(c, _)| c);
            cell.is_some_and(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
        };
        let listed = readme.lines().filter(is_code_row).count();
        assert_eq!(
            listed,
            ErrorCode::ALL.len(),
            "README.md has rows that are not ErrorCode's"
        );
    }
}
