//! Which OData service the emulator plays: Dataverse (the default), or a stricter one that the
//! gateway must also work against.
//!
//! - [`Dialect::Odata4`]: plain OData v4. Dataverse's query functions
//!   (`Microsoft.Dynamics.CRM.In`, ...) in `$filter`, also inside `$expand`, are a 400, and
//!   `GlobalOptionSetDefinitions` is a 404 (see [`super::EmulatorConfig`]).
//! - Without collection expands: a `$expand` of a collection-valued navigation property, at any
//!   level, is a 400, as some virtual-table providers may answer (Dataverse's support for it on
//!   virtual tables is undocumented). Single-valued expands still work.
//!
//! The checks run on every request, `$batch` parts included, before the request is served.

use super::error::ODataError;
use super::query::{self, ExpandItem, Expr};
use super::read::decode_query;
use super::service::Target;
use crate::model::{model, Cardinality, Entity};

/// The `$filter` language the emulator accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dialect {
    /// OData v4 with Dataverse's functions, as Dataverse serves it.
    #[default]
    Dataverse,
    /// Plain OData v4: no `Microsoft.Dynamics.CRM.*` functions, no `GlobalOptionSetDefinitions`.
    Odata4,
}

/// What the emulator refuses beyond Dataverse's own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub dialect: Dialect,
    /// Whether collection-valued navigation properties may be expanded.
    pub collection_expand: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            dialect: Dialect::Dataverse,
            collection_expand: true,
        }
    }
}

impl Profile {
    /// Refuses the request's query options that this profile does not serve. Options that do not
    /// parse are left to the request's own handling (which reports them as Dataverse does).
    pub fn check(&self, target: &Target, raw_query: &str) -> Result<(), ODataError> {
        if *self == Profile::default() || raw_query.is_empty() {
            return Ok(());
        }
        let entity = match target {
            Target::Collection(e) | Target::Count(e) | Target::Record(e, _) => Some(*e),
            Target::Navigation(e, _, nav) => e.navigation(nav).and_then(|r| model().by_logical_name(&r.target)),
            _ => None,
        };
        for (key, value) in decode_query(raw_query) {
            match key.as_str() {
                "$filter" => {
                    if let Ok(expr) = query::parse_filter(&value) {
                        self.check_filter(&expr)?;
                    }
                }
                "$expand" => {
                    if let Some(entity) = entity {
                        if let Ok(items) = query::parse_expand(&value, entity) {
                            self.check_expand(entity, &items)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_filter(&self, expr: &Expr) -> Result<(), ODataError> {
        if self.dialect == Dialect::Dataverse {
            return Ok(());
        }
        // Iterative: a join written as an `or` chain of `eq`s can be hundreds of levels deep.
        let mut todo = vec![expr];
        while let Some(e) = todo.pop() {
            match e {
                Expr::And(l, r) | Expr::Or(l, r) => todo.extend([&**l, &**r]),
                Expr::Not(inner) => todo.push(inner),
                Expr::In { .. } => {
                    return Err(ODataError::bad_query(
                        "An unknown function with name 'Microsoft.Dynamics.CRM.In' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed.",
                    ))
                }
                Expr::Compare { .. } | Expr::StrFn { .. } => {}
            }
        }
        Ok(())
    }

    fn check_expand(&self, entity: &Entity, items: &[ExpandItem]) -> Result<(), ODataError> {
        for item in items {
            let Some(relation) = entity.navigation(&item.navigation) else {
                continue;
            };
            if !self.collection_expand && relation.kind == Cardinality::Many {
                return Err(ODataError::bad_query(format!(
                    "The navigation property '{}' cannot be expanded: this service does not expand collection-valued navigation properties. Query the related entity set instead.",
                    item.navigation
                )));
            }
            if let Some(f) = &item.filter {
                self.check_filter(f)?;
            }
            if let Some(target) = model().by_logical_name(&relation.target) {
                self.check_expand(target, &item.expand)?;
            }
        }
        Ok(())
    }
}
