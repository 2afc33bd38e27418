//! Property tests: no input makes a reader panic, written item lists read back identically, and
//! a response cut short (as a dropped connection or a lost closing delimiter leaves it) is an
//! error, never a shorter list of items.

use crate::batch::{
    boundary_from_content_type, read_batch_request, read_batch_response, write_batch_request, write_batch_response,
    BatchRequestItem, BatchResponseItem, HttpRequestPart, HttpResponsePart,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::HashSet;

/// Header names: tokens, minus Content-Length, which the reader rightly holds the body to.
fn header_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_-]{0,15}".prop_filter("Content-Length constrains the body", |name| {
        !name.eq_ignore_ascii_case("Content-Length")
    })
}

/// Header values: any non-control text; the reader trims surrounding blanks, so none here.
fn header_value() -> impl Strategy<Value = String> {
    "\\PC{0,24}".prop_map(|value| value.trim_matches([' ', '\t']).to_string())
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((header_name(), header_value()), 0..5)
}

/// Bodies: raw bytes, and byte soups rich in the characters that frame a multipart body.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..120),
        vec(select(b"\r\n-_bchatse ".to_vec()), 0..120),
        Just(b"--batch_\r\n--changeset_\r\n--batchresponse_--\r\n".to_vec()),
    ]
}

fn content_id() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[!-~]{1,8}")
}

fn url() -> impl Strategy<Value = String> {
    prop_oneof!["[!-~]{1,60}", "\\$[0-9]{1,3}(/[a-z]{1,10})?", "[^\\s\\p{C}]{1,30}"]
}

fn request_part(methods: &'static [&'static str]) -> impl Strategy<Value = HttpRequestPart> {
    (content_id(), select(methods), url(), headers(), body()).prop_map(|(content_id, method, url, headers, body)| {
        HttpRequestPart {
            content_id,
            method: method.to_string(),
            url,
            headers,
            body,
        }
    })
}

fn response_part() -> impl Strategy<Value = HttpResponsePart> {
    (content_id(), 100u16..=599, "[ -~]{0,20}", headers(), body()).prop_map(
        |(content_id, status, reason, headers, body)| HttpResponsePart {
            content_id,
            status,
            reason,
            headers,
            body,
        },
    )
}

/// Change-set members need distinct Content-IDs; a repeat becomes `None`.
fn distinct_ids<T>(mut members: Vec<T>, id: impl Fn(&mut T) -> &mut Option<String>) -> Vec<T> {
    let mut seen = HashSet::new();
    for member in &mut members {
        let slot = id(member);
        if slot.as_ref().is_some_and(|v| !seen.insert(v.clone())) {
            *slot = None;
        }
    }
    members
}

const ANY_METHOD: &[&str] = &["GET", "POST", "PATCH", "PUT", "DELETE", "MERGE"];
const WRITE_METHOD: &[&str] = &["POST", "PATCH", "PUT", "DELETE"];

fn request_items() -> impl Strategy<Value = Vec<BatchRequestItem>> {
    let item = prop_oneof![
        request_part(ANY_METHOD).prop_map(BatchRequestItem::Request),
        vec(request_part(WRITE_METHOD), 0..5)
            .prop_map(|members| BatchRequestItem::ChangeSet(distinct_ids(members, |m| &mut m.content_id))),
    ];
    vec(item, 0..8)
}

fn response_items() -> impl Strategy<Value = Vec<BatchResponseItem>> {
    let item = prop_oneof![
        response_part().prop_map(BatchResponseItem::Response),
        vec(response_part(), 0..5)
            .prop_map(|members| BatchResponseItem::ChangeSet(distinct_ids(members, |m| &mut m.content_id))),
    ];
    vec(item, 0..8)
}

/// Lines of batch syntax, so random sequences of them reach past the envelope into the parts.
const LINES: &[&str] = &[
    "--b",
    "--b",
    "--b--",
    "--c",
    "--c",
    "--c--",
    "",
    "",
    "Content-Type: application/http",
    "Content-Type:application/http",
    "Content-Type: multipart/mixed; boundary=c",
    "Content-Type: multipart/mixed; boundary=\"b\"",
    "Content-Type: text/plain",
    "Content-Transfer-Encoding: binary",
    "Content-ID: 1",
    "Content-ID:2",
    "Content-Length: 2",
    "Content-Length: 99999999999999999999999",
    "GET accounts HTTP/1.1",
    "POST $1 HTTP/1.1",
    "HTTP/1.1 204 No Content",
    "HTTP/1.1 999",
    " folded",
    "{}",
    "\u{ff}",
];

fn line_soup() -> impl Strategy<Value = Vec<u8>> {
    vec((select(LINES), select(&["\r\n", "\n", ""][..])), 0..40).prop_map(|lines| {
        lines
            .into_iter()
            .flat_map(|(line, end)| [line, end])
            .collect::<String>()
            .into_bytes()
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2000), boundary in "[ -~]{0,10}") {
        let _ = read_batch_request(&boundary, &bytes);
        let _ = read_batch_response(&boundary, &bytes);
        let _ = read_batch_request("b", &bytes);
        let _ = read_batch_response("b", &bytes);
    }

    #[test]
    fn line_soup_never_panics(bytes in line_soup()) {
        let _ = read_batch_request("b", &bytes);
        let _ = read_batch_response("b", &bytes);
    }

    #[test]
    fn arbitrary_content_types_never_panic(content_type in "\\PC{0,60}") {
        let _ = boundary_from_content_type(&content_type);
    }

    #[test]
    fn requests_round_trip(items in request_items()) {
        let (content_type, body) = write_batch_request(&items);
        let boundary = boundary_from_content_type(&content_type).unwrap();
        prop_assert_eq!(read_batch_request(&boundary, &body).unwrap(), items);
    }

    #[test]
    fn responses_round_trip(items in response_items()) {
        let (content_type, body) = write_batch_response(&items);
        let boundary = boundary_from_content_type(&content_type).unwrap();
        prop_assert_eq!(read_batch_response(&boundary, &body).unwrap(), items);
    }

    #[test]
    fn damaged_batches_never_panic(items in request_items(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (content_type, body) = write_batch_request(&items);
        let boundary = boundary_from_content_type(&content_type).unwrap();
        let at = cut.index(body.len() + 1);
        let _ = read_batch_request(&boundary, &body[..at]);
        let mut flipped = body.clone();
        if let Some(b) = flipped.get_mut(at) {
            *b = byte;
        }
        let _ = read_batch_request(&boundary, &flipped);
        let _ = read_batch_response(&boundary, &flipped);
        // Drop one line: a lost header, blank line or delimiter.
        let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        lines.remove(cut.index(lines.len()));
        let _ = read_batch_request(&boundary, &lines.join(&b'\n'));
    }

    #[test]
    fn responses_cut_short_are_errors(items in response_items(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (content_type, body) = write_batch_response(&items);
        let boundary = boundary_from_content_type(&content_type).unwrap();
        let close = format!("--{boundary}--");
        let closed_at = body
            .windows(close.len())
            .rposition(|w| w == close.as_bytes())
            .expect("a written response is closed")
            + close.len();
        // Anything short of the closing delimiter: a truncated body.
        let at = cut.index(closed_at);
        prop_assert!(read_batch_response(&boundary, &body[..at]).is_err(), "cut at {} of {}", at, closed_at);
        // The closing delimiter alone missing.
        let mut unclosed = body[..closed_at - close.len()].to_vec();
        unclosed.extend_from_slice(&body[closed_at..]);
        prop_assert!(read_batch_response(&boundary, &unclosed).is_err());
        // Other damage: any result but a panic.
        let mut flipped = body.clone();
        let at = cut.index(body.len());
        flipped[at] = byte;
        let _ = read_batch_response(&boundary, &flipped);
        let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        lines.remove(cut.index(lines.len()));
        let _ = read_batch_response(&boundary, &lines.join(&b'\n'));
    }
}
