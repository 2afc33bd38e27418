//! The `$filter` tree and its printer.
//!
//! The tree holds only what Dataverse's `$filter` allows on one table: comparisons, `and`/`or`/
//! `not`, the three string functions and `Microsoft.Dynamics.CRM.In`. Literals are kept in the
//! normalised form the store uses (lowercase GUIDs, UTC date-times), so two filters that mean the
//! same comparison compare equal.
//!
//! `Display` prints valid OData filter text (strings with `''` escaping, `In` values as JSON), and
//! parsing that text gives back an equal tree: the property test in `tests/props.rs` checks it.

use crate::vocabulary::string_literal;
pub use crate::vocabulary::{CmpOp, StrFunc};
use std::fmt;

/// A boolean `$filter` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        op: CmpOp,
        left: Operand,
        right: Operand,
    },
    /// `contains(prop,'v')`, `startswith(..)`, `endswith(..)`; `value` keeps its SQL Server
    /// `LIKE` wildcards, as Dataverse documents.
    StrFn {
        func: StrFunc,
        prop: String,
        value: String,
    },
    /// `Microsoft.Dynamics.CRM.In(PropertyName='prop',PropertyValues=[..])`. Values are read as
    /// JSON (strings, numbers, booleans, null) and converted to the property's type when compiled,
    /// because Dataverse passes them as strings whatever the column type.
    In {
        prop: String,
        values: Vec<Literal>,
    },
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A property of the queried entity, by OData name (case-sensitive).
    Property(String),
    Literal(Literal),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    /// A number with a fraction or exponent (or an integer too large for `i64`), as written.
    Decimal(String),
    /// The unescaped string value.
    String(String),
    /// Lowercase, hyphenated.
    Guid(String),
    /// `YYYY-MM-DD`.
    Date(String),
    /// UTC, to the second: `YYYY-MM-DDTHH:MM:SSZ`.
    DateTimeOffset(String),
}

impl Literal {
    /// The Edm type of the literal, for error messages.
    pub(crate) fn edm(&self) -> &'static str {
        match self {
            Literal::Null => "null",
            Literal::Bool(_) => "Edm.Boolean",
            Literal::Int(n) if i32::try_from(*n).is_ok() => "Edm.Int32",
            Literal::Int(_) => "Edm.Int64",
            Literal::Decimal(_) => "Edm.Decimal",
            Literal::String(_) => "Edm.String",
            Literal::Guid(_) => "Edm.Guid",
            Literal::Date(_) => "Edm.Date",
            Literal::DateTimeOffset(_) => "Edm.DateTimeOffset",
        }
    }

    /// The literal as written in a `PropertyValues` JSON array, for messages.
    pub(crate) fn json(&self) -> impl fmt::Display + '_ {
        struct Json<'a>(&'a Literal);
        impl fmt::Display for Json<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_json(f)
            }
        }
        Json(self)
    }

    /// The literal as a JSON value of a `PropertyValues` array.
    fn write_json(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null | Literal::Bool(_) | Literal::Int(_) | Literal::Decimal(_) => {
                write!(f, "{self}")
            }
            Literal::String(s) | Literal::Guid(s) | Literal::Date(s) | Literal::DateTimeOffset(s) => {
                f.write_str(&json_string(s))
            }
        }
    }
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::String(s) => f.write_str(&string_literal(s)),
            Literal::Decimal(s) | Literal::Guid(s) | Literal::Date(s) | Literal::DateTimeOffset(s) => f.write_str(s),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Property(p) => f.write_str(p),
            Operand::Literal(l) => write!(f, "{l}"),
        }
    }
}

impl Expr {
    /// Binding strength: `or` < `and` < everything else.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            _ => 3,
        }
    }

    /// Writes `left <word> right`, with parentheses where the tree would otherwise re-associate
    /// (both operators are left-associative, so a right child of equal strength needs them).
    fn write_binary(&self, f: &mut fmt::Formatter<'_>, word: &str, l: &Expr, r: &Expr) -> fmt::Result {
        let own = self.precedence();
        write_child(f, l, l.precedence() < own)?;
        write!(f, " {word} ")?;
        write_child(f, r, r.precedence() <= own)
    }
}

fn write_child(f: &mut fmt::Formatter<'_>, child: &Expr, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({child})")
    } else {
        write!(f, "{child}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(l, r) => self.write_binary(f, "and", l, r),
            Expr::Or(l, r) => self.write_binary(f, "or", l, r),
            // `not` binds tighter than a comparison in OData, so its operand is always either a
            // function call or parenthesised.
            Expr::Not(inner) => match **inner {
                Expr::StrFn { .. } | Expr::In { .. } | Expr::Not(_) => write!(f, "not {inner}"),
                _ => write!(f, "not ({inner})"),
            },
            Expr::Compare { op, left, right } => write!(f, "{left} {op} {right}"),
            Expr::StrFn { func, prop, value } => {
                write!(f, "{}({prop},{})", func.name(), Literal::String(value.clone()))
            }
            Expr::In { prop, values } => {
                let name = Literal::String(prop.clone());
                write!(f, "Microsoft.Dynamics.CRM.In(PropertyName={name},PropertyValues=[")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    v.write_json(f)?;
                }
                f.write_str("])")
            }
        }
    }
}
