//! The depth limit, with introspection left out.
//!
//! async-graphql's own `limit_depth` counts introspection fields too, and the introspection query
//! every tool sends (graphql-js `getIntrospectionQuery`, used by GraphiQL, codegen, Postman…) is
//! 15 fields deep because of its nested `ofType`s: a limit that protects the upstream would refuse
//! it, and the playground's docs pane with it (async-graphql/async-graphql#1696). Introspection is
//! answered from the schema in memory and never reaches the upstream, and the complexity limit
//! still bounds it, so its fields do not count here. `limits` refuses operations deeper than the
//! setting.

use async_graphql::parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet};
use async_graphql::{Name, Positioned};
use std::collections::HashMap;

/// The deepest nesting of non-introspection fields over every operation of `doc`, with fragment
/// spreads inlined (as async-graphql counts).
pub fn depth(doc: &ExecutableDocument) -> usize {
    let mut spreads = Vec::new();
    doc.operations
        .iter()
        .map(|(_, op)| selection_depth(&op.node.selection_set.node, &doc.fragments, &mut spreads))
        .max()
        .unwrap_or(0)
}

fn selection_depth<'a>(
    set: &'a SelectionSet,
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    spreads: &mut Vec<&'a Name>,
) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) if f.node.name.node.starts_with("__") => 0,
            Selection::Field(f) => 1 + selection_depth(&f.node.selection_set.node, fragments, spreads),
            Selection::InlineFragment(i) => selection_depth(&i.node.selection_set.node, fragments, spreads),
            Selection::FragmentSpread(s) => {
                let name = &s.node.fragment_name.node;
                // Unknown and cyclic fragments are validation errors, reported after parsing.
                match fragments.get(name) {
                    Some(fragment) if !spreads.contains(&name) => {
                        spreads.push(name);
                        let d = selection_depth(&fragment.node.selection_set.node, fragments, spreads);
                        spreads.pop();
                        d
                    }
                    _ => 0,
                }
            }
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_of(query: &str) -> usize {
        depth(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn fields_count_and_fragments_are_inlined() {
        assert_eq!(depth_of("{ a }"), 1);
        assert_eq!(depth_of("{ a { b { c } } d }"), 3);
        assert_eq!(depth_of("{ a { ...F } } fragment F on T { b { c } }"), 3);
        assert_eq!(depth_of("{ a { ... on T { b } } }"), 2);
        assert_eq!(depth_of("query A { a } query B { a { b } }"), 2);
    }

    #[test]
    fn introspection_does_not_count() {
        assert_eq!(
            depth_of("{ __schema { types { fields { type { ofType { ofType { name } } } } } } }"),
            0
        );
        assert_eq!(depth_of("{ __typename a { __typename b } }"), 2);
        assert_eq!(depth_of("{ a { __type(name: \"T\") { fields { name } } } }"), 1);
    }

    #[test]
    fn cyclic_and_unknown_fragments_end() {
        assert_eq!(depth_of("{ ...A } fragment A on Q { a { ...A } }"), 1);
        assert_eq!(depth_of("{ a { ...Missing } }"), 1);
    }
}
