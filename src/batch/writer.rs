//! Writing batch bodies in the shape of Dataverse's documented examples (contract §5):
//!
//! ```text
//! --batch_<uuid>                                   --batchresponse_<uuid>
//! Content-Type: application/http                   Content-Type: application/http
//! Content-Transfer-Encoding: binary                Content-Transfer-Encoding: binary
//! Content-ID: 1            (when set)              Content-ID: 1            (when set)
//!
//! POST /api/data/v9.2/leads HTTP/1.1               HTTP/1.1 204 No Content
//! Content-Type: application/json; type=entry       OData-Version: 4.0
//!
//! {"firstname":"a"}                                <body, often empty>
//! --batch_<uuid>--                                 --batchresponse_<uuid>--
//! ```
//!
//! Change sets are a nested `multipart/mixed` part with their own `changeset_<uuid>` (or
//! `changesetresponse_<uuid>`) boundary. Every line ends in CRLF; the CRLF after each body
//! belongs to the next delimiter (RFC 2046), which is exactly what the reader strips.

use super::{BatchRequestItem, BatchResponseItem, HttpRequestPart, HttpResponsePart};

/// Writes a batch request. Returns the `Content-Type` header value (with the boundary, quoted as
/// in Dataverse's request examples) and the body.
pub fn write_batch_request(items: &[BatchRequestItem]) -> (String, Vec<u8>) {
    let bodies = items.iter().flat_map(|item| match item {
        BatchRequestItem::Request(request) => std::slice::from_ref(request),
        BatchRequestItem::ChangeSet(members) => members.as_slice(),
    });
    let boundary = fresh_boundary("batch", bodies.map(|r| r.body.as_slice()));
    let mut out = Vec::new();
    for item in items {
        open_part(&mut out, &boundary);
        match item {
            BatchRequestItem::Request(request) => write_http_part(&mut out, request),
            BatchRequestItem::ChangeSet(members) => {
                let change_set = fresh_boundary("changeset", members.iter().map(|m| m.body.as_slice()));
                write_change_set(&mut out, &format!("\"{change_set}\""), &change_set, members);
            }
        }
    }
    close(&mut out, &boundary);
    (format!("multipart/mixed; boundary=\"{boundary}\""), out)
}

/// Writes a batch response. Returns the `Content-Type` header value (boundary unquoted, as
/// Dataverse sends it) and the body.
pub fn write_batch_response(items: &[BatchResponseItem]) -> (String, Vec<u8>) {
    let bodies = items.iter().flat_map(|item| match item {
        BatchResponseItem::Response(response) => std::slice::from_ref(response),
        BatchResponseItem::ChangeSet(members) => members.as_slice(),
    });
    let boundary = fresh_boundary("batchresponse", bodies.map(|r| r.body.as_slice()));
    let mut out = Vec::new();
    for item in items {
        open_part(&mut out, &boundary);
        match item {
            BatchResponseItem::Response(response) => write_http_part(&mut out, response),
            BatchResponseItem::ChangeSet(members) => {
                let change_set = fresh_boundary("changesetresponse", members.iter().map(|m| m.body.as_slice()));
                write_change_set(&mut out, &change_set, &change_set, members);
            }
        }
    }
    close(&mut out, &boundary);
    (format!("multipart/mixed; boundary={boundary}"), out)
}

/// What the writer needs from a request or a response part.
trait OutgoingMessage {
    fn content_id(&self) -> Option<&str>;
    /// `METHOD URL HTTP/1.1` or `HTTP/1.1 204 No Content`, without line break.
    fn start_line(&self) -> String;
    fn headers(&self) -> &[(String, String)];
    fn body(&self) -> &[u8];
}

impl OutgoingMessage for HttpRequestPart {
    fn content_id(&self) -> Option<&str> {
        self.content_id.as_deref()
    }
    fn start_line(&self) -> String {
        format!("{} {} HTTP/1.1", self.method, self.url)
    }
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

impl OutgoingMessage for HttpResponsePart {
    fn content_id(&self) -> Option<&str> {
        self.content_id.as_deref()
    }
    fn start_line(&self) -> String {
        if self.reason.is_empty() {
            format!("HTTP/1.1 {}", self.status)
        } else {
            format!("HTTP/1.1 {} {}", self.status, self.reason)
        }
    }
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A boundary that no body contains. Only bodies matter: every other field is written on one
/// line after a header name or method, so it can never start a line with `--boundary`. A random
/// UUID practically never collides; the loop makes "never" exact even for hostile bodies.
fn fresh_boundary<'b>(prefix: &str, bodies: impl Iterator<Item = &'b [u8]> + Clone) -> String {
    loop {
        let candidate = format!("{prefix}_{}", uuid::Uuid::new_v4());
        let needle = candidate.as_bytes();
        let clashes = bodies
            .clone()
            .any(|body| body.windows(needle.len()).any(|w| w == needle));
        if !clashes {
            return candidate;
        }
    }
}

fn open_part(out: &mut Vec<u8>, boundary: &str) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn close(out: &mut Vec<u8>, boundary: &str) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

/// A change-set part: its MIME header, a blank line, the members, and the change set's close
/// delimiter. `parameter` is the boundary as written in the header (quoted or not).
fn write_change_set<M: OutgoingMessage>(out: &mut Vec<u8>, parameter: &str, boundary: &str, members: &[M]) {
    line(out, &format!("Content-Type: multipart/mixed; boundary={parameter}"));
    out.extend_from_slice(b"\r\n");
    for member in members {
        open_part(out, boundary);
        write_http_part(out, member);
    }
    // The CRLF after the close delimiter precedes the outer delimiter, as after a body.
    close(out, boundary);
}

/// An `application/http` part: MIME headers, blank line, start line, headers, blank line, body,
/// and the CRLF that belongs to the next delimiter.
fn write_http_part<M: OutgoingMessage>(out: &mut Vec<u8>, message: &M) {
    line(out, "Content-Type: application/http");
    line(out, "Content-Transfer-Encoding: binary");
    if let Some(id) = message.content_id() {
        line(out, &format!("Content-ID: {id}"));
    }
    out.extend_from_slice(b"\r\n");
    line(out, &message.start_line());
    for (name, value) in message.headers() {
        line(out, &format!("{name}: {value}"));
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(message.body());
    out.extend_from_slice(b"\r\n");
}

/// One header-ish line plus CRLF. CR and LF inside become spaces: a caller's stray line break
/// must not be able to forge a header or a delimiter.
fn line(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}
