//! The `$filter` parser: recursive descent over the lexer's tokens.
//!
//! Grammar (OData precedence: `not` binds tightest, then `and`, then `or`; comparisons are the
//! operands of `not`/`and`/`or` and don't chain):
//!
//! ```text
//! or      := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" or ")" | call | operand cmp operand
//! call    := ("contains"|"startswith"|"endswith") "(" property "," string ")"
//!          | "Microsoft.Dynamics.CRM.In" "(" "PropertyName" "=" string ","
//!                                         "PropertyValues" "=" json-array ")"
//! ```
//!
//! `not` must be followed by a parenthesised expression, a function call or another `not`: in
//! OData `not a eq 1` means `(not a) eq 1`, which Dataverse rejects, so the emulator does too
//! rather than guessing.
//!
//! Two limits keep every recursive walk within a 2 MiB thread stack (test threads and tokio
//! workers have no more), even in debug builds: parentheses and `not` may nest [`MAX_NESTING`]
//! deep (each level is several parser frames), and the tree may be [`MAX_DEPTH`] deep (a flat
//! `a or b or ...` chain is parsed iteratively but builds a left-deep tree, which compiling,
//! printing and dropping walk recursively).

use super::ast::{CmpOp, Expr, Literal, Operand, StrFunc};
use super::lexer::{position, syntax_error, tokenize, Tok, Token};
use super::QueryError;

/// How deep parentheses and `not` may nest.
pub(crate) const MAX_NESTING: usize = 100;

/// The deepest tree a filter may have: room for an `or` chain of a thousand comparisons.
pub(crate) const MAX_DEPTH: usize = 1000;

/// The name of Dataverse's `In` query function, the only one of its 60-odd functions emulated.
const IN_FUNCTION: &str = "Microsoft.Dynamics.CRM.In";

/// Standard OData functions that Dataverse doesn't support in `$filter`.
const ODATA_FUNCTIONS: &[&str] = &[
    "tolower",
    "toupper",
    "trim",
    "length",
    "indexof",
    "substring",
    "concat",
    "matchesPattern",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "fractionalseconds",
    "date",
    "time",
    "totaloffsetminutes",
    "now",
    "maxdatetime",
    "mindatetime",
    "totalseconds",
    "round",
    "floor",
    "ceiling",
    "cast",
    "isof",
    "geo.distance",
    "geo.intersects",
    "geo.length",
];

/// Operators OData has and Dataverse's `$filter` doesn't.
const OTHER_OPERATORS: &[&str] = &["has", "in", "add", "sub", "mul", "div", "divby", "mod"];

/// Parses a `$filter` value (already percent-decoded) into an [`Expr`].
pub fn parse_filter(input: &str) -> Result<Expr, QueryError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser { input, tokens, at: 0 };
    let (expr, _) = parser.or_expr(0)?;
    match parser.peek().tok {
        Tok::End => Ok(expr),
        _ => Err(parser.error_here()),
    }
}

struct Parser<'a> {
    input: &'a str,
    /// Always ends with [`Tok::End`], which the parser never moves past.
    tokens: Vec<Token>,
    at: usize,
}

/// A parsed sub-expression and the depth of its tree.
type Parsed = Result<(Expr, usize), QueryError>;

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn peek_second(&self) -> &Tok {
        self.tokens.get(self.at + 1).map_or(&Tok::End, |t| &t.tok)
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if token.tok != Tok::End {
            self.at += 1;
        }
        token
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(w) if w == word)
    }

    fn error_here(&self) -> QueryError {
        syntax_error(self.input, self.peek().pos)
    }

    fn expect(&mut self, tok: Tok) -> Result<(), QueryError> {
        if self.peek().tok == tok {
            self.advance();
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), QueryError> {
        if depth > MAX_DEPTH {
            return Err(QueryError::new(format!(
                "The recursion limit has been exceeded: the $filter expression is more than {MAX_DEPTH} levels deep in '{}'.",
                self.input
            )));
        }
        Ok(())
    }

    fn check_nesting(&self, nesting: usize) -> Result<(), QueryError> {
        if nesting > MAX_NESTING {
            return Err(QueryError::new(format!(
                "The recursion limit has been exceeded: parentheses and 'not' nest more than {MAX_NESTING} levels deep in '{}'.",
                self.input
            )));
        }
        Ok(())
    }

    fn or_expr(&mut self, nesting: usize) -> Parsed {
        let (mut left, mut depth) = self.and_expr(nesting)?;
        while self.is_keyword("or") {
            self.advance();
            let (right, right_depth) = self.and_expr(nesting)?;
            depth = depth.max(right_depth) + 1;
            self.check_depth(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok((left, depth))
    }

    fn and_expr(&mut self, nesting: usize) -> Parsed {
        let (mut left, mut depth) = self.unary(nesting)?;
        while self.is_keyword("and") {
            self.advance();
            let (right, right_depth) = self.unary(nesting)?;
            depth = depth.max(right_depth) + 1;
            self.check_depth(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok((left, depth))
    }

    fn unary(&mut self, nesting: usize) -> Parsed {
        if !self.is_keyword("not") {
            return self.primary(nesting);
        }
        self.advance();
        let operand_ok = self.peek().tok == Tok::LParen
            || self.is_keyword("not")
            || (matches!(self.peek().tok, Tok::Ident(_)) && *self.peek_second() == Tok::LParen);
        if !operand_ok {
            return Err(self.error_here());
        }
        self.check_nesting(nesting + 1)?;
        let (inner, depth) = self.unary(nesting + 1)?;
        self.check_depth(depth + 1)?;
        Ok((Expr::Not(Box::new(inner)), depth + 1))
    }

    fn primary(&mut self, nesting: usize) -> Parsed {
        match &self.peek().tok {
            Tok::LParen => {
                self.advance();
                self.check_nesting(nesting + 1)?;
                let parsed = self.or_expr(nesting + 1)?;
                self.expect(Tok::RParen)?;
                Ok(parsed)
            }
            Tok::Ident(name) if *self.peek_second() == Tok::LParen => {
                let name = name.clone();
                self.advance(); // the name
                self.advance(); // `(`
                Ok((self.call(name)?, 1))
            }
            _ => Ok((self.comparison()?, 1)),
        }
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.operand()?;
        let op = match &self.peek().tok {
            Tok::Ident(word) => match CmpOp::from_keyword(word) {
                Some(op) => op,
                None if OTHER_OPERATORS.contains(&word.as_str()) => {
                    return Err(QueryError::new(format!(
                        "The operator '{word}' at position {} in '{}' is not supported: Dataverse's $filter has eq, ne, gt, ge, lt, le, and, or and not.",
                        position(self.input, self.peek().pos),
                        self.input
                    )))
                }
                None => return Err(self.error_here()),
            },
            _ => return Err(self.error_here()),
        };
        self.advance();
        let right = self.operand()?;
        Ok(Expr::Compare { op, left, right })
    }

    fn operand(&mut self) -> Result<Operand, QueryError> {
        let token = self.advance();
        match token.tok {
            Tok::Lit(lit) => Ok(Operand::Literal(lit)),
            Tok::Ident(name) => {
                self.no_path(&name)?;
                let keyword = matches!(name.as_str(), "and" | "or" | "not") || CmpOp::from_keyword(&name).is_some();
                if keyword || name.contains('.') {
                    return Err(syntax_error(self.input, token.pos));
                }
                Ok(Operand::Property(name))
            }
            _ => Err(syntax_error(self.input, token.pos)),
        }
    }

    /// Rejects `name/...`: lookup paths and `any`/`all` lambdas aren't emulated.
    fn no_path(&self, name: &str) -> Result<(), QueryError> {
        if self.peek().tok != Tok::Slash {
            return Ok(());
        }
        Err(QueryError::new(format!(
            "Navigation paths and lambda operators ('{name}/...' at position {}) are not supported by the emulator in '{}'; filter on the table's own properties.",
            position(self.input, self.peek().pos),
            self.input
        )))
    }

    /// A function call named `name`, after its `(`.
    fn call(&mut self, name: String) -> Result<Expr, QueryError> {
        if let Some(func) = StrFunc::from_name(&name) {
            return self.string_function(func);
        }
        if name == IN_FUNCTION {
            return self.in_function();
        }
        let message = if name.starts_with("Microsoft.Dynamics.CRM.") {
            format!("The function '{name}' is not supported by the emulator: of the Dataverse query functions only {IN_FUNCTION} is.")
        } else if ODATA_FUNCTIONS.contains(&name.as_str()) {
            format!("The function '{name}' is not supported: Dataverse's $filter only has the string functions contains, startswith and endswith.")
        } else {
            format!("An unknown function with name '{name}' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed.")
        };
        Err(QueryError::new(message))
    }

    /// `contains(prop,'value')` and its two siblings, after the `(`.
    fn string_function(&mut self, func: StrFunc) -> Result<Expr, QueryError> {
        let signature = || {
            let name = func.name();
            QueryError::new(format!(
                "No function signature for the function with name '{name}' matches the specified arguments. The function signatures considered are: {name}(Edm.String Nullable=true, Edm.String Nullable=true). The emulator supports {name}(<property>,'<text>')."
            ))
        };
        let prop = match self.advance() {
            Token { tok: Tok::Ident(p), .. } if !p.contains('.') => {
                self.no_path(&p)?;
                p
            }
            Token { tok: Tok::Lit(_), .. } => return Err(signature()),
            other => return Err(syntax_error(self.input, other.pos)),
        };
        self.expect(Tok::Comma)?;
        let value = match self.advance() {
            Token {
                tok: Tok::Lit(Literal::String(v)),
                ..
            } => v,
            Token {
                tok: Tok::Lit(_) | Tok::Ident(_),
                ..
            } => return Err(signature()),
            other => return Err(syntax_error(self.input, other.pos)),
        };
        self.expect(Tok::RParen)?;
        Ok(Expr::StrFn { func, prop, value })
    }

    /// `Microsoft.Dynamics.CRM.In(PropertyName='p',PropertyValues=[..])`, after the `(`; the two
    /// named parameters may come in either order.
    fn in_function(&mut self) -> Result<Expr, QueryError> {
        let (mut prop, mut values) = (None, None);
        loop {
            let token = self.advance();
            let Tok::Ident(param) = token.tok else {
                return Err(syntax_error(self.input, token.pos));
            };
            self.expect(Tok::Equals)?;
            let value = self.advance();
            match (param.as_str(), value.tok) {
                ("PropertyName", Tok::Lit(Literal::String(p))) if prop.is_none() => prop = Some(p),
                ("PropertyValues", Tok::Array(v)) if values.is_none() => values = Some(v),
                ("PropertyName", _) | ("PropertyValues", _) => {
                    return Err(QueryError::new(format!(
                        "{IN_FUNCTION} takes PropertyName once, as a string such as 'name', and PropertyValues once, as a JSON array such as [\"a\",\"b\"]; see position {} in '{}'.",
                        position(self.input, token.pos),
                        self.input
                    )))
                }
                _ => {
                    return Err(QueryError::new(format!(
                        "{IN_FUNCTION} has no parameter named '{param}'; it takes PropertyName and PropertyValues."
                    )))
                }
            }
            if self.peek().tok == Tok::RParen {
                self.advance();
                break;
            }
            self.expect(Tok::Comma)?;
        }
        match (prop, values) {
            (Some(prop), Some(values)) => Ok(Expr::In { prop, values }),
            _ => Err(QueryError::new(format!(
                "{IN_FUNCTION} requires the parameters PropertyName and PropertyValues."
            ))),
        }
    }
}
