//! Tests of the query module, by part: the filter parser (`filter`), the SQL compiler (`sql`, run
//! against a real in-memory SQLite table), the other query options (`options`), the `LIKE`
//! matcher (`like`), and property tests (`props`).

mod filter;
mod like;
mod options;
mod props;
mod sql;

use super::{parse_filter, Expr, Literal, Operand};
use crate::model::{model, Entity};

pub(super) fn entity(logical_name: &str) -> &'static Entity {
    model()
        .by_logical_name(logical_name)
        .unwrap_or_else(|| panic!("no entity {logical_name}"))
}

pub(super) fn parse(input: &str) -> Expr {
    parse_filter(input).unwrap_or_else(|e| panic!("{input}: {e}"))
}

pub(super) fn error(input: &str) -> String {
    match parse_filter(input) {
        Ok(expr) => panic!("{input} parsed as {expr:?}"),
        Err(e) => e.message,
    }
}

pub(super) fn prop(name: &str) -> Operand {
    Operand::Property(name.to_string())
}

pub(super) fn lit(l: Literal) -> Operand {
    Operand::Literal(l)
}
