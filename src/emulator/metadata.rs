//! The service document, the CSDL `$metadata` and the option-set definitions, all derived from
//! the model. Option sets are `Edm.Int32` properties, as Dataverse exposes choice columns; their
//! labels come from `GlobalOptionSetDefinitions(Name='…')`.

use crate::model::naming::Naming;
use crate::model::{model, Cardinality, Entity, LookupSide, OptionSet};
use serde_json::{json, Value};

/// `GET /api/data/v9.2/`: the entity sets.
pub fn service_document(base: &str) -> Value {
    let sets: Vec<Value> = model()
        .entities
        .iter()
        .map(|e| json!({ "name": e.entity_set, "kind": "EntitySet", "url": e.entity_set }))
        .collect();
    json!({ "@odata.context": format!("{base}$metadata"), "value": sets })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /api/data/v9.2/$metadata`: CSDL XML for the 18 entity types and their entity sets.
pub fn csdl() -> String {
    csdl_spelled(&Naming::default())
}

/// [`csdl`] as an upstream spelling the model as `naming` says: renamed properties under their
/// upstream name, missing properties and navigation properties left out, extra (customer)
/// properties as nullable `Edm.String`s.
pub fn csdl_spelled(naming: &Naming) -> String {
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str("<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n");
    x.push_str("  <edmx:DataServices>\n");
    x.push_str("    <Schema Namespace=\"Microsoft.Dynamics.CRM\" Alias=\"mscrm\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">\n");
    for e in &model().entities {
        entity_type(&mut x, e, naming);
    }
    x.push_str("      <EntityContainer Name=\"System\">\n");
    for e in &model().entities {
        x.push_str(&format!(
            "        <EntitySet Name=\"{}\" EntityType=\"Microsoft.Dynamics.CRM.{}\">\n",
            e.entity_set, e.logical_name
        ));
        for r in e
            .graphql
            .relations
            .iter()
            .filter(|r| naming.has_navigation(e, &r.navigation_property))
        {
            let target = model().by_logical_name(&r.target).expect("relation target in model");
            x.push_str(&format!(
                "          <NavigationPropertyBinding Path=\"{}\" Target=\"{}\" />\n",
                r.navigation_property, target.entity_set
            ));
        }
        x.push_str("        </EntitySet>\n");
    }
    x.push_str("      </EntityContainer>\n");
    x.push_str("    </Schema>\n  </edmx:DataServices>\n</edmx:Edmx>\n");
    x
}

fn entity_type(x: &mut String, e: &Entity, naming: &Naming) {
    x.push_str(&format!("      <EntityType Name=\"{}\">\n", e.logical_name));
    x.push_str(&format!(
        "        <Key>\n          <PropertyRef Name=\"{}\" />\n        </Key>\n",
        e.primary_key
    ));
    for p in e.properties.iter().filter(|p| !naming.is_missing(e, &p.name)) {
        let nullable = if p.name == e.primary_key {
            " Nullable=\"false\""
        } else {
            ""
        };
        x.push_str(&format!(
            "        <Property Name=\"{}\" Type=\"{}\"{nullable}>\n",
            naming.upstream_name(e, &p.name),
            p.ty.edm()
        ));
        x.push_str(&format!(
            "          <Annotation Term=\"Org.OData.Core.V1.Description\" String=\"{}\" />\n",
            xml_escape(&p.description)
        ));
        if let Some(os) = &p.option_set {
            x.push_str(&format!(
                "          <Annotation Term=\"Microsoft.Dynamics.CRM.OptionSetName\" String=\"{os}\" />\n"
            ));
        }
        if p.read_only {
            x.push_str("          <Annotation Term=\"Org.OData.Core.V1.Computed\" Bool=\"true\" />\n");
        } else if p.write_once {
            x.push_str("          <Annotation Term=\"Org.OData.Core.V1.Immutable\" Bool=\"true\" />\n");
        }
        x.push_str("        </Property>\n");
    }
    for extra in naming.entity(e).map(|n| n.extra.iter()).into_iter().flatten() {
        x.push_str(&format!("        <Property Name=\"{extra}\" Type=\"Edm.String\" />\n"));
    }
    for r in e
        .graphql
        .relations
        .iter()
        .filter(|r| naming.has_navigation(e, &r.navigation_property))
    {
        match (r.kind, r.lookup_on) {
            (Cardinality::One, _) | (_, LookupSide::This) => {
                let attr = e
                    .property(&r.lookup_property)
                    .and_then(|p| p.lookup.as_ref())
                    .map(|l| l.attribute.clone());
                x.push_str(&format!(
                    "        <NavigationProperty Name=\"{}\" Type=\"Microsoft.Dynamics.CRM.{}\">\n",
                    r.navigation_property, r.target
                ));
                if let (Some(attr), Some(target)) = (attr, model().by_logical_name(&r.target)) {
                    x.push_str(&format!(
                        "          <ReferentialConstraint Property=\"{}\" ReferencedProperty=\"{}\" />\n",
                        naming.upstream_name(e, &format!("_{attr}_value")),
                        naming.upstream_name(target, &target.primary_key)
                    ));
                }
                x.push_str("        </NavigationProperty>\n");
            }
            (Cardinality::Many, LookupSide::Target) => {
                x.push_str(&format!(
                    "        <NavigationProperty Name=\"{}\" Type=\"Collection(Microsoft.Dynamics.CRM.{})\" />\n",
                    r.navigation_property, r.target
                ));
            }
        }
    }
    x.push_str("      </EntityType>\n");
}

fn label(text: &str) -> Value {
    let l = json!({ "Label": text, "LanguageCode": 1033 });
    json!({ "LocalizedLabels": [l.clone()], "UserLocalizedLabel": l })
}

/// One option set as `GlobalOptionSetDefinitions(Name='…')` returns it.
pub fn option_set_definition(base: &str, set: &OptionSet) -> Value {
    let options: Vec<Value> = set
        .values
        .iter()
        .map(|o| {
            json!({
                "Value": o.value,
                "Label": label(&o.label),
                "Description": label(o.description.as_deref().unwrap_or("")),
            })
        })
        .collect();
    json!({
        "@odata.context": format!("{base}$metadata#GlobalOptionSetDefinitions/Microsoft.Dynamics.CRM.OptionSetMetadata/$entity"),
        "@odata.type": "#Microsoft.Dynamics.CRM.OptionSetMetadata",
        "Name": set.name,
        "DisplayName": label(&set.display_name),
        "IsGlobal": true,
        "OptionSetType": "Picklist",
        "Options": options,
    })
}

/// All option sets, as `GET GlobalOptionSetDefinitions` returns them.
pub fn option_set_definitions(base: &str) -> Value {
    let value: Vec<Value> = model()
        .option_sets
        .iter()
        .map(|s| {
            let mut v = option_set_definition(base, s);
            v.as_object_mut().expect("object").remove("@odata.context");
            v
        })
        .collect();
    json!({ "@odata.context": format!("{base}$metadata#GlobalOptionSetDefinitions"), "value": value })
}
