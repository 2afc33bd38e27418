//! Referential and value integrity of the demo rows.

use super::{key_of, plan, policy, prop_name, tables, FIXTURE, ROWS};
use crate::emulator::ids::{entity_ordinal, fno_guid};
use crate::emulator::seed::values::parse_day;
use crate::emulator::seed::{demo_rows, SeedRow};
use crate::model::{model, PropType};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

#[test]
fn keys_are_unique_fno_guids_with_increasing_rec_ids() {
    let m = model();
    let t = tables(&ROWS);
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let documented: HashSet<&str> = fixture["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["values"].as_object().unwrap().iter())
        .filter_map(|(_, v)| v.as_str())
        .collect();
    for (e, rows) in t.iter().enumerate() {
        let mut seen = HashSet::new();
        let mut rec = policy().first_rec_id;
        for row in rows {
            let key = key_of(m, e, row);
            assert!(seen.insert(key), "duplicate key {key}");
            if !documented.contains(key) {
                assert_eq!(
                    key,
                    fno_guid(entity_ordinal(&m.entities[e]), rec),
                    "{}",
                    m.entities[e].name
                );
                rec += 1;
            }
        }
    }
}

#[test]
fn lookups_point_at_existing_rows() {
    lookups_are_intact(&ROWS);
    // small sizes too: no requests (the documented one is left out with its children), one request
    lookups_are_intact(&demo_rows(0));
    lookups_are_intact(&demo_rows(1));
    // and no in-model lookup goes around the relations
    for e in &model().entities {
        for p in e
            .properties
            .iter()
            .filter(|p| p.lookup.as_ref().is_some_and(|l| l.target_in_model))
        {
            assert!(
                e.graphql.relations.iter().any(|r| r.lookup_property == p.name),
                "{}",
                p.name
            );
        }
    }
}

fn lookups_are_intact(rows: &[SeedRow]) {
    let (m, plan) = (model(), plan());
    let t = tables(rows);
    let keys: Vec<HashMap<&str, &Map<String, Value>>> = t
        .iter()
        .enumerate()
        .map(|(e, rows)| rows.iter().map(|r| (key_of(m, e, r), *r)).collect())
        .collect();
    for (e, ep) in plan.entities.iter().enumerate() {
        for l in &ep.links {
            for row in &t[e] {
                let lookup = &row[prop_name(m, e, l.lookup)];
                let child_key = l.child_key.map(|k| &row[prop_name(m, e, k)]);
                let Some(id) = lookup.as_str() else {
                    assert!(lookup.is_null());
                    assert!(!m.entities[e].properties[l.lookup].required, "{}", m.entities[e].name);
                    assert!(
                        child_key.is_none_or(|k| k.is_null() || k == ""),
                        "a key without its lookup"
                    );
                    continue;
                };
                let parent = keys[l.target]
                    .get(id)
                    .unwrap_or_else(|| panic!("{id} of {} missing", m.entities[e].name));
                if let (Some(k), Some(pk)) = (child_key, l.parent_key) {
                    assert_eq!(k, &parent[prop_name(m, l.target, pk)], "{}", m.entities[e].name);
                }
                if let (Some((c, _)), Some((tc, _))) = (ep.company, plan.entities[l.target].company) {
                    assert_eq!(
                        row[prop_name(m, e, c)],
                        parent[prop_name(m, l.target, tc)],
                        "same company"
                    );
                }
            }
        }
    }
}

#[test]
fn a_row_that_picks_a_parent_refers_to_one_of_its_details() {
    let (m, plan) = (model(), plan());
    let t = tables(&ROWS);
    let mut checked = 0;
    for (e, ep) in plan.entities.iter().enumerate() {
        for l in ep.links.iter().filter(|l| !l.corefs.is_empty()) {
            for row in &t[e] {
                let Some(parent) = row[prop_name(m, e, l.lookup)].as_str() else {
                    continue;
                };
                for (d, pairs) in &l.corefs {
                    let owner = &plan.entities[*d].links[plan.entities[*d].owner.unwrap()];
                    let matches = t[*d].iter().any(|kid| {
                        kid[prop_name(m, *d, owner.lookup)] == parent
                            && pairs
                                .iter()
                                .all(|&(p, q)| row[prop_name(m, e, p)] == kid[prop_name(m, *d, q)])
                    });
                    assert!(matches, "{} refers to no detail of its parent", m.entities[e].name);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 500, "every candidate names a position of its request");
}

#[test]
fn required_properties_are_filled() {
    for r in ROWS.iter() {
        for p in r.entity.properties.iter().filter(|p| p.required) {
            let v = &r.values[&p.name];
            assert!(!v.is_null() && v != "", "{}.{} is required", r.entity.name, p.name);
        }
    }
}

#[test]
fn every_sampled_option_occurs() {
    let t = tables(&ROWS);
    for (e, entity) in model().entities.iter().enumerate().filter(|(e, _)| t[*e].len() >= 200) {
        for p in entity.properties.iter().filter(|p| p.ty == PropType::OptionSet) {
            let seen: HashSet<&Value> = t[e].iter().map(|r| &r[&p.name]).collect();
            for s in &p.samples {
                assert!(seen.contains(s), "{}.{} never {s}", entity.name, p.name);
            }
        }
    }
}

#[test]
fn sequences_follow_their_formats() {
    let (m, plan) = (model(), plan());
    let t = tables(&ROWS);
    let mut checked = 0;
    for (e, ep) in plan.entities.iter().enumerate() {
        for (p, format) in &ep.sequences {
            let mut seen = HashSet::new();
            for row in &t[e] {
                let v = row[prop_name(m, e, *p)].as_str().unwrap();
                assert!(seen.insert(v), "{v} twice");
                let company = ep
                    .company
                    .map(|(c, _)| row[prop_name(m, e, c)].as_str().unwrap())
                    .unwrap_or("");
                let digits = v.trim_start_matches(|c: char| !c.is_ascii_digit() || c == '0');
                let n = digits.parse().unwrap_or(0);
                assert_eq!(
                    v,
                    crate::emulator::ids::format_sequence(format, company, n),
                    "{}",
                    m.entities[e].name
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 200 + 500 + 540);
}

#[test]
fn primary_fields_join_their_parts() {
    let plan = plan();
    let m = model();
    for r in ROWS.iter() {
        let e = m
            .entities
            .iter()
            .position(|e| e.logical_name == r.entity.logical_name)
            .unwrap();
        let Some(pf) = plan.entities[e].primary_field else {
            continue;
        };
        let parts: Vec<String> = r
            .entity
            .primary_field_parts
            .iter()
            .map(|n| crate::emulator::seed::values::text(&r.values[n]))
            .collect();
        assert_eq!(r.values[prop_name(m, e, pf)], Value::String(parts.join(" | ")));
    }
}

#[test]
fn details_of_one_owner_differ() {
    let (m, plan) = (model(), plan());
    let t = tables(&ROWS);
    for (d, dp) in plan.entities.iter().enumerate() {
        let (Some(pf), Some(_)) = (dp.primary_field, dp.owner) else {
            continue;
        };
        let mut seen = HashSet::new();
        for row in &t[d] {
            assert!(
                seen.insert(row[prop_name(m, d, pf)].as_str().unwrap()),
                "{}: {}",
                m.entities[d].name,
                row[prop_name(m, d, pf)]
            );
        }
    }
}

#[test]
fn dates_keep_the_order_of_their_samples() {
    // Date properties aligned in one sample group are ordered when every pair of samples is.
    let (m, plan) = (model(), plan());
    let t = tables(&ROWS);
    let mut pairs = 0;
    for (e, ep) in plan.entities.iter().enumerate() {
        let props = &m.entities[e].properties;
        for g in &ep.groups {
            let dates: Vec<usize> = g
                .props
                .iter()
                .copied()
                .filter(|&p| matches!(props[p].ty, PropType::Date | PropType::Datetime))
                .collect();
            for &a in &dates {
                for &b in dates.iter().filter(|&&b| b != a) {
                    let both: Vec<(i64, i64)> = (0..g.len)
                        .filter_map(|i| {
                            Some((
                                parse_day(props[a].samples[i].as_str()?)?,
                                parse_day(props[b].samples[i].as_str()?)?,
                            ))
                        })
                        .collect();
                    if both.is_empty() || both.iter().any(|(x, y)| x >= y) {
                        continue;
                    }
                    pairs += 1;
                    for row in &t[e] {
                        if let (Some(x), Some(y)) = (row[&props[a].name].as_str(), row[&props[b].name].as_str()) {
                            assert!(
                                x[..10] < y[..10],
                                "{}: {} {x} after {} {y}",
                                m.entities[e].name,
                                props[a].name,
                                props[b].name
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(
        pairs >= 6,
        "education, experience, certificate, screening, identification, military service"
    );
}
