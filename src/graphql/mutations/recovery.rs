//! Submissions under an idempotency key when the upstream's answer is lost.
//!
//! A lost response (a connection cut after sending, an unreadable success, a time-out) leaves the
//! gateway not knowing whether the candidate was written. Writing again could create it twice;
//! giving up could lose it. The ATS tables have no column for a client's request key, so the
//! gateway looks for the candidate by what it holds instead:
//!
//! - Before writing, the validation read also fetches the candidates that already look like this
//!   submission's (same names, recruiting request, comments, party number, …: its
//!   string properties), the *baseline*; the key records both (`IdempotencyStore::prepare`).
//! - After a lost response, the same query runs again. A look-alike that is not in the baseline
//!   and that no other completed key stands for is this submission's candidate: the key completes
//!   with it. None means the write did not happen and may run again.
//!
//! This is exact for the atomic strategies (`batch`, `deep-insert`: the candidate exists if and
//! only if the whole submission was written). It can be fooled only by an identical candidate
//! created elsewhere between the baseline read and the probe. A write that *timed out* (or got a
//! 5xx from a proxy) may still be running upstream, so it is not re-run in the same request: the
//! key stays `unknown` and the client's retry looks again later.

use super::validate::{Plan, SubmissionError, SHAPE};
use super::write::{self, Strategy, WriteFailure, Written};
use crate::graphql::context::{GatewayState, RequestCtx};
use crate::graphql::idempotency::Probe;
use crate::odata::filter::{compile, CmpOp, Filter, Literal};
use crate::odata::{Delivery, ODataQuery, RetryPolicy, UpstreamError, UpstreamErrorKind};
use serde_json::Value;

/// At most this many look-alikes are read (a baseline larger than this cannot be told apart).
const PROBE_LIMIT: usize = 500;
/// At most this many properties go into the look-alike filter (URL length).
const PROBE_PROPERTIES: usize = 12;

/// The query for candidates that look like `plan`'s, or `None` when it holds no string to go by.
pub fn probe_url(plan: &Plan) -> Option<String> {
    let conditions: Vec<Filter> = plan
        .candidate_strings()
        .into_iter()
        .filter(|(_, v)| !v.is_empty() && v.len() <= 200 && v.trim() == v)
        .take(PROBE_PROPERTIES)
        .map(|(property, value)| Filter::Cmp {
            property,
            op: CmpOp::Eq,
            value: Literal::String(value),
        })
        .collect();
    if conditions.is_empty() {
        return None;
    }
    let candidate = SHAPE.candidate;
    let filter = compile(&Filter::And(conditions), candidate).ok()?;
    let mut q = ODataQuery::new(candidate);
    q.select = vec![candidate.primary_key.clone()];
    q.filter = Some(filter);
    q.top = Some(PROBE_LIMIT);
    Some(q.to_relative_url())
}

/// The candidates' primary keys, lower-cased.
pub fn candidate_ids(rows: &[crate::odata::Record]) -> Vec<String> {
    let pk = &SHAPE.candidate.primary_key;
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get(pk).and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
        .collect();
    ids.sort();
    ids
}

/// What looking upstream found.
#[derive(Debug)]
pub enum Found {
    /// The submission's candidate.
    Written(String),
    /// Nothing new: the write did not happen.
    NotWritten,
    /// The look failed, or there is nothing to look with.
    CannotTell(String),
}

/// Looks for the candidate a write with `probe` left behind.
pub async fn look(state: &GatewayState, rq: &RequestCtx, probe: Option<&Probe>) -> Found {
    let Some(probe) = probe else {
        return Found::CannotTell("no look-up was prepared for this submission".into());
    };
    let page = match state.get_page_fresh(rq, &probe.url, None).await {
        Ok(p) => p,
        // Logged: the code, not the upstream's message, which may quote the filter's values.
        Err(e) => return Found::CannotTell(format!("the look-up failed with {}", e.code())),
    };
    let fresh: Vec<String> = candidate_ids(&page.value)
        .into_iter()
        .filter(|id| !probe.baseline.contains(id))
        .collect();
    let claimed = match state.idempotency.claimed(&fresh).await {
        Ok(c) => c.into_iter().map(|c| c.to_ascii_lowercase()).collect::<Vec<_>>(),
        Err(e) => return Found::CannotTell(e.to_string()),
    };
    let mut mine = fresh.into_iter().filter(|id| !claimed.contains(id));
    match (mine.next(), mine.next()) {
        (None, _) => Found::NotWritten,
        (Some(id), None) => Found::Written(id),
        (Some(id), Some(other)) => {
            // Two identical new candidates: another identical submission ran at the same time.
            tracing::warn!(candidate.id = %id, other.id = %other, "several new candidates look like this submission; taking the first");
            Found::Written(id)
        }
    }
}

/// Whether a lost write certainly finished upstream before the loss, so that looking now tells
/// the truth: the connection broke while the answer was on its way, or the answer was a success
/// that could not be read. A time-out or a proxy's 5xx may leave the write still running.
fn settled(e: &UpstreamError) -> bool {
    match e.delivery {
        Delivery::Unknown => e.kind != UpstreamErrorKind::Timeout,
        Delivery::Answered => e.status.is_none_or(|s| (200..300).contains(&s)),
        Delivery::NotSent => true,
    }
}

/// How a protected write ended.
pub enum Outcome {
    /// Written by this call; `found` when its answer was lost and the candidate was found.
    Written { written: Written, found: bool },
    /// Not written: report the errors and release the key.
    Failed(Vec<SubmissionError>),
    /// Perhaps written: report the errors and keep the key `unknown`.
    Unknown(Vec<SubmissionError>),
}

/// Writes `plan` under an idempotency key: failures that certainly did nothing are retried by the
/// upstream client; a lost answer is resolved by [`look`], and the write runs again (up to the
/// upstream's retry budget) only when it certainly did not happen.
pub async fn write_protected(state: &GatewayState, rq: &RequestCtx, plan: Plan, strategy: Strategy) -> Outcome {
    let strategy = write::effective_strategy(&plan, strategy);
    if !strategy.is_atomic() {
        return match write::write(state, rq, plan, strategy, RetryPolicy::Never).await {
            Ok(written) => Outcome::Written { written, found: false },
            Err(f) => Outcome::Failed(f.errors),
        };
    }
    let reruns = state.upstream.config().resilience.max_retries;
    for run in 0..=reruns {
        let failure: WriteFailure =
            match write::write(state, rq, plan.clone(), strategy, RetryPolicy::UnlessProcessed).await {
                Ok(written) => return Outcome::Written { written, found: false },
                Err(f) if !f.outcome_unknown() => return Outcome::Failed(f.errors),
                Err(f) => f,
            };
        let may_rerun = failure.upstream.as_ref().is_some_and(settled);
        if !may_rerun {
            return Outcome::Unknown(failure.errors);
        }
        match look(state, rq, plan.probe.as_ref()).await {
            Found::Written(candidate_id) => {
                tracing::info!(candidate.id = %candidate_id, "a lost answer: the candidate was written, found upstream");
                return Outcome::Written {
                    written: Written { candidate_id, strategy },
                    found: true,
                };
            }
            Found::NotWritten if run < reruns => {
                tracing::info!(run = run + 1, "a lost answer: nothing was written; writing again");
            }
            Found::NotWritten => return Outcome::Failed(failure.errors),
            Found::CannotTell(why) => {
                tracing::warn!(reason = %why, "a lost answer, and no way to tell whether the candidate was written");
                return Outcome::Unknown(failure.errors);
            }
        }
    }
    unreachable!("the last run returns")
}
