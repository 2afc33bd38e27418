//! `$metadata` reconciliation: the upstream's CSDL read once at start and held against the model.
//!
//! - [`parse_csdl`]: the entity types (properties, navigation properties) and entity sets of a
//!   CSDL XML document (parsed with `roxmltree`: read-only, no unsafe, no dependencies).
//! - [`reconcile`]: the differences per entity: model properties the upstream lacks (their
//!   fields resolve to null and are never selected, filtered, sorted or written), disputed
//!   spellings resolved to the upstream's (a model property's `alternativeNames`), extra
//!   (customer) properties, and missing navigation properties (no `$expand` pushdown or deep
//!   insert through them). The result's [`Naming`] is what the gateway's upstream client
//!   translates with.
//! - [`read_and_reconcile`]: one bounded, unretried `GET $metadata` through the upstream client
//!   (its credentials, slots and breaker), then the two steps above; `ats-gateway doctor` calls it
//!   too. A read that fails leaves the model as it is: the caller logs the warning.
//!
//! [`Reconciliation::lines`] renders the differences as short lines, and the type serialises to
//! JSON (for `/readyz` and `doctor --json`).

use super::client::Upstream;
use super::resilience::RetryPolicy;
use crate::model::naming::{EntityNaming, Naming};
use crate::model::{model, Entity};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One entity type of a CSDL document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsdlType {
    pub properties: BTreeSet<String>,
    pub navigations: BTreeSet<String>,
}

/// The parts of a CSDL document reconciliation needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Csdl {
    /// Entity types by their unqualified name.
    pub types: BTreeMap<String, CsdlType>,
    /// Entity sets: name → unqualified entity type name.
    pub sets: BTreeMap<String, String>,
}

impl Csdl {
    /// The entity type behind a model entity: its entity set's type, else the type named like
    /// its logical name.
    pub fn type_of(&self, entity: &Entity) -> Option<&CsdlType> {
        let by_set = self.sets.get(&entity.entity_set).and_then(|t| self.types.get(t));
        by_set.or_else(|| self.types.get(&entity.logical_name))
    }
}

/// Parses a CSDL XML document (`$metadata`).
pub fn parse_csdl(xml: &str) -> Result<Csdl, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("the $metadata document is not XML: {e}"))?;
    let mut csdl = Csdl::default();
    for node in doc.descendants().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "EntityType" => {
                let Some(name) = node.attribute("Name") else { continue };
                let mut t = CsdlType::default();
                for child in node.children().filter(|c| c.is_element()) {
                    let Some(n) = child.attribute("Name") else { continue };
                    match child.tag_name().name() {
                        "Property" => t.properties.insert(n.to_string()),
                        "NavigationProperty" => t.navigations.insert(n.to_string()),
                        _ => false,
                    };
                }
                csdl.types.insert(name.to_string(), t);
            }
            "EntitySet" => {
                if let (Some(name), Some(ty)) = (node.attribute("Name"), node.attribute("EntityType")) {
                    let unqualified = ty.rsplit('.').next().unwrap_or(ty);
                    csdl.sets.insert(name.to_string(), unqualified.to_string());
                }
            }
            _ => {}
        }
    }
    if csdl.types.is_empty() {
        return Err("the $metadata document has no entity types".into());
    }
    Ok(csdl)
}

/// The model held against the upstream's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// The differences per entity (by logical name).
    #[serde(flatten)]
    pub naming: Naming,
    /// Model entities the metadata has no entity type for (left as the model has them).
    pub missing_entities: Vec<String>,
}

/// Holds the model against a parsed CSDL document.
pub fn reconcile(csdl: &Csdl) -> Reconciliation {
    let mut entities = BTreeMap::new();
    let mut missing_entities = Vec::new();
    for e in &model().entities {
        match csdl.type_of(e) {
            Some(t) => {
                entities.insert(e.logical_name.clone(), diff_entity(e, t));
            }
            None => missing_entities.push(e.logical_name.clone()),
        }
    }
    Reconciliation {
        naming: Naming::new(entities),
        missing_entities,
    }
}

fn diff_entity(e: &Entity, t: &CsdlType) -> EntityNaming {
    let mut n = EntityNaming::default();
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for p in &e.properties {
        if t.properties.contains(&p.name) {
            known.insert(&p.name);
        } else if let Some(alt) = p.alternative_names.iter().find(|a| t.properties.contains(*a)) {
            known.insert(alt);
            n.renamed.insert(p.name.clone(), alt.clone());
        } else {
            n.missing.insert(p.name.clone());
        }
    }
    n.extra = t
        .properties
        .iter()
        .filter(|p| !known.contains(p.as_str()))
        .cloned()
        .collect();
    n.missing_navigations = e
        .graphql
        .relations
        .iter()
        .filter(|r| !t.navigations.contains(&r.navigation_property))
        .map(|r| r.navigation_property.clone())
        .collect();
    n
}

impl Reconciliation {
    /// Whether the upstream's metadata matches the model exactly.
    pub fn is_exact(&self) -> bool {
        self.naming.is_identity() && self.missing_entities.is_empty()
    }

    /// The differences as short lines, one per difference (none when the metadata matches).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .missing_entities
            .iter()
            .map(|e| format!("{e}: no entity type upstream (left as the model has it)"))
            .collect();
        for (e, n) in self.naming.entities() {
            for (m, up) in &n.renamed {
                out.push(format!("{e}.{m}: spelled {up} upstream (mapped both ways)"));
            }
            for m in &n.missing {
                out.push(format!(
                    "{e}.{m}: missing upstream (never selected; its field resolves to null)"
                ));
            }
            for nav in &n.missing_navigations {
                out.push(format!(
                    "{e}.{nav}: navigation property missing upstream (no $expand or deep insert through it)"
                ));
            }
            for x in &n.extra {
                out.push(format!("{e}.{x}: extra (customer) property upstream"));
            }
        }
        out
    }

    /// One line: how many of each kind of difference.
    pub fn summary(&self) -> String {
        let count = |f: &dyn Fn(&EntityNaming) -> usize| self.naming.entities().values().map(f).sum::<usize>();
        format!(
            "{} renamed, {} missing, {} extra properties; {} missing navigation properties; {} missing entity types",
            count(&|n| n.renamed.len()),
            count(&|n| n.missing.len()),
            count(&|n| n.extra.len()),
            count(&|n| n.missing_navigations.len()),
            self.missing_entities.len()
        )
    }

    /// The differences as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Reads the upstream's `$metadata` once (no retry; the upstream timeout bounds it) with the
/// gateway's own credentials and holds the model against it. `Err` says why the read failed.
pub async fn read_and_reconcile(upstream: &Upstream) -> Result<Reconciliation, String> {
    let url = upstream.absolute_url("$metadata").map_err(|e| e.to_string())?;
    let extra = [("accept", "application/xml".to_string())];
    let raw = upstream
        .send(reqwest::Method::GET, &url, None, &extra, None, RetryPolicy::Never)
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&raw.status) {
        return Err(raw.error().to_string());
    }
    let xml = String::from_utf8_lossy(&raw.body);
    Ok(reconcile(&parse_csdl(&xml)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSDL: &str = r#"<?xml version="1.0"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>
<Schema Namespace="Microsoft.Dynamics.CRM" xmlns="http://docs.oasis-open.org/odata/ns/edm">
<EntityType Name="contact_type"><Key><PropertyRef Name="id"/></Key>
<Property Name="id" Type="Edm.Guid"/><Property Name="mshr_ismobile" Type="Edm.Int32"/>
<Property Name="cr_custom" Type="Edm.String"/>
<NavigationProperty Name="mshr_FK_Person_id" Type="Microsoft.Dynamics.CRM.mshr_dirpersonentity"/>
</EntityType>
<EntityContainer Name="System"><EntitySet Name="mshr_dirpartycontactentities" EntityType="Microsoft.Dynamics.CRM.contact_type"/></EntityContainer>
</Schema></edmx:DataServices></edmx:Edmx>"#;

    #[test]
    fn csdl_types_and_sets_are_read() {
        let c = parse_csdl(CSDL).unwrap();
        let t = &c.types["contact_type"];
        assert!(t.properties.contains("mshr_ismobile") && t.properties.contains("id"));
        assert!(t.navigations.contains("mshr_FK_Person_id"));
        assert_eq!(c.sets["mshr_dirpartycontactentities"], "contact_type");
        assert!(parse_csdl("<x>").is_err());
        assert!(parse_csdl("<a/>").is_err());
    }

    #[test]
    fn the_diff_resolves_spellings_and_lists_missing_and_extra_names() {
        let r = reconcile(&parse_csdl(CSDL).unwrap());
        let n = &r.naming.entities()["mshr_dirpartycontactentity"];
        assert_eq!(n.renamed["mshr_ismobilephone"], "mshr_ismobile");
        assert!(n.missing.contains("mshr_description") && !n.missing.contains("mshr_ismobilephone"));
        assert_eq!(n.extra, BTreeSet::from(["cr_custom".to_string(), "id".to_string()]));
        assert!(n.missing_navigations.is_empty());
        assert_eq!(r.missing_entities.len(), model().entities.len() - 1);
        assert!(r
            .lines()
            .iter()
            .any(|l| l
                == "mshr_dirpartycontactentity.mshr_ismobilephone: spelled mshr_ismobile upstream (mapped both ways)"));
        let json = r.to_json();
        assert_eq!(json["entities"]["mshr_dirpartycontactentity"]["extra"][0], "cr_custom");
    }
}
