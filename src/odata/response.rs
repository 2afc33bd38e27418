//! Reading response bodies: pages, plain JSON, write results and `$batch` parts. Pure functions
//! over status and bytes, shared by top-level calls and batch parts, so both are held to the same
//! shape checks and produce the same errors.

use super::error::{UpstreamError, UpstreamErrorKind};
use super::escape;
use super::record::RecordSeed;
use crate::batch::HttpResponsePart;
use crate::model::{model, Entity};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// One page of rows. Each row is shared: the caches, coalesced readers and resolvers hold the
/// same rows, and a copy of a page copies no record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub value: Vec<super::Record>,
    /// `@odata.nextLink`: absolute, to be used unchanged (contract §3).
    pub next_link: Option<String>,
    /// `@odata.count` (capped at 5000 by Dataverse) when `$count=true` was asked.
    pub count: Option<u64>,
}

/// The outcome of a POST, PATCH or DELETE.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResult {
    pub status: u16,
    /// The record's GUID, from `OData-EntityId` or the returned representation.
    pub entity_id: Option<String>,
    /// The representation (`Prefer: return=representation`), if one came back.
    pub body: Option<Value>,
}

/// Parses JSON, skipping a UTF-8 BOM; an empty body is `Null`.
pub fn parse_json(status: u16, body: &[u8]) -> Result<Value, UpstreamError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    // Checked as UTF-8 once, then parsed as text: `from_slice` checks every string again (3% of
    // a large nested read's instructions). A body that is not UTF-8 goes the slow way, for its
    // error (truncated inside a character, or invalid).
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    parsed.map_err(|e| {
        let what = if e.is_eof() {
            format!("is truncated JSON ({e})")
        } else {
            format!("is not valid JSON ({e})")
        };
        UpstreamError::invalid_response(Some(status), &what, body)
    })
}

/// A collection page of `entity`'s rows read straight into records, expansions taken (see
/// [`super::record::RecordSeed`]), without a JSON tree in between. `None` when the body does
/// not read that way: a single record, a row that is not an object, anything invalid. The caller
/// then reads it with [`parse_page`], for the page or the error that gives.
pub fn read_page(body: &[u8], entity: Option<&'static Entity>) -> Option<Page> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let page = PageSeed(entity).deserialize(&mut de).ok()??;
    de.end().ok()?;
    Some(page)
}

/// Reads a collection page; `None` for a single record (`/$entity`) or no `value` list.
struct PageSeed(Option<&'static Entity>);

impl<'de> DeserializeSeed<'de> for PageSeed {
    type Value = Option<Page>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Page>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed {
    type Value = Option<Page>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OData collection")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Page>, A::Error> {
        let (mut rows, mut next_link, mut count) = (None, None, None);
        while let Some(name) = map.next_key_seed(TopKey)? {
            match name {
                Top::Value => rows = Some(map.next_value_seed(RowsSeed(self.0))?),
                Top::Context => {
                    // A single record: stop here, it is read the other way.
                    if map.next_value::<Cow<'_, str>>()?.ends_with("/$entity") {
                        return Err(de::Error::custom("a single record"));
                    }
                }
                Top::NextLink => next_link = map.next_value::<Option<String>>()?,
                Top::Count => count = map.next_value::<Value>()?.as_u64(),
                Top::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(rows.map(|value| Page {
            value,
            next_link,
            count,
        }))
    }
}

/// The names a collection page's reader looks for.
enum Top {
    Value,
    Context,
    NextLink,
    Count,
    Other,
}

struct TopKey;

impl<'de> DeserializeSeed<'de> for TopKey {
    type Value = Top;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TopKey {
    type Value = Top;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Top, E> {
        Ok(match v {
            "value" => Top::Value,
            "@odata.context" => Top::Context,
            "@odata.nextLink" => Top::NextLink,
            "@odata.count" => Top::Count,
            _ => Top::Other,
        })
    }
}

/// The `value` list of a collection page, each row a record (anything else is an error: the
/// caller reads the body again the slow way, for the page or its error).
struct RowsSeed(Option<&'static Entity>);

impl<'de> DeserializeSeed<'de> for RowsSeed {
    type Value = Vec<super::Record>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<super::Record>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed {
    type Value = Vec<super::Record>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<super::Record>, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(row) = seq.next_element_seed(RecordSeed(self.0))? {
            rows.push(std::sync::Arc::new(row));
        }
        Ok(rows)
    }
}

/// A collection page (`{"value":[...], "@odata.nextLink":..., "@odata.count":...}`) or a single
/// record, which becomes a one-row page.
pub fn parse_page(status: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    page_of(status, parse_json(status, body)?, body)
}

/// Whether a parsed body is one record (`/$entity`, or no `value` list) rather than a page.
fn is_single(obj: &serde_json::Map<String, Value>) -> bool {
    let entity = obj
        .get("@odata.context")
        .and_then(Value::as_str)
        .is_some_and(|c| c.ends_with("/$entity"));
    entity || !obj.get("value").is_some_and(Value::is_array)
}

/// The rows of a parsed page (or its one record), to be put in the model's spelling before
/// [`page_of`] makes records of them.
pub fn rows_mut(json: &mut Value) -> impl Iterator<Item = &mut serde_json::Map<String, Value>> {
    let Value::Object(obj) = json else {
        return Vec::new().into_iter();
    };
    if is_single(obj) {
        return vec![obj].into_iter();
    }
    let rows: Vec<&mut serde_json::Map<String, Value>> = match obj.get_mut("value") {
        Some(Value::Array(rows)) => rows.iter_mut().filter_map(Value::as_object_mut).collect(),
        _ => Vec::new(),
    };
    rows.into_iter()
}

/// [`parse_page`] of a body parsed already (`body` is for errors).
pub fn page_of(status: u16, json: Value, body: &[u8]) -> Result<Page, UpstreamError> {
    let Value::Object(mut obj) = json else {
        return Err(UpstreamError::invalid_response(
            Some(status),
            "is not a JSON object (expected an OData collection or entity)",
            body,
        ));
    };
    if is_single(&obj) {
        return Ok(Page {
            value: vec![super::UpstreamRecord::new(obj)],
            next_link: None,
            count: None,
        });
    }
    let Some(Value::Array(items)) = obj.remove("value") else {
        unreachable!("checked to be an array above")
    };
    let mut value = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(row) => value.push(super::UpstreamRecord::new(row)),
            _ => {
                return Err(UpstreamError::invalid_response(
                    Some(status),
                    "has a non-object row in \"value\"",
                    body,
                ))
            }
        }
    }
    let next_link = match obj.get("@odata.nextLink") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(UpstreamError::invalid_response(
                Some(status),
                "has a non-string @odata.nextLink",
                body,
            ))
        }
    };
    let count = obj.get("@odata.count").and_then(Value::as_u64);
    Ok(Page {
        value,
        next_link,
        count,
    })
}

/// The GUID between the last parentheses of an `OData-EntityId` URL.
pub fn entity_id_from_url(url: &str) -> Option<String> {
    let open = url.rfind('(')?;
    let close = url[open..].find(')')? + open;
    escape::guid(&url[open + 1..close]).ok()
}

/// A write's result from its status, `OData-EntityId` header and body. `entity_set` names the
/// written set, whose primary key is read from a returned representation.
pub fn write_result(
    status: u16,
    entity_id_header: Option<&str>,
    body: &[u8],
    entity_set: &str,
) -> Result<WriteResult, UpstreamError> {
    let body = match parse_json(status, body)? {
        Value::Null => None,
        v => Some(v),
    };
    let from_body = || {
        let pk = &model().by_entity_set(entity_set)?.primary_key;
        let id = body.as_ref()?.get(pk)?.as_str()?;
        escape::guid(id).ok()
    };
    let entity_id = entity_id_header.and_then(entity_id_from_url).or_else(from_body);
    Ok(WriteResult {
        status,
        entity_id,
        body,
    })
}

fn part_header<'a>(part: &'a HttpResponsePart, name: &str) -> Option<&'a str> {
    part.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A batch response part as a result: its JSON body (`None` when empty) or its error.
pub fn part_result(part: &HttpResponsePart) -> Result<Option<Value>, UpstreamError> {
    if !(200..300).contains(&part.status) {
        return Err(UpstreamError::from_status(
            part.status,
            part_header(part, "retry-after"),
            &part.body,
        ));
    }
    Ok(match parse_json(part.status, &part.body)? {
        Value::Null => None,
        v => Some(v),
    })
}

/// A batch GET part as a page (the same shape rules as [`parse_page`]).
pub fn part_page(part: &HttpResponsePart) -> Result<Page, UpstreamError> {
    if !(200..300).contains(&part.status) {
        return Err(UpstreamError::from_status(
            part.status,
            part_header(part, "retry-after"),
            &part.body,
        ));
    }
    parse_page(part.status, &part.body)
}

/// A batch write part as a [`WriteResult`], `entity_set` as in [`write_result`].
pub fn part_write(part: &HttpResponsePart, entity_set: &str) -> Result<WriteResult, UpstreamError> {
    if !(200..300).contains(&part.status) {
        return Err(UpstreamError::from_status(
            part.status,
            part_header(part, "retry-after"),
            &part.body,
        ));
    }
    write_result(part.status, part_header(part, "odata-entityid"), &part.body, entity_set)
}

/// The one kind that says a row was asked for by key and is not there.
pub fn is_not_found(e: &UpstreamError) -> bool {
    e.kind == UpstreamErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_single_records() {
        let p = parse_page(
            200,
            br#"{"@odata.context":"x","value":[{"a":1}],"@odata.nextLink":"http://h/n","@odata.count":7}"#,
        )
        .unwrap();
        assert_eq!(p.value.len(), 1);
        assert_eq!(p.next_link.as_deref(), Some("http://h/n"));
        assert_eq!(p.count, Some(7));
        let one = parse_page(200, br#"{"@odata.context":"x/$entity","value":[1],"b":2}"#).unwrap();
        assert_eq!(one.value.len(), 1);
        assert_eq!(one.value[0]["b"], 2);
    }

    /// What `read_page` reads is what `parse_page` and `take_expanded` make of the same body;
    /// what it does not read (a single record, a row that is not an object, a broken body) it
    /// leaves to `parse_page`, which gives the page or the error.
    #[test]
    fn a_page_read_straight_into_records_is_the_page_parsed_then_taken() {
        let rr = model().by_entity_set("mshr_hcmrecruitingrequestentities").unwrap();
        let positions = &rr.graphql.relations.iter().find(|r| r.field == "positions").unwrap();
        let body = serde_json::json!({
            "@odata.context": "x",
            "value": [
                {"mshr_recruitingrequestid": "R1", positions.navigation_property.as_str(): [{"mshr_positionid": "P1"}]},
                {"mshr_recruitingrequestid": "R2", "custom": {"a": [1, "x\"y"]}, positions.navigation_property.as_str(): []},
            ],
            "@odata.nextLink": "http://h/n?$skiptoken=a%2Cb",
            "@odata.count": 2,
            "@odata.deltaLink": {"ignored": true},
        });
        let body = serde_json::to_vec(&body).unwrap();
        let read = read_page(&body, Some(rr)).expect("a collection page");
        let mut parsed = parse_page(200, &body).unwrap();
        for row in &mut parsed.value {
            std::sync::Arc::make_mut(row).take_expanded(rr);
        }
        assert_eq!(read, parsed);
        assert_eq!(read.next_link.as_deref(), Some("http://h/n?$skiptoken=a%2Cb"));
        assert_eq!(read.count, Some(2));
        assert!(read.value[0].expanded(&positions.navigation_property).is_some());
        assert_eq!(read.value[1]["custom"], serde_json::json!({"a": [1, "x\"y"]}));
        // Without an entity, nothing is an expansion.
        let plain = read_page(&body, None).unwrap();
        assert_eq!(plain, parse_page(200, &body).unwrap());

        for other in [
            &br#"{"@odata.context":"x/$entity","value":[1],"b":2}"#[..],
            br#"{"value":[{"a":1},2]}"#,
            br#"{"value":{"a":1}}"#,
            br#"{"b":2}"#,
            br#"{"value":[{"a":1}]"#,
            br#"{"value":[{"a":1}]} x"#,
            b"<html>",
        ] {
            assert_eq!(read_page(other, Some(rr)), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn bad_bodies_are_invalid_responses() {
        for body in [
            &b"[1,2]"[..],
            b"{\"value\":[1]}",
            b"{\"value\":[",
            b"nope",
            b"{\"value\":[],\"@odata.nextLink\":3}",
        ] {
            let e = parse_page(200, body).unwrap_err();
            assert_eq!(
                e.code(),
                "UPSTREAM_INVALID_RESPONSE",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_page(200, b"{\"value\":[")
            .unwrap_err()
            .message
            .contains("truncated"));
        assert_eq!(parse_json(200, b"\xEF\xBB\xBF42").unwrap(), 42);
    }

    #[test]
    fn entity_ids_come_from_the_header_or_the_body() {
        let g = "00000d2d-0000-0000-7317-005001000000";
        assert_eq!(
            entity_id_from_url(&format!("http://h/api/data/v9.2/x({g})")).as_deref(),
            Some(g)
        );
        assert_eq!(entity_id_from_url("http://h/x(nope)"), None);
        let e = &model().entities[0];
        let body = format!(r#"{{"{}":"{}"}}"#, e.primary_key, g.to_uppercase());
        let w = write_result(201, None, body.as_bytes(), &e.entity_set).unwrap();
        assert_eq!(w.entity_id.as_deref(), Some(g));
        assert!(w.body.is_some());
    }

    #[test]
    fn batch_parts_map_to_results() {
        let part = |status: u16, body: &str| HttpResponsePart {
            content_id: None,
            status,
            reason: String::new(),
            headers: vec![("Retry-After".into(), "3".into())],
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(part_result(&part(204, "")).unwrap(), None);
        assert_eq!(part_page(&part(200, r#"{"value":[{}]}"#)).unwrap().value.len(), 1);
        let e = part_result(&part(429, "")).unwrap_err();
        assert_eq!(e.code(), "UPSTREAM_THROTTLED");
        let e = part_page(&part(404, r#"{"error":{"code":"","message":"gone"}}"#)).unwrap_err();
        assert!(is_not_found(&e) && e.message == "gone");
    }
}
