//! Reading batch bodies: one envelope walk ([`read_envelope`]) shared by requests and responses,
//! with the `application/http` payloads parsed by [`super::message`].
//!
//! The walk enforces the envelope rules of contract §5: every part is `application/http` or a
//! `multipart/mixed` change set; change sets don't nest; a change set holds no `GET` and no
//! repeated Content-ID; at most [`MAX_PARTS`] requests in all. Everything else (what `$1` points
//! to, whether a method suits a URL) is the executor's business.

use super::message::InnerMessage;
use super::mime::{header, media_type, parse_header_block, split_parts, Body, Pos, RawPart, SplitError};
use super::{
    boundary_from_content_type, BatchError, BatchRequestItem, BatchResponseItem, HttpRequestPart, HttpResponsePart,
    MAX_PARTS,
};
use std::collections::HashMap;

/// Parses a `$batch` request body whose Content-Type carried `boundary`
/// (see [`boundary_from_content_type`]).
pub fn read_batch_request(boundary: &str, body: &[u8]) -> Result<Vec<BatchRequestItem>, BatchError> {
    Ok(read_envelope::<HttpRequestPart>(boundary, body)?
        .into_iter()
        .map(|item| match item {
            Item::Single(request) => BatchRequestItem::Request(request),
            Item::ChangeSet(members) => BatchRequestItem::ChangeSet(members),
        })
        .collect())
}

/// Parses a `$batch` response body whose Content-Type carried `boundary`.
pub fn read_batch_response(boundary: &str, body: &[u8]) -> Result<Vec<BatchResponseItem>, BatchError> {
    Ok(read_envelope::<HttpResponsePart>(boundary, body)?
        .into_iter()
        .map(|item| match item {
            Item::Single(response) => BatchResponseItem::Response(response),
            Item::ChangeSet(members) => BatchResponseItem::ChangeSet(members),
        })
        .collect())
}

enum Item<T> {
    Single(T),
    ChangeSet(Vec<T>),
}

/// What a part's MIME headers say it is.
enum PartKind {
    Http,
    ChangeSet { boundary: String },
}

struct PartHead {
    kind: PartKind,
    content_id: Option<String>,
    /// Offset of the payload, relative to the part.
    payload_start: usize,
}

fn read_envelope<T: InnerMessage>(boundary: &str, bytes: &[u8]) -> Result<Vec<Item<T>>, BatchError> {
    let body = Body::new(bytes);
    if boundary.is_empty() {
        return Err(BatchError::new("the batch boundary is empty"));
    }
    let parts = split_parts(boundary, bytes, 0).map_err(|e| split_error(&body, e, boundary, None, (0, bytes.len())))?;
    let mut items = Vec::with_capacity(parts.len());
    let mut requests = 0usize;
    for (index, part) in parts.iter().enumerate() {
        let pos = Pos {
            part: index + 1,
            member: None,
        };
        let head = read_part_head(&body, pos, part)?;
        let payload = &part.bytes[head.payload_start..];
        let payload_at = part.offset + head.payload_start;
        match head.kind {
            PartKind::Http => {
                count_request(&body, pos, part.offset, &mut requests)?;
                let mut message = T::parse(&body, pos, payload, payload_at)?;
                message.set_content_id(head.content_id);
                items.push(Item::Single(message));
            }
            PartKind::ChangeSet { boundary } => {
                let members = read_change_set::<T>(&body, pos, &boundary, payload, payload_at, &mut requests)?;
                items.push(Item::ChangeSet(members));
            }
        }
    }
    Ok(items)
}

fn read_change_set<T: InnerMessage>(
    body: &Body,
    outer: Pos,
    boundary: &str,
    bytes: &[u8],
    at: usize,
    requests: &mut usize,
) -> Result<Vec<T>, BatchError> {
    let parts = split_parts(boundary, bytes, at)
        .map_err(|e| split_error(body, e, boundary, Some(outer), (at, at + bytes.len())))?;
    let mut members = Vec::with_capacity(parts.len());
    // Content-ID -> member number that declared it first, for the duplicate message.
    let mut declared: HashMap<String, usize> = HashMap::new();
    for (index, part) in parts.iter().enumerate() {
        let pos = Pos {
            part: outer.part,
            member: Some(index + 1),
        };
        let head = read_part_head(body, pos, part)?;
        if let PartKind::ChangeSet { .. } = head.kind {
            return Err(body.error(
                pos,
                part.offset,
                "a change set is nested inside a change set; Dataverse allows only one level (batches and change sets can't be nested)",
            ));
        }
        count_request(body, pos, part.offset, requests)?;
        let payload_at = part.offset + head.payload_start;
        let mut message = T::parse(body, pos, &part.bytes[head.payload_start..], payload_at)?;
        message.check_change_set_member(body, pos, payload_at)?;
        if let Some(id) = &head.content_id {
            if let Some(first) = declared.insert(id.clone(), index + 1) {
                return Err(body.error(
                    pos,
                    part.offset,
                    format!("duplicate Content-ID {id:?} in this change set (change-set part {first} already uses it)"),
                ));
            }
        }
        message.set_content_id(head.content_id);
        members.push(message);
    }
    Ok(members)
}

fn count_request(body: &Body, pos: Pos, at: usize, requests: &mut usize) -> Result<(), BatchError> {
    *requests += 1;
    if *requests > MAX_PARTS {
        return Err(body.error(
            pos,
            at,
            format!("the batch holds more than {MAX_PARTS} requests (Dataverse's limit, change-set members included)"),
        ));
    }
    Ok(())
}

fn split_error(
    body: &Body,
    error: SplitError,
    boundary: &str,
    change_set: Option<Pos>,
    (start, end): (usize, usize),
) -> BatchError {
    let (what, at) = match error {
        SplitError::NoDelimiter => (
            format!("no '--{boundary}' delimiter line found (wrong boundary, or not a multipart body)"),
            start,
        ),
        SplitError::Unclosed { parts } => (
            format!(
                "{} {} never ends: missing closing delimiter '--{boundary}--' (the body is truncated)",
                if change_set.is_some() {
                    "change-set part"
                } else {
                    "part"
                },
                parts + 1
            ),
            end,
        ),
    };
    match change_set {
        None => body.envelope_error(at, what),
        Some(pos) => body.error(pos, at, format!("change set: {what}")),
    }
}

/// Reads a part's MIME headers and classifies it.
fn read_part_head(body: &Body, pos: Pos, part: &RawPart) -> Result<PartHead, BatchError> {
    if part.bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(body.error(
            pos,
            part.offset,
            "empty part: expected MIME headers starting with 'Content-Type: application/http'",
        ));
    }
    let block = parse_header_block(part.bytes, 0)
        .map_err(|e| body.error(pos, part.offset + e.at, format!("bad part header: {}", e.what)))?;
    if !block.terminated {
        return Err(body.error(
            pos,
            part.offset,
            "the part's MIME headers are not followed by a blank line and a payload: the part is truncated",
        ));
    }
    let Some(content_type) = header(&block.headers, "Content-Type") else {
        return Err(body.error(
            pos,
            part.offset,
            "missing Content-Type: a part must be 'application/http' or a 'multipart/mixed' change set",
        ));
    };
    let kind = match media_type(content_type).as_str() {
        "application/http" => PartKind::Http,
        "multipart/mixed" => PartKind::ChangeSet {
            boundary: boundary_from_content_type(content_type)
                .map_err(|e| body.error(pos, part.offset, format!("change set: {}", e.message)))?,
        },
        _ => {
            return Err(body.error(
                pos,
                part.offset,
                format!("Content-Type {content_type:?} is neither application/http nor multipart/mixed"),
            ))
        }
    };
    if let Some(encoding) = header(&block.headers, "Content-Transfer-Encoding") {
        // `binary` is what Dataverse documents; 7bit/8bit are identity encodings too.
        if !["binary", "7bit", "8bit"]
            .iter()
            .any(|known| encoding.eq_ignore_ascii_case(known))
        {
            return Err(body.error(
                pos,
                part.offset,
                format!("unsupported Content-Transfer-Encoding {encoding:?} (expected binary)"),
            ));
        }
    }
    Ok(PartHead {
        kind,
        content_id: header(&block.headers, "Content-ID").map(str::to_string),
        payload_start: block.body_start,
    })
}
