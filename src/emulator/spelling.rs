//! Property spellings of the upstream the emulator plays (`--property-spelling`,
//! `--omit-property`, `--extra-property`, `--omit-navigation`), so that the gateway's `$metadata`
//! reconciliation can be tested against a service that does not spell the model as it is.
//!
//! The store keeps the model's names; requests and responses are translated at the service's
//! boundary ([`Service::handle`](super::service::Service::handle) and each change-set part):
//!
//! - `$metadata` and rows use only the upstream's names: renamed properties under their
//!   spelling, omitted properties and navigation properties absent, extra (customer) columns as
//!   nullable `Edm.String`s, always null in rows;
//! - a name the upstream does not have (a model name spelled otherwise, an omitted property or
//!   navigation) in a path, `$select`, `$filter`, `$orderby`, `$expand` or a write body is
//!   Dataverse's 400 `0x80060888` "Could not find a property named '…' on type '…'." (a path
//!   segment: 404, as for any unknown segment);
//! - customer columns may be selected; filtering, sorting or writing them is a 400 (the emulator
//!   does not store them), and a nested `$select` of one is refused as unknown.

use super::error::ODataError;
use super::service::{parse_target, ODataRequest, ODataResponse, Service, Target};
use crate::model::naming::{EntityNaming, NameError, Naming, Toward};
use crate::model::{model, Entity};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The spelling settings, each entry as its command-line flag takes it. `ENTITY` is a logical
/// name or an entity set name.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SpellingSettings {
    /// `ENTITY.MODEL_NAME=UPSTREAM_NAME`: the upstream serves the property under another name
    /// (in `$metadata`, rows, query options and write bodies). Repeatable.
    #[arg(long = "property-spelling", value_name = "ENTITY.MODEL_NAME=UPSTREAM_NAME")]
    pub property_spellings: Vec<String>,
    /// `ENTITY.NAME`: the property does not exist upstream. Repeatable.
    #[arg(long = "omit-property", value_name = "ENTITY.NAME")]
    pub omit_properties: Vec<String>,
    /// `ENTITY.NAME`: a customer column (`Edm.String`, nullable, always null) in `$metadata` and
    /// rows. Repeatable.
    #[arg(long = "extra-property", value_name = "ENTITY.NAME")]
    pub extra_properties: Vec<String>,
    /// `ENTITY.NAV`: the navigation property does not exist upstream (not in `$metadata`;
    /// `$expand` and deep insert through it are refused). Repeatable.
    #[arg(long = "omit-navigation", value_name = "ENTITY.NAV")]
    pub omit_navigations: Vec<String>,
    /// Answer `GET $metadata` with a 500, as an upstream whose metadata cannot be read.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metadata_fails: bool,
}

fn entity_and_name(setting: &str) -> Result<(&'static Entity, &str), String> {
    let (entity, name) = setting
        .split_once('.')
        .ok_or_else(|| format!("'{setting}': expected ENTITY.NAME"))?;
    let found = model()
        .by_logical_name(entity)
        .or_else(|| model().by_entity_set(entity));
    let entity = found.ok_or_else(|| format!("'{setting}': no entity '{entity}' (a logical name or entity set)"))?;
    Ok((entity, name))
}

fn property_of<'a>(setting: &str, entity: &Entity, name: &'a str) -> Result<&'a str, String> {
    match entity.property(name) {
        Some(_) => Ok(name),
        None => Err(format!("'{setting}': {} has no property '{name}'", entity.logical_name)),
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SpellingSettings {
    /// The naming these settings describe; `Err` names the setting that is wrong.
    pub fn naming(&self) -> Result<Naming, String> {
        let mut entities: BTreeMap<String, EntityNaming> = BTreeMap::new();
        for s in &self.property_spellings {
            let (left, upstream) = s
                .split_once('=')
                .ok_or_else(|| format!("'{s}': expected ENTITY.MODEL_NAME=UPSTREAM_NAME"))?;
            let (e, name) = entity_and_name(left)?;
            let name = property_of(s, e, name)?;
            if name == e.primary_key {
                return Err(format!("'{s}': the primary key keeps its name"));
            }
            if !is_name(upstream) || e.property(upstream).is_some() {
                return Err(format!("'{s}': '{upstream}' is not a new property name"));
            }
            entry(&mut entities, e)
                .renamed
                .insert(name.to_string(), upstream.to_string());
        }
        for s in &self.omit_properties {
            let (e, name) = entity_and_name(s)?;
            let name = property_of(s, e, name)?;
            if name == e.primary_key {
                return Err(format!("'{s}': the primary key cannot be omitted"));
            }
            entry(&mut entities, e).missing.insert(name.to_string());
        }
        for s in &self.extra_properties {
            let (e, name) = entity_and_name(s)?;
            if !is_name(name) || e.property(name).is_some() {
                return Err(format!("'{s}': '{name}' is not a new property name"));
            }
            entry(&mut entities, e).extra.insert(name.to_string());
        }
        for s in &self.omit_navigations {
            let (e, nav) = entity_and_name(s)?;
            if e.navigation(nav).is_none() {
                return Err(format!("'{s}': {} has no navigation property '{nav}'", e.logical_name));
            }
            entry(&mut entities, e).missing_navigations.insert(nav.to_string());
        }
        Ok(Naming::new(entities))
    }
}

fn entry<'a>(entities: &'a mut BTreeMap<String, EntityNaming>, e: &Entity) -> &'a mut EntityNaming {
    entities.entry(e.logical_name.clone()).or_default()
}

/// A request in the model's spelling, and what its response needs to be spelled back.
pub struct Spelled {
    pub request: ODataRequest,
    /// The entity of the rows the response carries, if it carries rows.
    rows: Option<&'static Entity>,
    /// The customer columns the top-level `$select` named (`None`: no `$select`, all of them).
    selected: Option<Vec<String>>,
}

fn name_error(e: NameError) -> ODataError {
    ODataError::bad_query(e.to_string())
}

/// `+` is a space in a query string, as the emulator's own parsing reads it.
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'$')
        .remove(b'_')
        .remove(b'-')
        .remove(b'.')
        .remove(b',')
        .remove(b'(')
        .remove(b')')
        .remove(b'\'');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The path with its property or navigation segment in the model's spelling; a name the
/// upstream does not have is an unknown segment (404).
fn path_to_model(naming: &Naming, path: &str) -> Result<String, ODataError> {
    let Some((first, seg)) = path.split_once('/') else {
        return Ok(path.to_string());
    };
    let set = first.split('(').next().unwrap_or(first);
    let Some(entity) = model().by_entity_set(set) else {
        return Ok(path.to_string());
    };
    if seg.is_empty() || seg.starts_with('$') || seg.contains('/') {
        return Ok(path.to_string());
    }
    let seg = naming
        .name(entity, seg, Toward::Model)
        .map_err(|_| ODataError::segment_not_found(seg))?;
    Ok(format!("{first}/{seg}"))
}

/// The query string in `toward`'s spelling (options whose text does not change keep their
/// bytes), and the customer columns its `$select` names.
fn query(
    naming: &Naming,
    entity: &Entity,
    raw: &str,
    toward: Toward,
    extras: &[String],
) -> Result<(String, Option<Vec<String>>), NameError> {
    let mut pairs = Vec::new();
    let mut selected = None;
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(k), decode(v));
        let mut t = naming.query_option(entity, &key, &value, toward)?;
        if key == "$select" {
            t.extras.extend(extras.iter().cloned());
            if toward == Toward::Upstream && !t.extras.is_empty() {
                t.value = format!("{},{}", t.value, t.extras.join(","));
            }
            selected = Some(t.extras);
        }
        match t.value == value {
            true => pairs.push(pair.to_string()),
            false => pairs.push(format!("{k}={}", encode(&t.value))),
        }
    }
    Ok((pairs.join("&"), selected))
}

/// The entity whose rows (and query options) a target is about.
fn rows_entity(target: &Target) -> Option<&'static Entity> {
    match target {
        Target::Collection(e) | Target::Record(e, _) => Some(*e),
        Target::Navigation(e, _, nav) => e.navigation(nav).and_then(|r| model().by_logical_name(&r.target)),
        _ => None,
    }
}

impl Service {
    /// `req` in the model's spelling (unchanged when the emulator spells the model as it is, and
    /// for `$batch`, whose parts are spelled one by one).
    pub fn spell(&self, req: &ODataRequest) -> Result<Spelled, ODataError> {
        let mut request = req.clone();
        let unchanged = |request| Spelled {
            request,
            rows: None,
            selected: None,
        };
        if self.naming.is_identity() {
            return Ok(unchanged(request));
        }
        request.path = path_to_model(&self.naming, &req.path)?;
        let Ok(target) = parse_target(&request.path) else {
            return Ok(unchanged(request));
        };
        let entity = match &target {
            Target::Count(e) | Target::Property(e, ..) => Some(*e),
            other => rows_entity(other),
        };
        let Some(entity) = entity else {
            return Ok(unchanged(request));
        };
        let (q, selected) = query(&self.naming, entity, &req.query, Toward::Model, &[]).map_err(name_error)?;
        request.query = q;
        if !matches!(target, Target::Property(..)) && !req.body.is_empty() {
            if let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&req.body) {
                self.naming.body(entity, &mut body, Toward::Model).map_err(name_error)?;
                request.body = serde_json::to_vec(&Value::Object(body)).expect("JSON serialises");
            }
        }
        Ok(Spelled {
            request,
            rows: rows_entity(&target),
            selected,
        })
    }

    /// A response to a [`Spelled`] request in the upstream's spelling: rows, `@odata.context`
    /// and `@odata.nextLink`.
    pub fn unspell(&self, spelled: &Spelled, mut resp: ODataResponse) -> ODataResponse {
        let Some(entity) = spelled.rows else { return resp };
        let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&resp.body) else {
            return resp;
        };
        if body.contains_key("error") {
            return resp;
        }
        let selected = spelled.selected.as_deref();
        match body.get_mut("value") {
            Some(Value::Array(rows)) => rows
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(|r| self.naming.row_to_upstream(entity, r, selected)),
            _ => self.naming.row_to_upstream(entity, &mut body, selected),
        }
        self.spell_links(entity, &mut body, selected.unwrap_or_default());
        resp.body = serde_json::to_vec(&Value::Object(body)).expect("JSON serialises");
        resp
    }

    fn spell_links(&self, entity: &Entity, body: &mut Map<String, Value>, extras: &[String]) {
        if let Some(Value::String(link)) = body.get_mut("@odata.nextLink") {
            if let Some((path, raw)) = link.split_once('?') {
                if let Ok((q, _)) = query(&self.naming, entity, raw, Toward::Upstream, extras) {
                    *link = format!("{path}?{q}");
                }
            }
        }
        if let Some(Value::String(context)) = body.get_mut("@odata.context") {
            let (Some(open), Some(close)) = (
                context.find("#").and_then(|h| context[h..].find('(').map(|o| h + o)),
                context.rfind(')'),
            ) else {
                return;
            };
            if close > open {
                let list = &context[open + 1..close];
                let mut names: Vec<String> = list
                    .split(',')
                    .filter_map(|n| self.naming.name(entity, n, Toward::Upstream).ok())
                    .collect();
                names.extend(extras.iter().cloned());
                *context = format!("{}({}){}", &context[..open], names.join(","), &context[close + 1..]);
            }
        }
    }

    /// `$metadata` as the upstream spells it, when the settings change the model (or its 500
    /// with `--metadata-fails`).
    pub(super) fn spelled_metadata(&self, req: &ODataRequest) -> Option<ODataResponse> {
        if req.method != "GET" || req.path.trim_end_matches('/') != "$metadata" {
            return None;
        }
        if self.metadata_fails {
            let e = ODataError::new(
                500,
                super::error::codes::SERVER,
                "The metadata of this service cannot be read (--metadata-fails).",
            );
            return Some(ODataResponse::error(&e));
        }
        if self.naming.is_identity() {
            return None;
        }
        Some(ODataResponse {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/xml".into()),
                ("OData-Version".into(), "4.0".into()),
            ],
            body: super::metadata::csdl_spelled(&self.naming).into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_entities_by_logical_name_or_set_and_are_checked() {
        let s = SpellingSettings {
            property_spellings: vec!["mshr_dirpartycontactentities.mshr_ismobilephone=mshr_ismobile".into()],
            omit_properties: vec!["mshr_dirpartycontactentity.mshr_description".into()],
            extra_properties: vec!["mshr_dirpartycontactentity.cr_x".into()],
            omit_navigations: vec!["mshr_dirpartycontactentity.mshr_FK_Person_id".into()],
            metadata_fails: false,
        };
        let naming = s.naming().unwrap();
        let n = &naming.entities()["mshr_dirpartycontactentity"];
        assert_eq!(n.renamed["mshr_ismobilephone"], "mshr_ismobile");
        assert!(n.missing.contains("mshr_description") && n.extra.contains("cr_x"));
        assert!(n.missing_navigations.contains("mshr_FK_Person_id"));
        for bad in [
            SpellingSettings {
                omit_properties: vec!["nothing.mshr_x".into()],
                ..Default::default()
            },
            SpellingSettings {
                omit_properties: vec!["mshr_dirpartycontactentity.mshr_nope".into()],
                ..Default::default()
            },
            SpellingSettings {
                property_spellings: vec!["mshr_dirpartycontactentity.mshr_locator".into()],
                ..Default::default()
            },
            SpellingSettings {
                extra_properties: vec!["mshr_dirpartycontactentity.mshr_locator".into()],
                ..Default::default()
            },
            SpellingSettings {
                omit_navigations: vec!["mshr_dirpartycontactentity.mshr_FK_Nope".into()],
                ..Default::default()
            },
        ] {
            assert!(bad.naming().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_spelled_csdl_uses_only_the_upstreams_names() {
        let s = SpellingSettings {
            property_spellings: vec!["mshr_dirpartycontactentity.mshr_ismobilephone=mshr_ismobile".into()],
            omit_properties: vec!["mshr_dirpartycontactentity.mshr_description".into()],
            extra_properties: vec!["mshr_dirpartycontactentity.cr_x".into()],
            omit_navigations: vec!["mshr_dirpartycontactentity.mshr_FK_Person_id".into()],
            metadata_fails: false,
        };
        let csdl = super::super::metadata::csdl_spelled(&s.naming().unwrap());
        let start = csdl.find("<EntityType Name=\"mshr_dirpartycontactentity\">").unwrap();
        let contact = &csdl[start..start + csdl[start..].find("</EntityType>").unwrap()];
        assert!(contact.contains("Name=\"mshr_ismobile\"") && !contact.contains("mshr_ismobilephone"));
        assert!(
            !contact.contains("\"mshr_description\"")
                && contact.contains("<Property Name=\"cr_x\" Type=\"Edm.String\" />")
        );
        assert!(!contact.contains("mshr_FK_Person_id"));
        assert_eq!(
            super::super::metadata::csdl_spelled(&Naming::default()),
            super::super::metadata::csdl()
        );
    }
}
