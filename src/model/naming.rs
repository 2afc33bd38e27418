//! How one upstream spells the model: per entity, the properties it serves under another name, the
//! ones it lacks, the extra (customer) ones it has, and the navigation properties it lacks.
//!
//! Both sides of the wire use it. The gateway learns a [`Naming`] from the upstream's `$metadata`
//! (`odata::metadata`) and translates model names to the upstream's in the URLs and bodies it
//! sends, and back in the rows it reads. The emulator is configured with one
//! (`--property-spelling`, `--omit-property`, …) and translates the other way at its request and
//! response boundary, refusing a name the upstream does not have with Dataverse's 400.
//!
//! Query option text is translated word by word, outside string literals (the one literal that
//! names a property, `PropertyName='…'` of `Microsoft.Dynamics.CRM.In`, included); `$select` and
//! `$expand` are walked item by item, so a nested `$expand` is translated against its target.

use super::{model, Entity};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The differences of one entity (by logical name in [`Naming`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EntityNaming {
    /// Model name → the upstream's name.
    pub renamed: BTreeMap<String, String>,
    /// Model properties the upstream does not have.
    pub missing: BTreeSet<String>,
    /// Upstream properties the model does not have (customer columns).
    pub extra: BTreeSet<String>,
    /// Model navigation properties the upstream does not have.
    pub missing_navigations: BTreeSet<String>,
}

impl EntityNaming {
    fn is_empty(&self) -> bool {
        self.renamed.is_empty()
            && self.missing.is_empty()
            && self.extra.is_empty()
            && self.missing_navigations.is_empty()
    }
}

/// The differences of every entity; empty means the upstream spells the model as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Naming {
    entities: BTreeMap<String, EntityNaming>,
}

/// Which way a translation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// Model names to the upstream's (the gateway sending, the emulator answering).
    Upstream,
    /// The upstream's names to the model's (the gateway reading, the emulator receiving).
    Model,
}

/// What a name in a query or body is, on one side of a translation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Keep,
    Rename(String),
    /// Not there on the side translated from (a model name the upstream lacks, or an upstream
    /// name the model has under another spelling).
    Unknown,
    /// An upstream customer column (only seen translating toward the model).
    Extra,
}

/// A name one side does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub name: String,
    pub entity: String,
    /// A customer column the emulator cannot filter, sort or write.
    pub extra: bool,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.extra {
            return write!(
                f,
                "The property '{}' of type 'Microsoft.Dynamics.CRM.{}' is a customer column this service only reads.",
                self.name, self.entity
            );
        }
        write!(
            f,
            "Could not find a property named '{}' on type 'Microsoft.Dynamics.CRM.{}'.",
            self.name, self.entity
        )
    }
}

/// A translated query option value, and the customer columns its top-level `$select` named
/// (removed from it: the store has no such columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translated {
    pub value: String,
    pub extras: Vec<String>,
}

impl Naming {
    /// A naming from its entities' differences (by logical name; empty entries dropped).
    pub fn new(entities: BTreeMap<String, EntityNaming>) -> Naming {
        Naming {
            entities: entities.into_iter().filter(|(_, n)| !n.is_empty()).collect(),
        }
    }

    /// Whether the upstream spells the model exactly (nothing to translate).
    pub fn is_identity(&self) -> bool {
        self.entities.is_empty()
    }

    /// The differences, by entity logical name.
    pub fn entities(&self) -> &BTreeMap<String, EntityNaming> {
        &self.entities
    }

    /// The differences of one entity.
    pub fn entity(&self, entity: &Entity) -> Option<&EntityNaming> {
        self.entities.get(&entity.logical_name)
    }

    /// Whether the upstream lacks the model property `name` of `entity`.
    pub fn is_missing(&self, entity: &Entity, name: &str) -> bool {
        self.entity(entity).is_some_and(|n| n.missing.contains(name))
    }

    /// Whether the upstream has the navigation property `nav` of `entity`.
    pub fn has_navigation(&self, entity: &Entity, nav: &str) -> bool {
        !self.entity(entity).is_some_and(|n| n.missing_navigations.contains(nav))
    }

    /// The upstream's name of the model property `name` of `entity`.
    pub fn upstream_name<'a>(&'a self, entity: &Entity, name: &'a str) -> &'a str {
        self.entity(entity)
            .and_then(|n| n.renamed.get(name))
            .map_or(name, String::as_str)
    }

    fn word(&self, entity: &Entity, word: &str, toward: Toward) -> Word {
        let Some(n) = self.entity(entity) else {
            return Word::Keep;
        };
        match toward {
            Toward::Upstream => match n.renamed.get(word) {
                Some(up) => Word::Rename(up.clone()),
                None if n.missing.contains(word) || n.missing_navigations.contains(word) => Word::Unknown,
                None => Word::Keep,
            },
            Toward::Model => {
                if let Some((model_name, _)) = n.renamed.iter().find(|(_, up)| *up == word) {
                    Word::Rename(model_name.clone())
                } else if n.renamed.contains_key(word)
                    || n.missing.contains(word)
                    || n.missing_navigations.contains(word)
                {
                    Word::Unknown
                } else if n.extra.contains(word) {
                    Word::Extra
                } else {
                    Word::Keep
                }
            }
        }
    }

    fn error(entity: &Entity, name: &str, extra: bool) -> NameError {
        NameError {
            name: name.to_string(),
            entity: entity.logical_name.clone(),
            extra,
        }
    }

    /// Translates one system query option's value (`$select`, `$filter`, `$orderby`, `$expand`;
    /// others come back unchanged) on `entity`. Toward the upstream, names it lacks are dropped
    /// from `$select` (the key stays) and refused elsewhere; toward the model, names the upstream
    /// does not have are refused, and customer columns are dropped from `$select` (and listed).
    pub fn query_option(
        &self,
        entity: &Entity,
        key: &str,
        value: &str,
        toward: Toward,
    ) -> Result<Translated, NameError> {
        let mut extras = Vec::new();
        let value = match key {
            "$select" => self.select(entity, value, toward, &mut extras)?,
            "$filter" | "$orderby" => self.words(entity, value, toward)?,
            "$expand" => self.expand(entity, value, toward)?,
            _ => value.to_string(),
        };
        Ok(Translated { value, extras })
    }

    fn select(
        &self,
        entity: &Entity,
        value: &str,
        toward: Toward,
        extras: &mut Vec<String>,
    ) -> Result<String, NameError> {
        let mut out = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match (self.word(entity, item, toward), toward) {
                (Word::Keep, _) => out.push(item.to_string()),
                (Word::Rename(to), _) => out.push(to),
                (Word::Unknown, Toward::Upstream) => {}
                (Word::Extra, _) => extras.push(item.to_string()),
                (Word::Unknown, Toward::Model) => return Err(Self::error(entity, item, false)),
            }
        }
        if out.is_empty() {
            out.push(self.upstream_name(entity, &entity.primary_key).to_string());
        }
        Ok(out.join(","))
    }

    /// Filter or order text: each name outside string literals, and the literal after
    /// `PropertyName=`.
    fn words(&self, entity: &Entity, text: &str, toward: Toward) -> Result<String, NameError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '\'' {
                let end = literal_end(rest);
                let literal = &rest[..end];
                if out.trim_end().ends_with("PropertyName=") && literal.len() >= 2 {
                    let inner = &literal[1..literal.len() - 1];
                    out.push('\'');
                    out.push_str(&self.name(entity, inner, toward)?);
                    out.push('\'');
                } else {
                    out.push_str(literal);
                }
                rest = &rest[end..];
            } else if c.is_ascii_alphanumeric() || c == '_' {
                let end = rest
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(rest.len());
                out.push_str(&self.name(entity, &rest[..end], toward)?);
                rest = &rest[end..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        Ok(out)
    }

    /// One property or navigation name of `entity` translated (an error when the side
    /// translated from does not have it).
    pub fn name(&self, entity: &Entity, word: &str, toward: Toward) -> Result<String, NameError> {
        match self.word(entity, word, toward) {
            Word::Keep => Ok(word.to_string()),
            Word::Rename(to) => Ok(to),
            Word::Unknown => Err(Self::error(entity, word, false)),
            Word::Extra => Err(Self::error(entity, word, true)),
        }
    }

    /// `nav(opt=…;opt=…),nav`: each navigation checked, its options translated on its target.
    fn expand(&self, entity: &Entity, value: &str, toward: Toward) -> Result<String, NameError> {
        let mut items = Vec::new();
        for item in split_top(value, b',') {
            let (nav, options) = match item.find('(') {
                Some(i) if item.trim_end().ends_with(')') => (
                    item[..i].trim(),
                    Some(&item.trim_end()[i + 1..item.trim_end().len() - 1]),
                ),
                _ => (item.trim(), None),
            };
            if self.word(entity, nav, toward) == Word::Unknown {
                return Err(Self::error(entity, nav, false));
            }
            let Some(target) = entity.navigation(nav).and_then(|r| model().by_logical_name(&r.target)) else {
                items.push(item.to_string());
                continue;
            };
            let Some(options) = options else {
                items.push(nav.to_string());
                continue;
            };
            let mut inner = Vec::new();
            for option in split_top(options, b';') {
                let (k, v) = option.split_once('=').unwrap_or((option, ""));
                let t = self.query_option(target, k.trim(), v, toward)?;
                inner.push(format!("{}={}", k.trim(), t.value));
            }
            items.push(format!("{nav}({})", inner.join(";")));
        }
        Ok(items.join(","))
    }

    /// The relations of `entity` whose navigation property `key` (before any `@annotation`)
    /// names, with their target.
    fn navigation_target(entity: &Entity, key: &str) -> Option<&'static Entity> {
        let base = key.split('@').next().unwrap_or(key);
        entity.navigation(base).and_then(|r| model().by_logical_name(&r.target))
    }

    /// Renames the keys of a record read from the upstream (with their `@annotation` suffixes)
    /// to the model's, through expanded records too. Customer columns stay as they are.
    pub fn row_to_model(&self, entity: &Entity, row: &mut Map<String, Value>) {
        if self.is_identity() {
            return;
        }
        let keys: Vec<String> = row.keys().cloned().collect();
        for key in keys {
            if let Some(target) = Self::navigation_target(entity, &key) {
                if let Some(v) = row.get_mut(&key) {
                    self.each_record(v, |r| self.row_to_model(target, r));
                }
                continue;
            }
            let (base, suffix) = split_annotation(&key);
            if let Word::Rename(to) = self.word(entity, base, Toward::Model) {
                if let Some(v) = row.remove(&key) {
                    row.insert(format!("{to}{suffix}"), v);
                }
            }
        }
    }

    /// A record as the upstream would send it: renamed keys, the properties and navigations it
    /// lacks removed, and its customer columns as nulls (all of them, or those in `extras` when
    /// `selected`), through expanded records too (all their customer columns).
    pub fn row_to_upstream(&self, entity: &Entity, row: &mut Map<String, Value>, selected: Option<&[String]>) {
        let keys: Vec<String> = row.keys().cloned().collect();
        for key in keys {
            let (base, suffix) = split_annotation(&key);
            match self.word(entity, base, Toward::Upstream) {
                Word::Unknown => {
                    row.remove(&key);
                }
                Word::Rename(to) => {
                    if let Some(v) = row.remove(&key) {
                        row.insert(format!("{to}{suffix}"), v);
                    }
                }
                _ => {
                    if let Some(target) = Self::navigation_target(entity, &key) {
                        if let Some(v) = row.get_mut(&key) {
                            self.each_record(v, |r| self.row_to_upstream(target, r, None));
                        }
                    }
                }
            }
        }
        if let Some(n) = self.entity(entity) {
            for extra in n.extra.iter().filter(|x| selected.is_none_or(|s| s.contains(x))) {
                row.entry(extra.clone()).or_insert(Value::Null);
            }
        }
    }

    /// Translates a write body (deep inserts and `nav@odata.bind` included). A name the other
    /// side lacks is an error (toward the model, a customer column is one too).
    pub fn body(&self, entity: &Entity, body: &mut Map<String, Value>, toward: Toward) -> Result<(), NameError> {
        let keys: Vec<String> = body.keys().cloned().collect();
        for key in keys {
            let (base, suffix) = split_annotation(&key);
            match self.word(entity, base, toward) {
                Word::Keep => {}
                Word::Rename(to) => {
                    if let Some(v) = body.remove(&key) {
                        body.insert(format!("{to}{suffix}"), v);
                    }
                    continue;
                }
                Word::Unknown => return Err(Self::error(entity, base, false)),
                Word::Extra => return Err(Self::error(entity, base, true)),
            }
            if let (Some(target), "") = (Self::navigation_target(entity, &key), suffix) {
                let mut result = Ok(());
                if let Some(v) = body.get_mut(&key) {
                    self.each_record(v, |r| {
                        if result.is_ok() {
                            result = self.body(target, r, toward);
                        }
                    });
                }
                result?;
            }
        }
        Ok(())
    }

    fn each_record(&self, value: &mut Value, mut f: impl FnMut(&mut Map<String, Value>)) {
        match value {
            Value::Object(r) => f(r),
            Value::Array(rows) => rows.iter_mut().filter_map(Value::as_object_mut).for_each(f),
            _ => {}
        }
    }
}

/// `name@annotation` → (`name`, `@annotation`); a key without one → (`key`, ``).
fn split_annotation(key: &str) -> (&str, &str) {
    match key.find('@') {
        Some(0) | None => (key, ""),
        Some(i) => key.split_at(i),
    }
}

/// The byte length of the string literal at the start of `text` (`''` is a quote inside it).
fn literal_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Splits on `sep` outside parentheses and string literals.
fn split_top(text: &str, sep: u8) -> Vec<&str> {
    let bytes = text.as_bytes();
    let (mut parts, mut depth, mut start, mut i) = (Vec::new(), 0i32, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                i += literal_end(&text[i..]);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b if b == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> &'static Entity {
        model().by_logical_name("mshr_dirpartycontactentity").unwrap()
    }

    fn naming() -> Naming {
        let mut n = EntityNaming::default();
        n.renamed.insert("mshr_ismobilephone".into(), "mshr_ismobile".into());
        n.missing.insert("mshr_description".into());
        n.extra.insert("cr_custom".into());
        Naming::new(BTreeMap::from([(contact().logical_name.clone(), n)]))
    }

    #[test]
    fn filters_translate_names_but_not_literals() {
        let n = naming();
        let t = n
            .query_option(
                contact(),
                "$filter",
                "mshr_ismobilephone eq 1 and mshr_locator eq 'mshr_ismobilephone'",
                Toward::Upstream,
            )
            .unwrap();
        assert_eq!(t.value, "mshr_ismobile eq 1 and mshr_locator eq 'mshr_ismobilephone'");
        let t = n
            .query_option(
                contact(),
                "$filter",
                "Microsoft.Dynamics.CRM.In(PropertyName='mshr_ismobile',PropertyValues=['a'])",
                Toward::Model,
            )
            .unwrap();
        assert!(t.value.contains("PropertyName='mshr_ismobilephone'"), "{}", t.value);
        let e = n
            .query_option(contact(), "$orderby", "mshr_ismobilephone desc", Toward::Model)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not find a property named 'mshr_ismobilephone' on type 'Microsoft.Dynamics.CRM.mshr_dirpartycontactentity'."
        );
        assert!(n
            .query_option(contact(), "$filter", "mshr_description eq 'x'", Toward::Upstream)
            .is_err());
    }

    #[test]
    fn selects_drop_missing_and_extra_names() {
        let n = naming();
        let t = n
            .query_option(
                contact(),
                "$select",
                "mshr_description,mshr_ismobilephone",
                Toward::Upstream,
            )
            .unwrap();
        assert_eq!(t.value, "mshr_ismobile");
        let t = n
            .query_option(contact(), "$select", "cr_custom,mshr_ismobile", Toward::Model)
            .unwrap();
        assert_eq!(
            (t.value.as_str(), t.extras),
            ("mshr_ismobilephone", vec!["cr_custom".to_string()])
        );
        assert!(n
            .query_option(contact(), "$select", "mshr_description", Toward::Model)
            .is_err());
    }

    #[test]
    fn rows_and_bodies_round_trip() {
        let n = naming();
        let mut row = serde_json::json!({"mshr_ismobilephone": 1, "mshr_ismobilephone@OData.Community.Display.V1.FormattedValue": "Yes", "mshr_description": "d"});
        let row = row.as_object_mut().unwrap();
        n.row_to_upstream(contact(), row, None);
        assert_eq!(
            serde_json::Value::Object(row.clone()),
            serde_json::json!({"mshr_ismobile": 1, "mshr_ismobile@OData.Community.Display.V1.FormattedValue": "Yes", "cr_custom": null})
        );
        n.row_to_model(contact(), row);
        assert!(row.contains_key("mshr_ismobilephone") && !row.contains_key("mshr_ismobile"));
        let mut body = serde_json::json!({"mshr_ismobile": 1}).as_object().unwrap().clone();
        n.body(contact(), &mut body, Toward::Model).unwrap();
        assert!(body.contains_key("mshr_ismobilephone"));
        let mut body = serde_json::json!({"cr_custom": "x"}).as_object().unwrap().clone();
        assert!(n.body(contact(), &mut body, Toward::Model).unwrap_err().extra);
    }

    #[test]
    fn expands_translate_against_their_target() {
        let person = model().by_logical_name("mshr_dirpersonentity").unwrap();
        let nav = &person
            .graphql
            .relations
            .iter()
            .find(|r| r.target == contact().logical_name)
            .expect("person has contacts")
            .navigation_property;
        let n = naming();
        let t = n
            .query_option(
                person,
                "$expand",
                &format!("{nav}($select=mshr_ismobilephone,mshr_locator;$filter=mshr_ismobilephone eq 1)"),
                Toward::Upstream,
            )
            .unwrap();
        assert_eq!(
            t.value,
            format!("{nav}($select=mshr_ismobile,mshr_locator;$filter=mshr_ismobile eq 1)")
        );
    }
}
