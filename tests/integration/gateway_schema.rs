//! The exported SDL is checked in as `schema.graphql`; a drift fails with how to accept it. The
//! schema can be introspected with the query tools send.

use crate::harness::shared_gateway;
use ats_gateway::model::model;
use serde_json::json;

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

#[tokio::test]
async fn the_standard_introspection_query_passes_the_default_depth_limit() {
    // What GraphiQL's docs pane and most tools send: 15 fields deep, but introspection does not count.
    let gw = shared_gateway();
    let v = gw
        .query(include_str!("fixtures/introspection-query.graphql"), json!({}))
        .await;
    let text = v.to_string();
    assert!(v.get("errors").is_none(), "{}", &text[..text.len().min(500)]);
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "Query");

    // Data fields still count: the default limit is 12 levels.
    let nested = |levels: usize| {
        // recruitingRequests { nodes { positions { recruitingRequest { positions … { id } } } } },
        // one position each, to stay under the cost limit.
        let mut q = String::from("id");
        for i in (0..levels - 3).rev() {
            q = format!(
                "{} {{ {q} }}",
                if i % 2 == 0 {
                    "positions(first: 1)"
                } else {
                    "recruitingRequest"
                }
            );
        }
        format!("{{ recruitingRequests(first: 1) {{ nodes {{ {q} }} }} }}")
    };
    let ok = gw.query(&nested(12), json!({})).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    let deep = gw.query(&nested(13), json!({})).await;
    assert_eq!(deep["errors"][0]["message"], "Query is nested too deep.", "{deep}");
}
