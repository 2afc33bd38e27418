//! Input types of the writes, derived from the model, and their conversion to OData bodies.
//!
//! - `<Type>CreateInput`: the writable properties (write-once included); required ones non-null.
//! - `<Type>UpdateInput`: the writable properties that may change after create, all optional.
//! - Person details inside a submission use `<Type>CreateInput` without the person link, which the
//!   submission sets.
//!
//! GUID lookups are never inputs: records link through their readable keys (`recruitingRequestId`,
//! `partyNumber`, …), the path the ATS documentation gives.

use super::super::types::is_boolean;
use crate::model::{model, Entity, PropType, Property};
use crate::odata::OptionSetLabels;
use async_graphql::dynamic::{InputObject, InputValue, TypeRef};
use async_graphql::{Name, Value};
use serde_json::{Map, Value as Json};

pub fn create_input_name(e: &Entity) -> String {
    format!("{}CreateInput", e.graphql.type_name)
}

pub fn update_input_name(e: &Entity) -> String {
    format!("{}UpdateInput", e.graphql.type_name)
}

/// Whether a client may write the property at all.
pub fn writable(p: &Property) -> bool {
    !p.read_only && !p.is_lookup()
}

/// Whether the input makes the property non-null. Required option sets stay optional: HR fills
/// them with a default, and the documented deep insert leaves them out.
pub fn required_in_input(p: &Property) -> bool {
    p.required && p.ty != PropType::OptionSet
}

/// The properties a create input holds, minus `except` (a link the caller sets itself).
pub fn create_properties<'a>(e: &'a Entity, except: &'a [String]) -> impl Iterator<Item = &'a Property> {
    e.properties
        .iter()
        .filter(move |p| writable(p) && !except.contains(&p.name))
}

fn input_type(p: &Property, non_null: bool) -> TypeRef {
    if non_null {
        TypeRef::named_nn(&p.graphql_type)
    } else {
        TypeRef::named(&p.graphql_type)
    }
}

fn describe(p: &Property) -> String {
    let mut d = format!("{} OData: `{}`.", p.description, p.name);
    if p.write_once {
        d.push_str(" Set on create only.");
    }
    if let Some(n) = p.max_length {
        d.push_str(&format!(" At most {n} characters."));
    }
    d
}

/// `<Type>CreateInput` (named `name`), leaving out `except`.
pub fn create_input(e: &Entity, name: &str, except: &[String]) -> InputObject {
    let mut o = InputObject::new(name).description(format!("A new {} record.", e.name.to_lowercase()));
    for p in create_properties(e, except) {
        o = o.field(InputValue::new(&p.graphql_field, input_type(p, required_in_input(p))).description(describe(p)));
    }
    o
}

/// `<Type>UpdateInput`: the properties to change; absent ones keep their values.
pub fn update_input(e: &Entity) -> InputObject {
    let mut o = InputObject::new(update_input_name(e)).description(format!(
        "Changes to a {} record: only the fields given change.",
        e.name.to_lowercase()
    ));
    for p in e.properties.iter().filter(|p| writable(p) && !p.write_once) {
        o = o.field(InputValue::new(&p.graphql_field, input_type(p, false)).description(describe(p)));
    }
    o
}

/// Whether an entity takes any writes.
pub fn has_writable(e: &Entity) -> bool {
    e.properties.iter().any(writable)
}

/// A problem with one input field, with its path (`educations[2].startDate`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldProblem {
    pub path: String,
    pub message: String,
}

/// Converts an input object to an OData body, collecting every problem under `path`.
pub fn to_body(
    e: &Entity,
    value: &Value,
    labels: &OptionSetLabels,
    path: &str,
    problems: &mut Vec<FieldProblem>,
) -> Map<String, Json> {
    let mut body = Map::new();
    let Value::Object(fields) = value else {
        problems.push(FieldProblem {
            path: path.to_string(),
            message: "must be an input object".into(),
        });
        return body;
    };
    for (name, v) in fields {
        let here = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        let Some(p) = e
            .properties
            .iter()
            .find(|p| p.graphql_field == name.as_str() && writable(p))
        else {
            continue; // not a property of this entity (a nested list the caller handles)
        };
        match to_odata(p, v, labels) {
            Ok(j) => {
                body.insert(p.name.clone(), j);
            }
            Err(message) => problems.push(FieldProblem { path: here, message }),
        }
    }
    check_rules(e, fields, path, problems);
    body
}

/// Rules beyond the types: known string lengths and dates in order (a start before its end).
fn check_rules(
    e: &Entity,
    fields: &async_graphql::indexmap::IndexMap<Name, Value>,
    path: &str,
    problems: &mut Vec<FieldProblem>,
) {
    let at = |f: &str| {
        if path.is_empty() {
            f.to_string()
        } else {
            format!("{path}.{f}")
        }
    };
    for p in &e.properties {
        if let (Some(max), Some(Value::String(s))) = (p.max_length, fields.get(p.graphql_field.as_str())) {
            let n = s.chars().count();
            if n > max {
                problems.push(FieldProblem {
                    path: at(&p.graphql_field),
                    message: format!("is {n} characters long; at most {max} are allowed"),
                });
            }
        }
        // `…start…` pairs with the same name with `end` for `start`.
        let f = &p.graphql_field;
        if !matches!(p.ty, PropType::Date | PropType::Datetime) || !f.to_lowercase().contains("start") {
            continue;
        }
        let end_name = f.replacen("start", "end", 1).replacen("Start", "End", 1);
        if let (Some(Value::String(start)), Some(Value::String(end))) =
            (fields.get(f.as_str()), fields.get(end_name.as_str()))
        {
            let (s, en) = (normalize_instant(start), normalize_instant(end));
            if let (Some(s), Some(en)) = (s, en) {
                if s > en {
                    problems.push(FieldProblem {
                        path: at(f),
                        message: format!("{start} is after {end_name} {end}; a start must not be after its end"),
                    });
                }
            }
        }
    }
}

fn normalize_instant(s: &str) -> Option<String> {
    crate::odata::escape::datetime(s)
        .ok()
        .or_else(|| crate::odata::escape::date(s).ok().map(|d| format!("{d}T00:00:00Z")))
}

/// Converts one input value to its OData wire form.
pub fn to_odata(p: &Property, v: &Value, labels: &OptionSetLabels) -> Result<Json, String> {
    if matches!(v, Value::Null) {
        return Ok(Json::Null);
    }
    Ok(match p.ty {
        PropType::String | PropType::Guid => match v {
            Value::String(s) => Json::String(s.clone()),
            other => return Err(format!("must be a string, not {other}")),
        },
        PropType::Int => match v {
            Value::Number(n) if n.is_i64() => Json::from(n.as_i64().unwrap_or_default()),
            other => return Err(format!("must be an integer, not {other}")),
        },
        PropType::Decimal | PropType::Double => match v {
            Value::Number(n) => Json::from(n.as_f64().unwrap_or_default()),
            other => return Err(format!("must be a number, not {other}")),
        },
        PropType::Date => match v {
            Value::String(s) => {
                Json::String(crate::odata::escape::date(s).map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))?)
            }
            other => return Err(format!("must be a date, not {other}")),
        },
        PropType::Datetime => match v {
            Value::String(s) => {
                Json::String(normalize_instant(s).ok_or_else(|| format!("`{s}` is not an ISO 8601 date-time"))?)
            }
            other => return Err(format!("must be a date-time, not {other}")),
        },
        PropType::OptionSet => {
            let set_name = p.option_set.as_deref().unwrap_or_default();
            let set = model()
                .option_set(set_name)
                .ok_or_else(|| format!("unknown option set {set_name}"))?;
            let wanted = match (v, is_boolean(p)) {
                (Value::Boolean(b), true) => b.to_string(),
                (Value::Enum(n), false) => n.to_string(),
                (Value::String(s), false) => s.clone(),
                (other, _) => return Err(format!("must be a {} value, not {other}", set.graphql_enum)),
            };
            let o = set
                .values
                .iter()
                .find(|o| o.graphql_value == wanted)
                .ok_or_else(|| format!("`{wanted}` is not a value of {}", set.graphql_enum))?;
            Json::from(labels.to_upstream(set_name, o.value))
        }
    })
}
