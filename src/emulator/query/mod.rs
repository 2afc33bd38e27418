//! The emulator's OData query options: parsing `$filter`, `$orderby`, `$select` and `$expand`
//! the way Dataverse reads them, and compiling filters to SQLite.
//!
//! - `lexer` turns option text into tokens and reports positions the way Dataverse (OData
//!   Lib, a .NET library) counts them: in UTF-16 code units.
//! - `temporal` reads and normalises GUID, date and date-time literals to their stored form
//!   (the grammar and calendar are [`crate::vocabulary`]'s, which the gateway shares).
//! - `ast` is the filter tree ([`Expr`]) and its `Display`, which prints valid OData again; its
//!   operators ([`CmpOp`], [`StrFunc`]) are the shared vocabulary's.
//! - `filter` is the `$filter` parser ([`parse_filter`]).
//! - `options` parses `$orderby`, `$select` and `$expand` against an [`Entity`] of the model.
//! - `sql` type-checks a filter against an entity and compiles it to a parameterised SQL
//!   fragment ([`compile_filter`]).
//! - `like` is the SQL Server `LIKE` matcher behind `contains`/`startswith`/`endswith`,
//!   registered in SQLite as `ms_like(value, pattern)` ([`register_functions`]).
//! - `tests` checks each part, runs compiled filters on a real SQLite table built from the model,
//!   and property-tests that no input panics and that printed filters parse back unchanged.
//!
//! Storage contract the compiled SQL relies on: one table per entity named by its logical name,
//! one column per property named by its OData name; strings, GUIDs (lowercase, hyphenated), dates
//! (`YYYY-MM-DD`) and date-times (`YYYY-MM-DDTHH:MM:SSZ`, UTC) as TEXT, integers and option sets
//! as INTEGER, decimals and doubles as REAL.
//!
//! Every failure is a [`QueryError`], which the HTTP layer turns into a 400 with code
//! [`QueryError::CODE`], as Dataverse does for bad queries.

mod ast;
mod filter;
mod lexer;
mod like;
mod options;
mod sql;
pub(crate) mod temporal;

#[cfg(test)]
mod tests;

use crate::model::Entity;
pub use ast::{CmpOp, Expr, Literal, Operand, StrFunc};
pub use filter::parse_filter;
pub use like::{escape_like, like_matches, register_functions};
pub use options::{parse_expand, parse_orderby, parse_select, ExpandItem, OrderBy, MAX_EXPANDS};
pub use sql::{compile_filter, compile_orderby, SqlFragment};

use std::fmt;

/// A query option that Dataverse would reject. The message is meant for developers and copies
/// Dataverse's wording where it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub message: String,
}

impl QueryError {
    /// The error code Dataverse sends with HTTP 400 for a query it can't parse or bind.
    pub const CODE: &'static str = "0x80060888";

    pub fn new(message: impl Into<String>) -> Self {
        QueryError {
            message: message.into(),
        }
    }

    /// `Could not find a property named '<name>' on type 'Microsoft.Dynamics.CRM.<entity>'.`
    pub(crate) fn unknown_property(name: &str, entity: &Entity) -> Self {
        QueryError::new(format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{}'.",
            entity.logical_name
        ))
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QueryError {}
