//! Typed GraphQL filters and orders compiled to OData. Values are checked against the model
//! (GUIDs, dates, enum values) and every literal is escaped by `odata::filter`; what the upstream
//! cannot express (filters or sorts on lookups to virtual tables, oversized `in` lists) is refused
//! here, before any request is sent.

use super::errors::bad_input;
use super::types::is_boolean;
use crate::model::{model, Entity, PropType, Property};
use crate::odata::filter::{self, CmpOp, Filter, Literal, StrFunc};
use crate::odata::options::OptionSetLabels;
use async_graphql::{Error, Value};

/// Most values one `in` may list (each becomes part of the URL).
pub const MAX_IN_VALUES: usize = 200;
/// How deep `and` / `or` / `not` may nest.
pub const MAX_FILTER_DEPTH: usize = 10;

/// Compiles a `<Type>Filter` argument to `$filter` text.
pub fn compile_filter(
    entity: &Entity,
    v: &Value,
    labels: &OptionSetLabels,
    dialect: crate::odata::Dialect,
) -> Result<String, Error> {
    let f = to_filter(entity, v, 0)?;
    filter::compile_for(&f, entity, Some(labels), dialect).map_err(|e| bad_input(e.to_string()))
}

fn property<'a>(entity: &'a Entity, field: &str) -> Result<&'a Property, Error> {
    let p = entity
        .properties
        .iter()
        .find(|p| p.graphql_field == field)
        .ok_or_else(|| bad_input(format!("{} has no field `{field}`.", entity.graphql.type_name)))?;
    if p.lookup.as_ref().is_some_and(|l| l.target_is_virtual) {
        return Err(bad_input(format!(
            "`{field}` cannot be filtered or sorted on: Dataverse does not filter or sort on lookup columns that point to virtual tables. Filter on the related record's readable key instead."
        )));
    }
    Ok(p)
}

fn to_filter(entity: &Entity, v: &Value, depth: usize) -> Result<Filter, Error> {
    if depth > MAX_FILTER_DEPTH {
        return Err(bad_input(format!(
            "The filter nests deeper than {MAX_FILTER_DEPTH} levels."
        )));
    }
    let obj = object(v)?;
    let mut all = Vec::new();
    for (name, value) in obj {
        if matches!(value, Value::Null) {
            continue;
        }
        match name.as_str() {
            "and" | "or" => {
                let parts = list(value)?
                    .iter()
                    .map(|x| to_filter(entity, x, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                all.push(if name.as_str() == "and" {
                    Filter::And(parts)
                } else {
                    Filter::Or(parts)
                });
            }
            "not" => all.push(Filter::Not(Box::new(to_filter(entity, value, depth + 1)?))),
            field => {
                let p = property(entity, field)?;
                all.extend(field_conditions(entity, p, value)?);
            }
        }
    }
    Ok(if all.len() == 1 {
        all.pop().expect("one")
    } else {
        Filter::And(all)
    })
}

/// The conditions of one field's operators (`{eq: …, in: […], isNull: true}`), each a filter.
fn field_conditions(entity: &Entity, p: &Property, ops: &Value) -> Result<Vec<Filter>, Error> {
    let mut out = Vec::new();
    for (op, value) in object(ops)? {
        if matches!(value, Value::Null) {
            continue;
        }
        let prop = p.name.clone();
        let cmp = |op: CmpOp| -> Result<Filter, Error> {
            Ok(Filter::Cmp {
                property: prop.clone(),
                op,
                value: literal(entity, p, value)?,
            })
        };
        out.push(match op.as_str() {
            "eq" => cmp(CmpOp::Eq)?,
            "ne" => cmp(CmpOp::Ne)?,
            "gt" => cmp(CmpOp::Gt)?,
            "ge" => cmp(CmpOp::Ge)?,
            "lt" => cmp(CmpOp::Lt)?,
            "le" => cmp(CmpOp::Le)?,
            "in" => in_condition(entity, p, value)?,
            "contains" | "startsWith" | "endsWith" => Filter::Str {
                property: prop,
                func: match op.as_str() {
                    "contains" => StrFunc::Contains,
                    "startsWith" => StrFunc::StartsWith,
                    _ => StrFunc::EndsWith,
                },
                value: string(value)?.to_string(),
            },
            "isNull" => is_null_condition(p, boolean(value)?),
            other => {
                return Err(bad_input(format!(
                    "Unknown filter operator `{other}` on `{}`.",
                    p.graphql_field
                )))
            }
        });
    }
    Ok(out)
}

/// `in`: at most [`MAX_IN_VALUES`] values, each a literal of the property's type.
fn in_condition(entity: &Entity, p: &Property, value: &Value) -> Result<Filter, Error> {
    let list = list(value)?;
    if list.len() > MAX_IN_VALUES {
        return Err(bad_input(format!(
            "`{}.in` lists {} values; at most {MAX_IN_VALUES} are allowed.",
            p.graphql_field,
            list.len()
        )));
    }
    let values = list
        .iter()
        .map(|x| literal(entity, p, x))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Filter::In {
        property: p.name.clone(),
        values,
    })
}

/// `isNull`: in a blank-yes-no set, "Blank" is the empty value too.
fn is_null_condition(p: &Property, is_null: bool) -> Filter {
    let prop = p.name.clone();
    let blank = p
        .option_set
        .as_deref()
        .and_then(|s| model().option_set(s))
        .and_then(|s| s.values.iter().find(|v| v.graphql_value == "null"));
    let Some(b) = blank else {
        return Filter::IsNull {
            property: prop,
            is_null,
        };
    };
    let blank_cmp = Filter::Cmp {
        property: prop.clone(),
        op: if is_null { CmpOp::Eq } else { CmpOp::Ne },
        value: Literal::Option(b.value),
    };
    let null_cmp = Filter::IsNull {
        property: prop,
        is_null,
    };
    if is_null {
        Filter::Or(vec![null_cmp, blank_cmp])
    } else {
        Filter::And(vec![null_cmp, blank_cmp])
    }
}

fn literal(entity: &Entity, p: &Property, v: &Value) -> Result<Literal, Error> {
    let field = &p.graphql_field;
    Ok(match p.ty {
        PropType::String => Literal::String(string(v)?.to_string()),
        PropType::Guid => {
            let s = string(v)?;
            Literal::Guid(
                crate::odata::escape::guid(s)
                    .map_err(|_| bad_input(format!("`{field}` needs a GUID; `{s}` is not one.")))?,
            )
        }
        PropType::Int => Literal::Int(
            number(v)?
                .as_i64()
                .ok_or_else(|| bad_input(format!("`{field}` needs an integer.")))?,
        ),
        PropType::Decimal | PropType::Double => Literal::Float(
            number(v)?
                .as_f64()
                .ok_or_else(|| bad_input(format!("`{field}` needs a number.")))?,
        ),
        PropType::Date => {
            let s = string(v)?;
            Literal::Date(
                crate::odata::escape::date(s)
                    .map_err(|_| bad_input(format!("`{field}` needs a date `YYYY-MM-DD`; `{s}` is not one.")))?,
            )
        }
        PropType::Datetime => {
            let s = string(v)?;
            Literal::DateTime(
                crate::odata::escape::datetime(s)
                    .map_err(|_| bad_input(format!("`{field}` needs an ISO 8601 date-time; `{s}` is not one.")))?,
            )
        }
        PropType::OptionSet => {
            let set_name = p.option_set.as_deref().unwrap_or_default();
            let set = model().option_set(set_name).expect("option set in model");
            let wanted = if is_boolean(p) {
                boolean(v)?.to_string()
            } else {
                match v {
                    Value::Enum(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    other => {
                        return Err(bad_input(format!(
                            "`{field}` needs a {} value, not {other}.",
                            set.graphql_enum
                        )))
                    }
                }
            };
            let value = set.values.iter().find(|o| o.graphql_value == wanted).ok_or_else(|| {
                bad_input(format!(
                    "`{wanted}` is not a value of {} for `{field}` of {}.",
                    set.graphql_enum, entity.graphql.type_name
                ))
            })?;
            Literal::Option(value.value)
        }
    })
}

/// Compiles an `orderBy` argument: each element sets exactly one field.
pub fn compile_order(entity: &Entity, v: &Value) -> Result<Vec<(String, bool)>, Error> {
    let mut out = Vec::new();
    let items = match v {
        Value::List(items) => items.clone(),
        single => vec![single.clone()],
    };
    for (i, item) in items.iter().enumerate() {
        let obj = object(item)?;
        let set: Vec<_> = obj.iter().filter(|(_, d)| !matches!(d, Value::Null)).collect();
        if set.len() != 1 {
            return Err(bad_input(format!(
                "orderBy[{i}] must set exactly one field (it sets {}).",
                set.len()
            )));
        }
        let (name, dir) = &set[0];
        let p = property(entity, name.as_str())?;
        let desc =
            matches!(dir, Value::Enum(n) if n.as_str() == "DESC") || matches!(dir, Value::String(s) if s == "DESC");
        out.push((p.name.clone(), desc));
    }
    Ok(out)
}

/// The fields of an input object, sorted by name: a filter compiles to the same text whichever
/// order the client wrote it in (and the loaders' batch keys compare equal).
fn object(v: &Value) -> Result<Vec<(&async_graphql::Name, &Value)>, Error> {
    match v {
        Value::Object(o) => {
            let mut fields: Vec<_> = o.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            Ok(fields)
        }
        other => Err(bad_input(format!("Expected an input object, found {other}."))),
    }
}

fn list(v: &Value) -> Result<Vec<Value>, Error> {
    match v {
        Value::List(l) => Ok(l.clone()),
        // GraphQL input coercion: a single value stands for a list of one.
        other => Ok(vec![other.clone()]),
    }
}

fn string(v: &Value) -> Result<&str, Error> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(bad_input(format!("Expected a string, found {other}."))),
    }
}

fn boolean(v: &Value) -> Result<bool, Error> {
    match v {
        Value::Boolean(b) => Ok(*b),
        other => Err(bad_input(format!("Expected a boolean, found {other}."))),
    }
}

fn number(v: &Value) -> Result<&async_graphql::Number, Error> {
    match v {
        Value::Number(n) => Ok(n),
        other => Err(bad_input(format!("Expected a number, found {other}."))),
    }
}
