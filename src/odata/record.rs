//! One record as read from the upstream, shared ([`Record`]): its properties, as a JSON object
//! (what it dereferences to), and apart from them the records an `$expand` brought along.
//!
//! The expanded records are taken out of the row once, when its page is read and the row is
//! still the reader's alone, and each becomes a [`Record`] of its own. The loaders' caches,
//! which hold records, then take them as they are: a record shared by a parent, a cache and a
//! resolver is never copied (copying them was 8% of the instructions of a nested read with
//! `$expand` pushdown).

use crate::model::{model, Entity};
use serde_json::{Map, Value};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A record, shared by the pages, caches and resolvers that hold it.
pub type Record = Arc<UpstreamRecord>;

/// A record's properties, and the records expanded under it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamRecord {
    properties: Map<String, Value>,
    /// By navigation property; empty unless the record was read with `$expand`.
    expanded: Vec<(String, Expanded)>,
}

/// What an `$expand` brought under one navigation property.
#[derive(Debug, Clone, PartialEq)]
pub enum Expanded {
    /// A single-valued navigation property: its record, or none (`null`).
    One(Option<Record>),
    /// A collection-valued navigation property: its records.
    Many(Arc<Vec<Record>>),
}

impl From<Map<String, Value>> for UpstreamRecord {
    fn from(properties: Map<String, Value>) -> Self {
        UpstreamRecord {
            properties,
            expanded: Vec::new(),
        }
    }
}

impl Deref for UpstreamRecord {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        &self.properties
    }
}

impl DerefMut for UpstreamRecord {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.properties
    }
}

impl UpstreamRecord {
    /// A record of `properties` (a JSON object), nothing expanded.
    pub fn new(properties: Map<String, Value>) -> Record {
        Arc::new(properties.into())
    }

    /// The properties alone.
    pub fn properties(&self) -> &Map<String, Value> {
        &self.properties
    }

    /// What an `$expand` of `navigation` brought, if the record was read with one.
    pub fn expanded(&self, navigation: &str) -> Option<&Expanded> {
        self.expanded.iter().find(|(n, _)| n == navigation).map(|(_, e)| e)
    }

    /// Moves the values of `entity`'s navigation properties out of the properties, into
    /// records of their own (theirs too, below them). Anything else under such a name (a
    /// number, text) is not an expansion and stays where it is.
    pub fn take_expanded(&mut self, entity: &Entity) {
        for r in &entity.graphql.relations {
            let name = &r.navigation_property;
            let is_expansion = matches!(
                self.properties.get(name),
                Some(Value::Null | Value::Object(_) | Value::Array(_))
            );
            if !is_expansion || self.expanded(name).is_some() {
                continue;
            }
            let Some(target) = model().by_logical_name(&r.target) else {
                continue;
            };
            let expanded = match self.properties.remove(name) {
                Some(Value::Object(row)) => Expanded::One(Some(Self::taken(row, target))),
                Some(Value::Array(rows)) if rows.iter().all(Value::is_object) => Expanded::Many(Arc::new(
                    rows.into_iter()
                        .filter_map(|r| match r {
                            Value::Object(row) => Some(Self::taken(row, target)),
                            _ => None,
                        })
                        .collect(),
                )),
                Some(Value::Array(rows)) => {
                    self.properties.insert(name.clone(), Value::Array(rows));
                    continue;
                }
                _ => Expanded::One(None),
            };
            self.expanded.push((name.clone(), expanded));
        }
    }

    fn taken(row: Map<String, Value>, entity: &Entity) -> Record {
        let mut record = UpstreamRecord::from(row);
        record.take_expanded(entity);
        Arc::new(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn expanded_records_move_out_of_the_properties_and_the_rest_stays() {
        let rr = model()
            .by_entity_set("mshr_hcmrecruitingrequestentities")
            .expect("recruiting requests");
        let navigation = |field: &str| {
            rr.graphql
                .relations
                .iter()
                .find(|r| r.field == field)
                .unwrap()
                .navigation_property
                .clone()
        };
        let (to_many, to_one) = (navigation("positions"), navigation("location"));
        let mut record = UpstreamRecord::from(object(json!({
            "mshr_recruitingrequestid": "USMF-1",
            to_many.clone(): [{"mshr_positionid": "P1"}, {"mshr_positionid": "P2"}],
            to_one.clone(): null,
        })));
        record.take_expanded(rr);
        assert_eq!(
            record.properties(),
            &object(json!({"mshr_recruitingrequestid": "USMF-1"}))
        );
        match record.expanded(&to_many) {
            Some(Expanded::Many(rows)) => {
                assert_eq!(rows.len(), 2);
                assert_eq!(rows[1]["mshr_positionid"], "P2");
            }
            other => panic!("positions: {other:?}"),
        }
        assert_eq!(record.expanded(&to_one), Some(&Expanded::One(None)));
        assert_eq!(record.expanded("mshr_recruitingrequestid"), None);
    }

    #[test]
    fn a_record_read_without_expand_is_its_properties() {
        let rr = model()
            .by_entity_set("mshr_hcmrecruitingrequestentities")
            .expect("recruiting requests");
        let row = object(json!({"mshr_recruitingrequestid": "USMF-1", "mshr_status": 1}));
        let mut record = UpstreamRecord::from(row.clone());
        record.take_expanded(rr);
        assert_eq!(record.properties(), &row);
        assert_eq!(record["mshr_status"], 1);
    }
}
