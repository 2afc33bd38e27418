//! Query URLs and the children-of-parents split.

use super::prop_of;
use crate::model::{model, Cardinality, Entity, LookupSide, PropType};
use crate::odata::*;

/// A to-many relation: (parent, child, the child's lookup property).
fn to_many() -> (&'static Entity, &'static Entity, &'static str) {
    model()
        .entities
        .iter()
        .find_map(|e| {
            e.graphql
                .relations
                .iter()
                .find(|r| r.kind == Cardinality::Many && r.lookup_on == LookupSide::Target)
                .map(|r| {
                    (
                        e,
                        model().by_logical_name(&r.target).unwrap(),
                        r.lookup_property.as_str(),
                    )
                })
        })
        .unwrap()
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("00000d6b-0000-0000-0000-{i:012x}")).collect()
}

#[test]
fn urls_carry_every_option_encoded() {
    let (parent, child, _) = to_many();
    let nav = parent
        .graphql
        .relations
        .iter()
        .find(|r| r.kind == Cardinality::Many)
        .unwrap()
        .navigation_property
        .clone();
    let s = prop_of(parent, PropType::String).to_string();
    let cs = prop_of(child, PropType::String).to_string();
    let q = ODataQuery {
        select: vec![s.clone(), parent.primary_key.clone()],
        filter: Some(format!("{s} eq 'a&b' and contains({s},'x#y+z')")),
        orderby: vec![(s.clone(), true), (parent.primary_key.clone(), false)],
        top: Some(10),
        expand: vec![Expand {
            navigation: nav.clone(),
            select: vec![cs.clone()],
            filter: Some(format!("{cs} ne 'q;r'")),
            expand: vec![],
        }],
        count: true,
        ..ODataQuery::new(parent)
    };
    let pk = &parent.primary_key;
    assert_eq!(
        q.to_relative_url(),
        format!(
            "{set}?$select={s},{pk}&$filter={s}%20eq%20%27a%26b%27%20and%20contains({s},%27x%23y%2Bz%27)\
             &$orderby={s}%20desc,{pk}&$top=10&$expand={nav}($select={cs};$filter={cs}%20ne%20%27q%3Br%27)&$count=true",
            set = parent.entity_set
        )
    );
    assert_eq!(ODataQuery::new(parent).to_relative_url(), parent.entity_set);
}

#[test]
fn by_key_validates_the_guid() {
    let (parent, _, _) = to_many();
    let q = ODataQuery::by_key(parent, "{00000D6B-0000-0000-0000-005001000000}").unwrap();
    assert_eq!(
        q.to_relative_url(),
        format!("{}(00000d6b-0000-0000-0000-005001000000)", parent.entity_set)
    );
    assert!(ODataQuery::by_key(parent, "1) or (1").is_err());
}

#[test]
fn one_expand_per_relation_stays_within_the_expand_limit() {
    // `ODataQuery` carries at most one first-level `$expand` per relation of its entity (see
    // `graphql::prefetch::pushdown_expands`), so no entity may have more relations than Dataverse
    // allows expansions in one query.
    for entity in &model().entities {
        let relations = entity.graphql.relations.len();
        assert!(
            relations <= crate::vocabulary::MAX_EXPANDS,
            "{} has {relations} relations",
            entity.entity_set
        );
    }
}

#[test]
fn children_share_one_query_within_the_budget() {
    let (_, child, lookup) = to_many();
    let s = prop_of(child, PropType::String).to_string();
    let mut parents = ids(40);
    parents.push(parents[0].to_uppercase());
    let qs = children_of(
        child,
        lookup,
        &parents,
        std::slice::from_ref(&s),
        Some(&format!("{s} ne null")),
        Dialect::Dataverse,
    )
    .unwrap();
    assert_eq!(qs.len(), 1);
    let q = &qs[0];
    assert_eq!(q.select, vec![s.clone(), lookup.to_string()]);
    let f = q.filter.as_deref().unwrap();
    assert!(
        f.starts_with(&format!("({s} ne null) and ({lookup} eq {} or ", parents[0])),
        "{f}"
    );
    assert_eq!(f.matches(" eq ").count(), 40, "duplicates are sent once");
    let d = Dialect::Dataverse;
    assert!(children_of(child, lookup, &[], &[], None, d).unwrap().is_empty());
    assert!(children_of(child, lookup, &["x) or (1 eq 1".into()], &[], None, d).is_err());
    assert!(children_of(child, "nope", &ids(1), &[], None, d).is_err());
}

#[test]
fn children_split_only_past_the_budget() {
    for dialect in [Dialect::Dataverse, Dialect::Odata4] {
        split_only_past_the_budget(dialect);
    }
}

fn split_only_past_the_budget(dialect: Dialect) {
    let (_, child, lookup) = to_many();
    let parents = ids(200);
    for budget in [0, 200, 500, 1234, 4000] {
        let qs = children_of_with_budget(child, lookup, &parents, &[], None, budget, dialect).unwrap();
        let mut seen = Vec::new();
        for (i, q) in qs.iter().enumerate() {
            let url = q.to_relative_url();
            let n = q.filter.as_deref().unwrap().matches(" eq ").count();
            assert!(url.len() <= budget || n == 1, "{budget}: {}", url.len());
            if i + 1 < qs.len() && n > 0 {
                // The next ID would not have fitted: the split is as coarse as the budget allows.
                let more = children_of_with_budget(
                    child,
                    lookup,
                    &parents[seen.len()..seen.len() + n + 1],
                    &[],
                    None,
                    usize::MAX,
                    dialect,
                )
                .unwrap();
                assert!(
                    more[0].to_relative_url().len() > budget,
                    "{budget}: chunk {i} could hold more"
                );
            }
            for id in &parents[seen.len()..seen.len() + n] {
                assert!(q.filter.as_deref().unwrap().contains(id.as_str()));
            }
            seen.extend(parents[seen.len()..seen.len() + n].iter().cloned());
        }
        assert_eq!(seen, parents, "{budget}");
    }
    let one = children_of(child, lookup, &parents[..100], &[], None, dialect).unwrap();
    assert_eq!(one.len(), 1);
}

/// A to-many relation joined on a readable string key: (child, the child's key property).
fn readable_join() -> (&'static Entity, String) {
    model()
        .entities
        .iter()
        .flat_map(|e| &e.graphql.relations)
        .find(|r| r.kind == Cardinality::Many && r.child_readable_key.is_some())
        .map(|r| {
            (
                model().by_logical_name(&r.target).unwrap(),
                r.child_readable_key.clone().unwrap(),
            )
        })
        .unwrap()
}

#[test]
fn readable_join_keys_are_sent_as_read_and_once_whatever_their_case() {
    let (child, key) = readable_join();
    assert_eq!(prop_of_name(child, &key), PropType::String);
    let parents: Vec<String> = ["USMF-000002", "usmf-000002", "Usmf-000003", "ÄBC-1", "äbc-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let qs = children_of(child, &key, &parents, &[], None, Dialect::Dataverse).unwrap();
    assert_eq!(qs.len(), 1);
    assert_eq!(
        qs[0].filter.as_deref().unwrap(),
        format!(
            r#"Microsoft.Dynamics.CRM.In(PropertyName='{key}',PropertyValues=["USMF-000002","Usmf-000003","ÄBC-1"])"#
        )
    );
    let url = qs[0].to_relative_url();
    assert!(url.contains("USMF-000002") && url.contains("Usmf-000003"), "{url}");
    assert!(!url.contains("usmf-000002"), "{url}");

    let qs = children_of(child, &key, &parents, &[], None, Dialect::Odata4).unwrap();
    assert_eq!(qs.len(), 1);
    assert_eq!(
        qs[0].filter.as_deref().unwrap(),
        format!("({key} eq 'USMF-000002' or {key} eq 'Usmf-000003' or {key} eq 'ÄBC-1')")
    );
    assert!(!qs[0].to_relative_url().contains("Microsoft.Dynamics.CRM"));
}

#[test]
fn odata4_joins_split_by_url_length_too() {
    let (child, key) = readable_join();
    let parents: Vec<String> = (0..2000).map(|i| format!("USMF-{i:06}")).collect();
    for dialect in [Dialect::Dataverse, Dialect::Odata4] {
        let qs = children_of(child, &key, &parents, &[], None, dialect).unwrap();
        let mut n = 0;
        for q in &qs {
            assert!(q.to_relative_url().len() <= DEFAULT_URL_BUDGET);
            n += q.filter.as_deref().unwrap().matches("USMF-").count();
        }
        assert_eq!(n, parents.len(), "{dialect:?}");
        if dialect == Dialect::Odata4 {
            assert!(qs.len() > 1, "2000 eqs do not fit one URL");
        }
    }
}

fn prop_of_name(e: &Entity, name: &str) -> PropType {
    e.property(name).unwrap().ty
}
