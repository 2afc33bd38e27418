//! The `multipart/mixed` codec for OData `$batch` (contract §5, Dataverse Web API).
//!
//! Both sides of the project speak it: the emulator reads batch *requests* and writes batch
//! *responses*; the gateway writes batch requests and reads batch responses. This module knows
//! only the wire format and the rules Dataverse enforces on the envelope. Executing the requests,
//! resolving `$n` Content-ID references and choosing status codes belong to the callers.
//!
//! - `mime`: the MIME layer shared by every direction: splitting a body at its boundary
//!   delimiters (RFC 2046), header blocks, and error positions (part number and line).
//! - `message`: one `application/http` payload: request line or status line, inner headers,
//!   body (with the `Content-Length` truncation check).
//! - `reader`: [`read_batch_request`] and [`read_batch_response`]: one envelope walk for both,
//!   and the Dataverse rules (no `GET` and no nesting inside a change set, unique Content-IDs per
//!   change set, at most [`MAX_PARTS`] requests).
//! - `writer`: [`write_batch_request`] and [`write_batch_response`], shaped like the documented
//!   Dataverse examples (CRLF line endings, `batch_<uuid>` / `batchresponse_<uuid>` boundaries).
//! - [`boundary_from_content_type`] (this file): the `boundary` parameter of a `Content-Type`.
//!
//! Round trip: whatever `write_*` produces, `read_*` returns identically for any item list the
//! reader would accept: methods and header names are tokens, URLs hold no whitespace, header values
//! have no surrounding blanks, statuses are 100..=599, bodies match any `Content-Length` they
//! declare, change sets hold no `GET` nor a repeated Content-ID, and there are at most
//! [`MAX_PARTS`] requests. Bodies may hold any bytes: the writer picks boundaries they don't
//! contain. CR/LF in a one-line field become spaces, so a caller can never forge framing.

mod message;
mod mime;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{read_batch_request, read_batch_response};
pub use writer::{write_batch_request, write_batch_response};

use std::fmt;

/// Dataverse accepts at most 1000 requests in one batch, change-set members included
/// (contract §5 "Limits"); the reader refuses more so neither side builds what the other rejects.
pub const MAX_PARTS: usize = 1000;

/// Any malformed batch envelope. `message` says what is wrong and where: the 1-based part number
/// (and change-set part number) and the 1-based line in the body, so a 400 from the emulator or
/// a log line in the gateway points straight at the offending bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub message: String,
}

impl BatchError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        BatchError {
            message: message.into(),
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed $batch: {}", self.message)
    }
}

impl std::error::Error for BatchError {}

/// One `application/http` request part. `url` is kept verbatim: it may be absolute, an absolute
/// path, or a `$n` Content-ID reference, and only the executor can resolve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequestPart {
    /// The part's MIME `Content-ID` (not an inner header): the `n` that later `$n` references name.
    pub content_id: Option<String>,
    pub method: String,
    pub url: String,
    /// Inner request headers in wire order; names keep their spelling, lookups are the caller's.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A top-level item of a batch request: a lone request, or an atomic change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchRequestItem {
    Request(HttpRequestPart),
    /// Members run as one transaction; never holds a `GET` (Dataverse forbids it).
    ChangeSet(Vec<HttpRequestPart>),
}

/// One `application/http` response part (`HTTP/1.1 204 No Content` plus headers and body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponsePart {
    /// Echoes the request's Content-ID so the gateway can match change-set responses.
    pub content_id: Option<String>,
    /// Three-digit status, 100..=599.
    pub status: u16,
    /// Reason phrase as sent; may be empty, and Dataverse sometimes writes `BadRequest`.
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A top-level item of a batch response, mirroring the request's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResponseItem {
    Response(HttpResponsePart),
    ChangeSet(Vec<HttpResponsePart>),
}

/// The boundary of a `multipart/mixed` Content-Type: `boundary="x"` or `boundary=x`, parameter
/// name and media type case-insensitive, other parameters ignored.
///
/// Errors when the media type is not `multipart/mixed` (Dataverse has no JSON batch, §5) or
/// when the boundary is missing, empty, or holds control characters (it could never match a line).
pub fn boundary_from_content_type(content_type: &str) -> Result<String, BatchError> {
    let mut segments = split_params(content_type).into_iter();
    let media_type = segments.next().unwrap_or_default();
    let media_type = media_type.trim();
    if !media_type.eq_ignore_ascii_case("multipart/mixed") {
        return Err(BatchError::new(format!(
            "Content-Type {content_type:?} is not multipart/mixed (a $batch body must be multipart/mixed; boundary=...)"
        )));
    }
    for param in segments {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let boundary = unquote(value.trim());
        if boundary.is_empty() {
            return Err(BatchError::new(format!(
                "Content-Type {content_type:?} has an empty boundary parameter"
            )));
        }
        if boundary.chars().any(|c| c.is_control()) {
            return Err(BatchError::new(format!(
                "Content-Type {content_type:?} has a boundary with control characters"
            )));
        }
        return Ok(boundary);
    }
    Err(BatchError::new(format!(
        "Content-Type {content_type:?} has no boundary parameter"
    )))
}

/// Splits at `;` outside double quotes, so a quoted boundary may hold any character.
fn split_params(value: &str) -> Vec<String> {
    let mut segments = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        let current = segments.last_mut().expect("never empty");
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            segments.push(String::new());
            continue;
        }
        current.push(c);
    }
    segments
}

/// Removes the surrounding quotes of an RFC 7230 quoted-string and its `\` escapes.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}
