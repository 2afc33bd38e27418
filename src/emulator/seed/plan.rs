//! What the seed generates, derived from the model's structure (no entity or property names).
//!
//! - An entity is **owned** (a detail) when the first part of its primary field is the readable
//!   key of one of its lookups: its identity includes its owner's (`USMF-000001 | 000426`,
//!   `HR000000518 | …`). Details are generated with their owner.
//! - A lookup whose readable key is read-only on the child is **created with** the child: the
//!   child cannot name an existing target, so the target is made for it (a candidate's person).
//! - Every other lookup is a **pick** of an existing row. It is always filled when it is required
//!   or write-once (set at creation or never), otherwise for `optionalLinkShare` of the rows.
//! - An entity without lookups or number sequences is **reference data**: one row per sample of
//!   the key other entities use to refer to it.
//! - The **company** of a row is the string property whose name plus `_id` is a lookup attribute
//!   of the same entity (the Dataverse company lookup `<p>_id`); `{company}` sequences and
//!   company-consistent picks use it.

use super::policy::Policy;
use crate::model::{Entity, LookupSide, Model, PropType, Property};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkKind {
    Owner,
    CreatedWith,
    Pick { always: bool },
}

/// A to-one relation of an entity (it holds the lookup).
#[derive(Debug)]
pub(super) struct Link {
    pub target: usize,
    pub kind: LinkKind,
    /// The `_…_value` lookup (property index on this entity).
    pub lookup: usize,
    pub child_key: Option<usize>,
    /// The target's property the child key holds.
    pub parent_key: Option<usize>,
    /// Same-named properties copied from the target (owner and created-with links).
    pub inherit: Vec<(usize, usize)>,
    /// Details of the picked row that this row refers to as well: `(detail entity, [(own
    /// property, detail property)])`. A candidate picks a request and one of its positions.
    pub corefs: Vec<(usize, Vec<(usize, usize)>)>,
}

/// How many rows an entity gets on its own (details and created-with targets get more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Roots {
    None,
    Reference(usize),
    Pool(usize),
    PerRequest(usize, usize),
}

/// Properties with samples of one length: a row takes the same index from each.
#[derive(Debug)]
pub(super) struct Group {
    pub len: usize,
    pub props: Vec<usize>,
}

#[derive(Debug)]
pub(super) struct EntityPlan {
    /// The primary key property.
    pub key: usize,
    pub roots: Roots,
    pub links: Vec<Link>,
    /// Index into `links` of the owner link.
    pub owner: Option<usize>,
    pub fanout: [usize; 2],
    /// Entities this one owns, in model order.
    pub details: Vec<usize>,
    /// `(company property, company lookup)`.
    pub company: Option<(usize, usize)>,
    pub groups: Vec<Group>,
    pub primary_field: Option<usize>,
    /// The key other entities use to refer to this one (reference data is one row per sample).
    pub reference_key: Option<usize>,
    /// `(property, format)` of number sequences.
    pub sequences: Vec<(usize, String)>,
    pub by_name: HashMap<String, usize>,
}

#[derive(Debug)]
pub(super) struct Plan {
    pub entities: Vec<EntityPlan>,
    /// Entity indexes, every link target before the entity holding the link: the output order.
    pub order: Vec<usize>,
    /// The order to generate in: an entity comes after every target its rows, their details and
    /// the rows made with them link to (a person's skills need the rating levels).
    pub generation: Vec<usize>,
}

impl Plan {
    /// Plans every entity of `model` under `policy`: each entity's own plan, then what only the
    /// whole set tells (details, reference keys and counts, co-references of picks), then the
    /// output and generation orders.
    pub fn new(model: &Model, policy: &Policy) -> Plan {
        let index: HashMap<&str, usize> = model
            .entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.logical_name.as_str(), i))
            .collect();
        let by_name: Vec<HashMap<String, usize>> = model
            .entities
            .iter()
            .map(|e| {
                e.properties
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.name.clone(), i))
                    .collect()
            })
            .collect();
        let mut entities: Vec<EntityPlan> = (0..model.entities.len())
            .map(|i| entity_plan(model, policy, i, &index, &by_name))
            .collect();
        connect_details(&mut entities);
        count_references(model, &mut entities);
        for i in 0..entities.len() {
            for l in 0..entities[i].links.len() {
                let link = &entities[i].links[l];
                if matches!(link.kind, LinkKind::Pick { .. }) {
                    let corefs = corefs(model, &entities, i, link);
                    entities[i].links[l].corefs = corefs;
                }
            }
        }
        let (order, generation) = orders(&entities);
        Plan {
            entities,
            order,
            generation,
        }
    }
}

/// The plan of entity `i` on its own: links, roots (per request, a pool, reference data), the
/// details per owner, company, sample groups, primary field and number sequences.
fn entity_plan(
    model: &Model,
    policy: &Policy,
    i: usize,
    index: &HashMap<&str, usize>,
    by_name: &[HashMap<String, usize>],
) -> EntityPlan {
    let e = &model.entities[i];
    let primary_field = primary_field_name(model);
    let links = links(model, e, index, by_name, &by_name[i], primary_field);
    let owner = links.iter().position(|l| l.kind == LinkKind::Owner);
    let roots = if let Some(&[n, d]) = policy.per_request.get(&e.logical_name) {
        Roots::PerRequest(n, d)
    } else if let Some(&n) = policy.pools.get(&e.logical_name) {
        Roots::Pool(n)
    } else if links.is_empty() && e.sequences.is_empty() && owner.is_none() {
        Roots::Reference(0) // counted by `count_references`, once every entity's links are known
    } else {
        Roots::None
    };
    EntityPlan {
        key: by_name[i][&e.primary_key],
        roots,
        owner,
        fanout: *policy.details.get(&e.logical_name).unwrap_or(&policy.default_details),
        links,
        details: Vec::new(),
        company: company(e),
        groups: groups(e),
        primary_field: primary_field.and_then(|n| by_name[i].get(n).copied()),
        reference_key: None,
        sequences: e
            .sequences
            .iter()
            .map(|(p, f)| (by_name[i][p], f.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        by_name: by_name[i].clone(),
    }
}

/// Each owner learns its details, and each link target the key its rows are referred to by.
fn connect_details(entities: &mut [EntityPlan]) {
    for i in 0..entities.len() {
        for l in 0..entities[i].links.len() {
            let (target, parent_key, kind) = {
                let link = &entities[i].links[l];
                (link.target, link.parent_key, link.kind)
            };
            if kind == LinkKind::Owner {
                entities[target].details.push(i);
            }
            if entities[target].reference_key.is_none() {
                entities[target].reference_key = parent_key;
            }
        }
    }
}

/// Reference data gets one row per sample of the key it is referred to by.
fn count_references(model: &Model, entities: &mut [EntityPlan]) {
    for (i, e) in model.entities.iter().enumerate() {
        let plan = &mut entities[i];
        if let (Roots::Reference(_), Some(key)) = (plan.roots, plan.reference_key) {
            plan.roots = Roots::Reference(e.properties[key].samples.len());
        }
    }
}

/// The output order (every link target first) and the generation order (an entity after every
/// target its rows, their details and the rows made with them link to).
fn orders(entities: &[EntityPlan]) -> (Vec<usize>, Vec<usize>) {
    let direct: Vec<BTreeSet<usize>> = entities
        .iter()
        .map(|e| e.links.iter().map(|l| l.target).collect())
        .collect();
    let order = topological(&direct);
    let needs: Vec<BTreeSet<usize>> = (0..entities.len())
        .map(|i| {
            let family = family(entities, i);
            family
                .iter()
                .flat_map(|&f| direct[f].iter().copied())
                .filter(|t| !family.contains(t))
                .collect()
        })
        .collect();
    (order, topological(&needs))
}

/// The property that `primary_field_parts` are joined into: the one name shared by every entity
/// that has parts, apart from the parts themselves.
pub(super) fn primary_field_name(model: &Model) -> Option<&str> {
    let mut with_parts = model.entities.iter().filter(|e| e.has_primary_field());
    let first = with_parts.next()?;
    let mut names: BTreeSet<&str> = first.properties.iter().map(|p| p.name.as_str()).collect();
    for e in with_parts {
        names.retain(|n| e.property(n).is_some() && !e.primary_field_parts.iter().any(|p| p == n));
    }
    names.retain(|n| !first.primary_field_parts.iter().any(|p| p == n));
    (names.len() == 1).then(|| names.into_iter().next().expect("one name"))
}

fn company(e: &Entity) -> Option<(usize, usize)> {
    e.properties.iter().enumerate().find_map(|(i, p)| {
        if p.ty != PropType::String {
            return None;
        }
        let attribute = format!("{}_id", p.name);
        let lookup = e
            .properties
            .iter()
            .position(|l| l.lookup.as_ref().is_some_and(|lk| lk.attribute == attribute))?;
        Some((i, lookup))
    })
}

fn groups(e: &Entity) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, p) in e.properties.iter().enumerate().filter(|(_, p)| !p.samples.is_empty()) {
        match groups.iter_mut().find(|g| g.len == p.samples.len()) {
            Some(g) => g.props.push(i),
            None => groups.push(Group {
                len: p.samples.len(),
                props: vec![i],
            }),
        }
    }
    groups
}

fn same_kind(a: &Property, b: &Property) -> bool {
    a.name == b.name && a.ty == b.ty && a.option_set == b.option_set
}

fn links(
    model: &Model,
    e: &Entity,
    index: &HashMap<&str, usize>,
    by_name: &[HashMap<String, usize>],
    own: &HashMap<String, usize>,
    primary_field: Option<&str>,
) -> Vec<Link> {
    e.graphql
        .relations
        .iter()
        .filter(|r| r.lookup_on == LookupSide::This)
        .map(|r| {
            let target = index[r.target.as_str()];
            let t = &model.entities[target];
            let lookup = own[&r.lookup_property];
            let child_key = r.child_readable_key.as_ref().and_then(|k| own.get(k).copied());
            let parent_key = r
                .parent_readable_key
                .as_ref()
                .and_then(|k| by_name[target].get(k).copied());
            let key_prop = child_key.map(|k| &e.properties[k]);
            let owns = key_prop.is_some_and(|k| e.primary_field_parts.first() == Some(&k.name));
            let kind = if owns {
                LinkKind::Owner
            } else if key_prop.is_some_and(|k| k.read_only) && e.properties[lookup].required {
                LinkKind::CreatedWith
            } else {
                let always = e.properties[lookup].required || key_prop.is_none_or(|k| k.write_once);
                LinkKind::Pick { always }
            };
            let inherit = if matches!(kind, LinkKind::Pick { .. }) {
                Vec::new()
            } else {
                e.properties
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        let j = by_name[target].get(&p.name).copied()?;
                        let q = &t.properties[j];
                        let skip = q.name == t.primary_key || Some(q.name.as_str()) == primary_field;
                        (!skip && same_kind(p, q)).then_some((i, j))
                    })
                    .collect()
            };
            Link {
                target,
                kind,
                lookup,
                child_key,
                parent_key,
                inherit,
                corefs: Vec::new(),
            }
        })
        .collect()
}

/// Properties a row shares with a detail of the row it picked, when they include an
/// out-of-model lookup (the same position on the candidate and on the request's position).
fn corefs(model: &Model, plans: &[EntityPlan], i: usize, link: &Link) -> Vec<(usize, Vec<(usize, usize)>)> {
    let e = &model.entities[i];
    let mut own_structural: BTreeSet<usize> = BTreeSet::new();
    own_structural.insert(plans[i].by_name[&e.primary_key]);
    own_structural.extend(plans[i].primary_field);
    own_structural.extend(plans[i].company.iter().flat_map(|&(c, l)| [c, l]));
    for l in &plans[i].links {
        own_structural.insert(l.lookup);
        own_structural.extend(l.child_key);
    }
    let mut out = Vec::new();
    for &d in &plans[link.target].details {
        let de = &model.entities[d];
        let pairs: Vec<(usize, usize)> = e
            .properties
            .iter()
            .enumerate()
            .filter(|(p, _)| !own_structural.contains(p))
            .filter_map(|(p, prop)| {
                let q = plans[d].by_name.get(&prop.name).copied()?;
                let dp = &plans[d];
                let theirs = q == dp.by_name[&de.primary_key]
                    || dp.links.iter().any(|l| l.lookup == q || l.child_key == Some(q));
                (!theirs && same_kind(prop, &de.properties[q])).then_some((p, q))
            })
            .collect();
        let shares_reference = pairs
            .iter()
            .any(|&(p, _)| e.properties[p].lookup.as_ref().is_some_and(|l| !l.target_in_model));
        if shares_reference {
            out.push((d, pairs));
        }
    }
    out
}

/// An entity with the entities whose rows are made together with its rows: its details and the
/// targets of its created-with links, recursively.
fn family(plans: &[EntityPlan], i: usize) -> BTreeSet<usize> {
    let mut family = BTreeSet::from([i]);
    let mut todo = vec![i];
    while let Some(f) = todo.pop() {
        let made_with = plans[f]
            .links
            .iter()
            .filter(|l| l.kind == LinkKind::CreatedWith)
            .map(|l| l.target);
        for next in plans[f].details.iter().copied().chain(made_with) {
            if family.insert(next) {
                todo.push(next);
            }
        }
    }
    family
}

/// Entity indexes, each after the entities it needs (stable: model order among the ready ones).
fn topological(needs: &[BTreeSet<usize>]) -> Vec<usize> {
    let mut done = vec![false; needs.len()];
    let mut order = Vec::new();
    while order.len() < needs.len() {
        let next = (0..needs.len())
            .find(|&i| !done[i] && needs[i].iter().all(|&t| done[t] || t == i))
            .expect("links between entities form no cycle");
        done[next] = true;
        order.push(next);
    }
    order
}
