//! Building one row: fixture values first, then samples, links, sequences, placeholders, keys,
//! the primary field and type defaults, each filling only what the earlier steps left open.

use super::generator::{Ctx, Gen};
use super::plan::{Link, LinkKind, Plan};
use super::values::{expand, from_sample, is_template, name_number, text, uses_counter};
use crate::emulator::ids::fno_guid;
use crate::model::{Model, PropType, Property};
use rand::Rng;
use serde_json::Value;

/// A value under construction. Only `Pinned` (fixture) values are final; links overwrite sampled
/// ones, so a detail's company is always its owner's.
#[derive(Clone)]
enum Slot {
    Unset,
    Pinned(Value),
    Set(Value),
    Template(String),
}

impl Slot {
    fn value(&self) -> Option<&Value> {
        match self {
            Slot::Pinned(v) | Slot::Set(v) => Some(v),
            _ => None,
        }
    }
}

fn set(draft: &mut [Slot], p: usize, v: Value) {
    if !matches!(draft[p], Slot::Pinned(_)) {
        draft[p] = Slot::Set(v);
    }
}

impl<'a> Gen<'a> {
    /// Builds, stores and returns a row of entity `e`, creating the rows it is created with
    /// before it and its details after it.
    pub fn make(&mut self, e: usize, ctx: Ctx) -> usize {
        let props = &self.model.entities[e].properties;
        let mut draft: Vec<Slot> = match ctx.pinned {
            Some(p) => p.into_iter().map(|v| v.map_or(Slot::Unset, Slot::Pinned)).collect(),
            None => vec![Slot::Unset; props.len()],
        };
        self.sample(&mut draft, e, ctx.draws.as_deref());
        let owner_row = self.link(&mut draft, e, ctx.owner);
        self.number(&mut draft, e);
        self.fill_placeholders(&mut draft, e, owner_row);
        self.key_and_defaults(&mut draft, e);
        self.primary_field(&mut draft, e);
        let values = draft
            .into_iter()
            .map(|s| match s {
                Slot::Pinned(v) | Slot::Set(v) => v,
                Slot::Template(s) => Value::String(s),
                Slot::Unset => Value::Null,
            })
            .collect();
        let row = self.store(e, values);
        self.details(e, row);
        row
    }

    /// Samples: one index per group (`draws`, or at random), all dates of the row moved by the
    /// same offset.
    fn sample(&mut self, draft: &mut [Slot], e: usize, draws: Option<&[usize]>) {
        let this = &self.plan.entities[e];
        let props = &self.model.entities[e].properties;
        let jitter = self.rng.random_range(0..=self.policy.date_jitter_days);
        for (g, group) in this.groups.iter().enumerate() {
            let i = match draws {
                Some(draws) => draws[g],
                None => self.rng.random_range(0..group.len),
            };
            for &p in &group.props {
                if matches!(draft[p], Slot::Unset) {
                    draft[p] = match from_sample(&props[p], &props[p].samples[i], jitter) {
                        Value::String(s) if is_template(&s) => Slot::Template(s),
                        v => Slot::Set(v),
                    };
                }
            }
        }
    }

    /// Links: the owner first (it decides the company), then rows made for this one, then picks.
    /// The owner's entity and row, for placeholders.
    fn link(&mut self, draft: &mut [Slot], e: usize, owner: Option<usize>) -> Option<(usize, usize)> {
        let plan: &'a Plan = self.plan;
        let this = &plan.entities[e];
        let mut owner_row = None;
        for link in this.links.iter().filter(|l| l.kind == LinkKind::Owner) {
            let row = owner.expect("a detail is made by its owner");
            self.connect(draft, link, row);
            owner_row = Some((link.target, row));
        }
        for link in this.links.iter().filter(|l| l.kind == LinkKind::CreatedWith) {
            if !matches!(draft[link.lookup], Slot::Pinned(_)) {
                let pinned = self.pinned[link.target].pop_front();
                let row = self.make(
                    link.target,
                    Ctx {
                        pinned,
                        ..Ctx::default()
                    },
                );
                self.connect(draft, link, row);
            }
        }
        for link in &this.links {
            if let LinkKind::Pick { always } = link.kind {
                self.pick(draft, e, link, always);
            }
        }
        owner_row
    }

    /// Number sequences, per company where the format says so.
    fn number(&mut self, draft: &mut [Slot], e: usize) {
        let plan: &'a Plan = self.plan;
        let this = &plan.entities[e];
        for (p, format) in &this.sequences {
            if matches!(draft[*p], Slot::Unset) {
                let company = this.company.and_then(|(c, _)| draft[c].value()).map(text);
                let value = self.next_in_sequence(e, *p, format, company.as_deref().unwrap_or(""));
                draft[*p] = Slot::Set(Value::String(value));
            }
        }
    }

    /// Placeholders, from this row or else its owner; numbered values skip the fixture's.
    fn fill_placeholders(&mut self, draft: &mut [Slot], e: usize, owner_row: Option<(usize, usize)>) {
        let plan: &'a Plan = self.plan;
        let this = &plan.entities[e];
        for p in 0..draft.len() {
            let Slot::Template(template) = &draft[p] else {
                continue;
            };
            let value = loop {
                let counter = if uses_counter(template) {
                    let n = self.template_counters.entry((e, p)).or_insert(0);
                    *n += 1;
                    *n
                } else {
                    0
                };
                let (own, tables) = (&*draft, &self.tables);
                let resolve = |name: &str| {
                    if let Some(&q) = this.by_name.get(name) {
                        return own[q].value().map(text);
                    }
                    let (oe, row) = owner_row?;
                    let q = *plan.entities[oe].by_name.get(name)?;
                    Some(text(&tables[oe][row][q]))
                };
                let value = expand(template, &mut self.rng, counter, resolve);
                if counter == 0 || !self.taken.contains(&(e, p, value.clone())) {
                    break value;
                }
            };
            draft[p] = Slot::Set(Value::String(value));
        }
    }

    /// The primary key (an F&O-style GUID) and the type defaults of what is still open (the
    /// primary field aside).
    fn key_and_defaults(&mut self, draft: &mut [Slot], e: usize) {
        let (model, plan): (&'static Model, &'a Plan) = (self.model, self.plan);
        let this = &plan.entities[e];
        let props = &model.entities[e].properties;
        if matches!(draft[this.key], Slot::Unset) {
            draft[this.key] = Slot::Set(Value::String(fno_guid(self.ordinals[e], self.rec_ids[e])));
            self.rec_ids[e] += 1;
        }
        for p in 0..draft.len() {
            if matches!(draft[p], Slot::Unset) && Some(p) != this.primary_field {
                draft[p] = Slot::Set(self.default_value(model, &props[p]));
            }
        }
    }

    /// The primary field: its parts joined with ` | `.
    fn primary_field(&self, draft: &mut [Slot], e: usize) {
        let this = &self.plan.entities[e];
        let parts = &self.model.entities[e].primary_field_parts;
        if let (Some(pf), false) = (this.primary_field, parts.is_empty()) {
            let joined: Vec<String> = parts
                .iter()
                .map(|n| draft[this.by_name[n]].value().map(text).unwrap_or_default())
                .collect();
            // At most 255 characters, as the emulator's writes keep it.
            set(draft, pf, Value::String(joined.join(" | ").chars().take(255).collect()));
        }
    }

    /// Points a row's lookup (and readable key) at a row of the link's target and copies the
    /// values it inherits from it.
    fn connect(&self, draft: &mut [Slot], link: &Link, row: usize) {
        let target = &self.plan.entities[link.target];
        let parent = &self.tables[link.target][row];
        set(draft, link.lookup, parent[target.key].clone());
        if let (Some(c), Some(k)) = (link.child_key, link.parent_key) {
            set(draft, c, parent[k].clone());
        }
        for &(p, q) in &link.inherit {
            set(draft, p, parent[q].clone());
        }
    }

    /// Fills a pick link: by a sampled readable key, else a random row of the same company, else
    /// (optional links, now and then) nothing.
    fn pick(&mut self, draft: &mut [Slot], e: usize, link: &Link, always: bool) {
        if matches!(draft[link.lookup], Slot::Pinned(_)) {
            return;
        }
        let keyed = link.child_key.and_then(|k| match draft[k].value() {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        });
        let by_key = match (&keyed, link.parent_key) {
            (Some(key), Some(pk)) => self.keys[&(link.target, pk)].get(key).copied(),
            _ => None,
        };
        let skip = keyed.is_none() && !always && !self.rng.random_bool(self.policy.optional_link_share);
        let parent = match by_key {
            Some(row) => Some(row),
            None if skip => None,
            None => self.random_parent(draft, e, link.target, always),
        };
        let Some(row) = parent else {
            set(draft, link.lookup, Value::Null);
            if let Some(c) = link.child_key {
                set(draft, c, Value::String(String::new()));
            }
            return;
        };
        self.connect(draft, link, row);
        let (this, target) = (&self.plan.entities[e], &self.plan.entities[link.target]);
        if let (Some((c, cl)), Some((tc, tcl))) = (this.company, target.company) {
            if matches!(draft[c], Slot::Unset) {
                let parent = &self.tables[link.target][row];
                set(draft, c, parent[tc].clone());
                set(draft, cl, parent[tcl].clone());
            }
        }
        for (d, pairs) in &link.corefs {
            let Some(kids) = self.children.get(&(*d, row)) else {
                continue;
            };
            let kid = kids[self.rng.random_range(0..kids.len())];
            for &(p, q) in pairs {
                set(draft, p, self.tables[*d][kid][q].clone());
            }
        }
    }

    /// A random row of `target`, of the same company as the row being built when both have one.
    fn random_parent(&mut self, draft: &[Slot], e: usize, target: usize, always: bool) -> Option<usize> {
        let (this, other) = (&self.plan.entities[e], &self.plan.entities[target]);
        let company = match (this.company, other.company) {
            (Some((c, _)), Some(_)) => draft[c].value().map(text).filter(|c| !c.is_empty()),
            _ => None,
        };
        if let Some(company) = company {
            if let Some(rows) = self.by_company.get(&(target, company)) {
                return Some(rows[self.rng.random_range(0..rows.len())]);
            }
            if !always {
                return None;
            }
        }
        let n = self.tables[target].len();
        (n > 0).then(|| self.rng.random_range(0..n))
    }

    /// What F&O shows for a value nobody set: empty strings, zeros, the first (default) option.
    /// Dates and lookups stay null, except a required lookup outside the model, which gets a
    /// plausible GUID of its own table.
    fn default_value(&mut self, model: &Model, p: &Property) -> Value {
        match p.ty {
            PropType::String => Value::String(String::new()),
            PropType::Int | PropType::Decimal | PropType::Double => Value::from(0),
            PropType::OptionSet => p
                .option_set
                .as_deref()
                .and_then(|n| model.option_set(n))
                .and_then(|s| s.values.first())
                .map_or(Value::Null, |v| Value::from(v.value)),
            PropType::Date | PropType::Datetime => Value::Null,
            PropType::Guid => match &p.lookup {
                Some(l) if p.required && !l.target_in_model => {
                    let ordinal = 0x100 + name_number(&l.target) % 0xc00;
                    let rec_id = self.policy.first_rec_id + self.rng.random_range(0..1_000_000);
                    Value::String(fno_guid(ordinal, rec_id))
                }
                _ => Value::Null,
            },
        }
    }
}
