//! The ATS data model: the one place where entities, properties, relations, option sets and their
//! public GraphQL names are written down.
//!
//! - `ats-model.json` (embedded at compile time) holds the facts, generated once from the
//!   transcribed Microsoft docs by `tools/build-model.py`.
//! - [`Model`] parses it at first use and offers lookups by entity set, logical name and GraphQL
//!   type. Everything else (the emulator's tables and `$metadata`, the gateway's schema and its
//!   OData queries) is derived from it: adding a property means editing the JSON, nothing else.
//! - [`naming::Naming`] says how one upstream spells the model (renamed, missing and extra
//!   properties, missing navigation properties) and translates names between the two.

pub mod naming;

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::LazyLock;

const MODEL_JSON: &str = include_str!("ats-model.json");

static MODEL: LazyLock<Model> = LazyLock::new(|| Model::parse(MODEL_JSON));

/// The embedded ATS model.
pub fn model() -> &'static Model {
    &MODEL
}

/// The 18 entities and 17 option sets, with indexes for the lookups the code needs.
#[derive(Debug)]
pub struct Model {
    pub entities: Vec<Entity>,
    pub option_sets: Vec<OptionSet>,
    by_set: foldhash::HashMap<String, usize>,
    by_logical: foldhash::HashMap<String, usize>,
    by_type: foldhash::HashMap<String, usize>,
    sets_by_name: foldhash::HashMap<String, usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelFile {
    entities: Vec<Entity>,
    option_sets: Vec<OptionSet>,
}

/// One Dataverse virtual table (an HR data entity).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    /// Display name, such as "Recruiting request".
    pub name: String,
    /// Logical name, such as `mshr_hcmrecruitingrequestentity`.
    pub logical_name: String,
    /// Entity set name used in URLs, such as `mshr_hcmrecruitingrequestentities`.
    pub entity_set: String,
    /// The primary key property (always a GUID).
    pub primary_key: String,
    pub description: String,
    /// PascalCase F&O data entity name, used in navigation-property names.
    pub fno_entity: String,
    pub graphql: EntityGraphql,
    /// Properties joined by `" | "` into `mshr_primaryfield` (empty when the entity has none).
    pub primary_field_parts: Vec<String>,
    /// Number-sequence formats of system-assigned readable IDs, by property.
    pub sequences: HashMap<String, String>,
    /// Reference data (rating levels, certificate types, screening types): small, rarely changing
    /// tables the gateway may cache across requests.
    #[serde(default)]
    pub reference_data: bool,
    /// The `mshr_primaryfield`-style property computed from `primary_field_parts`.
    pub primary_field_property: Option<String>,
    /// The company (legal entity) code property, for per-company number sequences.
    pub company_property: Option<String>,
    /// A full name computed from name parts.
    pub full_name: Option<FullName>,
    /// Records a write of this entity must refer to, checked before writing.
    #[serde(default)]
    pub references: Vec<Reference>,
    pub properties: Vec<Property>,
}

/// The public GraphQL names of an entity.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityGraphql {
    #[serde(rename = "type")]
    pub type_name: String,
    pub single_field: String,
    pub list_field: String,
    pub relations: Vec<Relation>,
}

/// A property computed by joining other properties with spaces (empty parts skipped).
#[derive(Debug, Deserialize)]
pub struct FullName {
    pub property: String,
    pub parts: Vec<String>,
}

/// A reference by readable keys: when all `properties` are set on a write, a record of `entity`
/// whose `keys` hold the same values must exist.
#[derive(Debug, Deserialize)]
pub struct Reference {
    pub properties: Vec<String>,
    pub entity: String,
    pub keys: Vec<String>,
}

/// Whether a relation points at one record or many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cardinality {
    One,
    Many,
}

/// Which side of a relation holds the GUID lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupSide {
    /// The lookup is a property of this entity (a to-one relation).
    This,
    /// The lookup is a property of the target (a to-many relation).
    Target,
}

/// A relation between two entities of the model, with its OData navigation property.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relation {
    /// GraphQL field name, such as `positions`.
    pub field: String,
    /// Logical name of the related entity.
    pub target: String,
    pub target_type: String,
    pub kind: Cardinality,
    /// The `_..._value` lookup property that joins the two entities.
    pub lookup_property: String,
    pub lookup_on: LookupSide,
    /// OData navigation property, such as `mshr_FK_Person_id`.
    pub navigation_property: String,
    /// Readable key on the child (such as `mshr_partynumber`) that writes use to link it.
    pub child_readable_key: Option<String>,
    /// The parent's property that the child's readable key holds.
    pub parent_readable_key: Option<String>,
}

/// The normalised type of a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PropType {
    String,
    Guid,
    Int,
    Decimal,
    Double,
    Date,
    Datetime,
    OptionSet,
}

impl PropType {
    /// The Edm type Dataverse uses in `$metadata` (option sets are `Edm.Int32`).
    pub fn edm(self) -> &'static str {
        match self {
            PropType::String => "Edm.String",
            PropType::Guid => "Edm.Guid",
            PropType::Int | PropType::OptionSet => "Edm.Int32",
            PropType::Decimal => "Edm.Decimal",
            PropType::Double => "Edm.Double",
            PropType::Date => "Edm.Date",
            PropType::Datetime => "Edm.DateTimeOffset",
        }
    }
}

/// A property (column) of an entity.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    /// OData name, such as `mshr_status` or `_mshr_fk_person_id_value`.
    pub name: String,
    pub display_name: String,
    #[serde(rename = "normalizedType")]
    pub ty: PropType,
    pub read_only: bool,
    /// Settable on create only.
    pub write_once: bool,
    pub required: bool,
    pub system_generated: bool,
    /// Name of the option set when `ty` is `OptionSet`.
    pub option_set: Option<String>,
    pub lookup: Option<Lookup>,
    pub description: String,
    pub graphql_field: String,
    pub graphql_type: String,
    /// Realistic sample values the demo seed draws from (empty: the seed derives a value from the
    /// type). Strings may hold placeholders (`{property}`, `{digits:N}`, …) and lists of equal
    /// length within an entity are aligned; see `tools/build-model.py`.
    #[serde(default)]
    pub samples: Vec<serde_json::Value>,
    /// Longest value the docs allow, where they say (most string lengths are undocumented).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Other spellings an upstream may serve this property under (disputed in the docs, such as
    /// `mshr_ismobile` for `mshr_ismobilephone`); the gateway picks the one its upstream's
    /// `$metadata` has (see [`naming`]). The GraphQL field never changes.
    #[serde(default)]
    pub alternative_names: Vec<String>,
}

/// A GUID lookup to another table.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lookup {
    /// Logical name of the target table.
    pub target: String,
    /// Lookup attribute logical name, such as `mshr_fk_person_id`.
    pub attribute: String,
    /// Whether the target is one of the model's entities.
    pub target_in_model: bool,
    /// Whether the target is a virtual table (Dataverse cannot filter or sort on such lookups).
    pub target_is_virtual: bool,
}

/// A global option set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionSet {
    pub name: String,
    pub display_name: String,
    /// GraphQL enum name, or `Boolean` for the two yes/no sets.
    pub graphql_enum: String,
    pub values: Vec<OptionValue>,
}

/// One value of an option set, with the integer documented for it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionValue {
    pub value: i64,
    pub label: String,
    pub description: Option<String>,
    /// SCREAMING_SNAKE enum value, or `true` / `false` / `null` for yes/no sets.
    pub graphql_value: String,
}

impl Model {
    fn parse(json: &str) -> Model {
        let file: ModelFile = serde_json::from_str(json).expect("embedded ats-model.json is valid");
        let index = |f: &dyn Fn(&Entity) -> String| {
            file.entities
                .iter()
                .enumerate()
                .map(|(i, e)| (f(e), i))
                .collect::<foldhash::HashMap<_, _>>()
        };
        let by_set = index(&|e| e.entity_set.clone());
        let by_logical = index(&|e| e.logical_name.clone());
        let by_type = index(&|e| e.graphql.type_name.clone());
        let sets_by_name = file
            .option_sets
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.clone(), i))
            .collect();
        Model {
            entities: file.entities,
            option_sets: file.option_sets,
            by_set,
            by_logical,
            by_type,
            sets_by_name,
        }
    }

    /// The entity behind an entity set name (case-sensitive, as in Dataverse).
    pub fn by_entity_set(&self, set: &str) -> Option<&Entity> {
        self.by_set.get(set).map(|&i| &self.entities[i])
    }

    /// The entity with a logical name.
    pub fn by_logical_name(&self, name: &str) -> Option<&Entity> {
        self.by_logical.get(name).map(|&i| &self.entities[i])
    }

    /// The entity with a GraphQL type name.
    pub fn by_graphql_type(&self, name: &str) -> Option<&Entity> {
        self.by_type.get(name).map(|&i| &self.entities[i])
    }

    /// An option set by name.
    pub fn option_set(&self, name: &str) -> Option<&OptionSet> {
        self.sets_by_name.get(name).map(|&i| &self.option_sets[i])
    }

    /// Every navigation property of an entity: its own to-one relations and the to-many relations
    /// whose lookup sits on the target.
    pub fn navigations<'a>(&'a self, entity: &'a Entity) -> impl Iterator<Item = &'a Relation> {
        entity.graphql.relations.iter()
    }
}

impl Entity {
    /// A property by its OData name.
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// The primary key property.
    pub fn key_property(&self) -> &Property {
        self.property(&self.primary_key).expect("primary key is a property")
    }

    /// A relation by its navigation property name.
    pub fn navigation(&self, name: &str) -> Option<&Relation> {
        self.graphql.relations.iter().find(|r| r.navigation_property == name)
    }

    /// Whether the entity has a `mshr_primaryfield` computed from key parts.
    pub fn has_primary_field(&self) -> bool {
        !self.primary_field_parts.is_empty()
    }
}

impl Property {
    /// Whether this is a `_x_value` GUID lookup.
    pub fn is_lookup(&self) -> bool {
        self.lookup.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_documented_model() {
        let m = model();
        assert_eq!(m.entities.len(), 18);
        assert_eq!(m.option_sets.len(), 17);
        let props: usize = m.entities.iter().map(|e| e.properties.len()).sum();
        assert_eq!(props, 336);
    }

    #[test]
    fn every_relation_target_and_lookup_exists() {
        let m = model();
        for e in &m.entities {
            assert!(e.property(&e.primary_key).is_some(), "{}", e.logical_name);
            for r in &e.graphql.relations {
                let target = m.by_logical_name(&r.target).expect("target entity");
                let holder = match r.lookup_on {
                    LookupSide::This => e,
                    LookupSide::Target => target,
                };
                assert!(holder.property(&r.lookup_property).is_some(), "{}", r.field);
            }
            for p in &e.properties {
                if let Some(os) = &p.option_set {
                    assert!(m.option_set(os).is_some(), "{os}");
                }
            }
        }
    }

    #[test]
    fn documented_navigation_names_are_derived() {
        let m = model();
        let c = m.by_entity_set("mshr_hcmcandidatetohireentities").unwrap();
        assert!(c.navigation("mshr_FK_Person_id").is_some());
        let p = m.by_entity_set("mshr_dirpersonentities").unwrap();
        assert!(p.navigation("mshr_FK_HcmPersonSkillEntity_Person").is_some());
    }
}
