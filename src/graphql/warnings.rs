//! Warnings of an operation, in the response's `extensions.warnings`.
//!
//! One kind today: fields whose property the upstream's `$metadata` lacks (see
//! `odata::metadata`). They are never selected upstream and resolve to null; the operation gets
//! **one** warning listing them all:
//!
//! ```json
//! {"extensions": {"warnings": [{"code": "PROPERTY_MISSING_UPSTREAM",
//!   "message": "…", "properties": ["PartyContact.isMobile"]}]}}
//! ```

use async_graphql::{Response, Value};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The code of the warning about fields whose property the upstream lacks.
pub const PROPERTY_MISSING_UPSTREAM: &str = super::errors::ErrorCode::PropertyMissingUpstream.as_str();

/// The fields of one operation that resolved to null because the upstream lacks their property
/// (request data, added by `limits::LimitsExtension`).
#[derive(Debug, Default)]
pub struct MissingFields(Mutex<BTreeSet<String>>);

impl MissingFields {
    /// Notes `Type.field`.
    pub fn note(&self, type_name: &str, field: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("{type_name}.{field}"));
    }

    fn warning(&self) -> Option<Value> {
        let fields = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if fields.is_empty() {
            return None;
        }
        let list: Vec<String> = fields.iter().cloned().collect();
        let mut w = async_graphql::indexmap::IndexMap::new();
        w.insert(async_graphql::Name::new("code"), Value::from(PROPERTY_MISSING_UPSTREAM));
        w.insert(
            async_graphql::Name::new("message"),
            Value::from(format!(
                "The upstream has no property behind {}: resolved to null.",
                list.join(", ")
            )),
        );
        w.insert(
            async_graphql::Name::new("properties"),
            Value::List(list.into_iter().map(Value::from).collect()),
        );
        Some(Value::Object(w))
    }
}

/// Adds the warning of the fields in `missing` (if any) to `response.extensions.warnings`.
/// Called by the operation's extension (`limits::LimitsExtension`, which also puts a
/// [`MissingFields`] in each request's data): one extension, not one per concern, because
/// async-graphql runs every field of an answer through every extension.
pub fn attach(missing: Option<&MissingFields>, response: &mut Response) {
    if let Some(w) = missing.and_then(MissingFields::warning) {
        let mut warnings = match response.extensions.remove("warnings") {
            Some(Value::List(l)) => l,
            _ => Vec::new(),
        };
        warnings.push(w);
        response
            .extensions
            .insert("warnings".to_string(), Value::List(warnings));
    }
}

/// The code of the error for a filter or order on a field whose property the upstream lacks.
pub const FILTER_ON_MISSING_PROPERTY: &str = super::errors::ErrorCode::PropertyMissingUpstream.as_str();

/// Refuses a compiled `$filter` or `$orderby` of `entity` that names a property the upstream
/// lacks (per its `$metadata`), before any upstream request.
pub fn refuse_missing(
    naming: &crate::model::naming::Naming,
    entity: &crate::model::Entity,
    filter: Option<&str>,
    orderby: &[(String, bool)],
) -> async_graphql::Result<()> {
    use crate::model::naming::Toward;
    use async_graphql::ErrorExtensions;
    if naming.entity(entity).is_none_or(|n| n.missing.is_empty()) {
        return Ok(());
    }
    let order = orderby.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(",");
    let checks = [
        ("filter", "$filter", filter.unwrap_or_default()),
        ("orderBy", "$orderby", order.as_str()),
    ];
    for (argument, option, text) in checks {
        if let Err(e) = naming.query_option(entity, option, text, Toward::Upstream) {
            let field = entity
                .property(&e.name)
                .map_or(e.name.as_str(), |p| p.graphql_field.as_str());
            let message = format!(
                "`{argument}` uses `{field}` of {}, which the upstream does not have (its $metadata lacks `{}`).",
                entity.graphql.type_name, e.name
            );
            return Err(
                async_graphql::Error::new(message).extend_with(|_, x| x.set("code", FILTER_ON_MISSING_PROPERTY))
            );
        }
    }
    Ok(())
}
