//! The `application/http` payload of a part: the start line (`METHOD URL HTTP/1.1` for
//! requests, `HTTP/1.1 204 No Content` for responses), inner headers, and the body. The
//! [`InnerMessage`] trait is what lets [`super::reader`] walk both directions with one envelope
//! walk.

use super::mime::{header, next_line, parse_header_block, Body, Headers, Pos};
use super::{BatchError, HttpRequestPart, HttpResponsePart};

/// An `application/http` payload: what differs between the request and the response side.
pub(super) trait InnerMessage: Sized {
    /// Parses the payload after the part's MIME headers; `at` is its absolute offset.
    fn parse(body: &Body, pos: Pos, bytes: &[u8], at: usize) -> Result<Self, BatchError>;
    fn set_content_id(&mut self, content_id: Option<String>);
    /// Extra rule for change-set members; requests refuse `GET`.
    fn check_change_set_member(&self, _body: &Body, _pos: Pos, _at: usize) -> Result<(), BatchError> {
        Ok(())
    }
}

/// The start line of a payload, as UTF-8, and where its headers begin.
fn start_line<'b>(
    body: &Body,
    pos: Pos,
    bytes: &'b [u8],
    at: usize,
    expected: &str,
) -> Result<(&'b str, usize), BatchError> {
    let Some((line, next)) = next_line(bytes, 0).filter(|(line, _)| !line.is_empty()) else {
        return Err(body.error(pos, at, format!("missing {expected} after the part's MIME headers")));
    };
    let text =
        std::str::from_utf8(line).map_err(|_| body.error(pos, at, format!("the {expected} is not valid UTF-8")))?;
    Ok((text, next))
}

/// Inner headers after the start line, then the body. A payload that ends right after its start
/// line (a `GET` written with a single blank line) has no headers and an empty body.
fn headers_and_body(
    body: &Body,
    pos: Pos,
    bytes: &[u8],
    from: usize,
    at: usize,
) -> Result<(Headers, Vec<u8>), BatchError> {
    let block = parse_header_block(bytes, from)
        .map_err(|e| body.error(pos, at + e.at, format!("bad inner header: {}", e.what)))?;
    let mut payload = &bytes[block.body_start..];
    if let Some(length) = header(&block.headers, "Content-Length") {
        let Ok(length) = length.parse::<usize>() else {
            return Err(body.error(pos, at, format!("Content-Length {length:?} is not a number")));
        };
        if payload.len() < length {
            return Err(body.error(
                pos,
                at + block.body_start,
                format!(
                    "truncated body: Content-Length says {length} bytes but only {} arrived before the next boundary",
                    payload.len()
                ),
            ));
        }
        // Extra line breaks some writers add before the delimiter are not body.
        if !payload[length..].iter().all(|b| b.is_ascii_whitespace()) {
            return Err(body.error(
                pos,
                at + block.body_start,
                format!("the body is longer than its Content-Length of {length} bytes"),
            ));
        }
        payload = &payload[..length];
    }
    Ok((block.headers, payload.to_vec()))
}

impl InnerMessage for HttpRequestPart {
    fn parse(body: &Body, pos: Pos, bytes: &[u8], at: usize) -> Result<Self, BatchError> {
        let (line, next) = start_line(body, pos, bytes, at, "request line 'METHOD URL HTTP/1.1'")?;
        let Some((method, url)) = parse_request_line(line) else {
            return Err(body.error(
                pos,
                at,
                format!("bad request line {line:?}: expected 'METHOD URL HTTP/1.1'"),
            ));
        };
        let (headers, payload) = headers_and_body(body, pos, bytes, next, at)?;
        Ok(HttpRequestPart {
            content_id: None,
            method: method.to_string(),
            url: url.to_string(),
            headers,
            body: payload,
        })
    }

    fn set_content_id(&mut self, content_id: Option<String>) {
        self.content_id = content_id;
    }

    fn check_change_set_member(&self, body: &Body, pos: Pos, at: usize) -> Result<(), BatchError> {
        if self.method.eq_ignore_ascii_case("GET") {
            return Err(body.error(
                pos,
                at,
                "GET is not allowed inside a change set: Dataverse rejects it; send the GET as its own batch part",
            ));
        }
        Ok(())
    }
}

/// `METHOD URL HTTP/1.x`: three fields; the URL can't hold spaces, so any run of them separates.
fn parse_request_line(line: &str) -> Option<(&str, &str)> {
    let mut fields = line.split([' ', '\t']).filter(|f| !f.is_empty());
    let (method, url, version) = (fields.next()?, fields.next()?, fields.next()?);
    let method_ok = method.bytes().all(super::mime::is_token_byte);
    (fields.next().is_none() && method_ok && version.starts_with("HTTP/")).then_some((method, url))
}

impl InnerMessage for HttpResponsePart {
    fn parse(body: &Body, pos: Pos, bytes: &[u8], at: usize) -> Result<Self, BatchError> {
        let (line, next) = start_line(body, pos, bytes, at, "status line 'HTTP/1.1 <code> <reason>'")?;
        let Some((status, reason)) = parse_status_line(line) else {
            return Err(body.error(
                pos,
                at,
                format!("bad status line {line:?}: expected 'HTTP/1.1 <3-digit code> <reason>'"),
            ));
        };
        let (headers, payload) = headers_and_body(body, pos, bytes, next, at)?;
        Ok(HttpResponsePart {
            content_id: None,
            status,
            reason: reason.to_string(),
            headers,
            body: payload,
        })
    }

    fn set_content_id(&mut self, content_id: Option<String>) {
        self.content_id = content_id;
    }
}

/// `HTTP/1.1 204 No Content`; the reason phrase is everything after the single space that follows
/// the code, and may be empty.
fn parse_status_line(line: &str) -> Option<(u16, &str)> {
    let (version, rest) = line.split_once(' ')?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let rest = rest.trim_start_matches(' ');
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let valid = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    let status: u16 = code.parse().ok().filter(|s| valid && (100..=599).contains(s))?;
    Some((status, reason))
}
