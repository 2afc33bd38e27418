//! The comparison operators and the three string functions of `$filter`, with their OData
//! spellings.

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// One of the three string functions Dataverse supports (contract §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrFunc {
    Contains,
    StartsWith,
    EndsWith,
}

impl CmpOp {
    /// Every operator, in the order OData lists them.
    pub const ALL: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le];

    /// The OData keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
        }
    }

    /// The operator spelled `word` (keywords are case-sensitive).
    pub fn from_keyword(word: &str) -> Option<CmpOp> {
        CmpOp::ALL.into_iter().find(|op| op.keyword() == word)
    }

    /// The name OData Lib uses in its type errors ("operator kind 'Equal'").
    pub fn kind_name(self) -> &'static str {
        match self {
            CmpOp::Eq => "Equal",
            CmpOp::Ne => "NotEqual",
            CmpOp::Gt => "GreaterThan",
            CmpOp::Ge => "GreaterThanOrEqual",
            CmpOp::Lt => "LessThan",
            CmpOp::Le => "LessThanOrEqual",
        }
    }

    /// The operator that gives the same result with the operands swapped (`1 lt x` is `x gt 1`).
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            same => same,
        }
    }

    /// Whether the operator orders its operands (`gt`, `ge`, `lt`, `le`), as opposed to `eq`/`ne`.
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

impl StrFunc {
    /// Every string function.
    pub const ALL: [StrFunc; 3] = [StrFunc::Contains, StrFunc::StartsWith, StrFunc::EndsWith];

    /// The OData function name.
    pub fn name(self) -> &'static str {
        match self {
            StrFunc::Contains => "contains",
            StrFunc::StartsWith => "startswith",
            StrFunc::EndsWith => "endswith",
        }
    }

    /// The function called `name` (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<StrFunc> {
        StrFunc::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip() {
        for op in CmpOp::ALL {
            assert_eq!(CmpOp::from_keyword(op.keyword()), Some(op));
            assert_eq!(op.flipped().flipped(), op);
            assert_eq!(op.to_string(), op.keyword());
        }
        assert_eq!(CmpOp::from_keyword("EQ"), None);
        for f in StrFunc::ALL {
            assert_eq!(StrFunc::from_name(f.name()), Some(f));
        }
        assert_eq!(StrFunc::from_name("Contains"), None);
    }

    #[test]
    fn ordering_operators_flip_and_equalities_do_not() {
        assert_eq!(CmpOp::Lt.flipped(), CmpOp::Gt);
        assert_eq!(CmpOp::Ge.flipped(), CmpOp::Le);
        assert_eq!(CmpOp::Eq.flipped(), CmpOp::Eq);
        assert!(CmpOp::Le.is_ordering() && !CmpOp::Ne.is_ordering());
    }
}
