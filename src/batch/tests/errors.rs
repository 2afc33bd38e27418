//! Malformed envelopes, parts and payloads: each is refused with its part number and line.

use super::{crlf, ok_part, request_error, with_ok_part, HTTP};
use crate::batch::{boundary_from_content_type, read_batch_request, read_batch_response};

#[test]
fn content_type_errors() {
    for (header, fragment) in [
        ("application/json", "not multipart/mixed"),
        ("multipart/alternative; boundary=x", "not multipart/mixed"),
        ("multipart/mixed", "no boundary"),
        ("multipart/mixed; charset=utf-8", "no boundary"),
        ("multipart/mixed; boundary=\"\"", "empty boundary"),
        ("", "not multipart/mixed"),
    ] {
        let error = boundary_from_content_type(header).expect_err(header);
        assert!(error.message.contains(fragment), "{header}: {}", error.message);
    }
}

#[test]
fn empty_boundary_is_rejected() {
    let error = read_batch_request("", b"--\r\n").unwrap_err();
    assert!(error.message.contains("boundary is empty"), "{}", error.message);
}

#[test]
fn no_delimiter_at_all() {
    request_error(
        &["just some text", "GET accounts HTTP/1.1"],
        &["no '--b' delimiter", "line 1"],
    );
    let error = read_batch_request("b", b"").unwrap_err();
    assert!(error.message.contains("no '--b' delimiter"));
}

#[test]
fn missing_closing_delimiter() {
    request_error(
        &with_ok_part(&["--b", HTTP[0], "", "GET x HTTP/1.1", ""]),
        &["missing closing delimiter '--b--'", "part 2 never ends"],
    );
    request_error(&ok_part(), &["missing closing delimiter", "truncated", "line 7"]);
}

#[test]
fn garbage_where_a_part_should_be() {
    request_error(
        &with_ok_part(&["--b", "hello world", "", "--b--"]),
        &["part 2", "line 9", "'Name: value'", "hello world"],
    );
    request_error(&with_ok_part(&["--b", "", "--b--"]), &["part 2", "empty part"]);
    request_error(
        &with_ok_part(&["--b", "", "GET x HTTP/1.1", "", "--b--"]),
        &["part 2", "missing Content-Type"],
    );
}

#[test]
fn part_of_another_content_type() {
    request_error(
        &with_ok_part(&["--b", "Content-Type: text/plain", "", "hi", "--b--"]),
        &[
            "part 2",
            "\"text/plain\" is neither application/http nor multipart/mixed",
        ],
    );
}

#[test]
fn unsupported_transfer_encoding() {
    request_error(
        &["--b", HTTP[0], "Content-Transfer-Encoding: base64", "", "R0VU", "--b--"],
        &["part 1", "unsupported Content-Transfer-Encoding \"base64\""],
    );
}

#[test]
fn bad_request_lines() {
    for line in [
        "GET accounts",
        "accounts HTTP/1.1",
        "GET a b HTTP/1.1",
        "GET accounts FTP/1",
        "G(T x HTTP/1.1",
    ] {
        request_error(
            &with_ok_part(&["--b", HTTP[0], "", line, "", "--b--"]),
            &["part 2", "line 11", "bad request line", line],
        );
    }
    request_error(
        &with_ok_part(&["--b", HTTP[0], "", "", "--b--"]),
        &["part 2", "missing request line"],
    );
}

#[test]
fn change_set_without_boundary_or_close() {
    request_error(
        &["--b", "Content-Type: multipart/mixed", "", "--c--", "--b--"],
        &["part 1", "change set", "no boundary"],
    );
    request_error(
        &[
            "--b",
            "Content-Type: multipart/mixed; boundary=c",
            "",
            "--c",
            HTTP[0],
            "",
            "POST x HTTP/1.1",
            "",
            "--b--",
        ],
        &[
            "part 1",
            "change-set part 1 never ends",
            "missing closing delimiter '--c--'",
        ],
    );
    request_error(
        &[
            "--b",
            "Content-Type: multipart/mixed; boundary=c",
            "",
            "nothing",
            "--b--",
        ],
        &["part 1", "change set", "no '--c' delimiter", "line 4"],
    );
}

#[test]
fn truncated_bodies() {
    // Content-Length promises more than arrives before the delimiter.
    request_error(
        &[
            "--b",
            HTTP[0],
            "",
            "POST leads HTTP/1.1",
            "Content-Length: 50",
            "",
            "{\"a\":1}",
            "--b--",
        ],
        &[
            "part 1",
            "line 7",
            "truncated body",
            "Content-Length says 50 bytes but only 7 arrived",
        ],
    );
    // The part ends inside its MIME headers.
    request_error(
        &with_ok_part(&["--b", HTTP[0], HTTP[1], "--b--"]),
        &["part 2", "truncated"],
    );
    // The body stops mid-part with no delimiter at all.
    let error = read_batch_request(
        "b",
        b"--b\r\nContent-Type: application/http\r\n\r\nPOST x HTTP/1.1\r\n\r\n{\"na",
    )
    .unwrap_err();
    assert!(error.message.contains("missing closing delimiter"), "{}", error.message);
}

#[test]
fn content_length_errors() {
    request_error(
        &[
            "--b",
            HTTP[0],
            "",
            "POST x HTTP/1.1",
            "Content-Length: lots",
            "",
            "{}",
            "--b--",
        ],
        &["part 1", "\"lots\" is not a number"],
    );
    request_error(
        &[
            "--b",
            HTTP[0],
            "",
            "POST x HTTP/1.1",
            "Content-Length: 1",
            "",
            "{}",
            "--b--",
        ],
        &["part 1", "longer than its Content-Length"],
    );
}

#[test]
fn bad_inner_header() {
    request_error(
        &["--b", HTTP[0], "", "POST x HTTP/1.1", "not a header", "", "{}", "--b--"],
        &["part 1", "line 5", "bad inner header", "not a header"],
    );
    request_error(
        &["--b", " folded", HTTP[0], "", "--b--"],
        &["part 1", "line 2", "continuation line"],
    );
}

#[test]
fn bad_status_lines() {
    for line in [
        "HTTP/1.1",
        "HTTP/1.1 20 OK",
        "HTTP/1.1 2045 OK",
        "HTTP/1.1 abc OK",
        "HTTP/1.1 700 Odd",
        "HTP/1.1 200 OK",
        "200 OK",
    ] {
        let body = crlf(&["--b", HTTP[0], "", line, "", "--b--"]);
        let error = read_batch_response("b", &body).expect_err(line);
        assert!(
            error.message.contains("part 1 (line 4): bad status line"),
            "{line}: {}",
            error.message
        );
    }
}

#[test]
fn response_errors_name_the_part() {
    let body = crlf(&[
        "--b",
        HTTP[0],
        "",
        "HTTP/1.1 200 OK",
        "",
        "--b",
        "Content-Type: multipart/mixed; boundary=c",
        "",
        "--c",
        HTTP[0],
        "",
        "HTTP/1.1 204 No Content",
        "",
        "--c",
        "Content-Type: image/png",
        "",
        "--c--",
        "--b--",
    ]);
    let error = read_batch_response("b", &body).unwrap_err();
    assert!(
        error.message.starts_with("part 2, change-set part 2 (line 15):"),
        "{}",
        error.message
    );
    assert!(error.to_string().starts_with("malformed $batch: part 2"));
}

#[test]
fn non_utf8_lines_are_errors_not_panics() {
    let mut body = b"--b\r\nContent-Type: application/http\r\n\r\nGET \xff HTTP/1.1\r\n\r\n--b--".to_vec();
    let error = read_batch_request("b", &body).unwrap_err();
    assert!(error.message.contains("not valid UTF-8"), "{}", error.message);
    body = b"--b\r\nContent-\xffType: application/http\r\n\r\n--b--".to_vec();
    let error = read_batch_request("b", &body).unwrap_err();
    assert!(error.message.contains("not valid UTF-8"), "{}", error.message);
}
