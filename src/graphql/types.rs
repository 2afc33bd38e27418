//! The schema's types, derived from the model: one object type per entity with its properties and
//! relations, Relay connections, option-set enums, the `UUID` / `Date` / `DateTime` scalars, and the
//! typed filter and order inputs.

use super::resolve;
use crate::model::{model, Cardinality, Entity, OptionSet, PropType, Property};
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, InputObject, InputValue, Object, Scalar, SchemaBuilder, TypeRef,
};

/// The GraphQL type of a property (`String`, `Int`, `Float`, `Boolean`, `ID`, `UUID`, `Date`,
/// `DateTime` or an option-set enum), as the model names it.
pub fn scalar_type_name(p: &Property) -> &str {
    &p.graphql_type
}

/// Whether a property is exposed as a GraphQL `Boolean` (the yes/no option sets).
pub fn is_boolean(p: &Property) -> bool {
    p.ty == PropType::OptionSet && p.graphql_type == TypeRef::BOOLEAN
}

/// The names of generated helper types, in one place.
pub mod names {
    pub fn connection(ty: &str) -> String {
        format!("{ty}Connection")
    }
    pub fn edge(ty: &str) -> String {
        format!("{ty}Edge")
    }
    pub fn filter(ty: &str) -> String {
        format!("{ty}Filter")
    }
    pub fn order_by(ty: &str) -> String {
        format!("{ty}OrderBy")
    }
    pub fn scalar_filter(scalar: &str) -> String {
        format!("{scalar}Filter")
    }
    pub const PAGE_INFO: &str = "PageInfo";
    pub const SORT_DIRECTION: &str = "SortDirection";
}

/// Registers every type of the read schema and returns the root query object.
/// With `federation`, entity types get their `@key`s and shared value types are `@shareable`.
pub fn register(mut builder: SchemaBuilder, mut query: Object, federation: bool) -> (SchemaBuilder, Object) {
    // A subgraph's value types that other subgraphs may define too must be `@shareable`.
    let shared = |o: Object| if federation { o.shareable() } else { o };
    builder = builder
        .register(
            Scalar::new("UUID")
                .description("A GUID such as `00000d6b-0000-0000-0000-005001000000`: the key of a related record."),
        )
        .register(Scalar::new("Date").description("A calendar date, `YYYY-MM-DD`."))
        .register(Scalar::new("DateTime").description("A UTC date and time in ISO 8601, `YYYY-MM-DDTHH:MM:SSZ`."))
        .register(
            Enum::new(names::SORT_DIRECTION)
                .description("Sort order.")
                .item(EnumItem::new("ASC").description("Ascending."))
                .item(EnumItem::new("DESC").description("Descending.")),
        )
        .register(shared(page_info()));
    for set in model()
        .option_sets
        .iter()
        .filter(|s| s.graphql_enum != TypeRef::BOOLEAN)
    {
        builder = builder
            .register(option_enum(set))
            .register(enum_filter(&set.graphql_enum));
    }
    for scalar in ["String", "Int", "Float", "Boolean", "ID", "UUID", "Date", "DateTime"] {
        builder = builder.register(scalar_filter(scalar));
    }
    for e in &model().entities {
        builder = builder
            .register(match federation {
                true => super::federation::with_keys(entity_object(e), e),
                false => entity_object(e),
            })
            .register(shared(connection(e)))
            .register(shared(edge(e)))
            .register(filter_input(e))
            .register(order_input(e));
        query = query.field(resolve::single_field(e)).field(resolve::list_field(e));
    }
    (builder, query)
}

fn page_info() -> Object {
    let field = |name: &str, ty: TypeRef, desc: &str| {
        let key = name.to_string();
        Field::new(name, ty, move |ctx| {
            let key = key.clone();
            FieldFuture::new(async move {
                let info = ctx.parent_value.try_downcast_ref::<resolve::PageInfoValue>()?;
                Ok(Some(async_graphql::dynamic::FieldValue::value(info.get(&key))))
            })
        })
        .description(desc)
    };
    Object::new(names::PAGE_INFO)
        .description("Where a page sits in its list.")
        .field(field(
            "hasNextPage",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            "Whether more items follow this page.",
        ))
        .field(field(
            "endCursor",
            TypeRef::named(TypeRef::STRING),
            "Pass as `after` to get the next page.",
        ))
}

fn option_enum(set: &OptionSet) -> Enum {
    let mut e = Enum::new(&set.graphql_enum).description(format!(
        "{} (Dataverse option set `{}`). Values map by label to the environment's integers.",
        set.display_name, set.name
    ));
    for v in &set.values {
        let desc = v.description.clone().unwrap_or_default();
        e = e.item(EnumItem::new(&v.graphql_value).description(format!("{} ({desc})", v.label)));
    }
    e
}

fn entity_object(e: &'static Entity) -> Object {
    let mut o =
        Object::new(&e.graphql.type_name).description(format!("{} (`{}`). {}", e.name, e.entity_set, e.description));
    for p in &e.properties {
        let ty = if p.name == e.primary_key {
            TypeRef::named_nn(TypeRef::ID)
        } else {
            TypeRef::named(scalar_type_name(p))
        };
        o = o.field(resolve::property_field(e, p, ty).description(property_description(p)));
    }
    for r in &e.graphql.relations {
        let target = model().by_logical_name(&r.target).expect("relation target in model");
        let field = match r.kind {
            Cardinality::One => resolve::to_one_field(e, r, TypeRef::named(&target.graphql.type_name)),
            Cardinality::Many => resolve::to_many_field(e, r, TypeRef::named_nn_list_nn(&target.graphql.type_name))
                .argument(
                    InputValue::new("filter", TypeRef::named(names::filter(&target.graphql.type_name)))
                        .description("Only the related records that match."),
                )
                .argument(
                    InputValue::new(
                        "orderBy",
                        TypeRef::named_nn_list(names::order_by(&target.graphql.type_name)),
                    )
                    .description("Sort keys, most significant first."),
                )
                .argument(
                    InputValue::new("first", TypeRef::named(TypeRef::INT))
                        .description("At most this many related records per parent."),
                ),
        };
        let desc = match r.kind {
            Cardinality::One => format!(
                "The related {} (through `{}`); null when the lookup is empty.",
                target.name.to_lowercase(),
                r.lookup_property
            ),
            Cardinality::Many => format!(
                "The {} records whose `{}` points here.",
                target.name.to_lowercase(),
                r.lookup_property
            ),
        };
        o = o.field(field.description(desc));
    }
    o
}

fn property_description(p: &Property) -> String {
    let mut flags = Vec::new();
    if p.read_only {
        flags.push("read-only");
    }
    if p.write_once {
        flags.push("write-once");
    }
    if p.required {
        flags.push("required");
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!(" [{}]", flags.join(", "))
    };
    format!("{} OData: `{}`{flags}.", p.description, p.name)
}

fn connection(e: &Entity) -> Object {
    let ty = &e.graphql.type_name;
    Object::new(names::connection(ty))
        .description(format!("A page of {} records.", e.name.to_lowercase()))
        .field(resolve::connection_edges(ty))
        .field(resolve::connection_nodes(ty))
        .field(resolve::connection_page_info())
        .field(resolve::connection_total_count())
}

fn edge(e: &Entity) -> Object {
    let ty = &e.graphql.type_name;
    Object::new(names::edge(ty))
        .description(format!("A {} record and its cursor.", e.name.to_lowercase()))
        .field(resolve::edge_cursor())
        .field(resolve::edge_node(ty))
}

/// Operators each scalar's filter offers.
fn operators(scalar: &str) -> &'static [&'static str] {
    match scalar {
        "String" => &[
            "eq",
            "ne",
            "gt",
            "ge",
            "lt",
            "le",
            "in",
            "contains",
            "startsWith",
            "endsWith",
            "isNull",
        ],
        "Int" | "Float" | "Date" | "DateTime" => &["eq", "ne", "gt", "ge", "lt", "le", "in", "isNull"],
        "Boolean" => &["eq", "ne", "isNull"],
        _ => &["eq", "ne", "in", "isNull"],
    }
}

fn operator_input(op: &str, scalar: &str) -> InputValue {
    let (ty, desc) = match op {
        "in" => (TypeRef::named_nn_list(scalar), "Equal to one of these."),
        "isNull" => (
            TypeRef::named(TypeRef::BOOLEAN),
            "`true`: the value is empty; `false`: it is set.",
        ),
        "contains" => (
            TypeRef::named(scalar),
            "Contains this text (case-insensitive; `%` and `_` match literally).",
        ),
        "startsWith" => (TypeRef::named(scalar), "Starts with this text (case-insensitive)."),
        "endsWith" => (TypeRef::named(scalar), "Ends with this text (case-insensitive)."),
        "eq" => (
            TypeRef::named(scalar),
            "Equal (strings compare case-insensitively, as Dataverse does).",
        ),
        "ne" => (TypeRef::named(scalar), "Not equal."),
        "gt" => (TypeRef::named(scalar), "Greater than."),
        "ge" => (TypeRef::named(scalar), "Greater than or equal."),
        "lt" => (TypeRef::named(scalar), "Less than."),
        _ => (TypeRef::named(scalar), "Less than or equal."),
    };
    InputValue::new(op, ty).description(desc)
}

fn scalar_filter(scalar: &str) -> InputObject {
    let mut o = InputObject::new(names::scalar_filter(scalar))
        .description(format!("Conditions on a `{scalar}` field; all given ones must hold."));
    for op in operators(scalar) {
        o = o.field(operator_input(op, scalar));
    }
    o
}

fn enum_filter(name: &str) -> InputObject {
    let mut o = InputObject::new(names::scalar_filter(name)).description(format!("Conditions on a `{name}` field."));
    for op in operators(name) {
        o = o.field(operator_input(op, name));
    }
    o
}

fn filter_input(e: &Entity) -> InputObject {
    let ty = &e.graphql.type_name;
    let name = names::filter(ty);
    let mut o = InputObject::new(&name)
        .description(format!(
            "Conditions on {} records. Fields combine with AND; use `or` and `not` for the rest.",
            e.name.to_lowercase()
        ))
        .field(InputValue::new("and", TypeRef::named_nn_list(&name)).description("All of these hold."))
        .field(InputValue::new("or", TypeRef::named_nn_list(&name)).description("At least one of these holds."))
        .field(InputValue::new("not", TypeRef::named(&name)).description("This does not hold."));
    for p in &e.properties {
        let scalar = if p.name == e.primary_key {
            TypeRef::ID
        } else {
            scalar_type_name(p)
        };
        o = o.field(InputValue::new(
            &p.graphql_field,
            TypeRef::named(names::scalar_filter(scalar)),
        ));
    }
    o
}

fn order_input(e: &Entity) -> InputObject {
    let mut o = InputObject::new(names::order_by(&e.graphql.type_name))
        .description("One sort key: set exactly one field to ASC or DESC.");
    for p in &e.properties {
        o = o.field(InputValue::new(&p.graphql_field, TypeRef::named(names::SORT_DIRECTION)));
    }
    o
}
