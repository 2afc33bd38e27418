//! The one place GraphQL errors get their `extensions.code`: bad input from the client, and
//! upstream failures with the upstream's status and message.

use crate::odata::UpstreamError;
use async_graphql::{Error, ErrorExtensions};

/// An operation whose estimated upstream requests exceed `--max-upstream-requests-per-operation`
/// (see `estimate`), refused before any upstream request. Kept apart from the other codes so that
/// it can be folded into a single code enum.
pub const TOO_MANY_UPSTREAM_REQUESTS: &str = "TOO_MANY_UPSTREAM_REQUESTS";

/// The client sent something the gateway refuses before any upstream request.
pub fn bad_input(message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", "BAD_USER_INPUT"))
}

/// An upstream failure, with a stable code and the upstream's message.
pub fn upstream_error(err: &UpstreamError) -> Error {
    let code = err.code();
    let status = err.status;
    let claims = match &err.kind {
        crate::odata::UpstreamErrorKind::InteractionRequired { claims } => claims.clone(),
        _ => None,
    };
    Error::new(err.message.clone()).extend_with(|_, e| {
        e.set("code", code);
        if let Some(s) = status {
            e.set("upstreamStatus", s);
        }
        // The claims challenge the client passes to its next sign-in (MSAL: `claims`).
        if let Some(c) = &claims {
            e.set("claims", c.as_str());
        }
    })
}
