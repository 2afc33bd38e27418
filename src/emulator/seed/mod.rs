//! Deterministic, realistic demo data for the embedded Dataverse emulator.
//!
//! [`demo_rows`] returns complete rows in OData wire form, parents before children, ready to be
//! inserted. The generator names no entity or property: it walks the model (see `plan` for the
//! roles it derives from the relations) and takes values from the per-property `samples` that
//! `tools/build-model.py` writes into the model. Two small data files sit beside the code:
//!
//! - `policy.json`: how many rows (requests → candidates, recruiter persons, details per owner).
//! - `documented.json`: the recruiting request USMF-000001 from the docs' example query, with its
//!   positions, skills and educations; it is the first request, value for value.
//!
//! How values are chosen, in order of precedence:
//!
//! 1. Fixture values, as documented (written in the model's wire form for their type).
//! 2. Links: a detail's lookup and readable key come from its owner, and it inherits the values
//!    it shares with it by name (company, a position's description); picked rows are chosen by a
//!    sampled readable key (a rating level "4") or at random within the row's company; a row
//!    picking a parent also refers to one of that parent's details when they share an
//!    out-of-model reference (a candidate's request and one of its positions).
//! 3. Samples: aligned by group (the same index for every list of one length), drawn without
//!    repeats among the details of one owner, dates moved together per row, placeholders such as
//!    `{mshr_firstname}`, `{digits:4}` or `{counter:6}` expanded (see `tools/build-model.py`).
//! 4. Derived: number sequences (per company where the format has `{company}`), F&O-style keys
//!    from [`fno_guid`](crate::emulator::ids::fno_guid) with increasing RecIds per table, the
//!    primary field as the wire values of `primary_field_parts` joined by `" | "`.
//! 5. Defaults the way F&O shows unset values: `""`, `0`, the first option; null dates and
//!    lookups (a required lookup outside the model gets a plausible GUID).

mod generator;
mod plan;
mod policy;
mod row;
mod values;

#[cfg(test)]
mod tests;

use crate::model::{model, Entity};
use serde_json::{Map, Value};

/// One row to insert: its entity and every property of it, keyed by OData name.
#[derive(Debug, Clone)]
pub struct SeedRow {
    pub entity: &'static Entity,
    pub values: Map<String, Value>,
}

/// Rows are equal when they belong to the same entity and hold the same values (the model's
/// `Entity` has no `PartialEq`).
impl PartialEq for SeedRow {
    fn eq(&self, other: &Self) -> bool {
        self.entity.logical_name == other.entity.logical_name && self.values == other.values
    }
}

/// The documented example request and the rows it refers to.
const FIXTURE: &str = include_str!("documented.json");

/// Rows in insertion order (parents before children). `requests` = number of recruiting requests
/// (the default demo is 200); candidates = requests * 5 / 2 (500 by default).
///
/// The same `requests` always gives the same rows.
pub fn demo_rows(requests: usize) -> Vec<SeedRow> {
    let m = model();
    let policy = policy::policy();
    let plan = plan::Plan::new(m, policy);
    let mut generator = generator::Gen::new(m, &plan, policy, FIXTURE);
    generator.run(requests);
    generator
        .into_rows()
        .into_iter()
        .map(|(e, values)| SeedRow {
            entity: &m.entities[e],
            values,
        })
        .collect()
}
