//! The rules Dataverse puts on a well-formed envelope: no nesting and no `GET` inside a change
//! set, distinct Content-IDs per change set, at most `MAX_PARTS` requests.

use super::{request, request_error, HTTP};
use crate::batch::{boundary_from_content_type, read_batch_request, write_batch_request, BatchRequestItem, MAX_PARTS};

#[test]
fn change_set_inside_a_change_set() {
    request_error(
        &[
            "--b",
            "Content-Type: multipart/mixed; boundary=c1",
            "",
            "--c1",
            "Content-Type: multipart/mixed; boundary=c2",
            "",
            "--c2",
            HTTP[0],
            "",
            "POST x HTTP/1.1",
            "",
            "--c2--",
            "--c1--",
            "--b--",
        ],
        &["part 1, change-set part 1", "line 5", "nested inside a change set"],
    );
}

#[test]
fn get_inside_a_change_set() {
    request_error(
        &[
            "--b",
            "Content-Type: multipart/mixed; boundary=c",
            "",
            "--c",
            HTTP[0],
            "",
            "POST leads HTTP/1.1",
            "",
            "{}",
            "--c",
            HTTP[0],
            "",
            "get accounts HTTP/1.1",
            "",
            "--c--",
            "--b--",
        ],
        &[
            "part 1, change-set part 2",
            "line 13",
            "GET is not allowed inside a change set",
        ],
    );
}

#[test]
fn duplicate_content_id_in_one_change_set() {
    let member = |id: &'static str| ["--c", HTTP[0], id, "", "POST leads HTTP/1.1", "", "{}"];
    let mut lines = vec!["--b", "Content-Type: multipart/mixed; boundary=c", ""];
    lines.extend(member("Content-ID: 1"));
    lines.extend(member("Content-ID: 2"));
    lines.extend(member("Content-ID:1"));
    lines.extend(["--c--", "--b--"]);
    request_error(
        &lines,
        &[
            "part 1, change-set part 3",
            "duplicate Content-ID \"1\"",
            "change-set part 1 already uses it",
        ],
    );
}

#[test]
fn same_content_id_in_two_change_sets_is_fine() {
    let change_set = || BatchRequestItem::ChangeSet(vec![request(Some("1"), "POST", "leads", &[], "{}")]);
    let items = vec![change_set(), change_set()];
    let (content_type, body) = write_batch_request(&items);
    let boundary = boundary_from_content_type(&content_type).unwrap();
    assert_eq!(read_batch_request(&boundary, &body).unwrap(), items);
}

fn many_requests(lone: usize, in_change_set: usize) -> Vec<BatchRequestItem> {
    let post = || request(None, "POST", "leads", &[], "{}");
    let mut items: Vec<_> = (0..lone).map(|_| BatchRequestItem::Request(post())).collect();
    items.push(BatchRequestItem::ChangeSet(
        (0..in_change_set).map(|_| post()).collect(),
    ));
    items
}

#[test]
fn at_most_max_parts_requests() {
    let (content_type, body) = write_batch_request(&many_requests(MAX_PARTS - 2, 2));
    let boundary = boundary_from_content_type(&content_type).unwrap();
    assert_eq!(read_batch_request(&boundary, &body).unwrap().len(), MAX_PARTS - 1);

    // Change-set members count: 999 lone requests + a change set of 2 is 1001 requests.
    let (content_type, body) = write_batch_request(&many_requests(MAX_PARTS - 1, 2));
    let boundary = boundary_from_content_type(&content_type).unwrap();
    let error = read_batch_request(&boundary, &body).unwrap_err();
    assert!(
        error.message.contains("part 1000, change-set part 2"),
        "{}",
        error.message
    );
    assert!(error.message.contains("more than 1000 requests"), "{}", error.message);

    let (content_type, body) = write_batch_request(&many_requests(MAX_PARTS + 1, 0));
    let boundary = boundary_from_content_type(&content_type).unwrap();
    let error = read_batch_request(&boundary, &body).unwrap_err();
    assert!(error.message.contains("part 1001 "), "{}", error.message);
}
