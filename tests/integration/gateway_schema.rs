//! The exported SDL is checked in as `schema.graphql`; a drift fails with how to accept it.

use ats_gateway::model::model;

const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");

#[test]
fn schema_graphql_matches_the_code() {
    let sdl = ats_gateway::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_FILE, &sdl).expect("schema.graphql is writable");
    }
    let checked_in = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        sdl == checked_in,
        "schema.graphql differs from the schema the code builds. If the change is intended, run\n    UPDATE_SCHEMA=1 cargo test --test integration schema_graphql\nand commit schema.graphql."
    );
}

#[test]
fn schema_uses_the_documented_names() {
    let sdl = ats_gateway::graphql::sdl();
    for e in &model().entities {
        assert!(
            sdl.contains(&format!("type {} {{", e.graphql.type_name)),
            "{}",
            e.graphql.type_name
        );
        assert!(
            sdl.contains(&format!("\t{}(", e.graphql.single_field)),
            "{}",
            e.graphql.single_field
        );
        assert!(
            sdl.contains(&format!("\t): {}\n", e.graphql.type_name)),
            "{}",
            e.graphql.single_field
        );
        assert!(
            sdl.contains(&format!("\t): {}Connection!\n", e.graphql.type_name)),
            "{}",
            e.graphql.list_field
        );
        assert!(
            sdl.contains(&format!("\t{}(", e.graphql.list_field)),
            "{}",
            e.graphql.list_field
        );
        for r in &e.graphql.relations {
            assert!(
                sdl.contains(&format!("\t{}", r.field)),
                "{}.{}",
                e.graphql.type_name,
                r.field
            );
        }
    }
    for s in model().option_sets.iter().filter(|s| s.graphql_enum != "Boolean") {
        assert!(
            sdl.contains(&format!("enum {} {{", s.graphql_enum)),
            "{}",
            s.graphql_enum
        );
    }
    for scalar in ["scalar UUID", "scalar Date", "scalar DateTime"] {
        assert!(sdl.contains(scalar));
    }
}
