//! Tests that span several parts: the filter compiler (`filter`, and properties in `props`), query
//! URLs (`query`), and the client (`client`, and its retries, slots and breaker in `resilience`)
//! against a tiny in-process fake upstream (`fake`).

mod client;
mod fake;
mod filter;
mod props;
mod query;
mod resilience;

use crate::model::{model, Entity, PropType, Property};

/// The first property of a type, with its entity (tests name nothing: the model decides).
pub fn with_type(ty: PropType) -> (&'static Entity, &'static Property) {
    with(|p| p.ty == ty && !p.is_lookup())
}

/// The first property matching `f`, with its entity.
pub fn with(f: impl Fn(&Property) -> bool) -> (&'static Entity, &'static Property) {
    model()
        .entities
        .iter()
        .find_map(|e| e.properties.iter().find(|p| f(p)).map(|p| (e, p)))
        .expect("the model has such a property")
}

/// A property on a yes/no option set (GraphQL `Boolean`).
pub fn yes_no() -> (&'static Entity, &'static Property) {
    with(|p| {
        p.option_set
            .as_deref()
            .and_then(|s| model().option_set(s))
            .is_some_and(|s| s.graphql_enum == "Boolean")
    })
}

/// A property of `entity` of the given type.
pub fn prop_of(entity: &'static Entity, ty: PropType) -> &'static str {
    &entity
        .properties
        .iter()
        .find(|p| p.ty == ty)
        .expect("property of that type")
        .name
}
