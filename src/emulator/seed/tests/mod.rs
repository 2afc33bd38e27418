//! Checks of the demo seed. Like the generator they name no entity or property: they find the
//! entities through the derived plan, the policy and the fixture.
//!
//! Here: the plan, counts, determinism, wire form and the documented request; `integrity`:
//! keys, lookups, sequences, primary fields, dates.

mod integrity;

use super::plan::{LinkKind, Plan, Roots};
use super::policy::policy;
use super::values::{normalize, parse_day};
use super::*;
use crate::model::{Entity, Model, PropType};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

static ROWS: LazyLock<Vec<SeedRow>> = LazyLock::new(|| demo_rows(200));

fn plan() -> Plan {
    Plan::new(model(), policy())
}

/// Rows per entity index.
fn tables(rows: &[SeedRow]) -> Vec<Vec<&Map<String, Value>>> {
    let m = model();
    let mut out = vec![Vec::new(); m.entities.len()];
    for r in rows {
        let e = m
            .entities
            .iter()
            .position(|e| e.logical_name == r.entity.logical_name)
            .unwrap();
        out[e].push(&r.values);
    }
    out
}

fn prop_name(m: &Model, e: usize, p: usize) -> &str {
    &m.entities[e].properties[p].name
}

fn key_of<'r>(m: &Model, e: usize, row: &'r Map<String, Value>) -> &'r str {
    row[&m.entities[e].primary_key].as_str().expect("keys are strings")
}

#[test]
fn policy_names_are_entities_of_the_model() {
    let (m, plan) = (model(), plan());
    let p = policy();
    for name in p.per_request.keys().chain(p.pools.keys()).chain(p.details.keys()) {
        assert!(m.by_logical_name(name).is_some(), "{name}");
    }
    for name in p.details.keys() {
        let e = m.entities.iter().position(|e| &e.logical_name == name).unwrap();
        assert!(
            plan.entities[e].owner.is_some(),
            "{name} is not owned by another entity"
        );
    }
}

#[test]
fn plan_finds_the_roles_in_the_model() {
    let (m, plan) = (model(), plan());
    let mut reference: Vec<usize> = plan
        .entities
        .iter()
        .filter_map(|e| {
            if let Roots::Reference(n) = e.roots {
                Some(n)
            } else {
                None
            }
        })
        .collect();
    reference.sort();
    assert_eq!(
        reference,
        [5, 6, 8, 20],
        "rating levels, screening types, certificate types, locations"
    );
    assert_eq!(plan.entities.iter().filter(|e| e.owner.is_some()).count(), 11);
    let made_with: Vec<_> = plan
        .entities
        .iter()
        .flat_map(|e| &e.links)
        .filter(|l| l.kind == LinkKind::CreatedWith)
        .collect();
    assert_eq!(made_with.len(), 1, "a candidate's person");
    assert_eq!(plan.entities.iter().filter(|e| e.company.is_some()).count(), 6);
    assert!(super::plan::primary_field_name(m).is_some());
    assert_eq!(plan.entities.iter().filter(|e| e.primary_field.is_some()).count(), 12);
    for (i, e) in plan.entities.iter().enumerate() {
        let made = made_with.iter().any(|l| l.target == i);
        assert!(
            e.roots != Roots::None || e.owner.is_some() || made,
            "{} gets no rows",
            m.entities[i].name
        );
    }
    for (pos, &e) in plan.order.iter().enumerate() {
        for l in &plan.entities[e].links {
            assert!(
                plan.order[..pos].contains(&l.target),
                "{} before its parents",
                m.entities[e].name
            );
        }
    }
}

#[test]
fn counts_follow_the_policy() {
    let (m, plan) = (model(), plan());
    let t = tables(&ROWS);
    let mut per_request = Vec::new();
    for (e, ep) in plan.entities.iter().enumerate() {
        let n = t[e].len();
        match ep.roots {
            Roots::PerRequest(num, den) => per_request.push((n, 200 * num / den)),
            Roots::Reference(count) => assert_eq!(n, count, "{}", m.entities[e].name),
            Roots::Pool(pool) => {
                let made: usize = plan
                    .entities
                    .iter()
                    .enumerate()
                    .flat_map(|(c, cp)| cp.links.iter().map(move |l| (c, l)))
                    .filter(|(_, l)| l.kind == LinkKind::CreatedWith && l.target == e)
                    .map(|(c, _)| t[c].len())
                    .sum();
                assert_eq!(n, pool + made, "{}", m.entities[e].name);
                assert_eq!(n, 540, "40 recruiters and one person per candidate");
            }
            Roots::None => {}
        }
    }
    per_request.sort();
    assert_eq!(per_request, [(200, 200), (500, 500)], "200 requests, 500 candidates");
}

#[test]
fn every_owner_has_its_share_of_details() {
    let (m, plan) = (model(), plan());
    let t = tables(&ROWS);
    for (d, dp) in plan.entities.iter().enumerate() {
        let Some(o) = dp.owner else { continue };
        let link = &dp.links[o];
        let mut per_owner: HashMap<&str, usize> = HashMap::new();
        for row in &t[d] {
            *per_owner
                .entry(row[prop_name(m, d, link.lookup)].as_str().unwrap())
                .or_default() += 1;
        }
        let [min, max] = dp.fanout;
        for owner in &t[link.target] {
            let n = per_owner.get(key_of(m, link.target, owner)).copied().unwrap_or(0);
            assert!(
                (min..=max).contains(&n),
                "{} has {n} {}",
                m.entities[link.target].name,
                m.entities[d].name
            );
        }
    }
}

#[test]
fn same_size_gives_the_same_rows() {
    let again = demo_rows(200);
    assert!(again == *ROWS);
    let json = |rows: &[SeedRow]| {
        rows.iter()
            .map(|r| serde_json::to_string(&r.values).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(json(&again), json(&ROWS), "same values in the same key order");
    assert_eq!(demo_rows(3), demo_rows(3));
    assert_ne!(demo_rows(3), demo_rows(4));
}

#[test]
fn rows_are_complete_and_in_wire_form() {
    let m = model();
    let guid = |s: &str| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && s.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    for r in ROWS.iter() {
        // Every property, none more (a JSON object's keys have no order).
        let names: std::collections::BTreeSet<&str> = r.values.keys().map(String::as_str).collect();
        let expected: std::collections::BTreeSet<&str> = r.entity.properties.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, expected, "{}", r.entity.name);
        for p in &r.entity.properties {
            let v = &r.values[&p.name];
            let ok = match (p.ty, v) {
                (_, Value::Null) => true,
                (PropType::String, Value::String(s)) => !s.contains('{') && !s.contains('}'),
                (PropType::Guid, Value::String(s)) => guid(s),
                (PropType::Int, Value::Number(n)) => n.is_i64(),
                (PropType::Decimal | PropType::Double, Value::Number(_)) => true,
                (PropType::OptionSet, Value::Number(n)) => {
                    let set = m.option_set(p.option_set.as_deref().unwrap()).unwrap();
                    set.values.iter().any(|o| Some(o.value) == n.as_i64())
                }
                (PropType::Date, Value::String(s)) => s.len() == 10 && parse_day(s).is_some(),
                (PropType::Datetime, Value::String(s)) => {
                    s.len() == 20 && s.ends_with("T00:00:00Z") && parse_day(s).is_some()
                }
                _ => false,
            };
            assert!(ok, "{}.{} = {v}", r.entity.name, p.name);
        }
    }
}

#[test]
fn placeholders_name_properties_of_the_row_or_its_owner() {
    let (m, plan) = (model(), plan());
    for (e, ep) in plan.entities.iter().enumerate() {
        let owner = ep.owner.map(|o| &plan.entities[ep.links[o].target]);
        for p in &m.entities[e].properties {
            for s in p
                .samples
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| crate::emulator::seed::values::is_template(s))
            {
                for part in s.split('{').skip(1) {
                    let inner = part.split('}').next().unwrap();
                    let (name, modifier) = inner.split_once(':').unwrap_or((inner, ""));
                    let known = matches!(name, "digits" | "counter") && modifier.parse::<usize>().is_ok()
                        || (modifier.is_empty() || modifier == "slug")
                            && (ep.by_name.contains_key(name) || owner.is_some_and(|o| o.by_name.contains_key(name)));
                    assert!(known, "{}.{}: {{{inner}}}", m.entities[e].name, p.name);
                }
            }
        }
    }
}

#[test]
fn the_documented_request_is_seeded_as_documented() {
    let m = model();
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut documented = 0;
    for row in fixture["rows"].as_array().unwrap() {
        let entity: &Entity = m.by_logical_name(row["entity"].as_str().unwrap()).unwrap();
        let values = row["values"].as_object().unwrap();
        let key = values[&entity.primary_key].as_str().unwrap();
        let seeded = ROWS
            .iter()
            .find(|r| r.entity.logical_name == entity.logical_name && r.values[&entity.primary_key] == key)
            .unwrap_or_else(|| panic!("{key} is not seeded"));
        for (name, v) in values {
            let expected = normalize(entity.property(name).unwrap(), v.clone());
            assert_eq!(seeded.values[name], expected, "{}.{name}", entity.name);
            documented += 1;
        }
    }
    assert_eq!(documented, 2 * 2 + 2 + 30 + 2 * 19 + 2 * 14 + 2 * 12);
    // It is the first request, its dates in wire form, and its children point at it.
    let t = tables(&ROWS);
    let plan = plan();
    let e = plan
        .entities
        .iter()
        .position(|p| p.roots == Roots::PerRequest(1, 1))
        .unwrap();
    assert_eq!(key_of(m, e, t[e][0]), "00000d6b-0000-0000-0000-005001000000");
    let dates: BTreeMap<&str, &Value> = m.entities[e]
        .properties
        .iter()
        .filter(|p| p.ty == PropType::Date)
        .map(|p| (p.name.as_str(), &t[e][0][&p.name]))
        .collect();
    assert!(dates.values().all(|v| *v == "2021-01-04"), "{dates:?}");
}

/// `cargo test --release timing -- --ignored --nocapture`
#[test]
#[ignore]
fn timing() {
    for size in [200, 2000] {
        let started = std::time::Instant::now();
        let rows = demo_rows(size);
        eprintln!("demo_rows({size}): {} rows in {:?}", rows.len(), started.elapsed());
    }
}
