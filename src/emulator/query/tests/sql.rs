//! `compile_filter` run against a real in-memory SQLite table built from a model entity.

use rusqlite::{params_from_iter, Connection};

use super::{entity, parse};
use crate::emulator::query::{compile_filter, compile_orderby, parse_orderby, register_functions, SqlFragment};
use crate::model::{Entity, PropType};

const EDUCATION: &str = "mshr_hcmpersoneducationentity";
const PERSON_1: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const PERSON_2: &str = "22222222-aaaa-bbbb-cccc-000000000002";

/// The table of `entity` as the store lays it out: one column per property, typed by storage.
fn create_table(conn: &Connection, entity: &Entity) {
    let columns: Vec<String> = entity
        .properties
        .iter()
        .map(|p| {
            let ty = match p.ty {
                PropType::Int | PropType::OptionSet => "INTEGER",
                PropType::Decimal | PropType::Double => "REAL",
                _ => "TEXT",
            };
            format!("\"{}\" {ty}", p.name)
        })
        .collect();
    let sql = format!("CREATE TABLE \"{}\" ({})", entity.logical_name, columns.join(", "));
    conn.execute(&sql, []).unwrap();
}

/// Three education rows; the third is mostly NULL.
fn database() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    register_functions(&conn).unwrap();
    create_table(&conn, entity(EDUCATION));
    let insert = "INSERT INTO mshr_hcmpersoneducationentity (mshr_hcmpersoneducationentityid, mshr_partynumber, \
        _mshr_fk_person_id_value, mshr_description, mshr_creditbasis, mshr_creditscompleted, mshr_creditsearned, \
        mshr_startdate, mshr_notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let rows: [[&dyn rusqlite::ToSql; 9]; 3] = [
        [
            &"00000d6b-0000-0000-0000-005001000001",
            &"P-001",
            &PERSON_1,
            &"O'Bryan's BA",
            &200000000,
            &10.5,
            &10.5,
            &"2020-09-01T08:00:00Z",
            &"100% done",
        ],
        [
            &"00000d6b-0000-0000-0000-005001000002",
            &"P-002",
            &PERSON_2,
            &"Master of Science",
            &200000001,
            &30.0,
            &12.0,
            &"2021-01-04T00:00:00Z",
            &"half_way",
        ],
        [
            &"00000d6b-0000-0000-0000-005001000003",
            &"p-003",
            &rusqlite::types::Null,
            &rusqlite::types::Null,
            &rusqlite::types::Null,
            &rusqlite::types::Null,
            &rusqlite::types::Null,
            &rusqlite::types::Null,
            &rusqlite::types::Null,
        ],
    ];
    for row in rows {
        conn.execute(insert, row).unwrap();
    }
    conn
}

fn compile(filter: &str) -> SqlFragment {
    compile_filter(&parse(filter), entity(EDUCATION)).unwrap_or_else(|e| panic!("{filter}: {e}"))
}

fn compile_error(filter: &str) -> String {
    compile_filter(&parse(filter), entity(EDUCATION))
        .expect_err(filter)
        .message
}

/// The party numbers of the rows `filter` selects, in table order.
fn matching(conn: &Connection, filter: &str) -> Vec<String> {
    let fragment = compile(filter);
    let sql = format!(
        "SELECT mshr_partynumber FROM mshr_hcmpersoneducationentity WHERE {} ORDER BY rowid",
        fragment.sql
    );
    let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    stmt.query_map(params_from_iter(fragment.params.iter()), |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn check(conn: &Connection, filter: &str, expected: &[&str]) {
    assert_eq!(matching(conn, filter), expected, "{filter}");
}

#[test]
fn comparisons_select_the_right_rows() {
    let db = database();
    check(&db, "mshr_partynumber eq 'p-001'", &["P-001"]);
    check(&db, "mshr_partynumber ne 'P-001'", &["P-002", "p-003"]);
    check(&db, "mshr_partynumber gt 'p-001'", &["P-002", "p-003"]);
    check(&db, "mshr_creditbasis eq 200000000", &["P-001"]);
    check(&db, "mshr_creditscompleted gt 10", &["P-001", "P-002"]);
    check(&db, "mshr_creditscompleted ge 30", &["P-002"]);
    check(&db, "mshr_creditscompleted lt 30.0", &["P-001"]);
    check(&db, "mshr_creditscompleted le 10.5", &["P-001"]);
    check(&db, "10 lt mshr_creditscompleted", &["P-001", "P-002"]);
}

#[test]
fn null_comparisons_and_null_as_false() {
    let db = database();
    check(&db, "mshr_description eq null", &["p-003"]);
    check(&db, "mshr_description ne null", &["P-001", "P-002"]);
    check(&db, "null eq mshr_description", &["p-003"]);
    check(&db, "mshr_creditscompleted gt null", &[]);
    // NOT of an unknown stays unknown: the NULL row is left out either way.
    check(&db, "not (mshr_creditbasis eq 200000000)", &["P-002"]);
}

#[test]
fn logical_operators() {
    let db = database();
    check(
        &db,
        "mshr_creditbasis eq 200000000 or mshr_partynumber eq 'P-003'",
        &["P-001", "p-003"],
    );
    check(
        &db,
        "mshr_creditscompleted gt 5 and mshr_creditbasis eq 200000001",
        &["P-002"],
    );
    check(
        &db,
        "not (mshr_partynumber eq 'P-001' or mshr_partynumber eq 'P-002')",
        &["p-003"],
    );
}

#[test]
fn dates_guids_and_offsets() {
    let db = database();
    check(&db, "mshr_startdate ge 2021-01-04T00:00:00Z", &["P-002"]);
    check(&db, "mshr_startdate lt 2021-01-04T01:00:00+01:00", &["P-001"]);
    check(&db, "mshr_startdate eq 2021-01-04T00:00:00.999Z", &["P-002"]);
    check(&db, "mshr_startdate ge 2021-01-01", &["P-002"]);
    check(
        &db,
        &format!("_mshr_fk_person_id_value eq {}", PERSON_1.to_uppercase()),
        &["P-001"],
    );
    check(
        &db,
        &format!("_mshr_fk_person_id_value eq '{}'", PERSON_2.to_uppercase()),
        &["P-002"],
    );
}

#[test]
fn string_functions_use_sql_server_like() {
    let db = database();
    check(&db, "contains(mshr_description,'bryan')", &["P-001"]);
    check(&db, "startswith(mshr_description,'master')", &["P-002"]);
    check(&db, "endswith(mshr_description,'ba')", &["P-001"]);
    check(&db, "contains(mshr_description,'''s')", &["P-001"]);
    check(&db, "contains(mshr_notes,'[%]')", &["P-001"]);
    check(&db, "contains(mshr_notes,'%')", &["P-001", "P-002"]);
    check(&db, "contains(mshr_notes,'f[_]w')", &["P-002"]);
    check(&db, "startswith(mshr_description,'[m-o]')", &["P-001", "P-002"]);
    check(&db, "startswith(mshr_description,'[^m]')", &["P-001"]);
    check(&db, "not contains(mshr_notes,'done')", &["P-002"]);
    let fragment = compile("contains(mshr_notes,'a')");
    assert_eq!(
        fragment.sql,
        "CASE WHEN \"mshr_notes\" IS NULL THEN NULL ELSE ms_like(\"mshr_notes\", ?) END"
    );
    assert_eq!(fragment.params, [rusqlite::types::Value::Text("%a%".into())]);
}

#[test]
fn in_converts_values_to_the_column_type() {
    let db = database();
    check(
        &db,
        r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_partynumber',PropertyValues=["p-001","P-003"])"#,
        &["P-001", "p-003"],
    );
    check(
        &db,
        r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_creditbasis',PropertyValues=["200000001"])"#,
        &["P-002"],
    );
    check(
        &db,
        r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_creditbasis',PropertyValues=[200000000,200000001])"#,
        &["P-001", "P-002"],
    );
    check(
        &db,
        &format!(
            r#"Microsoft.Dynamics.CRM.In(PropertyName='_mshr_fk_person_id_value',PropertyValues=["{}"])"#,
            PERSON_2.to_uppercase()
        ),
        &["P-002"],
    );
    check(
        &db,
        r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_startdate',PropertyValues=["2021-01-04T01:00:00+01:00"])"#,
        &["P-002"],
    );
    check(
        &db,
        r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_creditscompleted',PropertyValues=["10.5", 30])"#,
        &["P-001", "P-002"],
    );
    let message =
        compile_error(r#"Microsoft.Dynamics.CRM.In(PropertyName='mshr_creditbasis',PropertyValues=["high"])"#);
    assert_eq!(message, "The value \"high\" in PropertyValues of Microsoft.Dynamics.CRM.In is not a valid Edm.Int32 for the property 'mshr_creditbasis'.");
}

#[test]
fn columns_compare_with_columns_of_the_same_type() {
    let db = database();
    check(&db, "mshr_creditscompleted eq mshr_creditsearned", &["P-001"]);
    check(&db, "mshr_creditscompleted gt mshr_creditsearned", &["P-002"]);
    assert_eq!(
        compile_error("mshr_creditscompleted eq mshr_description"),
        "A binary operator with incompatible types was detected. Found operand types 'Edm.Decimal' and 'Edm.String' for operator kind 'Equal'."
    );
}

#[test]
fn literal_only_comparisons_are_evaluated_too() {
    let db = database();
    check(&db, "1 eq 1", &["P-001", "P-002", "p-003"]);
    check(&db, "'a' eq 'A'", &["P-001", "P-002", "p-003"]);
    check(&db, "1 eq 2.5", &[]);
    assert!(compile_error("1 eq 'a'").contains("'Edm.Int32' and 'Edm.String'"));
}

#[test]
fn type_and_name_errors() {
    assert_eq!(
        compile_error("mshr_nope eq 1"),
        "Could not find a property named 'mshr_nope' on type 'Microsoft.Dynamics.CRM.mshr_hcmpersoneducationentity'."
    );
    assert_eq!(
        compile_error("mshr_creditbasis eq 'x'"),
        "A binary operator with incompatible types was detected. Found operand types 'Edm.Int32' and 'Edm.String' for operator kind 'Equal'."
    );
    assert_eq!(
        compile_error("'x' lt mshr_creditbasis"),
        "A binary operator with incompatible types was detected. Found operand types 'Edm.String' and 'Edm.Int32' for operator kind 'LessThan'."
    );
    assert!(compile_error("_mshr_fk_person_id_value eq 'abc'").contains("'Edm.Guid' and 'Edm.String'"));
    assert!(compile_error("_mshr_fk_person_id_value eq 5").contains("'Edm.Guid' and 'Edm.Int32'"));
    assert!(compile_error("mshr_partynumber gt 5").contains("'Edm.String' and 'Edm.Int32'"));
    assert!(compile_error("mshr_creditbasis eq 1.5").contains("'Edm.Int32' and 'Edm.Decimal'"));
    assert!(compile_error("mshr_creditbasis eq true").contains("'Edm.Int32' and 'Edm.Boolean'"));
    assert!(compile_error("mshr_startdate eq 5").contains("'Edm.DateTimeOffset' and 'Edm.Int32'"));
    assert!(compile_error("contains(mshr_creditscompleted,'1')").contains("is of type 'Edm.Decimal'"));
    assert!(compile_error("contains(mshr_nope,'1')").starts_with("Could not find a property named 'mshr_nope'"));
}

#[test]
fn literals_are_bound_never_spliced() {
    let db = database();
    let filter = "mshr_description eq 'x'' OR 1=1 --'";
    let fragment = compile(filter);
    assert_eq!(fragment.sql, "\"mshr_description\" COLLATE NOCASE = ?");
    assert_eq!(fragment.params, [rusqlite::types::Value::Text("x' OR 1=1 --".into())]);
    check(&db, filter, &[]);
    let fragment = compile("mshr_partynumber eq 'a' and (mshr_creditbasis ne null or mshr_creditscompleted ge 1.5)");
    assert_eq!(
        fragment.sql,
        "(\"mshr_partynumber\" COLLATE NOCASE = ? AND (\"mshr_creditbasis\" IS NOT NULL OR \"mshr_creditscompleted\" >= ?))"
    );
    assert_eq!(fragment.params.len(), 2);
}

#[test]
fn orderby_compiles_with_case_insensitive_strings() {
    let education = entity(EDUCATION);
    let orderby = parse_orderby("mshr_partynumber desc, mshr_creditscompleted", education).unwrap();
    assert_eq!(
        compile_orderby(&orderby, education).unwrap(),
        "\"mshr_partynumber\" COLLATE NOCASE DESC, \"mshr_creditscompleted\" ASC"
    );
    let db = database();
    let sql = format!(
        "SELECT mshr_partynumber FROM mshr_hcmpersoneducationentity ORDER BY {}",
        compile_orderby(&orderby, education).unwrap()
    );
    let names: Vec<String> = db
        .prepare(&sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names, ["p-003", "P-002", "P-001"]);
}

#[test]
fn long_or_chains_compile_on_a_test_thread() {
    let chain = vec!["mshr_creditbasis eq 200000001"; 1000].join(" or ");
    let db = database();
    check(&db, &chain, &["P-002"]);
    assert_eq!(parse(&chain).to_string(), chain);
}
