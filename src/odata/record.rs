//! One record as read from the upstream, shared ([`Record`]): its properties ([`Props`], what it
//! dereferences to), and apart from them the records an `$expand` brought along.
//!
//! The expanded records are taken out of the row once, when its page is read and the row is
//! still the reader's alone, and each becomes a [`Record`] of its own. The loaders' caches,
//! which hold records, then take them as they are: a record shared by a parent, a cache and a
//! resolver is never copied (copying them was 8% of the instructions of a nested read with
//! `$expand` pushdown).
//!
//! A page is read straight into records ([`RecordSeed`]): the properties into a [`Props`], whose
//! names the model knows are the model's own strings (no allocation per row), and the
//! navigation properties of the record's entity into records of their own, without a JSON tree
//! in between (parsing into `serde_json::Map`s, then moving the expansions out, was a quarter
//! of the instructions of the canonical nested query).

use crate::model::{model, Entity};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, LazyLock};

/// A record, shared by the pages, caches and resolvers that hold it.
pub type Record = Arc<UpstreamRecord>;

/// A property's name: the model's own string when the model knows the name, else the name as
/// received.
pub type Key = Cow<'static, str>;

/// The names of the model's properties, lookups, keys and navigation properties.
static KNOWN: LazyLock<foldhash::HashSet<&'static str>> = LazyLock::new(|| {
    let mut known = foldhash::HashSet::default();
    for e in model().entities.iter() {
        known.insert(e.primary_key.as_str());
        known.extend(e.properties.iter().map(|p| p.name.as_str()));
        for r in &e.graphql.relations {
            known.insert(r.lookup_property.as_str());
            known.insert(r.navigation_property.as_str());
        }
    }
    known
});

/// `name` as a [`Key`]: the model's string when it knows the name.
pub fn key(name: &str) -> Key {
    match KNOWN.get(name) {
        Some(known) => Cow::Borrowed(*known),
        None => Cow::Owned(name.to_string()),
    }
}

/// [`key`] for a name already owned.
fn key_owned(name: String) -> Key {
    match KNOWN.get(name.as_str()) {
        Some(known) => Cow::Borrowed(*known),
        None => Cow::Owned(name),
    }
}

/// Whether two keys are the same name; the model's strings compare by address first.
fn same(a: &Key, b: &str) -> bool {
    match a {
        Cow::Borrowed(a) if std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len() => true,
        _ => a.as_ref() == b,
    }
}

/// Whether two keys are the same name: two of the model's strings are by address alone, as
/// [`key`] gives one string per name.
fn same_key(a: &Key, b: &Key) -> bool {
    match (a, b) {
        (Cow::Borrowed(a), Cow::Borrowed(b)) => std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len(),
        _ => a == b,
    }
}

/// A record's properties, in the order they came. A name occurs once (the last value given
/// wins, as in a JSON object read into a map). Records have a few properties each, so a list
/// beats a map; a missing property indexes as `null`.
#[derive(Debug, Clone, Default)]
pub struct Props(Vec<(Key, Value)>);

impl Props {
    pub fn new() -> Self {
        Props(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| same(k, name)).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| same(k, name)).map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`; the value it had, if any.
    pub fn insert(&mut self, name: impl AsRef<str>, value: Value) -> Option<Value> {
        let name = name.as_ref();
        match self.get_mut(name) {
            Some(old) => Some(std::mem::replace(old, value)),
            None => {
                self.0.push((key(name), value));
                None
            }
        }
    }

    /// [`Props::insert`] of a key made already.
    fn insert_key(&mut self, name: Key, value: Value) {
        match self.0.iter_mut().find(|(k, _)| same_key(k, &name)) {
            Some((_, old)) => *old = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| same(k, name))?;
        Some(self.0.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The properties as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }
}

/// The same properties, in any order.
impl PartialEq for Props {
    fn eq(&self, other: &Props) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl PartialEq<Map<String, Value>> for Props {
    fn eq(&self, other: &Map<String, Value>) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl From<Map<String, Value>> for Props {
    fn from(map: Map<String, Value>) -> Self {
        Props(map.into_iter().map(|(k, v)| (key_owned(k), v)).collect())
    }
}

impl Extend<(String, Value)> for Props {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert_key(key_owned(k), v);
        }
    }
}

static NULL: Value = Value::Null;

/// A missing property is `null`, as in a JSON value.
impl std::ops::Index<&str> for Props {
    type Output = Value;
    fn index(&self, name: &str) -> &Value {
        self.get(name).unwrap_or(&NULL)
    }
}

impl serde::Serialize for Props {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// A record's properties, and the records expanded under it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamRecord {
    properties: Props,
    /// By navigation property; empty unless the record was read with `$expand`.
    expanded: Vec<(Key, Expanded)>,
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
            properties: properties.into(),
            expanded: Vec::new(),
        }
    }
}

impl From<Props> for UpstreamRecord {
    fn from(properties: Props) -> Self {
        UpstreamRecord {
            properties,
            expanded: Vec::new(),
        }
    }
}

impl Deref for UpstreamRecord {
    type Target = Props;
    fn deref(&self) -> &Props {
        &self.properties
    }
}

impl DerefMut for UpstreamRecord {
    fn deref_mut(&mut self) -> &mut Props {
        &mut self.properties
    }
}

impl UpstreamRecord {
    /// A record of `properties` (a JSON object), nothing expanded.
    pub fn new(properties: Map<String, Value>) -> Record {
        Arc::new(properties.into())
    }

    /// The properties alone.
    pub fn properties(&self) -> &Props {
        &self.properties
    }

    /// What an `$expand` of `navigation` brought, if the record was read with one.
    pub fn expanded(&self, navigation: &str) -> Option<&Expanded> {
        self.expanded.iter().find(|(n, _)| same(n, navigation)).map(|(_, e)| e)
    }

    /// Moves the values of `entity`'s navigation properties out of the properties, into
    /// records of their own (theirs too, below them). Anything else under such a name (a
    /// number, text, a list of anything but objects) is not an expansion and stays where it is.
    pub fn take_expanded(&mut self, entity: &Entity) {
        for r in &entity.graphql.relations {
            let name = &r.navigation_property;
            let is_expansion = match self.properties.get(name) {
                Some(Value::Null | Value::Object(_)) => true,
                Some(Value::Array(rows)) => rows.iter().all(Value::is_object),
                _ => false,
            };
            if !is_expansion || self.expanded(name).is_some() {
                continue;
            }
            let Some(target) = model().by_logical_name(&r.target) else {
                continue;
            };
            let expanded = match self.properties.remove(name) {
                Some(Value::Object(row)) => Expanded::One(Some(Self::taken(row, target))),
                Some(Value::Array(rows)) => Expanded::Many(Arc::new(
                    rows.into_iter()
                        .filter_map(|r| match r {
                            Value::Object(row) => Some(Self::taken(row, target)),
                            _ => None,
                        })
                        .collect(),
                )),
                _ => Expanded::One(None),
            };
            self.expanded.push((key(name), expanded));
        }
    }

    fn taken(row: Map<String, Value>, entity: &Entity) -> Record {
        let mut record = UpstreamRecord::from(row);
        record.take_expanded(entity);
        Arc::new(record)
    }

    /// The record as a JSON object, its expanded records under their navigation properties.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut map = self.properties.to_map();
        for (name, expanded) in &self.expanded {
            let value = match expanded {
                Expanded::One(None) => Value::Null,
                Expanded::One(Some(r)) => Value::Object(r.to_json()),
                Expanded::Many(rs) => Value::Array(rs.iter().map(|r| Value::Object(r.to_json())).collect()),
            };
            map.insert(name.to_string(), value);
        }
        map
    }
}

/// Reads one record (a JSON object) of `entity` straight into an [`UpstreamRecord`]: what
/// [`UpstreamRecord::from`] and then [`UpstreamRecord::take_expanded`] make of it, with no JSON
/// tree in between. Without an entity, nothing is taken as an expansion.
#[derive(Clone, Copy)]
pub struct RecordSeed(pub Option<&'static Entity>);

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = UpstreamRecord;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<UpstreamRecord, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed {
    type Value = UpstreamRecord;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UpstreamRecord, A::Error> {
        let mut record = UpstreamRecord {
            properties: Props(Vec::with_capacity(map.size_hint().unwrap_or(8))),
            expanded: Vec::new(),
        };
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let relation = self
                .0
                .and_then(|e| e.graphql.relations.iter().find(|r| same(&name, &r.navigation_property)));
            let target = relation.and_then(|r| model().by_logical_name(&r.target));
            match target {
                Some(target) if record.expanded(&name).is_none() => {
                    match map.next_value_seed(PartSeed { target, nested: false })?.expansion() {
                        Ok(expanded) => {
                            record.properties.remove(&name);
                            record.expanded.push((name, expanded));
                        }
                        Err(value) => record.properties.insert_key(name, value),
                    }
                }
                _ => {
                    let value = map.next_value()?;
                    record.properties.insert_key(name, value);
                }
            }
        }
        Ok(record)
    }
}

/// A property's name, as a [`Key`] (borrowed from the text while it is looked up).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(key(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(key_owned(v))
    }
}

/// What came under a navigation property, or in a list there.
enum Part {
    Null,
    Record(Record),
    List(Vec<Part>),
    /// Anything else: not an expansion.
    Other(Value),
}

impl Part {
    /// The expansion this is (`null`, a record, a list of records), or else the property it
    /// came as.
    fn expansion(self) -> Result<Expanded, Value> {
        match self {
            Part::Null => Ok(Expanded::One(None)),
            Part::Record(r) => Ok(Expanded::One(Some(r))),
            Part::List(items) if items.iter().all(|i| matches!(i, Part::Record(_))) => Ok(Expanded::Many(Arc::new(
                items
                    .into_iter()
                    .filter_map(|i| match i {
                        Part::Record(r) => Some(r),
                        _ => None,
                    })
                    .collect(),
            ))),
            other => Err(other.into_value()),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Part::Null => Value::Null,
            Part::Record(r) => Value::Object(r.to_json()),
            Part::List(items) => Value::Array(items.into_iter().map(Part::into_value).collect()),
            Part::Other(v) => v,
        }
    }
}

/// Reads the value of a navigation property of a record read with [`RecordSeed`] (`nested`:
/// an element of a list there): objects become records of `target`, read the same way.
#[derive(Clone, Copy)]
struct PartSeed {
    target: &'static Entity,
    nested: bool,
}

impl<'de> DeserializeSeed<'de> for PartSeed {
    type Value = Part;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Part, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PartSeed {
    type Value = Part;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an expanded record, a list of them, or null")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Part, A::Error> {
        Ok(Part::Record(Arc::new(RecordSeed(Some(self.target)).visit_map(map)?)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Part, A::Error> {
        if self.nested {
            let v = serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
            return Ok(Part::Other(v));
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        let nested = PartSeed {
            target: self.target,
            nested: true,
        };
        while let Some(item) = seq.next_element_seed(nested)? {
            items.push(item);
        }
        Ok(Part::List(items))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Part, E> {
        Ok(Part::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Part, E> {
        Ok(Part::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Part, E> {
        Ok(Part::Other(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Part, E> {
        Ok(Part::Other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Part, E> {
        Ok(Part::Other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Part, E> {
        Ok(Part::Other(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Part, E> {
        Ok(Part::Other(Value::String(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Part, E> {
        Ok(Part::Other(Value::String(v)))
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

    fn recruiting_requests() -> &'static Entity {
        model()
            .by_entity_set("mshr_hcmrecruitingrequestentities")
            .expect("recruiting requests")
    }

    fn navigation(field: &str) -> String {
        recruiting_requests()
            .graphql
            .relations
            .iter()
            .find(|r| r.field == field)
            .unwrap()
            .navigation_property
            .clone()
    }

    /// A row with two positions, no location, a number under the recruiter's navigation and a
    /// list of text under the skills'.
    fn row() -> Value {
        json!({
            "mshr_recruitingrequestid": "USMF-1",
            navigation("positions"): [{"mshr_positionid": "P1"}, {"mshr_positionid": "P2"}],
            navigation("location"): null,
            navigation("recruiter"): 7,
            navigation("skills"): ["a", "b"],
            "custom_column": true,
        })
    }

    fn check(record: &UpstreamRecord) {
        let (to_many, to_one) = (navigation("positions"), navigation("location"));
        assert_eq!(
            record.properties(),
            &object(json!({
                "mshr_recruitingrequestid": "USMF-1",
                navigation("recruiter"): 7,
                navigation("skills"): ["a", "b"],
                "custom_column": true,
            }))
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
        assert_eq!(record.expanded(&navigation("recruiter")), None);
    }

    #[test]
    fn expanded_records_move_out_of_the_properties_and_the_rest_stays() {
        let mut record = UpstreamRecord::from(object(row()));
        record.take_expanded(recruiting_requests());
        check(&record);
    }

    #[test]
    fn a_record_read_with_the_seed_is_the_record_taken_from_a_json_object() {
        let text = serde_json::to_string(&row()).unwrap();
        let mut de = serde_json::Deserializer::from_str(&text);
        let read = RecordSeed(Some(recruiting_requests())).deserialize(&mut de).unwrap();
        check(&read);
        let mut taken = UpstreamRecord::from(object(row()));
        taken.take_expanded(recruiting_requests());
        assert_eq!(read, taken);
        assert_eq!(Value::Object(read.to_json()), row());
    }

    #[test]
    fn a_record_read_without_expand_is_its_properties() {
        let row = object(json!({"mshr_recruitingrequestid": "USMF-1", "mshr_status": 1}));
        let mut record = UpstreamRecord::from(row.clone());
        record.take_expanded(recruiting_requests());
        assert_eq!(record.properties(), &row);
        assert_eq!(record["mshr_status"], 1);
        assert_eq!(record["mshr_missing"], Value::Null);
    }

    #[test]
    fn a_name_given_twice_keeps_the_last_value_and_known_names_are_the_models() {
        let text = r#"{"mshr_status": 1, "other": "x", "mshr_status": 2}"#;
        let mut de = serde_json::Deserializer::from_str(text);
        let read = RecordSeed(None).deserialize(&mut de).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read["mshr_status"], 2);
        assert!(matches!(read.properties().0[0].0, Cow::Borrowed(_)), "a model name");
        assert!(matches!(read.properties().0[1].0, Cow::Owned(_)), "not a model name");
        let mut props = Props::from(object(json!({"b": 1, "a": 2})));
        assert_eq!(props.insert("a", json!(3)), Some(json!(2)));
        assert_eq!(props.remove("b"), Some(json!(1)));
        assert_eq!(props, object(json!({"a": 3})));
    }
}
