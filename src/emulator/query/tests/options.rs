//! `$orderby`, `$select` and `$expand`.

use super::entity;
use crate::emulator::query::{
    parse_expand, parse_orderby, parse_select, CmpOp, Expr, Literal, Operand, OrderBy, MAX_EXPANDS,
};

const PERSON: &str = "mshr_dirpersonentity";
const REQUEST: &str = "mshr_hcmrecruitingrequestentity";
const SKILLS: &str = "mshr_FK_HcmPersonSkillEntity_Person";
const CANDIDATES: &str = "mshr_FK_HcmCandidateToHireEntity_RecruitingRequest";

fn expand_error(input: &str, on: &str) -> String {
    match parse_expand(input, entity(on)) {
        Ok(items) => panic!("{input} parsed as {items:?}"),
        Err(e) => e.message,
    }
}

#[test]
fn orderby_terms_and_directions() {
    let person = entity(PERSON);
    assert_eq!(
        parse_orderby("mshr_name desc,mshr_birthyear asc , mshr_partynumber", person).unwrap(),
        [
            OrderBy {
                property: "mshr_name".into(),
                descending: true
            },
            OrderBy {
                property: "mshr_birthyear".into(),
                descending: false
            },
            OrderBy {
                property: "mshr_partynumber".into(),
                descending: false
            },
        ]
    );
    assert_eq!(
        parse_orderby("mshr_nope", person).unwrap_err().message,
        "Could not find a property named 'mshr_nope' on type 'Microsoft.Dynamics.CRM.mshr_dirpersonentity'."
    );
    for (bad, position) in [
        ("", 0),
        ("mshr_name down", 10),
        ("mshr_name desc desc", 15),
        ("mshr_name,", 10),
        ("'x'", 0),
    ] {
        assert_eq!(
            parse_orderby(bad, person).unwrap_err().message,
            format!("Syntax error at position {position} in '{bad}'."),
            "{bad}"
        );
    }
    assert!(parse_orderby("mshr_FK_x/mshr_name", person)
        .unwrap_err()
        .message
        .contains("navigation path"));
}

#[test]
fn select_is_validated_and_deduplicated() {
    let person = entity(PERSON);
    assert_eq!(
        parse_select("mshr_name, mshr_partynumber,mshr_name", person).unwrap(),
        ["mshr_name", "mshr_partynumber"]
    );
    assert_eq!(
        parse_select("mshr_name,mshr_nope", person).unwrap_err().message,
        "Could not find a property named 'mshr_nope' on type 'Microsoft.Dynamics.CRM.mshr_dirpersonentity'."
    );
    assert!(parse_select(SKILLS, person)
        .unwrap_err()
        .message
        .contains("can't be used in $select"));
    assert_eq!(
        parse_select("mshr_name,,mshr_partynumber", person).unwrap_err().message,
        "Syntax error at position 10 in 'mshr_name,,mshr_partynumber'."
    );
}

#[test]
fn expand_with_nested_options() {
    let input = format!(
        "{SKILLS}($select=mshr_skillid,mshr_yearsofexperience;$filter=mshr_yearsofexperience gt 2 and contains(mshr_skillid,'a;b)');$orderby=mshr_skillid desc;$top=5), mshr_FK_HcmPersonAddressEntity_Person"
    );
    let items = parse_expand(&input, entity(PERSON)).unwrap();
    assert_eq!(items.len(), 2);
    let skills = &items[0];
    assert_eq!(skills.navigation, SKILLS);
    assert_eq!(
        skills.select.as_deref(),
        Some(&["mshr_skillid".to_string(), "mshr_yearsofexperience".to_string()][..])
    );
    assert!(matches!(skills.filter, Some(Expr::And(..))));
    assert_eq!(
        skills.orderby,
        [OrderBy {
            property: "mshr_skillid".into(),
            descending: true
        }]
    );
    assert_eq!(skills.top, Some(5));
    assert_eq!(items[1].navigation, "mshr_FK_HcmPersonAddressEntity_Person");
    assert_eq!(items[1].select, None);
}

#[test]
fn nested_expand_follows_relations() {
    let input = format!(
        "{CANDIDATES}($select=mshr_firstname;$expand=mshr_FK_Person_id($select=mshr_name;$filter=mshr_name eq 'x'))"
    );
    let items = parse_expand(&input, entity(REQUEST)).unwrap();
    let person = &items[0].expand[0];
    assert_eq!(person.navigation, "mshr_FK_Person_id");
    assert_eq!(person.select.as_deref(), Some(&["mshr_name".to_string()][..]));
    assert_eq!(
        person.filter,
        Some(Expr::Compare {
            op: CmpOp::Eq,
            left: Operand::Property("mshr_name".into()),
            right: Operand::Literal(Literal::String("x".into())),
        })
    );
    // The nested options are checked against the target entity.
    let wrong = format!("{CANDIDATES}($expand=mshr_FK_Person_id($select=mshr_candidateid))");
    assert_eq!(
        expand_error(&wrong, REQUEST),
        "Could not find a property named 'mshr_candidateid' on type 'Microsoft.Dynamics.CRM.mshr_dirpersonentity'."
    );
    let bad_filter = format!("{CANDIDATES}($filter=mshr_gender eq 'male')");
    assert!(expand_error(&bad_filter, REQUEST).contains("'Edm.Int32' and 'Edm.String'"));
}

#[test]
fn top_and_orderby_only_on_unnested_collections() {
    let rule = "Only $select and $filter clause can be provided while doing $expand on many-to-one relationship or nested one-to-many relationship.";
    assert_eq!(expand_error("mshr_FK_Recruiter_id($top=1)", REQUEST), rule);
    assert_eq!(expand_error("mshr_FK_Recruiter_id($orderby=mshr_name)", REQUEST), rule);
    let nested = format!("{CANDIDATES}($top=2;$expand=mshr_FK_Person_id)");
    assert_eq!(expand_error(&nested, REQUEST), rule);
    let elsewhere = format!("{CANDIDATES}($orderby=mshr_lastname),mshr_FK_Recruiter_id($expand={SKILLS})");
    assert_eq!(expand_error(&elsewhere, REQUEST), rule);
    assert!(parse_expand(&format!("{CANDIDATES}($top=2;$orderby=mshr_lastname)"), entity(REQUEST)).is_ok());
}

#[test]
fn at_most_fifteen_expands_counting_nested_ones() {
    let one = format!("{CANDIDATES}($expand=mshr_FK_Person_id)");
    let seven_pairs = [one.as_str(); 7].join(",");
    assert!(parse_expand(&format!("{seven_pairs},mshr_FK_Recruiter_id"), entity(REQUEST)).is_ok());
    let message = expand_error(&format!("{seven_pairs},{one}"), REQUEST);
    assert!(
        message.contains(&format!("at most {MAX_EXPANDS} $expand options")),
        "{message}"
    );
    // Deep nesting hits the same limit before it can exhaust the stack.
    let down_and_up = "mshr_FK_Person_id($expand=mshr_FK_HcmCandidateToHireEntity_Person($expand=";
    let deep = format!("{}mshr_FK_Person_id{}", down_and_up.repeat(2500), ")".repeat(5000));
    assert!(expand_error(&deep, "mshr_hcmcandidatetohireentity").contains("at most 15"));
}

#[test]
fn unsupported_options_inside_expand_are_rejected() {
    for option in ["$skip=1", "$count=true", "$search=x", "$levels=2"] {
        let message = expand_error(&format!("{SKILLS}({option})"), PERSON);
        let name = option.split('=').next().unwrap();
        assert!(
            message.starts_with(&format!("The query option '{name}' is not supported inside $expand")),
            "{message}"
        );
    }
    assert!(expand_error(&format!("{SKILLS}($Select=mshr_skillid)"), PERSON).contains("case-sensitive"));
    assert_eq!(
        expand_error(&format!("{SKILLS}($top=1;$top=2)"), PERSON),
        "Query option '$top' was specified more than once, but it must be specified at most once."
    );
    assert!(expand_error(&format!("{SKILLS}($top=-1)"), PERSON).starts_with("Invalid value '-1' for $top"));
}

#[test]
fn expand_names_and_shapes_are_checked() {
    assert_eq!(
        expand_error("mshr_FK_Nope", PERSON),
        "Could not find a property named 'mshr_FK_Nope' on type 'Microsoft.Dynamics.CRM.mshr_dirpersonentity'."
    );
    assert!(expand_error("mshr_name", PERSON).contains("is not a navigation property"));
    assert_eq!(
        expand_error(&format!("{SKILLS}/$ref"), PERSON),
        "Expand with $ref is only supported on lookup type navigation property."
    );
    assert_eq!(expand_error("", PERSON), "Syntax error at position 0 in ''.");
    assert_eq!(
        expand_error(&format!("{SKILLS},"), PERSON),
        format!("Syntax error at position {} in '{SKILLS},'.", SKILLS.len() + 1)
    );
    assert_eq!(
        expand_error(&format!("{SKILLS}(($top=1)"), PERSON),
        format!("Syntax error at position {} in '{SKILLS}(($top=1)'.", SKILLS.len() + 9)
    );
    assert_eq!(
        expand_error(&format!("{SKILLS})"), PERSON),
        format!("Syntax error at position {} in '{SKILLS})'.", SKILLS.len())
    );
    assert_eq!(
        expand_error(&format!("{SKILLS}($top=1)x"), PERSON),
        format!("Syntax error at position {} in '{SKILLS}($top=1)x'.", SKILLS.len() + 8)
    );
    assert!(expand_error(&format!("{SKILLS}($filter=mshr_skillid eq 'x)"), PERSON)
        .starts_with("There is an unterminated literal"));
    assert!(expand_error(&format!("{SKILLS}(oops)"), PERSON).starts_with("Syntax error at position"));
}
