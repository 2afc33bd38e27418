//! The generator's state: the tables built so far, their indexes and counters, and the walk that
//! fills them (reference data, pools, per-request roots, then each row's details).

use super::plan::{EntityPlan, Plan, Roots};
use super::policy::Policy;
use super::values::{normalize, text};
use crate::emulator::ids::entity_ordinal;
use crate::model::Model;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};

/// A fixture row: some values fixed by the documentation, the rest generated.
pub(super) type Pinned = Vec<Option<Value>>;

#[derive(Deserialize)]
struct Fixture {
    rows: Vec<FixtureRow>,
}

#[derive(Deserialize)]
struct FixtureRow {
    entity: String,
    values: Map<String, Value>,
}

/// How a new row takes its sample indexes and fixed values.
#[derive(Default)]
pub(super) struct Ctx {
    pub pinned: Option<Pinned>,
    /// The owning row (of the owner link's target), for details.
    pub owner: Option<usize>,
    /// One index per sample group; `None` draws them at random.
    pub draws: Option<Vec<usize>>,
}

pub(super) struct Gen<'a> {
    pub model: &'static Model,
    pub plan: &'a Plan,
    pub policy: &'a Policy,
    pub rng: StdRng,
    /// Rows per entity, values by property index.
    pub tables: Vec<Vec<Vec<Value>>>,
    pub ordinals: Vec<u32>,
    pub rec_ids: Vec<u64>,
    /// Fixture rows not yet placed, per entity.
    pub pinned: Vec<VecDeque<Pinned>>,
    /// Next number per `(entity, property, company)` sequence.
    pub counters: HashMap<(usize, usize, String), u64>,
    /// Next number per `(entity, property)` of `{counter:N}` placeholders.
    pub template_counters: HashMap<(usize, usize), u64>,
    /// Values the fixture already uses, by `(entity, property)`: numbered values skip them.
    pub taken: HashSet<(usize, usize, String)>,
    /// Row by readable key, for every key some link refers to: `(entity, property) → value → row`.
    pub keys: HashMap<(usize, usize), HashMap<String, usize>>,
    /// The properties of each entity that `keys` indexes.
    pub indexed: Vec<Vec<usize>>,
    /// Rows per `(entity, company)`.
    pub by_company: HashMap<(usize, String), Vec<usize>>,
    /// Details per `(detail entity, owner row)`.
    pub children: HashMap<(usize, usize), Vec<usize>>,
}

impl<'a> Gen<'a> {
    pub fn new(model: &'static Model, plan: &'a Plan, policy: &'a Policy, fixture: &str) -> Gen<'a> {
        let n = model.entities.len();
        let mut pinned: Vec<VecDeque<Pinned>> = vec![VecDeque::new(); n];
        let mut taken = HashSet::new();
        let fixture: Fixture = serde_json::from_str(fixture).expect("seed fixture is valid JSON");
        for row in fixture.rows {
            let e = model
                .entities
                .iter()
                .position(|x| x.logical_name == row.entity)
                .unwrap_or_else(|| panic!("fixture entity {} is not in the model", row.entity));
            let plan_e = &plan.entities[e];
            let mut values: Pinned = vec![None; model.entities[e].properties.len()];
            for (name, v) in row.values {
                let p = *plan_e
                    .by_name
                    .get(&name)
                    .unwrap_or_else(|| panic!("fixture: no {name}"));
                values[p] = Some(normalize(&model.entities[e].properties[p], v));
            }
            for (p, v) in values.iter().enumerate() {
                if let Some(Value::String(s)) = v {
                    taken.insert((e, p, s.clone()));
                }
            }
            pinned[e].push_back(values);
        }
        let mut keys = HashMap::new();
        let mut indexed = vec![Vec::new(); n];
        for e in &plan.entities {
            for l in &e.links {
                if let Some(k) = l.parent_key {
                    if keys.insert((l.target, k), HashMap::new()).is_none() {
                        indexed[l.target].push(k);
                    }
                }
            }
        }
        Gen {
            model,
            plan,
            policy,
            rng: StdRng::seed_from_u64(policy.seed),
            tables: vec![Vec::new(); n],
            ordinals: model.entities.iter().map(entity_ordinal).collect(),
            rec_ids: vec![policy.first_rec_id; n],
            pinned,
            counters: HashMap::new(),
            template_counters: HashMap::new(),
            taken,
            keys,
            indexed,
            by_company: HashMap::new(),
            children: HashMap::new(),
        }
    }

    /// Generates every entity's own rows in dependency order (details come with their owners).
    pub fn run(&mut self, requests: usize) {
        let plan: &'a Plan = self.plan;
        for &e in &plan.generation {
            match plan.entities[e].roots {
                Roots::Reference(count) => self.reference_rows(e, count),
                Roots::Pool(count) => (0..count).for_each(|_| self.root_row(e)),
                Roots::PerRequest(num, den) => (0..requests * num / den).for_each(|_| self.root_row(e)),
                Roots::None => {}
            }
        }
    }

    /// The rows, parents before children, each as a map in the model's property order.
    pub fn into_rows(self) -> Vec<(usize, Map<String, Value>)> {
        let mut tables = self.tables;
        let mut out = Vec::with_capacity(tables.iter().map(Vec::len).sum());
        for &e in &self.plan.order {
            let props = &self.model.entities[e].properties;
            for row in std::mem::take(&mut tables[e]) {
                let values = props.iter().map(|p| p.name.clone()).zip(row).collect();
                out.push((e, values));
            }
        }
        out
    }

    fn root_row(&mut self, e: usize) {
        let pinned = self.pinned[e].pop_front();
        self.make(
            e,
            Ctx {
                pinned,
                ..Ctx::default()
            },
        );
    }

    /// One row per sample of the entity's key; sample groups of that length are taken in order,
    /// so row i holds the i-th value of each. Fixture rows replace the row with their key.
    fn reference_rows(&mut self, e: usize, count: usize) {
        let (model, plan): (&'static Model, &'a Plan) = (self.model, self.plan);
        let plan = &plan.entities[e];
        let key = plan.reference_key.expect("reference data has a key");
        let samples = &model.entities[e].properties[key].samples;
        for (i, sample) in samples.iter().enumerate().take(count) {
            let at = self.pinned[e].iter().position(|p| p[key].as_ref() == Some(sample));
            let pinned = at.and_then(|at| self.pinned[e].remove(at));
            let draws = plan
                .groups
                .iter()
                .map(|g| {
                    if g.len == count {
                        i
                    } else {
                        self.rng.random_range(0..g.len)
                    }
                })
                .collect();
            self.make(
                e,
                Ctx {
                    pinned,
                    owner: None,
                    draws: Some(draws),
                },
            );
        }
        while let Some(pinned) = self.pinned[e].pop_front() {
            self.make(
                e,
                Ctx {
                    pinned: Some(pinned),
                    ..Ctx::default()
                },
            );
        }
    }

    /// The details of a new row: the fixture's, or a random number of fresh ones whose samples
    /// are drawn without repeats among siblings (two skills of one person differ).
    pub fn details(&mut self, e: usize, row: usize) {
        let all: &'a Plan = self.plan;
        for &d in &all.entities[e].details {
            let plan = &all.entities[d];
            let link = &plan.links[plan.owner.expect("details have an owner")];
            let owner = &self.tables[e][row];
            let key = all.entities[e].key;
            let belongs = |p: &Pinned| {
                p[link.lookup].as_ref() == Some(&owner[key])
                    || matches!((link.child_key, link.parent_key),
                        (Some(c), Some(k)) if p[c].as_ref() == Some(&owner[k]))
            };
            let mut pinned = Vec::new();
            let mut rest = VecDeque::new();
            for p in std::mem::take(&mut self.pinned[d]) {
                if belongs(&p) {
                    pinned.push(p)
                } else {
                    rest.push_back(p)
                }
            }
            self.pinned[d] = rest;
            let count = if pinned.is_empty() {
                self.rng.random_range(plan.fanout[0]..=plan.fanout[1])
            } else {
                pinned.len()
            };
            let mut perms: Vec<Vec<usize>> = plan.groups.iter().map(|g| (0..g.len).collect()).collect();
            perms.iter_mut().for_each(|p| p.shuffle(&mut self.rng));
            let mut pinned = pinned.into_iter();
            for k in 0..count {
                let draws = perms.iter().map(|p| p[k % p.len()]).collect();
                let ctx = Ctx {
                    pinned: pinned.next(),
                    owner: Some(row),
                    draws: Some(draws),
                };
                let child = self.make(d, ctx);
                self.children.entry((d, row)).or_default().push(child);
            }
        }
    }

    /// Stores a finished row and indexes it; returns its row number.
    pub fn store(&mut self, e: usize, values: Vec<Value>) -> usize {
        let row = self.tables[e].len();
        let plan: &'a EntityPlan = &self.plan.entities[e];
        for &p in &self.indexed[e] {
            if let Some(index) = self.keys.get_mut(&(e, p)) {
                index.entry(text(&values[p])).or_insert(row);
            }
        }
        if let Some((c, _)) = plan.company {
            self.by_company.entry((e, text(&values[c]))).or_default().push(row);
        }
        self.tables[e].push(values);
        row
    }

    /// The next value of a number sequence, skipping values the fixture uses.
    pub fn next_in_sequence(&mut self, e: usize, p: usize, format: &str, company: &str) -> String {
        let scope = if format.contains("{company}") {
            company.to_string()
        } else {
            String::new()
        };
        let counter = self.counters.entry((e, p, scope)).or_insert(0);
        loop {
            *counter += 1;
            let value = crate::emulator::ids::format_sequence(format, company, *counter);
            if !self.taken.contains(&(e, p, value.clone())) {
                return value;
            }
        }
    }
}
