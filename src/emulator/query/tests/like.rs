//! The SQL Server `LIKE` matcher and its SQLite registration.

use rusqlite::Connection;

use crate::emulator::query::{escape_like, like_matches, register_functions};

fn yes(value: &str, pattern: &str) {
    assert!(like_matches(value, pattern), "{value:?} should match {pattern:?}");
}

fn no(value: &str, pattern: &str) {
    assert!(!like_matches(value, pattern), "{value:?} should not match {pattern:?}");
}

#[test]
fn percent_matches_any_run() {
    yes("abc", "a%");
    yes("abc", "%c");
    yes("abc", "%b%");
    yes("abc", "a%c");
    yes("abc", "%");
    yes("", "%");
    yes("", "");
    yes("abc", "a%%%c");
    no("abc", "%d%");
    no("abc", "b%");
    no("", "_");
    yes("aaaaaaaaaaaaaaaaaaaab", "%a%a%a%a%b");
    no("aaaaaaaaaaaaaaaaaaaaa", "%a%a%a%a%b");
    let long = "ab".repeat(20_000);
    no(&long, "%a%b%c%");
}

#[test]
fn underscore_matches_one_character() {
    yes("abc", "a_c");
    yes("abc", "___");
    no("abc", "a_");
    no("abc", "____");
    // One character, not one byte: the emoji is four bytes.
    yes("😀x", "_x");
    yes("é", "_");
}

#[test]
fn brackets_match_sets_and_ranges() {
    yes("b", "[abc]");
    no("d", "[abc]");
    yes("d", "[a-f]");
    no("g", "[a-f]");
    yes("g", "[^a-f]");
    no("d", "[^a-f]");
    yes("x-y", "x[-]y");
    yes("-", "[a-]");
    yes("^", "[^]");
    no("b", "[z-a]");
    yes("Report 2024", "Report [0-9][0-9][0-9][0-9]");
}

#[test]
fn brackets_escape_wildcards() {
    yes("100%", "100[%]");
    no("1000", "100[%]");
    yes("a_b", "a[_]b");
    no("axb", "a[_]b");
    yes("[x]", "[[]x]");
    // An unclosed bracket is literal, and so is a lone closing one.
    yes("a[b", "a[b");
    yes("a]b", "a]b");
    yes("[]", "[]");
}

#[test]
fn matching_ignores_case_including_unicode() {
    yes("ABC", "abc");
    yes("abc", "A%C");
    yes("B", "[a-c]");
    yes("b", "[A-C]");
    no("b", "[^A-C]");
    yes("École", "école");
    yes("ΩMEGA", "ωmega");
    yes("ÄRGER", "[à-ä]rger");
    no("Ärger", "arger");
}

#[test]
fn escape_like_makes_text_match_only_itself() {
    let text = "50%_[x]";
    let escaped = escape_like(text);
    assert_eq!(escaped, "50[%][_][[]x]");
    yes(text, &escaped);
    yes("50%_[X]", &escaped);
    no("50a_[x]", &escaped);
    no("50%a[x]", &escaped);
}

#[test]
fn ms_like_in_sqlite_treats_null_as_false() {
    let conn = Connection::open_in_memory().unwrap();
    register_functions(&conn).unwrap();
    let eval = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(eval("SELECT ms_like('Hello', 'h%')"), 1);
    assert_eq!(eval("SELECT ms_like('Hello', 'x%')"), 0);
    assert_eq!(eval("SELECT ms_like(NULL, '%')"), 0);
    assert_eq!(eval("SELECT ms_like('x', NULL)"), 0);
    assert_eq!(eval("SELECT ms_like(12345, '12%')"), 1);
    let count: i64 = conn
        .query_row(
            "WITH t(v) AS (VALUES ('a1'), ('A2'), ('b3'), (NULL)) SELECT count(*) FROM t WHERE ms_like(v, ?)",
            ["a%"],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 2);
}
