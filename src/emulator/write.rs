//! Writes: create (with deep insert and `@odata.bind`), update and delete, with the rules F&O's
//! entity logic applies behind a virtual table.
//!
//! On create the emulator assigns what the system assigns (GUIDs, number-sequence IDs,
//! `mshr_primaryfield`), resolves readable keys (`mshr_partynumber`, `mshr_recruitingrequestid`,
//! …) to their GUID lookups, rejects read-only properties and enforces required ones. A flat
//! candidate POST creates its person, as documented: a required to-one relation whose readable
//! key is read-only on the child is created from the child's own matching properties.

use super::error::ODataError;
use super::store::{self, quote, table, Record};
use crate::model::{model, Cardinality, Entity, LookupSide, PropType, Relation};
use rusqlite::Connection;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Content-ID references of the change set being executed (`$1` -> `set(<guid>)`).
pub type ContentIds = HashMap<String, (&'static Entity, String)>;

fn unknown_property(entity: &Entity, name: &str) -> ODataError {
    ODataError::bad_query(format!(
        "The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{}'. Make sure to only use property names that are defined by the type.",
        entity.logical_name
    ))
}

/// Creates a record (and everything nested in it); returns its primary key.
pub fn create(
    conn: &Connection,
    entity: &'static Entity,
    body: &Value,
    refs: &ContentIds,
) -> Result<String, ODataError> {
    let obj = body.as_object().ok_or_else(|| {
        ODataError::bad_query(format!(
            "The request body for a '{}' must be a JSON object.",
            entity.logical_name
        ))
    })?;
    let Body {
        mut row,
        children,
        linked_parents,
    } = read_body(conn, entity, obj, refs)?;

    // Parents given by nesting or binding set the lookup and the readable key.
    for (rel, parent) in &linked_parents {
        link_to_parent(entity, rel, parent, &mut row);
    }
    resolve_readable_keys(conn, entity, &mut row, refs)?;
    create_implicit_parents(conn, entity, &mut row, refs)?;
    fill_defaults(entity, &mut row);
    check_required(entity, &row)?;
    assign_system_values(conn, entity, &mut row)?;

    let id = store::new_primary_key(conn, entity)?;
    row.insert(entity.primary_key.clone(), Value::String(id.clone()));
    store::insert_row(conn, entity, &row)?;

    create_children(conn, entity, &row, &id, children, refs)?;
    Ok(id)
}

/// A create's body, read: the record's own properties, the nested children to create after it,
/// and the parents it is bound or nested into.
struct Body<'a> {
    row: Record,
    children: Vec<(&'static Relation, &'a Vec<Value>)>,
    linked_parents: Vec<(&'static Relation, Record)>,
}

/// Reads a create's body: binds and nested parents (created first), nested children (kept for
/// later), and the properties, refusing unknown and read-only ones.
fn read_body<'a>(
    conn: &Connection,
    entity: &'static Entity,
    obj: &'a serde_json::Map<String, Value>,
    refs: &ContentIds,
) -> Result<Body<'a>, ODataError> {
    let mut row = Record::new();
    let mut children: Vec<(&'static Relation, &'a Vec<Value>)> = Vec::new();
    let mut linked_parents: Vec<(&'static Relation, Record)> = Vec::new();
    for (k, v) in obj {
        if k.starts_with("@odata.") {
            continue;
        }
        if let Some(nav) = k.strip_suffix("@odata.bind") {
            let rel = entity.navigation(nav).ok_or_else(|| unknown_property(entity, nav))?;
            let (target, id) = resolve_bind(v, refs)?;
            if rel.lookup_on != LookupSide::This || target.logical_name != rel.target {
                return Err(ODataError::bad_query(format!(
                    "'{nav}' cannot be bound to a record of type '{}'.",
                    target.logical_name
                )));
            }
            let parent = store::get_by_key(conn, target, &id, None)?
                .ok_or_else(|| ODataError::record_not_found(&target.logical_name, &id))?;
            linked_parents.push((rel, parent));
            continue;
        }
        if let Some(rel) = entity.navigation(k) {
            match (rel.lookup_on, v) {
                (LookupSide::This, Value::Object(_)) => {
                    let target = model().by_logical_name(&rel.target).expect("relation target in model");
                    let id = create(conn, target, v, refs)?;
                    let parent = store::get_by_key(conn, target, &id, None)?.expect("just created");
                    linked_parents.push((rel, parent));
                }
                (LookupSide::Target, Value::Array(items)) => children.push((rel, items)),
                _ => {
                    return Err(ODataError::bad_query(format!(
                        "The navigation property '{k}' needs {} for a deep insert.",
                        if rel.kind == Cardinality::One {
                            "an object"
                        } else {
                            "an array of objects"
                        }
                    )))
                }
            }
            continue;
        }
        let p = entity.property(k).ok_or_else(|| unknown_property(entity, k))?;
        let links = entity
            .graphql
            .relations
            .iter()
            .any(|r| r.lookup_on == LookupSide::This && r.child_readable_key.as_deref() == Some(k.as_str()));
        if p.read_only && !links {
            return Err(ODataError::validation(format!(
                "The property '{k}' of '{}' is read-only and cannot be set.",
                entity.logical_name
            )));
        }
        store::to_sql(entity, p, v)?;
        row.insert(k.clone(), v.clone());
    }
    Ok(Body {
        row,
        children,
        linked_parents,
    })
}

/// Creates the children nested in a deep insert, each bound to the parent `id` just created.
fn create_children(
    conn: &Connection,
    entity: &'static Entity,
    row: &Record,
    id: &str,
    children: Vec<(&'static Relation, &Vec<Value>)>,
    refs: &ContentIds,
) -> Result<(), ODataError> {
    for (rel, items) in children {
        let target = model().by_logical_name(&rel.target).expect("relation target in model");
        let back = target
            .graphql
            .relations
            .iter()
            .find(|r| {
                r.lookup_on == LookupSide::This
                    && r.lookup_property == rel.lookup_property
                    && r.target == entity.logical_name
            })
            .expect("to-many relation has its to-one twin");
        for item in items {
            let mut child = item
                .as_object()
                .cloned()
                .ok_or_else(|| ODataError::bad_query("A deep-insert collection must hold objects."))?;
            if let Some(k) = &back.child_readable_key {
                if let Some(v) = back.parent_readable_key.as_ref().and_then(|pk| row.get(pk)) {
                    child.insert(k.clone(), v.clone());
                }
            }
            child.insert(
                format!("{}@odata.bind", back.navigation_property),
                Value::String(format!("{}({id})", entity.entity_set)),
            );
            create(conn, target, &Value::Object(child), refs)?;
        }
    }
    Ok(())
}

/// Reads `"/set(<guid>)"`, `"set(<guid>)"` or `"$n"`.
fn resolve_bind(v: &Value, refs: &ContentIds) -> Result<(&'static Entity, String), ODataError> {
    let s = v
        .as_str()
        .ok_or_else(|| ODataError::bad_query("An @odata.bind value must be a string."))?;
    if let Some(r) = refs.get(s) {
        return Ok((r.0, r.1.clone()));
    }
    if s.starts_with('$') {
        return Err(ODataError::bad_query(format!(
            "Content-ID Reference: '{s}' does not exist in the batch context."
        )));
    }
    let path = s
        .rsplit_once("/api/data/v9.2/")
        .map(|(_, p)| p)
        .unwrap_or(s)
        .trim_start_matches('/');
    let (set, rest) = path
        .split_once('(')
        .ok_or_else(|| ODataError::bad_query(format!("'{s}' is not a record reference.")))?;
    let entity = model()
        .by_entity_set(set)
        .ok_or_else(|| ODataError::segment_not_found(set))?;
    let id = rest
        .strip_suffix(')')
        .and_then(store::normalize_guid)
        .ok_or_else(|| ODataError::bad_query(format!("'{s}' is not a record reference.")))?;
    Ok((entity, id))
}

fn link_to_parent(entity: &Entity, rel: &Relation, parent: &Record, row: &mut Record) {
    let target = model().by_logical_name(&rel.target).expect("relation target in model");
    row.insert(
        rel.lookup_property.clone(),
        parent.get(&target.primary_key).cloned().unwrap_or(Value::Null),
    );
    if let (Some(ck), Some(pk)) = (&rel.child_readable_key, &rel.parent_readable_key) {
        if entity.property(ck).is_some() {
            row.insert(ck.clone(), parent.get(pk).cloned().unwrap_or(Value::Null));
        }
    }
    if mirrors_parent(entity, rel) {
        for p in &target.properties {
            let mine = entity.property(&p.name);
            if let Some(mine) = mine {
                if !mine.is_lookup() && p.name != target.primary_key && row.get(&p.name).is_none_or(Value::is_null) {
                    if let Some(v) = parent.get(&p.name).filter(|v| !v.is_null()) {
                        row.insert(p.name.clone(), v.clone());
                    }
                }
            }
        }
    }
}

/// A required to-one relation whose readable key is read-only on the child: the child is a view of
/// the parent (the candidate of its person), so it mirrors the parent's same-named properties and
/// creates the parent when none is given.
fn mirrors_parent(entity: &Entity, rel: &Relation) -> bool {
    rel.lookup_on == LookupSide::This
        && entity.property(&rel.lookup_property).is_some_and(|p| p.required)
        && rel
            .child_readable_key
            .as_deref()
            .and_then(|k| entity.property(k))
            .is_some_and(|p| p.read_only)
}

/// Fills GUID lookups from the readable keys the client wrote.
fn resolve_readable_keys(
    conn: &Connection,
    entity: &Entity,
    row: &mut Record,
    _refs: &ContentIds,
) -> Result<(), ODataError> {
    for rel in entity
        .graphql
        .relations
        .iter()
        .filter(|r| r.lookup_on == LookupSide::This)
    {
        if row.get(&rel.lookup_property).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let (Some(ck), Some(pk)) = (&rel.child_readable_key, &rel.parent_readable_key) else {
            continue;
        };
        let Some(key) = row
            .get(ck)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
        else {
            continue;
        };
        let target = model().by_logical_name(&rel.target).expect("relation target in model");
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = ? LIMIT 1",
            quote(&target.primary_key),
            table(target),
            quote(pk)
        );
        let found: Option<String> = conn.prepare_cached(&sql)?.query_row([&key], |r| r.get(0)).ok();
        let id = found.ok_or_else(|| {
            ODataError::validation(format!(
                "The value '{key}' of '{ck}' on record of type '{}' does not match any '{}' ({pk}).",
                entity.logical_name, target.logical_name
            ))
        })?;
        let parent = store::get_by_key(conn, target, &id, None)?.expect("row just found");
        link_to_parent(entity, rel, &parent, row);
    }
    Ok(())
}

fn create_implicit_parents(
    conn: &Connection,
    entity: &Entity,
    row: &mut Record,
    refs: &ContentIds,
) -> Result<(), ODataError> {
    for rel in entity.graphql.relations.iter().filter(|r| mirrors_parent(entity, r)) {
        if row.get(&rel.lookup_property).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let target = model().by_logical_name(&rel.target).expect("relation target in model");
        let body: Map<String, Value> = row
            .iter()
            .filter(|(k, _)| target.property(k).is_some_and(|p| !p.read_only && !p.is_lookup()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let id = create(conn, target, &Value::Object(body), refs)?;
        let parent = store::get_by_key(conn, target, &id, None)?.expect("just created");
        link_to_parent(entity, rel, &parent, row);
    }
    Ok(())
}

/// Required option sets left out take their first value, as HR's entity defaults do (the
/// documented deep insert omits the required integration result).
fn fill_defaults(entity: &Entity, row: &mut Record) {
    for p in entity
        .properties
        .iter()
        .filter(|p| p.required && p.ty == PropType::OptionSet && !p.read_only)
    {
        if row.get(&p.name).is_none_or(Value::is_null) {
            let first = p
                .option_set
                .as_deref()
                .and_then(|s| model().option_set(s))
                .and_then(|s| s.values.first());
            if let Some(o) = first {
                row.insert(p.name.clone(), Value::from(o.value));
            }
        }
    }
}

fn check_required(entity: &Entity, row: &Record) -> Result<(), ODataError> {
    let missing: Vec<&str> = entity
        .properties
        .iter()
        .filter(|p| p.required && !p.read_only && !p.system_generated)
        .filter(|p| row.get(&p.name).is_none_or(|v| v.is_null() || v.as_str() == Some("")))
        .map(|p| p.name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ODataError::validation(format!(
        "A value must be provided for the required {} {} on record of type '{}'.",
        if missing.len() == 1 { "property" } else { "properties" },
        missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", "),
        entity.logical_name
    )))
}

fn assign_system_values(conn: &Connection, entity: &Entity, row: &mut Record) -> Result<(), ODataError> {
    for (prop, format) in &entity.sequences {
        if row.get(prop).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let company = company_of(entity, row);
        let n = store::next_in_sequence(conn, &sequence_name(entity, prop, &company), 1)?;
        row.insert(
            prop.clone(),
            Value::String(super::ids::format_sequence(format, &company, n)),
        );
    }
    set_primary_field(entity, row);
    Ok(())
}

/// The company a record belongs to (its `mshr_dataareaid`), for per-company number sequences.
pub fn company_of(entity: &Entity, row: &Record) -> String {
    entity
        .company_property
        .as_ref()
        .and_then(|p| row.get(p))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase()
}

/// The `_sequences` counter name of a sequence property.
pub fn sequence_name(entity: &Entity, prop: &str, company: &str) -> String {
    let format = &entity.sequences[prop];
    if format.contains("{company}") {
        format!("seq:{}:{prop}:{company}", entity.logical_name)
    } else {
        format!("seq:{}:{prop}", entity.logical_name)
    }
}

/// Recomputes the computed properties: the full name and `mshr_primaryfield`.
pub fn set_primary_field(entity: &Entity, row: &mut Record) {
    if let Some(full) = &entity.full_name {
        let name: Vec<&str> = full
            .parts
            .iter()
            .filter_map(|k| row.get(k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .collect();
        row.insert(full.property.clone(), Value::String(name.join(" ")));
    }
    let Some(field) = &entity.primary_field_property else {
        return;
    };
    let joined = entity
        .primary_field_parts
        .iter()
        .map(|k| match row.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" | ");
    row.insert(field.clone(), Value::String(joined.chars().take(255).collect()));
}

/// Updates a record (PATCH). Virtual tables have no meaningful upsert by GUID, so a missing record
/// is a 404 (an emulator choice; see ARCHITECTURE.md).
pub fn update(conn: &Connection, entity: &Entity, id: &str, body: &Value) -> Result<(), ODataError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ODataError::bad_query("The request body must be a JSON object."))?;
    let mut row = store::get_by_key(conn, entity, id, None)?
        .ok_or_else(|| ODataError::record_not_found(&entity.logical_name, id))?;
    let mut changed = Vec::new();
    for (k, v) in obj {
        if k.starts_with("@odata.") {
            continue;
        }
        if entity.navigation(k).is_some() || k.ends_with("@odata.bind") {
            return Err(ODataError::bad_query(format!(
                "Deep update through '{k}' is not supported."
            )));
        }
        let p = entity.property(k).ok_or_else(|| unknown_property(entity, k))?;
        if p.read_only || p.write_once {
            return Err(ODataError::validation(format!(
                "The property '{k}' of '{}' is {} and cannot be updated.",
                entity.logical_name,
                if p.read_only { "read-only" } else { "write-once" }
            )));
        }
        store::to_sql(entity, p, v)?;
        row.insert(k.clone(), v.clone());
        changed.push(k.clone());
    }
    for rel in entity
        .graphql
        .relations
        .iter()
        .filter(|r| r.lookup_on == LookupSide::This)
    {
        if rel.child_readable_key.as_ref().is_some_and(|k| changed.contains(k)) {
            row.insert(rel.lookup_property.clone(), Value::Null);
        }
    }
    resolve_readable_keys(conn, entity, &mut row, &ContentIds::new())?;
    check_required(entity, &row)?;
    set_primary_field(entity, &mut row);
    let sets: Vec<String> = row
        .keys()
        .filter(|k| *k != &entity.primary_key)
        .map(|k| format!("{} = ?", quote(k)))
        .collect();
    let mut vals = Vec::new();
    for (k, v) in row.iter().filter(|(k, _)| *k != &entity.primary_key) {
        vals.push(store::to_sql(entity, entity.property(k).expect("stored property"), v)?);
    }
    vals.push(rusqlite::types::Value::Text(id.to_string()));
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = ?",
        table(entity),
        sets.join(", "),
        quote(&entity.primary_key)
    );
    conn.execute(&sql, rusqlite::params_from_iter(vals))?;
    Ok(())
}

/// Deletes a record. A record other records still point at is kept (F&O refuses to orphan them).
pub fn delete(conn: &Connection, entity: &Entity, id: &str) -> Result<(), ODataError> {
    if store::get_by_key(conn, entity, id, Some(&[]))?.is_none() {
        return Err(ODataError::record_not_found(&entity.logical_name, id));
    }
    for rel in entity
        .graphql
        .relations
        .iter()
        .filter(|r| r.lookup_on == LookupSide::Target)
    {
        let target = model().by_logical_name(&rel.target).expect("relation target in model");
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {} = ?",
            table(target),
            quote(&rel.lookup_property)
        );
        let n: i64 = conn.query_row(&sql, [id], |r| r.get(0))?;
        if n > 0 {
            return Err(ODataError::new(
                405,
                super::error::codes::VALIDATION,
                format!(
                    "The record cannot be deleted because {n} '{}' record(s) refer to it through '{}'. Delete them first.",
                    target.logical_name, rel.navigation_property
                ),
            ));
        }
    }
    conn.execute(
        &format!("DELETE FROM {} WHERE {} = ?", table(entity), quote(&entity.primary_key)),
        [id],
    )?;
    Ok(())
}
