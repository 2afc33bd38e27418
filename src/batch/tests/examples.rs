use super::{crlf, request, response};
use crate::batch::{
    boundary_from_content_type, read_batch_request, read_batch_response, write_batch_request, write_batch_response,
    BatchRequestItem, BatchResponseItem,
};

/// The request example of contract §5, verbatim (the markdown has bare LF line endings).
const DOCUMENTED_REQUEST: &str = r#"--batch_<id>
Content-Type: application/http
Content-Transfer-Encoding: binary

GET /api/data/v9.2/accounts(<id>)/Account_Tasks?$select=subject HTTP/1.1


--batch_<id>
Content-Type: multipart/mixed; boundary="changeset_<id2>"

--changeset_<id2>
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST [Org]/api/data/v9.2/leads HTTP/1.1
Content-Type: application/json; type=entry

{"firstname":"a","lastname":"b"}
--changeset_<id2>
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

POST [Org]/api/data/v9.2/accounts HTTP/1.1
Content-Type: application/json; type=entry

{"name":"x","originatingleadid@odata.bind":"$1"}
--changeset_<id2>--
--batch_<id>--
"#;

fn documented_items() -> Vec<BatchRequestItem> {
    let json = [("Content-Type", "application/json; type=entry")];
    vec![
        BatchRequestItem::Request(request(
            None,
            "GET",
            "/api/data/v9.2/accounts(<id>)/Account_Tasks?$select=subject",
            &[],
            "",
        )),
        BatchRequestItem::ChangeSet(vec![
            request(
                Some("1"),
                "POST",
                "[Org]/api/data/v9.2/leads",
                &json,
                r#"{"firstname":"a","lastname":"b"}"#,
            ),
            request(
                Some("2"),
                "POST",
                "[Org]/api/data/v9.2/accounts",
                &json,
                r#"{"name":"x","originatingleadid@odata.bind":"$1"}"#,
            ),
        ]),
    ]
}

#[test]
fn documented_request_parses() {
    let boundary = boundary_from_content_type(r#"multipart/mixed; boundary="batch_<id>""#).unwrap();
    assert_eq!(boundary, "batch_<id>");
    let items = read_batch_request(&boundary, DOCUMENTED_REQUEST.as_bytes()).unwrap();
    assert_eq!(items, documented_items());
}

#[test]
fn documented_request_parses_with_crlf() {
    let body = DOCUMENTED_REQUEST.replace('\n', "\r\n");
    let items = read_batch_request("batch_<id>", body.as_bytes()).unwrap();
    assert_eq!(items, documented_items());
}

#[test]
fn documented_request_round_trips() {
    let (content_type, body) = write_batch_request(&documented_items());
    let boundary = boundary_from_content_type(&content_type).unwrap();
    assert!(boundary.starts_with("batch_"), "{boundary}");
    assert_eq!(read_batch_request(&boundary, &body).unwrap(), documented_items());
}

#[test]
fn written_request_looks_like_the_documentation() {
    let (content_type, body) = write_batch_request(&documented_items());
    let boundary = boundary_from_content_type(&content_type).unwrap();
    assert_eq!(content_type, format!("multipart/mixed; boundary=\"{boundary}\""));
    let text = String::from_utf8(body).unwrap();
    let change_set = text
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(change_set.starts_with("changeset_"), "{change_set}");
    // The documented text with the generated boundaries: byte for byte, CRLF line endings.
    let expected = DOCUMENTED_REQUEST
        .replace("batch_<id>", &boundary)
        .replace("changeset_<id2>", &change_set)
        .replace('\n', "\r\n");
    assert_eq!(text, expected);
}

/// A response shaped like the one in Microsoft's "Execute batch operations" article.
fn documented_response() -> Vec<u8> {
    let task = "[Organization URI]/api/data/v9.2/tasks(a59c24f3-fafc-e411-80dd-00155d2a68cb)";
    crlf(&[
        "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f",
        "Content-Type: multipart/mixed; boundary=changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abc",
        "",
        "--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abc",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "Content-ID: 1",
        "",
        "HTTP/1.1 204 No Content",
        "OData-Version: 4.0",
        &format!("Location: {task}"),
        &format!("OData-EntityId: {task}"),
        "",
        "",
        "--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abc--",
        "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "HTTP/1.1 200 OK",
        "Content-Type: application/json; odata.metadata=minimal; odata.streaming=true",
        "OData-Version: 4.0",
        "",
        r#"{"value":[{"subject":"Task 1"}]}"#,
        "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "HTTP/1.1 400 BadRequest",
        "REQ_ID: 5c8d0b2d-0000-0000-0000-000000000000",
        "",
        r#"{"error":{"code":"0x80044331","message":"A validation error occurred."}}"#,
        "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f--",
        "",
    ])
}

fn documented_response_items() -> Vec<BatchResponseItem> {
    let task = "[Organization URI]/api/data/v9.2/tasks(a59c24f3-fafc-e411-80dd-00155d2a68cb)";
    vec![
        BatchResponseItem::ChangeSet(vec![response(
            Some("1"),
            204,
            "No Content",
            &[("OData-Version", "4.0"), ("Location", task), ("OData-EntityId", task)],
            "",
        )]),
        BatchResponseItem::Response(response(
            None,
            200,
            "OK",
            &[
                (
                    "Content-Type",
                    "application/json; odata.metadata=minimal; odata.streaming=true",
                ),
                ("OData-Version", "4.0"),
            ],
            r#"{"value":[{"subject":"Task 1"}]}"#,
        )),
        BatchResponseItem::Response(response(
            None,
            400,
            "BadRequest",
            &[("REQ_ID", "5c8d0b2d-0000-0000-0000-000000000000")],
            r#"{"error":{"code":"0x80044331","message":"A validation error occurred."}}"#,
        )),
    ]
}

#[test]
fn documented_response_parses() {
    let boundary =
        boundary_from_content_type("multipart/mixed; boundary=batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f")
            .unwrap();
    let items = read_batch_response(&boundary, &documented_response()).unwrap();
    assert_eq!(items, documented_response_items());
}

#[test]
fn documented_response_round_trips_and_uses_response_boundaries() {
    let (content_type, body) = write_batch_response(&documented_response_items());
    let boundary = boundary_from_content_type(&content_type).unwrap();
    assert!(boundary.starts_with("batchresponse_"), "{boundary}");
    assert_eq!(content_type, format!("multipart/mixed; boundary={boundary}"));
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("Content-Type: multipart/mixed; boundary=changesetresponse_"));
    assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    assert!(!text.replace("\r\n", "").contains('\n'), "bare LF in written response");
    assert_eq!(
        read_batch_response(&boundary, &body).unwrap(),
        documented_response_items()
    );
}

#[test]
fn spacing_and_case_variants_are_accepted() {
    // `Content-Type:application/http`, `Content-ID:1`, lower-case names, no
    // Content-Transfer-Encoding, a single blank line after a GET, bare LF, preamble and epilogue.
    let body = "preamble text\n--b\ncontent-type:application/http\n\nGET accounts HTTP/1.1\n\n--b\n\
        Content-Type:multipart/mixed;boundary=c\n\n--c\nContent-Type:application/http\n\
        content-transfer-encoding:BINARY\ncontent-id:1\n\nDELETE $1 HTTP/1.1\nIf-Match:*\n\n--c--\n--b--\nepilogue";
    let items = read_batch_request("b", body.as_bytes()).unwrap();
    assert_eq!(
        items,
        vec![
            BatchRequestItem::Request(request(None, "GET", "accounts", &[], "")),
            BatchRequestItem::ChangeSet(vec![request(Some("1"), "DELETE", "$1", &[("If-Match", "*")], "")]),
        ]
    );
}

#[test]
fn get_without_trailing_blank_line_has_empty_body() {
    let body = crlf(&[
        "--b",
        "Content-Type: application/http",
        "",
        "GET accounts HTTP/1.1",
        "--b--",
    ]);
    let items = read_batch_request("b", &body).unwrap();
    assert_eq!(
        items,
        vec![BatchRequestItem::Request(request(None, "GET", "accounts", &[], ""))]
    );
}

#[test]
fn body_keeps_inner_line_breaks_and_content_length_trims_padding() {
    let body = crlf(&[
        "--b",
        "Content-Type: application/http",
        "",
        "POST leads HTTP/1.1",
        "Content-Length: 7",
        "",
        "a\r\n\r\nbc",
        "",
        "--b--",
    ]);
    let items = read_batch_request("b", &body).unwrap();
    assert_eq!(
        items,
        vec![BatchRequestItem::Request(request(
            None,
            "POST",
            "leads",
            &[("Content-Length", "7")],
            "a\r\n\r\nbc"
        ))]
    );
}

#[test]
fn boundary_prefix_lines_are_content() {
    // `--b2` and `--bx` are not delimiters of boundary `b`.
    let body = crlf(&[
        "--b",
        "Content-Type: application/http",
        "",
        "POST x HTTP/1.1",
        "",
        "--b2",
        "--bx",
        "--b--",
    ]);
    let items = read_batch_request("b", &body).unwrap();
    assert_eq!(
        items,
        vec![BatchRequestItem::Request(request(
            None,
            "POST",
            "x",
            &[],
            "--b2\r\n--bx"
        ))]
    );
}

#[test]
fn empty_batch_and_empty_change_set_round_trip() {
    for items in [vec![], vec![BatchRequestItem::ChangeSet(vec![])]] {
        let (content_type, body) = write_batch_request(&items);
        let boundary = boundary_from_content_type(&content_type).unwrap();
        assert_eq!(read_batch_request(&boundary, &body).unwrap(), items);
    }
}

#[test]
fn writer_neutralises_line_breaks_in_text_fields() {
    let items = vec![BatchRequestItem::Request(request(
        Some("7\r\n"),
        "POST",
        "x",
        &[("X-A", "1\r\nInjected: yes")],
        "",
    ))];
    let (content_type, body) = write_batch_request(&items);
    let boundary = boundary_from_content_type(&content_type).unwrap();
    let read = read_batch_request(&boundary, &body).unwrap();
    let BatchRequestItem::Request(part) = &read[0] else {
        panic!("expected a request")
    };
    assert_eq!(part.content_id.as_deref(), Some("7"));
    assert_eq!(part.headers, vec![("X-A".to_string(), "1  Injected: yes".to_string())]);

    // A URL with a line break can't forge a part either: it becomes one bad request line.
    let items = vec![BatchRequestItem::Request(request(None, "POST", "x\r\n--evil", &[], ""))];
    let (content_type, body) = write_batch_request(&items);
    let boundary = boundary_from_content_type(&content_type).unwrap();
    let error = read_batch_request(&boundary, &body).unwrap_err();
    assert!(
        error.message.contains("bad request line \"POST x  --evil HTTP/1.1\""),
        "{}",
        error.message
    );
}

#[test]
fn boundary_from_content_type_accepts_both_forms() {
    let cases = [
        ("multipart/mixed; boundary=batch_1", "batch_1"),
        ("multipart/mixed; boundary=\"batch_1\"", "batch_1"),
        ("Multipart/Mixed;BOUNDARY=batch_1", "batch_1"),
        ("multipart/mixed; charset=utf-8; boundary=\"a;b c\"", "a;b c"),
        ("multipart/mixed; boundary=\"q\\\"x\"", "q\"x"),
    ];
    for (header, expected) in cases {
        assert_eq!(boundary_from_content_type(header).unwrap(), expected, "{header}");
    }
}
