//! The filter compiler on hand-picked cases: exact output, and each refusal with its path.

use super::{prop_of, with, with_type, yes_no};
use crate::model::{model, PropType};
use crate::odata::filter::MAX_DEPTH;
use crate::odata::*;

const G1: &str = "00000d6b-0000-0000-0000-005001000000";
const G2: &str = "00000D6B-0000-0000-0000-005001000001";

fn cmp(property: &str, op: CmpOp, value: Literal) -> Filter {
    Filter::Cmp {
        property: property.into(),
        op,
        value,
    }
}

#[test]
fn strings_are_quoted_and_like_values_escaped() {
    let (e, p) = with_type(PropType::String);
    let n = &p.name;
    assert_eq!(
        compile(&cmp(n, CmpOp::Eq, Literal::String("O'Bryan".into())), e).unwrap(),
        format!("{n} eq 'O''Bryan'")
    );
    let f = Filter::Str {
        property: n.clone(),
        func: StrFunc::Contains,
        value: "50%_[x] 'off'".into(),
    };
    assert_eq!(
        compile(&f, e).unwrap(),
        format!("contains({n},'50[%][_][[]x] ''off''')")
    );
    let f = Filter::Str {
        property: n.clone(),
        func: StrFunc::StartsWith,
        value: "a".into(),
    };
    assert_eq!(compile(&f, e).unwrap(), format!("startswith({n},'a')"));
    let f = Filter::Str {
        property: n.clone(),
        func: StrFunc::EndsWith,
        value: "".into(),
    };
    assert_eq!(compile(&f, e).unwrap(), format!("endswith({n},'')"));
}

#[test]
fn in_uses_the_dataverse_function_for_strings_and_or_for_the_rest() {
    let (e, p) = with_type(PropType::String);
    let n = &p.name;
    let f = Filter::In {
        property: n.clone(),
        values: vec![Literal::String("O'Brian".into()), Literal::String("a\"b".into())],
    };
    assert_eq!(
        compile(&f, e).unwrap(),
        format!(r#"Microsoft.Dynamics.CRM.In(PropertyName='{n}',PropertyValues=["O'Brian","a\"b"])"#)
    );
    let g = prop_of(e, PropType::Guid);
    let f = Filter::In {
        property: g.into(),
        values: vec![Literal::Guid(G1.into()), Literal::String(G2.into())],
    };
    assert_eq!(
        compile(&f, e).unwrap(),
        format!("({g} eq {G1} or {g} eq {})", G2.to_lowercase())
    );
    let f = Filter::In {
        property: g.into(),
        values: vec![Literal::Guid(G1.into())],
    };
    assert_eq!(compile(&f, e).unwrap(), format!("{g} eq {G1}"));
    let f = Filter::In {
        property: g.into(),
        values: vec![],
    };
    assert_eq!(compile(&f, e).unwrap(), format!("{} eq null", e.primary_key));
}

#[test]
fn logic_nests_with_parentheses() {
    let (e, p) = with_type(PropType::String);
    let (n, pk) = (&p.name, &e.primary_key);
    let a = cmp(n, CmpOp::Eq, Literal::String("a".into()));
    let b = Filter::IsNull {
        property: n.clone(),
        is_null: true,
    };
    let c = Filter::IsNull {
        property: n.clone(),
        is_null: false,
    };
    let f = Filter::And(vec![
        a.clone(),
        Filter::Or(vec![b, c.clone()]),
        Filter::Not(Box::new(a.clone())),
    ]);
    assert_eq!(
        compile(&f, e).unwrap(),
        format!("({n} eq 'a' and ({n} eq null or {n} ne null) and not ({n} eq 'a'))")
    );
    assert_eq!(compile(&Filter::And(vec![c]), e).unwrap(), format!("{n} ne null"));
    assert_eq!(compile(&Filter::And(vec![]), e).unwrap(), format!("{pk} ne null"));
    assert_eq!(compile(&Filter::Or(vec![]), e).unwrap(), format!("{pk} eq null"));
}

#[test]
fn typed_literals_are_formatted_per_property_type() {
    let (e, p) = with_type(PropType::Date);
    assert_eq!(
        compile(&cmp(&p.name, CmpOp::Ge, Literal::Date("2024-02-29".into())), e).unwrap(),
        format!("{} ge 2024-02-29", p.name)
    );
    let (e, p) = with_type(PropType::Datetime);
    let f = cmp(
        &p.name,
        CmpOp::Lt,
        Literal::DateTime("2024-01-01T01:00:00+01:00".into()),
    );
    assert_eq!(compile(&f, e).unwrap(), format!("{} lt 2024-01-01T00:00:00Z", p.name));
    let f = cmp(&p.name, CmpOp::Ge, Literal::Date("2024-01-02".into()));
    assert_eq!(compile(&f, e).unwrap(), format!("{} ge 2024-01-02T00:00:00Z", p.name));
    // Fractions of a second become whole seconds selecting the same (whole-second) values.
    let n = &p.name;
    let at = |op| compile(&cmp(n, op, Literal::DateTime("2024-01-01T01:00:00.5+01:00".into())), e).unwrap();
    let s = "2024-01-01T00:00:00Z";
    assert_eq!(at(CmpOp::Ge), format!("{n} gt {s}"));
    assert_eq!(at(CmpOp::Gt), format!("{n} gt {s}"));
    assert_eq!(at(CmpOp::Lt), format!("{n} le {s}"));
    assert_eq!(at(CmpOp::Le), format!("{n} le {s}"));
    assert_eq!(at(CmpOp::Eq), format!("({n} lt {s} and {n} gt {s})"));
    assert_eq!(at(CmpOp::Ne), format!("({n} le {s} or {n} gt {s})"));
    let (e, p) = with_type(PropType::Int);
    assert_eq!(
        compile(&cmp(&p.name, CmpOp::Gt, Literal::Int(-3)), e).unwrap(),
        format!("{} gt -3", p.name)
    );
    let (e, p) = with_type(PropType::Decimal);
    assert_eq!(
        compile(&cmp(&p.name, CmpOp::Le, Literal::Float(2.5)), e).unwrap(),
        format!("{} le 2.5", p.name)
    );
    assert_eq!(
        compile(&cmp(&p.name, CmpOp::Le, Literal::Int(2)), e).unwrap(),
        format!("{} le 2", p.name)
    );
}

#[test]
fn option_values_are_documented_integers_translated_by_labels() {
    let (e, p) = with_type(PropType::OptionSet);
    let set = model().option_set(p.option_set.as_deref().unwrap()).unwrap();
    let v = set.values[0].value;
    let f = cmp(&p.name, CmpOp::Eq, Literal::Option(v));
    assert_eq!(compile(&f, e).unwrap(), format!("{} eq {v}", p.name));
    let shifted = serde_json::json!({"Options": set.values.iter().map(|o| serde_json::json!({
        "Value": o.value + 5, "Label": {"UserLocalizedLabel": {"Label": o.label}}})).collect::<Vec<_>>()});
    let labels = OptionSetLabels::build([(set, Ok(shifted))]);
    assert_eq!(
        compile_with_labels(&f, e, Some(&labels)).unwrap(),
        format!("{} eq {}", p.name, v + 5)
    );
    let (e, p) = yes_no();
    let set = model().option_set(p.option_set.as_deref().unwrap()).unwrap();
    let yes = set.values.iter().find(|v| v.graphql_value == "true").unwrap().value;
    assert_eq!(
        compile(&cmp(&p.name, CmpOp::Ne, Literal::Bool(true)), e).unwrap(),
        format!("{} ne {yes}", p.name)
    );
}

fn refused(f: &Filter, e: &crate::model::Entity) -> FilterError {
    compile(f, e).expect_err("refused")
}

#[test]
fn bad_filters_say_what_and_where() {
    let (e, p) = with_type(PropType::String);
    let n = &p.name;
    let ok = cmp(n, CmpOp::Eq, Literal::String("a".into()));
    let err = refused(
        &Filter::Or(vec![ok.clone(), cmp("nope') or (1 eq 1", CmpOp::Eq, Literal::Int(1))]),
        e,
    );
    assert_eq!(err.path, "filter.or[1]");
    assert!(err.reason.contains("no property named"), "{err}");
    let err = refused(
        &Filter::And(vec![
            ok.clone(),
            Filter::Not(Box::new(cmp(n, CmpOp::Eq, Literal::Int(1)))),
        ]),
        e,
    );
    assert_eq!(
        (err.path.as_str(), err.property.as_deref()),
        ("filter.and[1].not", Some(n.as_str()))
    );
    assert!(err.reason.contains("an integer does not fit"), "{err}");
    let g = prop_of(e, PropType::Guid);
    let err = refused(&cmp(g, CmpOp::Eq, Literal::Guid("x) or (1 eq 1".into())), e);
    assert!(err.reason.contains("not a GUID"), "{err}");
    let err = refused(
        &Filter::In {
            property: g.into(),
            values: vec![Literal::Guid(G1.into()), Literal::Int(1)],
        },
        e,
    );
    assert_eq!(err.path, "filter.values[1]");
    assert!(refused(&cmp(g, CmpOp::Gt, Literal::Guid(G1.into())), e)
        .reason
        .contains("cannot be compared"));
    let f = Filter::Str {
        property: g.into(),
        func: StrFunc::Contains,
        value: "a".into(),
    };
    assert!(refused(&f, e).reason.contains("needs a string property"));
    let (e, p) = with_type(PropType::Int);
    assert!(refused(&cmp(&p.name, CmpOp::Eq, Literal::Int(1 << 40)), e)
        .reason
        .contains("32-bit"));
    let (e, p) = with_type(PropType::Decimal);
    assert!(refused(&cmp(&p.name, CmpOp::Eq, Literal::Float(f64::NAN)), e)
        .reason
        .contains("finite"));
    let (e, p) = with_type(PropType::Date);
    assert!(refused(&cmp(&p.name, CmpOp::Eq, Literal::Date("2023-02-30".into())), e)
        .reason
        .contains("not a date"));
    let (e, p) = with_type(PropType::OptionSet);
    assert!(refused(&cmp(&p.name, CmpOp::Eq, Literal::Option(-1)), e)
        .reason
        .contains("not a value"));
    assert!(refused(&cmp(&p.name, CmpOp::Eq, Literal::Int(200000000)), e)
        .reason
        .contains("does not fit"));
    assert!(refused(&cmp(&p.name, CmpOp::Lt, Literal::Option(0)), e)
        .reason
        .contains("cannot be compared"));
    let (e, p) = with(|p| {
        p.option_set
            .as_deref()
            .and_then(|s| model().option_set(s))
            .is_some_and(|s| s.graphql_enum != "Boolean")
    });
    assert!(refused(&cmp(&p.name, CmpOp::Eq, Literal::Bool(true)), e)
        .reason
        .contains("not a yes/no"));
}

#[test]
fn deep_trees_are_refused_not_overflowed() {
    let (e, p) = with_type(PropType::String);
    let mut f = Filter::IsNull {
        property: p.name.clone(),
        is_null: true,
    };
    for _ in 0..MAX_DEPTH + 5 {
        f = Filter::Not(Box::new(f));
    }
    assert!(refused(&f, e).reason.contains("nested deeper"));
}
