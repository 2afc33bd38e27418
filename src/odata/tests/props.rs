//! Property tests: `compile` never panics on arbitrary trees and hostile strings, and its output
//! never lets a value out of its quotes. A small tokenizer reads the output back: the literals it
//! finds must be exactly the values of the tree, in order, and everything outside them must be
//! OData syntax (names, keywords, bare typed literals). The URL built from it must carry it as
//! one `$filter` option that decodes back to the same text.

use crate::model::{model, Entity, PropType};
use crate::odata::escape::{like_escape, string_literal};
use crate::odata::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::HashSet;

/// The entity with the most distinct property types, so every literal kind gets exercised.
fn entity() -> &'static Entity {
    model()
        .entities
        .iter()
        .max_by_key(|e| e.properties.iter().map(|p| p.ty.edm()).collect::<HashSet<_>>().len())
        .unwrap()
}

fn nasty() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        "[a-z'%&/#+_\\[\\]\"\\\\ ()=;?,:$@éü中😀]{0,12}",
        select(vec![
            "x') or (1 eq 1".to_string(),
            "'".into(),
            "''".into(),
            "\\\"".into(),
            "\"]) or (1 eq 1".into(),
            "%25%27".into(),
            "a&$filter=b".into(),
        ]),
    ]
    .boxed()
}

fn typed(ty: PropType, options: Vec<i64>) -> BoxedStrategy<Literal> {
    match ty {
        PropType::String => nasty().prop_map(Literal::String).boxed(),
        PropType::Guid => "[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9A-F]{12}"
            .prop_map(Literal::Guid)
            .boxed(),
        PropType::Int => any::<i32>().prop_map(|n| Literal::Int(n.into())).boxed(),
        PropType::Decimal | PropType::Double => prop_oneof![
            any::<f64>().prop_map(Literal::Float),
            any::<i64>().prop_map(Literal::Int)
        ]
        .boxed(),
        PropType::Date => (1u32..=9999, 1u32..=12, 1u32..=28)
            .prop_map(|(y, m, d)| Literal::Date(format!("{y:04}-{m:02}-{d:02}")))
            .boxed(),
        PropType::Datetime => (
            1u32..=9998,
            1u32..=12,
            1u32..=28,
            0u32..24,
            select(vec!["Z", "+05:30", "-11:00", ".25Z"]),
        )
            .prop_map(|(y, m, d, h, z)| Literal::DateTime(format!("{y:04}-{m:02}-{d:02}T{h:02}:07:09{z}")))
            .boxed(),
        PropType::OptionSet => prop_oneof![
            select(options).prop_map(Literal::Option),
            any::<bool>().prop_map(Literal::Bool)
        ]
        .boxed(),
    }
}

fn any_literal() -> BoxedStrategy<Literal> {
    prop_oneof![
        nasty().prop_map(Literal::String),
        any::<i64>().prop_map(Literal::Int),
        any::<f64>().prop_map(Literal::Float),
        any::<bool>().prop_map(Literal::Bool),
        nasty().prop_map(Literal::Guid),
        nasty().prop_map(Literal::Date),
        nasty().prop_map(Literal::DateTime),
        any::<i64>().prop_map(Literal::Option),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Filter> {
    let e = entity();
    (0..e.properties.len() + 1)
        .prop_flat_map(move |i| {
            let (name, lit) = match e.properties.get(i) {
                Some(p) => {
                    let values = p
                        .option_set
                        .as_deref()
                        .and_then(|s| model().option_set(s))
                        .map_or(vec![0], |s| s.values.iter().map(|v| v.value).collect());
                    (
                        p.name.clone(),
                        prop_oneof![3 => typed(p.ty, values), 1 => any_literal()].boxed(),
                    )
                }
                None => ("nope') or (1 eq 1".to_string(), any_literal()),
            };
            let ops = select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le]);
            let funcs = select(vec![StrFunc::Contains, StrFunc::StartsWith, StrFunc::EndsWith]);
            let n = name.clone();
            prop_oneof![
                (ops, lit.clone()).prop_map({
                    let n = n.clone();
                    move |(op, value)| Filter::Cmp {
                        property: n.clone(),
                        op,
                        value,
                    }
                }),
                vec(lit, 0..4).prop_map({
                    let n = n.clone();
                    move |values| Filter::In {
                        property: n.clone(),
                        values,
                    }
                }),
                (funcs, nasty()).prop_map({
                    let n = n.clone();
                    move |(func, value)| Filter::Str {
                        property: n.clone(),
                        func,
                        value,
                    }
                }),
                any::<bool>().prop_map(move |is_null| Filter::IsNull {
                    property: name.clone(),
                    is_null
                }),
            ]
        })
        .boxed()
}

fn tree() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Filter::And),
            vec(inner.clone(), 0..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

/// The literals the output must hold, in order: `'` for single-quoted, `"` for JSON strings.
fn expected(f: &Filter, e: &Entity, out: &mut Vec<(char, String)>) {
    let is_string = |p: &str| e.property(p).is_some_and(|p| p.ty == PropType::String);
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().for_each(|x| expected(x, e, out)),
        Filter::Not(x) => expected(x, e, out),
        Filter::Cmp {
            property,
            value: Literal::String(s),
            ..
        } if is_string(property) => out.push(('\'', s.clone())),
        Filter::In { property, values } if is_string(property) && !values.is_empty() => {
            out.push(('\'', property.clone()));
            for v in values {
                let Literal::String(s) = v else {
                    unreachable!("compiled")
                };
                out.push(('"', s.clone()));
            }
        }
        Filter::Str { value, .. } => out.push(('\'', like_escape(value))),
        _ => {}
    }
}

/// Splits compiled text into its literals and checks the text between them.
fn tokenize(text: &str) -> Result<Vec<(char, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut depth = 0i32;
    while let Some((start, c)) = chars.next() {
        match c {
            '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated literal at {start}")),
                        Some((_, '\'')) if chars.peek().map(|p| p.1) == Some('\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, c)) => s.push(c),
                    }
                }
                out.push(('\'', s));
            }
            '"' => {
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or(format!("unterminated JSON string at {start}"))?;
                let s: String = serde_json::from_str(&text[start..=end]).map_err(|e| e.to_string())?;
                out.push(('"', s));
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced ')' at {start}"));
                }
            }
            c if c.is_ascii_alphanumeric() || " _.,=:-[]".contains(c) => {}
            c => return Err(format!("unexpected {c:?} outside a literal at {start}")),
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn compiled_values_never_escape_their_quotes(f in tree()) {
        let e = entity();
        if let Ok(text) = compile(&f, e) {
            let mut want = Vec::new();
            expected(&f, e, &mut want);
            let got = tokenize(&text).map_err(|m| TestCaseError::fail(format!("{m} in {text}")))?;
            prop_assert_eq!(got, want, "in {}", text);
            let mut q = ODataQuery::new(e);
            q.filter = Some(text.clone());
            let url = q.to_relative_url();
            prop_assert!(!url.contains(['#', ' ', '+', '\'', '"']), "{}", url);
            let (_, query) = url.split_once('?').unwrap();
            let options: Vec<&str> = query.split('&').collect();
            prop_assert_eq!(options.len(), 1, "{}", url);
            let value = options[0].strip_prefix("$filter=").unwrap();
            prop_assert_eq!(percent_encoding::percent_decode_str(value).decode_utf8().unwrap(), text.as_str());
        }
    }

    #[test]
    fn string_literals_read_back_as_one_token(s in nasty()) {
        prop_assert_eq!(tokenize(&string_literal(&s)).unwrap(), vec![('\'', s.clone())]);
        let escaped = like_escape(&s);
        let unbracketed = escaped.replace("[%]", "").replace("[_]", "").replace("[[]", "");
        prop_assert!(!unbracketed.contains(['%', '_', '[']), "{}", escaped);
    }
}
