//! The `$filter` parser: operators, precedence, literals, functions and error messages.

use super::{error, lit, parse, prop};
use crate::emulator::query::{CmpOp, Expr, Literal, StrFunc};

fn cmp(name: &str, op: CmpOp, value: i64) -> Expr {
    Expr::Compare {
        op,
        left: prop(name),
        right: lit(Literal::Int(value)),
    }
}

fn and(l: Expr, r: Expr) -> Expr {
    Expr::And(Box::new(l), Box::new(r))
}

fn or(l: Expr, r: Expr) -> Expr {
    Expr::Or(Box::new(l), Box::new(r))
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

/// The literal on the right of `x eq <text>`.
fn literal(text: &str) -> Literal {
    match parse(&format!("x eq {text}")) {
        Expr::Compare {
            right: super::Operand::Literal(l),
            ..
        } => l,
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_comparison_operator() {
    for (word, op) in [
        ("eq", CmpOp::Eq),
        ("ne", CmpOp::Ne),
        ("gt", CmpOp::Gt),
        ("ge", CmpOp::Ge),
        ("lt", CmpOp::Lt),
        ("le", CmpOp::Le),
    ] {
        assert_eq!(parse(&format!("mshr_status {word} 3")), cmp("mshr_status", op, 3));
    }
}

#[test]
fn and_binds_tighter_than_or_and_not_tightest() {
    let (a, b, c) = (cmp("a", CmpOp::Eq, 1), cmp("b", CmpOp::Eq, 2), cmp("c", CmpOp::Eq, 3));
    assert_eq!(
        parse("a eq 1 or b eq 2 and c eq 3"),
        or(a.clone(), and(b.clone(), c.clone()))
    );
    assert_eq!(
        parse("a eq 1 and b eq 2 or c eq 3"),
        or(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(parse("not (a eq 1) and b eq 2"), and(not(a.clone()), b.clone()));
    assert_eq!(
        parse("a eq 1 and b eq 2 and c eq 3"),
        and(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(parse("not not (a eq 1)"), not(not(a)));
}

#[test]
fn nested_parentheses() {
    let (a, b, c) = (cmp("a", CmpOp::Eq, 1), cmp("b", CmpOp::Eq, 2), cmp("c", CmpOp::Eq, 3));
    assert_eq!(
        parse("((a eq 1 or (b eq 2)) and (((c eq 3))))"),
        and(or(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(parse("a eq 1 and (b eq 2 or c eq 3)"), and(a, or(b, c)));
    assert_eq!(error("(a eq 1"), "Syntax error at position 7 in '(a eq 1'.");
    assert_eq!(error("a eq 1)"), "Syntax error at position 6 in 'a eq 1)'.");
    assert_eq!(error("()"), "Syntax error at position 1 in '()'.");
}

#[test]
fn not_needs_parentheses_or_a_call() {
    assert_eq!(error("not a eq 1"), "Syntax error at position 4 in 'not a eq 1'.");
    assert_eq!(
        parse("not contains(a,'x')"),
        not(Expr::StrFn {
            func: StrFunc::Contains,
            prop: "a".into(),
            value: "x".into()
        })
    );
}

#[test]
fn quotes_are_escaped_by_doubling() {
    assert_eq!(literal("'O''Bryan'"), Literal::String("O'Bryan".into()));
    assert_eq!(literal("''"), Literal::String(String::new()));
    assert_eq!(literal("''''"), Literal::String("'".into()));
    assert_eq!(
        literal("'a b, (c) eq ''d'''"),
        Literal::String("a b, (c) eq 'd'".into())
    );
    assert_eq!(literal("'é😀'"), Literal::String("é😀".into()));
}

#[test]
fn unterminated_literal_matches_dataverse() {
    assert_eq!(
        error("lastname eq 'O'Bryan'"),
        "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."
    );
    // Positions are UTF-16 code units, as .NET counts: é is one, 😀 two.
    assert_eq!(
        error("name eq 'é😀"),
        "There is an unterminated literal at position 12 in 'name eq 'é😀'."
    );
}

#[test]
fn syntax_errors_name_the_position() {
    assert_eq!(error(""), "Syntax error at position 0 in ''.");
    assert_eq!(error("name eq"), "Syntax error at position 7 in 'name eq'.");
    assert_eq!(error("name eq 1 1"), "Syntax error at position 10 in 'name eq 1 1'.");
    assert_eq!(error("name xx 1"), "Syntax error at position 5 in 'name xx 1'.");
    assert_eq!(error("name EQ 1"), "Syntax error at position 5 in 'name EQ 1'.");
    assert_eq!(error("a eq 1 eq 2"), "Syntax error at position 7 in 'a eq 1 eq 2'.");
    assert_eq!(
        error("'é' eq 'x' eq"),
        "Syntax error at position 11 in ''é' eq 'x' eq'."
    );
    assert_eq!(
        error("name eq #"),
        "Syntax error: character '#' is not valid at position 8 in 'name eq #'."
    );
    assert_eq!(
        error("a eq 2021-02-30"),
        "Syntax error at position 5 in 'a eq 2021-02-30'."
    );
    assert!(error("a has 1").contains("The operator 'has'"));
    assert!(error("a eq @p1").contains("Parameter aliases"));
    assert!(error("primarycontactid/fullname eq 'x'").contains("Navigation paths"));
}

#[test]
fn guid_literals_are_bare_and_lowercased() {
    let guid = "00000d6b-0000-0000-0000-005001000000";
    assert_eq!(literal(guid), Literal::Guid(guid.into()));
    assert_eq!(literal(&guid.to_uppercase()), Literal::Guid(guid.into()));
    assert_eq!(
        literal("DEADBEEF-0000-0000-0000-005001000000"),
        Literal::Guid("deadbeef-0000-0000-0000-005001000000".into())
    );
}

#[test]
fn date_and_datetime_literals() {
    assert_eq!(literal("2021-01-04"), Literal::Date("2021-01-04".into()));
    for (text, utc) in [
        ("2021-01-04T00:00:00Z", "2021-01-04T00:00:00Z"),
        ("2021-01-04T10:20:30.1234567Z", "2021-01-04T10:20:30Z"),
        ("2021-01-04T01:00:00+02:00", "2021-01-03T23:00:00Z"),
        ("2021-01-04T23:30:00-01:00", "2021-01-05T00:30:00Z"),
        ("2021-01-04T10:20Z", "2021-01-04T10:20:00Z"),
    ] {
        assert_eq!(literal(text), Literal::DateTimeOffset(utc.into()), "{text}");
    }
}

#[test]
fn number_and_keyword_literals() {
    assert_eq!(literal("42"), Literal::Int(42));
    assert_eq!(literal("-5"), Literal::Int(-5));
    assert_eq!(literal("-9223372036854775808"), Literal::Int(i64::MIN));
    assert_eq!(
        literal("9223372036854775808"),
        Literal::Decimal("9223372036854775808".into())
    );
    assert_eq!(literal("1.5"), Literal::Decimal("1.5".into()));
    assert_eq!(literal("-0.25"), Literal::Decimal("-0.25".into()));
    assert_eq!(literal("1e3"), Literal::Decimal("1e3".into()));
    assert_eq!(literal("2.5E-2"), Literal::Decimal("2.5E-2".into()));
    assert_eq!(literal("null"), Literal::Null);
    assert_eq!(literal("true"), Literal::Bool(true));
    assert_eq!(literal("false"), Literal::Bool(false));
    assert_eq!(
        error("x eq 1."),
        "Syntax error: character '.' is not valid at position 6 in 'x eq 1.'."
    );
}

#[test]
fn literal_can_be_on_the_left_and_columns_compared() {
    assert_eq!(
        parse("5 lt mshr_factor"),
        Expr::Compare {
            op: CmpOp::Lt,
            left: lit(Literal::Int(5)),
            right: prop("mshr_factor")
        }
    );
    assert_eq!(
        parse("firstname eq lastname"),
        Expr::Compare {
            op: CmpOp::Eq,
            left: prop("firstname"),
            right: prop("lastname")
        }
    );
}

#[test]
fn string_functions() {
    for (name, func) in [
        ("contains", StrFunc::Contains),
        ("startswith", StrFunc::StartsWith),
        ("endswith", StrFunc::EndsWith),
    ] {
        assert_eq!(
            parse(&format!("{name}( mshr_name , 'O''B%' )")),
            Expr::StrFn {
                func,
                prop: "mshr_name".into(),
                value: "O'B%".into()
            }
        );
    }
    assert!(error("contains(mshr_name,5)")
        .starts_with("No function signature for the function with name 'contains' matches the specified arguments."));
    assert!(error("contains('x',mshr_name)").contains("contains(<property>,'<text>')"));
}

#[test]
fn in_function_reads_json_values() {
    let expected = Expr::In {
        prop: "lastname".into(),
        values: vec![Literal::String("O'Brian".into()), Literal::String("a\"b".into())],
    };
    assert_eq!(
        parse(r#"Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=["O'Brian","a\"b"])"#),
        expected
    );
    assert_eq!(
        parse(r#"Microsoft.Dynamics.CRM.In(PropertyValues=["O'Brian", "a\"b"], PropertyName='lastname')"#),
        expected
    );
    assert_eq!(
        parse("Microsoft.Dynamics.CRM.In(PropertyName='n',PropertyValues=[1,2.5,null,true])"),
        Expr::In {
            prop: "n".into(),
            values: vec![
                Literal::Int(1),
                Literal::Decimal("2.5".into()),
                Literal::Null,
                Literal::Bool(true)
            ],
        }
    );
    assert!(error("Microsoft.Dynamics.CRM.In(PropertyName='n',PropertyValues=['a','b'])").starts_with("Invalid JSON."));
    assert!(error("Microsoft.Dynamics.CRM.In(PropertyName='n',PropertyValues=[\"a\"").contains("not closed"));
    assert!(
        error("Microsoft.Dynamics.CRM.In(PropertyName='n',PropertyValues=[[1]])").contains("only strings, numbers")
    );
    assert!(error("Microsoft.Dynamics.CRM.In(PropertyName='n')")
        .contains("requires the parameters PropertyName and PropertyValues"));
    assert!(error("Microsoft.Dynamics.CRM.In(Name='n',PropertyValues=[])").contains("no parameter named 'Name'"));
    assert!(error("Microsoft.Dynamics.CRM.In(PropertyName=5,PropertyValues=[])").contains("takes PropertyName once"));
}

#[test]
fn unknown_and_unsupported_functions_say_so() {
    assert_eq!(
        error("frobnicate(a) eq 1"),
        "An unknown function with name 'frobnicate' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed."
    );
    assert!(error("tolower(a) eq 'x'").contains("The function 'tolower' is not supported"));
    assert!(
        error("Microsoft.Dynamics.CRM.Between(PropertyName='a',PropertyValues=[1,2])")
            .contains("'Microsoft.Dynamics.CRM.Between' is not supported by the emulator")
    );
    assert!(error("Microsoft.Dynamics.CRM.in(PropertyName='a',PropertyValues=[1])")
        .contains("is not supported by the emulator"));
}

#[test]
fn nesting_is_bounded_without_overflowing_the_stack() {
    let deep = format!("{}a eq 1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(error(&deep).contains("parentheses and 'not' nest more than 100"));
    let nots = format!("{}(a eq 1)", "not ".repeat(5000));
    assert!(error(&nots).contains("parentheses and 'not' nest more than 100"));
    let hundred = format!("{}a eq 1{}", "(".repeat(100), ")".repeat(100));
    assert_eq!(parse(&hundred), cmp("a", CmpOp::Eq, 1));
    let too_long = vec!["a eq 1"; 1001].join(" and ");
    assert!(error(&too_long).contains("more than 1000 levels deep"));
}

#[test]
fn the_longest_chain_is_walked_safely_on_a_test_thread() {
    // Parsing, printing, comparing, cloning and dropping all recurse over the left-deep tree.
    let chain = vec!["a eq 1"; 1000].join(" or ");
    let expr = parse(&chain);
    assert_eq!(expr.to_string(), chain);
    assert_eq!(expr.clone(), expr);
    let nested = format!("not ({chain})");
    assert!(error(&nested).contains("more than 1000 levels deep"));
}
