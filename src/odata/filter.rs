//! The gateway's typed filter AST and its compiler to `$filter` text.
//!
//! The GraphQL layer builds a [`Filter`] from its `where` input; [`compile`] checks every property
//! name and literal kind against the model's [`Entity`] and writes OData with every value escaped
//! (see [`super::escape`]). Nothing from a request reaches the upstream as raw text.
//!
//! Choices worth knowing:
//! - `In` on a string property uses `Microsoft.Dynamics.CRM.In(...)` (in the Odata4 dialect an
//!   `or` chain of `eq`s, see [`compile_for`]): Dataverse takes its
//!   `PropertyValues` as JSON strings, so a long list stays short. For every other type it
//!   compiles to `(x eq 1 or x eq 2)`, because that function's parameters are strings and a typed
//!   comparison (GUID, number, option-set integer) is what the F&O virtual-table provider is known
//!   to translate.
//! - An empty `In` (and an empty `Or`) compiles to `<primary key> eq null`, an always-false
//!   expression the upstream accepts (the primary key is never null); an empty `And` compiles to
//!   `<primary key> ne null` (always true). The GraphQL layer can then pass `in: []` through
//!   without a special case, and the result is correctly empty.
//! - `Literal::Option` holds the model's *documented* integer; with [`compile_with_labels`] it is
//!   translated to the environment's integer (they are not stable between environments,
//!   contract §0). `Literal::Bool` is accepted on the yes/no option sets (GraphQL `Boolean`).
//! - Ordering comparisons (`gt`, `lt`, ...) are refused on GUIDs and option sets: option-set
//!   integers differ between environments, so their order means nothing.
//! - Date-times are stored to the second (F&O `utcdatetime`), and an upstream may drop a
//!   literal's fraction of a second, which changes what `ge`, `lt`, `eq` and `ne` select. A
//!   literal with a fraction is therefore compiled to whole seconds that select the same rows:
//!   `gt`/`ge` S.f become `gt S`, `lt`/`le` S.f become `le S`, `eq` S.f becomes the impossible
//!   `(x lt S and x gt S)` and `ne` S.f the always-true `(x le S or x gt S)` (both still
//!   unknown, so never selected, when the value is empty). Found by the property test that runs
//!   compiled filters in the emulator (`tests/integration/filter_props.rs`).

use super::escape;
use super::options::OptionSetLabels;
use super::query::Dialect;
use crate::model::{model, Entity, PropType, Property};
pub use crate::vocabulary::{CmpOp, StrFunc};
use std::fmt::Write;

/// A filter on one entity's properties (OData names, as in the model).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp {
        property: String,
        op: CmpOp,
        value: Literal,
    },
    In {
        property: String,
        values: Vec<Literal>,
    },
    Str {
        property: String,
        func: StrFunc,
        value: String,
    },
    IsNull {
        property: String,
        is_null: bool,
    },
}

/// A value in a filter. Dates are `YYYY-MM-DD`, date-times ISO 8601 with `Z` or an offset,
/// `Option` the model's documented integer.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Guid(String),
    Date(String),
    DateTime(String),
    Option(i64),
}

impl Literal {
    /// "a string", "an integer", ...: for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Literal::String(_) => "a string",
            Literal::Int(_) => "an integer",
            Literal::Float(_) => "a number",
            Literal::Bool(_) => "a boolean",
            Literal::Guid(_) => "a GUID",
            Literal::Date(_) => "a date",
            Literal::DateTime(_) => "a date-time",
            Literal::Option(_) => "an option value",
        }
    }
}

/// Why a filter was refused: `path` says where in the tree (`filter.and[1].or[0]`), `property`
/// which property, `reason` what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at {path}: {reason}")]
pub struct FilterError {
    pub path: String,
    pub property: Option<String>,
    pub reason: String,
}

/// Deeper trees are refused instead of recursing without bound on request input.
pub const MAX_DEPTH: usize = 64;

/// Compiles a filter to `$filter` text, with option values as the model documents them.
pub fn compile(filter: &Filter, entity: &Entity) -> Result<String, FilterError> {
    compile_with_labels(filter, entity, None)
}

/// Compiles a filter, translating option values through the environment's labels when given.
pub fn compile_with_labels(
    filter: &Filter,
    entity: &Entity,
    labels: Option<&OptionSetLabels>,
) -> Result<String, FilterError> {
    compile_for(filter, entity, labels, Dialect::Dataverse)
}

/// Compiles a filter for an upstream speaking `dialect`: in [`Dialect::Odata4`], an `In` on a
/// string property is an `or` chain of `eq`s instead of `Microsoft.Dynamics.CRM.In`.
pub fn compile_for(
    filter: &Filter,
    entity: &Entity,
    labels: Option<&OptionSetLabels>,
    dialect: Dialect,
) -> Result<String, FilterError> {
    let compiler = Compiler {
        entity,
        labels,
        dialect,
    };
    let mut out = String::new();
    compiler.node(filter, "filter", 0, &mut out)?;
    Ok(out)
}

struct Compiler<'a> {
    entity: &'a Entity,
    labels: Option<&'a OptionSetLabels>,
    dialect: Dialect,
}

impl Compiler<'_> {
    /// Writes one node of the tree: checks the depth, then the node's own step.
    fn node(&self, f: &Filter, path: &str, depth: usize, out: &mut String) -> Result<(), FilterError> {
        if depth > MAX_DEPTH {
            return Err(err(
                path,
                None,
                format!("the filter is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        match f {
            Filter::And(items) => self.junction(items, "and", path, depth, out),
            Filter::Or(items) => self.junction(items, "or", path, depth, out),
            Filter::Not(inner) => {
                // `not` binds tighter than `eq` in OData: always parenthesise the operand.
                out.push_str("not (");
                self.node(inner, &format!("{path}.not"), depth + 1, out)?;
                out.push(')');
                Ok(())
            }
            Filter::Cmp { property, op, value } => self.compare(property, *op, value, path, out),
            Filter::In { property, values } => self.in_list(property, values, path, out),
            Filter::Str { property, func, value } => self.string_function(property, *func, value, path, out),
            Filter::IsNull { property, is_null } => {
                let p = self.property(property, path)?;
                let op = if *is_null { "eq" } else { "ne" };
                write!(out, "{} {op} null", p.name).unwrap();
                Ok(())
            }
        }
    }

    /// `and` / `or` over `items`: an empty one is always true (`and`) or always false (`or`), a
    /// single item stands alone, more are parenthesised.
    fn junction(
        &self,
        items: &[Filter],
        word: &str,
        path: &str,
        depth: usize,
        out: &mut String,
    ) -> Result<(), FilterError> {
        match items {
            [] => {
                let empty = if word == "and" { "ne" } else { "eq" };
                write!(out, "{} {empty} null", self.entity.primary_key).unwrap();
            }
            [only] => self.node(only, &format!("{path}.{word}[0]"), depth + 1, out)?,
            _ => {
                out.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(out, " {word} ").unwrap();
                    }
                    self.node(item, &format!("{path}.{word}[{i}]"), depth + 1, out)?;
                }
                out.push(')');
            }
        }
        Ok(())
    }

    /// `property op value`; ordering operators are refused on GUIDs and option sets.
    fn compare(
        &self,
        property: &str,
        op: CmpOp,
        value: &Literal,
        path: &str,
        out: &mut String,
    ) -> Result<(), FilterError> {
        let p = self.property(property, path)?;
        if op.is_ordering() && matches!(p.ty, PropType::Guid | PropType::OptionSet) {
            return Err(err(
                path,
                Some(property),
                format!("'{}' cannot be compared with {}", p.name, op.keyword()),
            ));
        }
        let text = self.value(p, value, path)?;
        comparison(out, p, op, &text);
        Ok(())
    }

    /// `In`: always false when empty, `Microsoft.Dynamics.CRM.In` on a string property for
    /// Dataverse, else an `or` chain of `eq`s.
    fn in_list(&self, property: &str, values: &[Literal], path: &str, out: &mut String) -> Result<(), FilterError> {
        let p = self.property(property, path)?;
        if values.is_empty() {
            write!(out, "{} eq null", self.entity.primary_key).unwrap();
            Ok(())
        } else if p.ty == PropType::String && self.dialect == Dialect::Dataverse {
            in_function(p, values, path, out)
        } else {
            self.eq_chain(p, values, path, out)
        }
    }

    /// `(p eq v1 or p eq v2 …)`, without parentheses for a single value.
    fn eq_chain(&self, p: &Property, values: &[Literal], path: &str, out: &mut String) -> Result<(), FilterError> {
        if values.len() > 1 {
            out.push('(');
        }
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            let text = self.value(p, v, &format!("{path}.values[{i}]"))?;
            comparison(out, p, CmpOp::Eq, &text);
        }
        if values.len() > 1 {
            out.push(')');
        }
        Ok(())
    }

    /// `contains` / `startswith` / `endswith` on a string property, its `LIKE` wildcards escaped.
    fn string_function(
        &self,
        property: &str,
        func: StrFunc,
        value: &str,
        path: &str,
        out: &mut String,
    ) -> Result<(), FilterError> {
        let p = self.property(property, path)?;
        if p.ty != PropType::String {
            return Err(err(
                path,
                Some(property),
                format!("{} needs a string property; '{}' is {:?}", func.name(), p.name, p.ty),
            ));
        }
        let literal = escape::string_literal(&escape::like_escape(value));
        write!(out, "{}({},{literal})", func.name(), p.name).unwrap();
        Ok(())
    }

    fn property(&self, name: &str, path: &str) -> Result<&Property, FilterError> {
        self.entity.property(name).ok_or_else(|| {
            err(
                path,
                Some(name),
                format!("'{}' has no property named {name:?}", self.entity.entity_set),
            )
        })
    }

    /// The OData text of one literal for a property, or why it does not fit.
    fn value(&self, p: &Property, lit: &Literal, path: &str) -> Result<String, FilterError> {
        match (p.ty, lit) {
            // Option sets are checked against the model and translated here; the rest is generic.
            (PropType::OptionSet, Literal::Option(_) | Literal::Bool(_)) => self.option(p, lit, path),
            (ty, lit) => escape::typed_literal(ty, lit)
                .map_err(|reason| err(path, Some(&p.name), format!("'{}': {reason}", p.name))),
        }
    }

    fn option(&self, p: &Property, lit: &Literal, path: &str) -> Result<String, FilterError> {
        let bad = |reason: String| err(path, Some(&p.name), reason);
        let set_name = p.option_set.as_deref().unwrap_or_default();
        let set = model()
            .option_set(set_name)
            .ok_or_else(|| bad(format!("'{}' names no known option set", p.name)))?;
        let value = match lit {
            Literal::Option(n) => set
                .values
                .iter()
                .find(|v| v.value == *n)
                .ok_or_else(|| bad(format!("{n} is not a value of the option set {}", set.name)))?,
            Literal::Bool(b) => {
                let want = if *b { "true" } else { "false" };
                set.values
                    .iter()
                    .find(|v| v.graphql_value == want)
                    .ok_or_else(|| bad(format!("'{}' is not a yes/no property ({})", p.name, set.name)))?
            }
            other => return Err(mismatch(path, p, other)),
        };
        let upstream = match self.labels {
            Some(labels) => labels.to_upstream(&set.name, value.value),
            None => value.value,
        };
        Ok(upstream.to_string())
    }
}

/// `Microsoft.Dynamics.CRM.In(PropertyName='p',PropertyValues=["v1",…])`: every value must be a string.
fn in_function(p: &Property, values: &[Literal], path: &str, out: &mut String) -> Result<(), FilterError> {
    let mut strings = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        match v {
            Literal::String(s) => strings.push(s.as_str()),
            other => return Err(mismatch(&format!("{path}.values[{i}]"), p, other)),
        }
    }
    write!(
        out,
        "Microsoft.Dynamics.CRM.In(PropertyName={},PropertyValues={})",
        escape::string_literal(&p.name),
        escape::in_values(&strings)
    )
    .unwrap();
    Ok(())
}

/// Writes `property op literal`; a date-time literal with a fraction of a second becomes whole
/// seconds that select the same rows (see the module notes).
fn comparison(out: &mut String, p: &Property, op: CmpOp, literal: &str) {
    let whole = match (p.ty, literal.split_once('.')) {
        (PropType::Datetime, Some((seconds, _))) => format!("{seconds}Z"),
        _ => {
            write!(out, "{} {} {literal}", p.name, op.keyword()).unwrap();
            return;
        }
    };
    let name = &p.name;
    match op {
        CmpOp::Gt | CmpOp::Ge => write!(out, "{name} gt {whole}"),
        CmpOp::Lt | CmpOp::Le => write!(out, "{name} le {whole}"),
        CmpOp::Eq => write!(out, "({name} lt {whole} and {name} gt {whole})"),
        CmpOp::Ne => write!(out, "({name} le {whole} or {name} gt {whole})"),
    }
    .unwrap();
}

fn err(path: &str, property: Option<&str>, reason: String) -> FilterError {
    FilterError {
        path: path.to_string(),
        property: property.map(str::to_string),
        reason,
    }
}

fn mismatch(path: &str, p: &Property, lit: &Literal) -> FilterError {
    err(
        path,
        Some(&p.name),
        format!("'{}' is {:?}; {} does not fit it", p.name, p.ty, lit.kind()),
    )
}
