//! Type-checking a filter against an entity and compiling it to a SQLite `WHERE` fragment.
//!
//! - Identifiers are always double-quoted column names (the OData property names); literals are
//!   always bound parameters, never spliced into the SQL.
//! - String comparisons use `COLLATE NOCASE`, because Dataverse compares case-insensitively.
//!   SQLite's NOCASE folds ASCII only; `contains`/`startswith`/`endswith` fold all of Unicode.
//! - `eq null`/`ne null` become `IS NULL`/`IS NOT NULL`; any other comparison with NULL is NULL,
//!   which leaves the row out, as Dataverse does ("null counts as false").
//! - Literals are converted to the column's stored form first (see the module map in `mod.rs`);
//!   a literal that can't be is an error naming both types, in OData Lib's words.
//! - `and`/`or` chains are emitted as balanced trees, so a filter of a thousand `or`s stays far
//!   below SQLite's expression-depth limit (1000) and the compiler's own recursion stays shallow.
//! - String functions become `ms_like(col, ?)` (see `like`), wrapped so that a NULL column gives
//!   NULL rather than false: then `not contains(..)` leaves NULL rows out, as SQL Server's
//!   `NOT LIKE` would.

use rusqlite::types::Value;

use super::ast::{CmpOp, Expr, Literal, Operand, StrFunc};
use super::temporal::{parse_date, parse_datetime, parse_guid};
use super::{OrderBy, QueryError};
use crate::model::{Entity, PropType, Property};
use crate::vocabulary::literals::midnight_utc;

/// A piece of SQL and the values of its `?` placeholders, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFragment {
    pub sql: String,
    pub params: Vec<Value>,
}

/// Compiles `expr` to a boolean SQL expression over the columns of `entity`'s table.
///
/// Fails on unknown properties, on literals of the wrong type for their column, on
/// column-to-column comparisons of different types and on string functions applied to
/// non-string columns.
pub fn compile_filter(expr: &Expr, entity: &Entity) -> Result<SqlFragment, QueryError> {
    let mut out = SqlFragment {
        sql: String::new(),
        params: Vec::new(),
    };
    Compiler { entity }.expr(expr, &mut out)?;
    Ok(out)
}

/// Compiles a validated `$orderby` to the text after `ORDER BY` (empty when `orderby` is).
/// String columns sort case-insensitively, like Dataverse's.
pub fn compile_orderby(orderby: &[OrderBy], entity: &Entity) -> Result<String, QueryError> {
    let terms = orderby
        .iter()
        .map(|o| {
            let prop = property(entity, &o.property)?;
            let collate = if prop.ty == PropType::String {
                " COLLATE NOCASE"
            } else {
                ""
            };
            let dir = if o.descending { "DESC" } else { "ASC" };
            Ok(format!("{}{collate} {dir}", quote_ident(&prop.name)))
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    Ok(terms.join(", "))
}

/// `name` as a double-quoted SQLite identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn property<'e>(entity: &'e Entity, name: &str) -> Result<&'e Property, QueryError> {
    entity
        .property(name)
        .ok_or_else(|| QueryError::unknown_property(name, entity))
}

/// Compiles the parts of one filter against one entity.
struct Compiler<'e> {
    entity: &'e Entity,
}

impl Compiler<'_> {
    fn expr(&self, expr: &Expr, out: &mut SqlFragment) -> Result<(), QueryError> {
        match expr {
            Expr::And(..) => self.balanced(&chain(expr), " AND ", out),
            Expr::Or(..) => self.balanced(&chain(expr), " OR ", out),
            Expr::Not(inner) => {
                out.sql.push_str("NOT (");
                self.expr(inner, out)?;
                out.sql.push(')');
                Ok(())
            }
            Expr::Compare { op, left, right } => self.compare(*op, left, right, out),
            Expr::StrFn { func, prop, value } => self.string_function(*func, prop, value, out),
            Expr::In { prop, values } => self.in_list(prop, values, out),
        }
    }

    /// Joins the operands of an `and` (or `or`) chain as a balanced tree. AND and OR are
    /// associative, also over NULL, so this means the same as the parsed left-deep tree; but its
    /// depth is logarithmic, which keeps both this recursion and SQLite's expression-depth limit
    /// (1000) out of reach of a long `or` chain.
    fn balanced(&self, operands: &[&Expr], word: &str, out: &mut SqlFragment) -> Result<(), QueryError> {
        if let [single] = operands {
            return self.expr(single, out);
        }
        let (left, right) = operands.split_at(operands.len() / 2);
        out.sql.push('(');
        self.balanced(left, word, out)?;
        out.sql.push_str(word);
        self.balanced(right, word, out)?;
        out.sql.push(')');
        Ok(())
    }

    fn string_function(&self, func: StrFunc, prop: &str, value: &str, out: &mut SqlFragment) -> Result<(), QueryError> {
        let p = property(self.entity, prop)?;
        if p.ty != PropType::String {
            return Err(QueryError::new(format!(
                "No function signature for the function with name '{}' matches the specified arguments. The function signatures considered are: {0}(Edm.String Nullable=true, Edm.String Nullable=true). The property '{prop}' is of type '{}'.",
                func.name(),
                p.ty.edm()
            )));
        }
        let pattern = match func {
            StrFunc::Contains => format!("%{value}%"),
            StrFunc::StartsWith => format!("{value}%"),
            StrFunc::EndsWith => format!("%{value}"),
        };
        // ms_like() is false for NULL; `not contains(..)` must still leave NULL rows out, as
        // SQL Server's `NOT LIKE` does, so the test is NULL on a NULL column.
        let column = quote_ident(&p.name);
        out.sql.push_str(&format!(
            "CASE WHEN {column} IS NULL THEN NULL ELSE ms_like({column}, ?) END"
        ));
        out.params.push(Value::Text(pattern));
        Ok(())
    }

    fn in_list(&self, prop: &str, values: &[Literal], out: &mut SqlFragment) -> Result<(), QueryError> {
        let p = property(self.entity, prop)?;
        let marks = vec!["?"; values.len()].join(", ");
        let collate = collation(p.ty == PropType::String);
        out.sql
            .push_str(&format!("{}{collate} IN ({marks})", quote_ident(&p.name)));
        for v in values {
            let value = in_value(v, p.ty).ok_or_else(|| {
                QueryError::new(format!(
                    "The value {} in PropertyValues of Microsoft.Dynamics.CRM.In is not a valid {} for the property '{prop}'.",
                    v.json(),
                    p.ty.edm()
                ))
            })?;
            out.params.push(value);
        }
        Ok(())
    }

    fn compare(&self, op: CmpOp, left: &Operand, right: &Operand, out: &mut SqlFragment) -> Result<(), QueryError> {
        let incompatible = |l: &str, r: &str| {
            QueryError::new(format!(
                "A binary operator with incompatible types was detected. Found operand types '{l}' and '{r}' for operator kind '{}'.",
                op.kind_name()
            ))
        };
        match (left, right) {
            (Operand::Property(a), Operand::Property(b)) => {
                let (pa, pb) = (property(self.entity, a)?, property(self.entity, b)?);
                // Dataverse compares columns of the same type only; option sets are Edm.Int32.
                if pa.ty.edm() != pb.ty.edm() {
                    return Err(incompatible(pa.ty.edm(), pb.ty.edm()));
                }
                let collate = collation(pa.ty == PropType::String);
                let (ca, cb) = (quote_ident(&pa.name), quote_ident(&pb.name));
                out.sql.push_str(&format!("{ca}{collate} {} {cb}", sql_op(op)));
            }
            (Operand::Property(name), Operand::Literal(lit)) => {
                self.property_vs_literal(op, name, lit, out, |p| incompatible(p, lit.edm()))?
            }
            (Operand::Literal(lit), Operand::Property(name)) => {
                self.property_vs_literal(op.flipped(), name, lit, out, |p| incompatible(lit.edm(), p))?
            }
            (Operand::Literal(a), Operand::Literal(b)) => {
                let (va, vb) = (literal_value(a), literal_value(b));
                let comparable = matches!(a, Literal::Null)
                    || matches!(b, Literal::Null)
                    || std::mem::discriminant(a) == std::mem::discriminant(b)
                    || (is_number(a) && is_number(b));
                if !comparable {
                    return Err(incompatible(a.edm(), b.edm()));
                }
                let (va, vb) = (
                    va.ok_or_else(|| incompatible(a.edm(), b.edm()))?,
                    vb.ok_or_else(|| incompatible(a.edm(), b.edm()))?,
                );
                let null = matches!(a, Literal::Null) || matches!(b, Literal::Null);
                let sql_op = match (null, op) {
                    (true, CmpOp::Eq) => "IS",
                    (true, CmpOp::Ne) => "IS NOT",
                    _ => sql_op(op),
                };
                let collate = collation(matches!(a, Literal::String(_)));
                out.sql.push_str(&format!("?{collate} {sql_op} ?"));
                out.params.extend([va, vb]);
            }
        }
        Ok(())
    }

    fn property_vs_literal(
        &self,
        op: CmpOp,
        name: &str,
        lit: &Literal,
        out: &mut SqlFragment,
        incompatible: impl Fn(&str) -> QueryError,
    ) -> Result<(), QueryError> {
        let p = property(self.entity, name)?;
        let column = quote_ident(&p.name);
        match (lit, op) {
            (Literal::Null, CmpOp::Eq) => out.sql.push_str(&format!("{column} IS NULL")),
            (Literal::Null, CmpOp::Ne) => out.sql.push_str(&format!("{column} IS NOT NULL")),
            _ => {
                let value = comparison_value(lit, p.ty).ok_or_else(|| incompatible(p.ty.edm()))?;
                let collate = collation(p.ty == PropType::String);
                out.sql.push_str(&format!("{column}{collate} {} ?", sql_op(op)));
                out.params.push(value);
            }
        }
        Ok(())
    }
}

/// The operands of the maximal chain of `expr`'s operator (`a and b and (c or d)` gives `a`, `b`,
/// `c or d`), in order, found without recursion.
fn chain(expr: &Expr) -> Vec<&Expr> {
    let same = |e: &Expr| std::mem::discriminant(e) == std::mem::discriminant(expr);
    let (mut operands, mut todo) = (Vec::new(), vec![expr]);
    while let Some(e) = todo.pop() {
        match e {
            Expr::And(l, r) | Expr::Or(l, r) if same(e) => todo.extend([&**r, &**l]),
            _ => operands.push(e),
        }
    }
    operands
}

fn collation(string: bool) -> &'static str {
    if string {
        " COLLATE NOCASE"
    } else {
        ""
    }
}

fn sql_op(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
    }
}

fn is_number(lit: &Literal) -> bool {
    matches!(lit, Literal::Int(_) | Literal::Decimal(_))
}

/// A finite number written as a decimal literal.
fn real(text: &str) -> Option<Value> {
    text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::Real)
}

/// A literal as a SQL value, without a column type to convert it to.
fn literal_value(lit: &Literal) -> Option<Value> {
    Some(match lit {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Integer(i64::from(*b)),
        Literal::Int(n) => Value::Integer(*n),
        Literal::Decimal(d) => return real(d),
        Literal::String(s) | Literal::Guid(s) | Literal::Date(s) | Literal::DateTimeOffset(s) => Value::Text(s.clone()),
    })
}

/// The stored form of a `$filter` literal compared with a column of type `ty`, or `None` when
/// the types don't match. Numbers mix freely except with option sets; a date is accepted for a
/// date-time column as its midnight UTC; a quoted GUID is accepted for a GUID column (one
/// Microsoft example writes it so).
fn comparison_value(lit: &Literal, ty: PropType) -> Option<Value> {
    use PropType as T;
    match (ty, lit) {
        (_, Literal::Null) => Some(Value::Null),
        (T::String, Literal::String(s)) => Some(Value::Text(s.clone())),
        (T::Guid, Literal::Guid(g)) => Some(Value::Text(g.clone())),
        (T::Guid, Literal::String(s)) => parse_guid(s).map(Value::Text),
        (T::Int | T::OptionSet | T::Decimal | T::Double, Literal::Int(n)) => Some(Value::Integer(*n)),
        (T::Int | T::Decimal | T::Double, Literal::Decimal(d)) => real(d),
        (T::Date, Literal::Date(d)) => Some(Value::Text(d.clone())),
        (T::Datetime, Literal::DateTimeOffset(d)) => Some(Value::Text(d.clone())),
        (T::Datetime, Literal::Date(d)) => Some(Value::Text(midnight_utc(d))),
        _ => None,
    }
}

/// The stored form of one `PropertyValues` entry of `In` for a column of type `ty`. Dataverse
/// passes these as JSON strings whatever the column type, so strings are parsed here.
fn in_value(lit: &Literal, ty: PropType) -> Option<Value> {
    use PropType as T;
    let Literal::String(s) = lit else {
        return match (ty, lit) {
            (T::String, Literal::Int(n)) => Some(Value::Text(n.to_string())),
            (T::String, Literal::Decimal(d)) => Some(Value::Text(d.clone())),
            _ => comparison_value(lit, ty),
        };
    };
    let s = s.trim();
    match ty {
        T::String => comparison_value(lit, ty),
        T::Guid => parse_guid(s).map(Value::Text),
        T::Int | T::OptionSet => s.parse::<i64>().ok().map(Value::Integer),
        T::Decimal | T::Double => match s.parse::<i64>() {
            Ok(n) => Some(Value::Integer(n)),
            Err(_) => real(s),
        },
        T::Date => parse_date(s).map(Value::Text),
        T::Datetime => parse_datetime(s)
            .or_else(|| parse_date(s).map(|d| midnight_utc(&d)))
            .map(Value::Text),
    }
}
