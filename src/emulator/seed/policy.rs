//! The seed's few tunable numbers, read from `policy.json`.
//!
//! They are the only seed facts keyed by entity names, so they live in a data file beside the
//! fixture instead of in code; the tests check that every name is one of the model's.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> =
    LazyLock::new(|| serde_json::from_str(include_str!("policy.json")).expect("seed policy.json is valid"));

/// The parsed `policy.json`.
pub(super) fn policy() -> &'static Policy {
    &POLICY
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Policy {
    /// Seed of the random generator: same seed and size, same rows.
    pub seed: u64,
    /// RecId of each table's first generated row (F&O starts its RecIds at 5637144576).
    pub first_rec_id: u64,
    /// Entities counted from the number of recruiting requests: `[numerator, denominator]`.
    pub per_request: BTreeMap<String, [usize; 2]>,
    /// Entities that get a fixed number of free-standing rows (the recruiters' persons).
    pub pools: BTreeMap<String, usize>,
    /// Rows per owner, `[min, max]`, for the entities owned by another (positions, skills ...).
    pub details: BTreeMap<String, [usize; 2]>,
    /// The same for owned entities not listed in `details`.
    pub default_details: [usize; 2],
    /// Share of rows that fill an optional link (a request's location or recruiter).
    pub optional_link_share: f64,
    /// Dates of a row move together by up to this many days, so sampled dates vary.
    pub date_jitter_days: i64,
}
