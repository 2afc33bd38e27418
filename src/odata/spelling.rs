//! The upstream's spelling at the client boundary: everything above [`Upstream`] speaks the
//! model's names; URLs and write bodies are translated to the upstream's names on the way out,
//! and rows back to the model's on the way in (see [`crate::model::naming`]).
//!
//! With the model's own spelling (no reconciliation, or an exact match) nothing is touched. A
//! query option whose translation is the same text keeps its bytes, so `@odata.nextLink`s are
//! followed unchanged (contract §3). A name the upstream lacks is dropped from `$select` and
//! refused (before sending) in `$filter`, `$orderby`, `$expand` and bodies.

use super::client::{first_segment, Upstream};
use super::error::{UpstreamError, UpstreamErrorKind};
use super::escape::percent_encode_query_value;
use crate::batch::{BatchRequestItem, BatchResponseItem, HttpResponsePart};
use crate::model::naming::{NameError, Naming, Toward};
use crate::model::{model, Entity};
use serde_json::{Map, Value};

fn refused(e: NameError) -> UpstreamError {
    UpstreamError::not_sent(
        UpstreamErrorKind::BadRequest,
        format!(
            "not sent: the upstream's metadata has no property '{}' on {}",
            e.name, e.entity
        ),
    )
}

/// `url` in the upstream's spelling (`entity` is the one its path addresses).
pub fn url_to_upstream(naming: &Naming, entity: &Entity, url: &str) -> Result<String, UpstreamError> {
    let Some((path, query)) = url.split_once('?') else {
        return Ok(url.to_string());
    };
    let mut pairs = Vec::new();
    for pair in query.split('&') {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded_key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        let value = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let t = naming
            .query_option(entity, &decoded_key, &value, Toward::Upstream)
            .map_err(refused)?;
        if t.value == value {
            pairs.push(pair.to_string());
        } else {
            pairs.push(format!("{key}={}", percent_encode_query_value(&t.value)));
        }
    }
    Ok(format!("{path}?{}", pairs.join("&")))
}

impl Upstream {
    /// The model entity an absolute upstream URL addresses (by its first path segment).
    pub(super) fn entity_of(&self, absolute: &str) -> Option<&'static Entity> {
        model().by_entity_set(&first_segment(&self.config().service_root, absolute))
    }

    /// An absolute URL in the upstream's spelling.
    pub(super) fn spelled_url(&self, absolute: &str) -> Result<String, UpstreamError> {
        let naming = self.naming();
        match self.entity_of(absolute) {
            Some(entity) if !naming.is_identity() => url_to_upstream(&naming, entity, absolute),
            _ => Ok(absolute.to_string()),
        }
    }

    /// A write body in the upstream's spelling.
    pub(super) fn spelled_body(&self, absolute: &str, body: &Value) -> Result<Value, UpstreamError> {
        let naming = self.naming();
        let mut body = body.clone();
        if let (Some(entity), Some(map), false) = (self.entity_of(absolute), body.as_object_mut(), naming.is_identity())
        {
            naming.body(entity, map, Toward::Upstream).map_err(refused)?;
        }
        Ok(body)
    }

    /// Rows read from `absolute` in the model's spelling.
    pub(super) fn rows_to_model<'a>(&self, absolute: &str, rows: impl Iterator<Item = &'a mut Map<String, Value>>) {
        let naming = self.naming();
        if let (Some(entity), false) = (self.entity_of(absolute), naming.is_identity()) {
            rows.for_each(|r| naming.row_to_model(entity, r));
        }
    }
}

impl Upstream {
    /// A `$batch`'s parts in the upstream's spelling, and the entity each part addresses (in
    /// order, for [`Upstream::batch_rows_to_model`]).
    pub(super) fn spelled_batch(
        &self,
        mut items: Vec<BatchRequestItem>,
    ) -> Result<(Vec<BatchRequestItem>, Vec<Option<&'static Entity>>), UpstreamError> {
        let mut entities = Vec::new();
        if self.naming().is_identity() {
            return Ok((items, entities));
        }
        for item in &mut items {
            let parts = match item {
                BatchRequestItem::Request(p) => std::slice::from_mut(p),
                BatchRequestItem::ChangeSet(ps) => ps.as_mut_slice(),
            };
            for part in parts {
                let absolute = self.absolute_url(&part.url).ok().filter(|_| !part.url.starts_with('$'));
                let entity = absolute.as_deref().and_then(|a| self.entity_of(a));
                if let Some(a) = absolute.filter(|_| entity.is_some()) {
                    part.url = self.spelled_url(&a)?;
                    if let Ok(body) = serde_json::from_slice::<Value>(&part.body) {
                        part.body = serde_json::to_vec(&self.spelled_body(&a, &body)?).expect("JSON serialises");
                    }
                }
                entities.push(entity);
            }
        }
        Ok((items, entities))
    }

    /// The rows in a `$batch`'s responses in the model's spelling (parts matched to `entities`
    /// by position; an answer with fewer parts, a refusal, carries no rows).
    pub(super) fn batch_rows_to_model(&self, entities: &[Option<&'static Entity>], items: &mut [BatchResponseItem]) {
        let naming = self.naming();
        let parts: Vec<&mut HttpResponsePart> = items
            .iter_mut()
            .flat_map(|i| match i {
                BatchResponseItem::Response(p) => std::slice::from_mut(p).iter_mut(),
                BatchResponseItem::ChangeSet(ps) => ps.iter_mut(),
            })
            .collect();
        if naming.is_identity() || parts.len() != entities.len() {
            return;
        }
        for (part, entity) in parts.into_iter().zip(entities) {
            let (Some(entity), Ok(Value::Object(mut obj))) = (entity, serde_json::from_slice::<Value>(&part.body))
            else {
                continue;
            };
            match obj.get_mut("value") {
                Some(Value::Array(rows)) => rows
                    .iter_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(|r| naming.row_to_model(entity, r)),
                _ => naming.row_to_model(entity, &mut obj),
            }
            part.body = serde_json::to_vec(&Value::Object(obj)).expect("JSON serialises");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::naming::EntityNaming;
    use std::collections::BTreeMap;

    #[test]
    fn urls_are_translated_option_by_option_and_unchanged_options_keep_their_bytes() {
        let contact = model().by_logical_name("mshr_dirpartycontactentity").unwrap();
        let mut n = EntityNaming::default();
        n.renamed.insert("mshr_ismobilephone".into(), "mshr_ismobile".into());
        n.missing.insert("mshr_description".into());
        let naming = Naming::new(BTreeMap::from([(contact.logical_name.clone(), n)]));
        let url = "mshr_dirpartycontactentities?$select=mshr_description,mshr_ismobilephone&$filter=mshr_locator%20eq%20'a%2Bb'&$skiptoken=x%3D";
        let out = url_to_upstream(&naming, contact, url).unwrap();
        assert_eq!(
            out,
            "mshr_dirpartycontactentities?$select=mshr_ismobile&$filter=mshr_locator%20eq%20'a%2Bb'&$skiptoken=x%3D"
        );
        let refused = url_to_upstream(&naming, contact, "x?$orderby=mshr_description").unwrap_err();
        assert_eq!(refused.kind, UpstreamErrorKind::BadRequest);
    }
}
