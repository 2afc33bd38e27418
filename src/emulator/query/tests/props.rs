//! Property tests: no input makes a parser panic, and printing a filter gives text that parses
//! back to the same tree.

use proptest::prelude::*;

use super::entity;
use crate::emulator::query::{
    compile_filter, escape_like, like_matches, parse_expand, parse_filter, parse_orderby, parse_select, CmpOp, Expr,
    Literal, Operand, StrFunc,
};

/// Words the parser reads as keywords or literals, so never property names.
const RESERVED: &[&str] = &[
    "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "null", "true", "false",
];

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,12}".prop_filter("reserved word", |s| !RESERVED.contains(&s.as_str()))
}

fn literal() -> impl Strategy<Value = Literal> {
    let date = (1i64..=9999, 1u32..=12, 1u32..=28);
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<i64>().prop_map(Literal::Int),
        (any::<i32>(), 0u32..1_000_000).prop_map(|(i, f)| Literal::Decimal(format!("{i}.{f}"))),
        any::<String>().prop_map(Literal::String),
        any::<u128>().prop_map(|n| {
            let h = format!("{n:032x}");
            Literal::Guid(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }),
        date.clone()
            .prop_map(|(y, m, d)| Literal::Date(format!("{y:04}-{m:02}-{d:02}"))),
        (date, 0u32..24, 0u32..60, 0u32..60).prop_map(|((y, mo, d), h, mi, s)| {
            Literal::DateTimeOffset(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"))
        }),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![name().prop_map(Operand::Property), literal().prop_map(Operand::Literal)]
}

fn leaf() -> impl Strategy<Value = Expr> {
    let op = prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le]);
    let func = prop::sample::select(vec![StrFunc::Contains, StrFunc::StartsWith, StrFunc::EndsWith]);
    let in_value = prop_oneof![
        any::<String>().prop_map(Literal::String),
        any::<i64>().prop_map(Literal::Int)
    ];
    prop_oneof![
        (op, operand(), operand()).prop_map(|(op, left, right)| Expr::Compare { op, left, right }),
        (func, name(), any::<String>()).prop_map(|(func, prop, value)| Expr::StrFn { func, prop, value }),
        (name(), prop::collection::vec(in_value, 0..4)).prop_map(|(prop, values)| Expr::In { prop, values }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

/// Text made of OData-ish pieces, to reach deeper into the parsers than random strings do.
fn odata_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            " ",
            "eq",
            " eq ",
            " and ",
            " or ",
            "not ",
            "(",
            ")",
            ",",
            ";",
            "=",
            "'",
            "''",
            "\"",
            "[",
            "]",
            "/",
            "$select=",
            "$filter=",
            "$orderby=",
            "$top=",
            "$expand=",
            "$skip=",
            "$ref",
            " desc",
            "mshr_name",
            "mshr_birthyear",
            "mshr_gender",
            "mshr_FK_HcmPersonSkillEntity_Person",
            "mshr_skillid",
            "mshr_FK_RatingLevel_id",
            "contains",
            "startswith(",
            "Microsoft.Dynamics.CRM.In(",
            "PropertyName=",
            "PropertyValues=",
            "2021-01-04",
            "T10:00:00Z",
            "+01:00",
            "-",
            "1.5",
            "42",
            "00000d6b-0000-0000-0000-005001000000",
            "null",
            "true",
            "é",
            "😀",
            "%",
            "[%]",
            "@p1",
            "\\",
        ])
        .prop_map(str::to_string),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~]{0,60}", odata_soup()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic(input in any_input()) {
        let person = entity("mshr_dirpersonentity");
        if let Ok(expr) = parse_filter(&input) {
            let _ = compile_filter(&expr, person);
            let _ = expr.to_string();
        }
        let _ = parse_orderby(&input, person);
        let _ = parse_select(&input, person);
        let _ = parse_expand(&input, person);
        let _ = like_matches(&input, &input);
    }

    #[test]
    fn printed_filters_parse_back_to_the_same_tree(expr in expr()) {
        let text = expr.to_string();
        prop_assert_eq!(parse_filter(&text), Ok(expr), "{}", text);
    }

    #[test]
    fn escaped_text_is_found_literally(before in ".{0,8}", needle in ".{0,8}", after in ".{0,8}") {
        let haystack = format!("{before}{needle}{after}");
        let pattern = format!("%{}%", escape_like(&needle));
        prop_assert!(like_matches(&haystack, &pattern));
        prop_assert!(like_matches(&needle, &escape_like(&needle)));
    }
}
