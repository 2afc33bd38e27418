//! Tests of the `$batch` codec:
//! - `examples`: the documented Dataverse request and response parse as expected, spacing and
//!   line-ending variants, and hand-written round trips;
//! - `errors`: every malformed-input case, each message naming the part and line;
//! - `rules`: Dataverse's envelope rules (nesting, GET in a change set, Content-IDs, 1000 parts);
//! - `props`: proptest: arbitrary bytes never panic, generated item lists round-trip.

mod errors;
mod examples;
mod props;
mod rules;

use super::{read_batch_request, HttpRequestPart, HttpResponsePart};

/// Joins lines with CRLF, the line ending Dataverse sends.
fn crlf(lines: &[&str]) -> Vec<u8> {
    lines.join("\r\n").into_bytes()
}

fn request(content_id: Option<&str>, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> HttpRequestPart {
    HttpRequestPart {
        content_id: content_id.map(str::to_string),
        method: method.to_string(),
        url: url.to_string(),
        headers: owned(headers),
        body: body.as_bytes().to_vec(),
    }
}

fn response(
    content_id: Option<&str>,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponsePart {
    HttpResponsePart {
        content_id: content_id.map(str::to_string),
        status,
        reason: reason.to_string(),
        headers: owned(headers),
        body: body.as_bytes().to_vec(),
    }
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// Reads `lines` (CRLF-joined) as a request with boundary `b` and returns the error message,
/// checking that it names every fragment in `expected`.
fn request_error(lines: &[&str], expected: &[&str]) -> String {
    let error = read_batch_request("b", &crlf(lines)).expect_err("the batch should be rejected");
    for fragment in expected {
        assert!(
            error.message.contains(fragment),
            "{:?} lacks {fragment:?}",
            error.message
        );
    }
    error.message
}

const HTTP: [&str; 2] = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"];

/// A well-formed first part, so error positions below are part 2 or later.
fn ok_part() -> Vec<&'static str> {
    vec!["--b", HTTP[0], HTTP[1], "", "GET accounts HTTP/1.1", "", ""]
}

fn with_ok_part(rest: &[&'static str]) -> Vec<&'static str> {
    let mut lines = ok_part();
    lines.extend_from_slice(rest);
    lines
}
