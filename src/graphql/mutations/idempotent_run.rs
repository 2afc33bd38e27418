//! One run of `submitCandidateToHire`: the idempotency key's life (reserve, look after a lost
//! answer, prepare, complete or release) around validation and the write.
//!
//! The key is held by a [`KeyClaim`] guard, so that a run that is cancelled (the client hung up,
//! the deadline passed) does not leave it `in_progress` for ever: dropped before its write could
//! go out, it is released; after, it is marked `unknown`, and the next use looks upstream first
//! (see `recovery`).

use super::recovery::{self, Found, Outcome};
use super::validate::{self, SubmissionError, SHAPE};
use super::write::{self, Strategy};
use super::{input_hash, PayloadValue};
use crate::graphql::context::{GatewayState, RequestCtx};
use crate::graphql::idempotency::{KeyClaim, KeyState, Probe};
use crate::odata::RetryPolicy;
use async_graphql::Value;

fn failed(errors: Vec<SubmissionError>) -> PayloadValue {
    PayloadValue {
        entity: Some(SHAPE.candidate),
        errors,
        ..Default::default()
    }
}

fn replayed(candidate_id: String, strategy: Option<Strategy>) -> PayloadValue {
    PayloadValue {
        entity: Some(SHAPE.candidate),
        id: Some(candidate_id),
        strategy,
        replayed: true,
        ..Default::default()
    }
}

/// Runs one submission of `input`, under `key` if given: claim the key (or answer from it),
/// validate, then write and settle the key in a task of its own.
pub(super) async fn run(
    st: &std::sync::Arc<GatewayState>,
    rq: &RequestCtx,
    input: &Value,
    key: Option<&str>,
) -> async_graphql::Result<PayloadValue> {
    let held: Option<KeyClaim> = match key {
        None => None,
        Some(k) => match claim_key(st, rq, input, k).await? {
            Claimed::Write(claim) => Some(claim),
            Claimed::Answered(payload) => return Ok(payload),
        },
    };
    // The look-alike probe's baseline rides in the validation read: with a key it resolves a lost
    // answer; for the atomic strategies it also finds what an upstream that does not roll back a
    // refused change set kept (see `write::compensate_landed`).
    let probe = held.is_some() || st.write.strategy.is_atomic();
    let plan = match validate::validate(st, rq, input, probe).await {
        Ok(plan) => plan,
        Err(errors) => {
            if let Some(h) = held {
                h.release().await;
            }
            return Ok(failed(errors));
        }
    };
    write_detached(st, rq, plan, held).await
}

/// What the idempotency key says before anything is validated.
enum Claimed {
    /// Go ahead and write, holding the key.
    Write(KeyClaim),
    /// The key already answers this call (a replay, or why not now).
    Answered(PayloadValue),
}

/// Claims `key` for this input: reserved (write), still running, reused with another input,
/// completed (replay), or unknown after a lost answer (look upstream first). A store that cannot
/// be reached refuses the submission (`STATE_UNAVAILABLE`): writing without the key could write
/// twice.
async fn claim_key(st: &GatewayState, rq: &RequestCtx, input: &Value, key: &str) -> async_graphql::Result<Claimed> {
    if key.len() > 200 {
        return Ok(Claimed::Answered(failed(vec![SubmissionError::key_too_long()])));
    }
    let hash = input_hash(input);
    let mut claimed = st.idempotency.begin(&rq.identity, key, &hash).await;
    if matches!(claimed, Ok((KeyState::InProgress, _))) && st.idempotency.shared_between_replicas() {
        claimed = wait_for_outcome(st, rq, key, &hash).await;
    }
    let (state, claim) = match claimed {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "a submission with an idempotency key refused: its store is unavailable");
            return Ok(Claimed::Answered(failed(vec![SubmissionError::state_unavailable()])));
        }
    };
    Ok(match (state, claim) {
        (KeyState::Reserved, Some(claim)) => Claimed::Write(claim),
        (KeyState::InProgress, _) => Claimed::Answered(failed(vec![SubmissionError::key_in_progress()])),
        (KeyState::Conflict, _) => Claimed::Answered(failed(vec![SubmissionError::key_reused()])),
        (KeyState::Completed { candidate_id, strategy }, _) => {
            let strategy = [Strategy::Batch, Strategy::DeepInsert, Strategy::Flat]
                .into_iter()
                .find(|s| s.graphql() == strategy);
            Claimed::Answered(replayed(candidate_id, strategy))
        }
        (KeyState::Unknown { probe }, Some(claim)) => look_before_writing(st, rq, probe.as_ref(), claim).await,
        (state, None) => {
            return Err(async_graphql::Error::new(format!(
                "idempotency store: no claim came with the key's state {state:?}"
            )))
        }
    })
}

/// How long before the operation's upstream deadline a wait for another replica's outcome
/// gives up (to answer `IDEMPOTENCY_KEY_IN_PROGRESS` in time).
const WAIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The key is in progress on another replica (or this one): asks again, at growing intervals,
/// until it is settled (a replay, or the key free after a failure or a dead holder's lease) or
/// the operation's deadline comes near, when it is still `InProgress`.
async fn wait_for_outcome(
    st: &GatewayState,
    rq: &RequestCtx,
    key: &str,
    hash: &str,
) -> Result<(KeyState, Option<KeyClaim>), crate::graphql::idempotency::StoreError> {
    use tokio::time::{Duration, Instant};
    let until = crate::odata::resilience::current_deadline()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(5))
        .checked_sub(WAIT_MARGIN)
        .unwrap_or_else(Instant::now);
    let mut pause = Duration::from_millis(20);
    loop {
        if Instant::now() + pause >= until {
            return Ok((KeyState::InProgress, None));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
        let answer = st.idempotency.begin(&rq.identity, key, hash).await?;
        if answer.0 != KeyState::InProgress {
            return Ok(answer);
        }
    }
}

/// An earlier attempt's answer was lost: look before writing again. The claim goes back to
/// `unknown` if this run is cancelled while it looks.
async fn look_before_writing(
    st: &GatewayState,
    rq: &RequestCtx,
    probe: Option<&Probe>,
    mut claim: KeyClaim,
) -> Claimed {
    match recovery::look(st, rq, probe).await {
        Found::Written(candidate_id) => {
            // The setting (an internal candidate under `deep-insert` ran as `batch`).
            let strategy = st.write.strategy;
            tracing::info!(candidate.id = %candidate_id, "an earlier attempt whose answer was lost had written the candidate");
            claim.complete(&candidate_id, strategy.graphql()).await;
            Claimed::Answered(replayed(candidate_id, Some(strategy)))
        }
        Found::NotWritten => {
            claim.nothing_written();
            Claimed::Write(claim)
        }
        Found::CannotTell(why) => {
            claim.mark_unknown().await;
            Claimed::Answered(failed(vec![SubmissionError::key_cannot_tell(&why)]))
        }
    }
}

/// From here on the write is not the client's to cancel: a client that hangs up halfway
/// through flat POSTs would leave half a candidate behind (no compensation runs in a dropped
/// future), and a write that went out is better settled than left `unknown`. So the write and
/// the key's settling run in a task of their own, bounded by the operation's deadline, and the
/// operation only waits for it.
async fn write_detached(
    st: &std::sync::Arc<GatewayState>,
    rq: &RequestCtx,
    plan: validate::Plan,
    held: Option<KeyClaim>,
) -> async_graphql::Result<PayloadValue> {
    let (st, rq) = (st.clone(), rq.clone());
    let write = crate::graphql::tasks::detached(async move { write_and_settle(&st, &rq, plan, held).await });
    match write.await {
        Ok(Some(payload)) => Ok(payload),
        Ok(None) => Err(async_graphql::Error::new(
            "The submission's write did not finish within the operation's deadline.",
        )),
        Err(e) => Err(async_graphql::Error::new(format!(
            "the submission's write task failed: {e}"
        ))),
    }
}

/// Writes a validated submission and settles its key (if any) by the outcome.
async fn write_and_settle(
    st: &GatewayState,
    rq: &RequestCtx,
    plan: validate::Plan,
    mut held: Option<KeyClaim>,
) -> PayloadValue {
    let n = plan.record_count();
    let outcome = match &mut held {
        Some(h) => {
            if let Err(e) = h.prepare(plan.probe.as_ref()).await {
                tracing::warn!(error = %e, "a submission with an idempotency key stopped before its write");
                if let Some(h) = held {
                    h.release().await;
                }
                return failed(vec![SubmissionError::state_unavailable()]);
            }
            recovery::write_protected(st, rq, plan, st.write.strategy).await
        }
        None => match write::write(st, rq, plan, st.write.strategy, RetryPolicy::Never).await {
            Ok(written) => Outcome::Written { written, found: false },
            Err(f) if f.outcome_unknown() => Outcome::Unknown(f.errors),
            Err(f) => Outcome::Failed(f.errors),
        },
    };
    match outcome {
        Outcome::Written { written, found } => {
            if let Some(h) = held {
                h.complete(&written.candidate_id, written.strategy.graphql()).await;
            }
            tracing::info!(candidate.id = %written.candidate_id, strategy = written.strategy.graphql(), records = n, answer_lost = found, "candidate submitted");
            PayloadValue {
                entity: Some(SHAPE.candidate),
                id: Some(written.candidate_id),
                strategy: Some(written.strategy),
                created: n,
                ..Default::default()
            }
        }
        Outcome::Failed(errors) => {
            if let Some(h) = held {
                h.release().await;
            }
            failed(errors)
        }
        Outcome::Unknown(mut errors) => {
            match held {
                Some(h) => {
                    h.mark_unknown().await;
                    errors.push(SubmissionError::key_answer_lost());
                }
                None => errors.push(SubmissionError::answer_lost()),
            }
            failed(errors)
        }
    }
}
