//! Writing a validated submission ([`Plan`]) by each strategy, all or nothing.
//!
//! Strategies (a setting; the payload says which ran):
//! - `batch`: one `$batch` with one change set; the person is `$1`, everything else binds to it.
//! - `deep-insert`: one POST of the candidate with the person and its details nested, as the ATS
//!   documentation's example does (external candidates only; internal ones use `batch`).
//! - `flat`: the documented separate POSTs in order; on a failure the records already created are
//!   deleted again, newest first, so nothing half-written remains.
//!
//! Under an idempotency key, `batch` and `deep-insert` writes (atomic: the candidate exists if
//! and only if everything was written) are retried when the upstream certainly did nothing, and
//! a lost response is resolved by looking for the candidate (see `recovery`). `flat` is not
//! atomic and is never retried. A refused atomic write is checked for what the upstream kept
//! anyway, which is deleted again (`compensate_landed`).

use super::validate::{Plan, Planned, SubmissionError, SHAPE};
use crate::batch::{BatchRequestItem, BatchResponseItem};
use crate::graphql::context::{GatewayState, RequestCtx};
use crate::graphql::errors::ErrorCode;
use crate::model::{Entity, Relation};
use crate::odata::{part_write, Method, RetryPolicy, UpstreamError};
use serde_json::{Map, Value as Json};

/// How a submission is written upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    Batch,
    DeepInsert,
    Flat,
}

impl Strategy {
    /// The GraphQL enum value.
    pub fn graphql(self) -> &'static str {
        match self {
            Strategy::Batch => "BATCH",
            Strategy::DeepInsert => "DEEP_INSERT",
            Strategy::Flat => "FLAT",
        }
    }

    /// Whether a submission is written all or nothing (so the candidate's existence says
    /// whether it was written).
    pub fn is_atomic(self) -> bool {
        self != Strategy::Flat
    }
}

/// What a successful write produced.
pub struct Written {
    pub candidate_id: String,
    pub strategy: Strategy,
}

/// Why a write failed: the problems to report, and the upstream error of the write itself
/// (`None` when the upstream refused part of it, which wrote nothing, or for `flat`).
pub struct WriteFailure {
    pub errors: Vec<SubmissionError>,
    pub upstream: Option<UpstreamError>,
}

impl WriteFailure {
    fn upstream(e: UpstreamError, part: Option<usize>) -> Self {
        WriteFailure {
            errors: vec![SubmissionError::upstream(&e, part, None)],
            upstream: Some(e),
        }
    }

    /// A success whose answer cannot be read: the write happened, its result is lost.
    fn unreadable(message: &str) -> Self {
        let e = UpstreamError::new(crate::odata::UpstreamErrorKind::InvalidResponse, Some(200), message);
        WriteFailure {
            errors: vec![SubmissionError {
                code: ErrorCode::UpstreamInvalidResponse,
                message: message.to_string(),
                path: None,
                part: None,
            }],
            upstream: Some(e),
        }
    }

    /// Whether the upstream may have written the submission although it failed.
    pub fn outcome_unknown(&self) -> bool {
        self.upstream.as_ref().is_some_and(UpstreamError::outcome_unknown)
    }
}

/// `<navigation>@odata.bind` to a record reference (`$1`, or `set(id)`).
fn bind(rel: &Relation, reference: &str) -> (String, Json) {
    (
        format!("{}@odata.bind", rel.navigation_property),
        Json::String(reference.to_string()),
    )
}

/// The strategy a plan is written with: internal candidates cannot be deep-inserted.
pub fn effective_strategy(plan: &Plan, strategy: Strategy) -> Strategy {
    if strategy == Strategy::DeepInsert && plan.person.is_none() {
        Strategy::Batch
    } else {
        strategy
    }
}

/// Deep insert goes through navigation properties (candidate → person → details): when the
/// upstream's `$metadata` lacks one this plan needs, the submission is written as a `$batch`
/// change set instead (logged once per gateway).
fn upstream_strategy(state: &GatewayState, plan: &Plan, strategy: Strategy) -> Strategy {
    if strategy != Strategy::DeepInsert {
        return strategy;
    }
    let naming = state.upstream.naming();
    let shape = &*SHAPE;
    let needed = shape
        .details
        .iter()
        .filter(|(_, e, _)| {
            plan.details
                .iter()
                .any(|(_, d)| d.entity.logical_name == e.logical_name)
        })
        .map(|(r, _, _)| (shape.person, *r));
    let missing = std::iter::once((shape.candidate, shape.person_relation))
        .chain(needed)
        .find(|(e, r)| !naming.has_navigation(e, &r.navigation_property));
    let Some((entity, relation)) = missing else {
        return strategy;
    };
    if !state
        .deep_insert_fallback_logged
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            entity = %entity.logical_name,
            navigation = %relation.navigation_property,
            "deep insert: the upstream's $metadata lacks a navigation property it needs; such submissions are written as a $batch change set"
        );
    }
    Strategy::Batch
}

/// Writes a validated plan with `strategy`; `policy` says which failures of an atomic write
/// may be sent again (`flat` never retries).
pub async fn write(
    state: &GatewayState,
    rq: &RequestCtx,
    plan: Plan,
    strategy: Strategy,
    policy: RetryPolicy,
) -> Result<Written, WriteFailure> {
    match upstream_strategy(state, &plan, effective_strategy(&plan, strategy)) {
        Strategy::Batch => write_batch(state, rq, plan, policy).await,
        Strategy::DeepInsert => write_deep(state, rq, plan, policy).await,
        Strategy::Flat => write_flat(state, rq, plan)
            .await
            .map_err(|errors| WriteFailure { errors, upstream: None }),
    }
}

/// The body of a detail or candidate linked to the person: by `$1` in a change set, or by the
/// party number of an existing person.
/// The relation from a detail entity back to its person.
fn back_relation(detail: &Entity) -> &'static Relation {
    SHAPE
        .details
        .iter()
        .find(|(_, e, _)| e.logical_name == detail.logical_name)
        .map(|(_, _, b)| *b)
        .expect("detail of the shape")
}

fn linked(mut body: Map<String, Json>, back: &Relation, person_ref: &PersonRef) -> Map<String, Json> {
    match person_ref {
        PersonRef::ContentId(r) => {
            let (k, v) = bind(back, r);
            body.insert(k, v);
        }
        PersonRef::PartyNumber(pn) => {
            if let Some(k) = &back.child_readable_key {
                body.insert(k.clone(), Json::String(pn.clone()));
            }
        }
    }
    body
}

enum PersonRef {
    ContentId(String),
    PartyNumber(String),
}

/// The batch strategy: one `$batch` with one change set (the person is `$1`, everything else
/// binds to it); a refused change set is checked for what the upstream kept anyway.
async fn write_batch(
    state: &GatewayState,
    rq: &RequestCtx,
    plan: Plan,
    policy: RetryPolicy,
) -> Result<Written, WriteFailure> {
    let landing = Landing::of(&plan);
    let change_set = change_set(state, &plan);
    let responses = state
        .batch(
            rq,
            vec![BatchRequestItem::ChangeSet(change_set.parts)],
            false,
            Some(policy),
        )
        .await
        .map_err(|e| WriteFailure::upstream(e, None))?;
    match responses.into_iter().next() {
        Some(BatchResponseItem::ChangeSet(done)) => change_set_written(&done, &change_set.candidate_cid),
        Some(BatchResponseItem::Response(failed)) => {
            let n = failed.content_id.as_deref().and_then(|c| c.parse::<usize>().ok());
            let what = n.and_then(|n| change_set.paths.get(n - 1).cloned());
            let e = crate::odata::part_result(&failed).err().unwrap_or_else(|| {
                UpstreamError::new(
                    crate::odata::UpstreamErrorKind::Other,
                    Some(failed.status),
                    "The change set failed.",
                )
            });
            // Dataverse documents a failed change set as writing nothing; an F&O virtual table
            // may not roll back (see `compensate_landed`).
            let mut errors = vec![SubmissionError::upstream(&e, n, what)];
            compensate_landed(state, rq, &landing, &mut errors).await;
            Err(WriteFailure { errors, upstream: None })
        }
        None => Err(WriteFailure::unreadable("The $batch response was empty.")),
    }
}

/// A submission's change set: its parts, the input path of each, and the candidate's content id.
struct ChangeSet {
    parts: Vec<crate::batch::HttpRequestPart>,
    paths: Vec<String>,
    candidate_cid: String,
}

/// The change set's POSTs: the new person (`$1`) if any, the candidate, then the details, each
/// linked to the person.
fn change_set(state: &GatewayState, plan: &Plan) -> ChangeSet {
    let shape = &*SHAPE;
    let up = &state.upstream;
    let mut parts = Vec::new();
    let mut paths = Vec::new();
    let mut post = |entity: &Entity, body: Map<String, Json>, path: String| {
        let cid = (parts.len() + 1).to_string();
        parts.push(up.batch_write_part(
            &Method::POST,
            &entity.entity_set,
            &Json::Object(body),
            Some(cid.clone()),
        ));
        paths.push(path);
        cid
    };
    let person_ref = match (&plan.person, &plan.party_number) {
        (Some(p), _) => PersonRef::ContentId(format!("${}", post(p.entity, p.body.clone(), p.path.clone()))),
        (None, Some(pn)) => PersonRef::PartyNumber(pn.clone()),
        (None, None) => unreachable!("validated"),
    };
    let candidate_body = linked(plan.candidate.body.clone(), shape.person_relation, &person_ref);
    let candidate_cid = post(shape.candidate, candidate_body, "candidate".into());
    for (_, d) in &plan.details {
        let body = linked(d.body.clone(), back_relation(d.entity), &person_ref);
        post(d.entity, body, d.path.clone());
    }
    ChangeSet {
        parts,
        paths,
        candidate_cid,
    }
}

/// The candidate's id from a change set that succeeded: a part that cannot be read hides a
/// written candidate.
fn change_set_written(done: &[crate::batch::HttpResponsePart], candidate_cid: &str) -> Result<Written, WriteFailure> {
    let part = done
        .iter()
        .find(|p| p.content_id.as_deref() == Some(candidate_cid))
        .ok_or_else(|| WriteFailure::unreadable("The change set's response has no part for the candidate."))?;
    let w = part_write(part, &SHAPE.candidate.entity_set).map_err(|e| {
        let e = UpstreamError::new(e.kind, Some(200), e.message);
        WriteFailure::upstream(e, None)
    })?;
    let id = w
        .entity_id
        .ok_or_else(|| WriteFailure::unreadable("The upstream did not say which candidate it created."))?;
    Ok(Written {
        candidate_id: id,
        strategy: Strategy::Batch,
    })
}

async fn write_deep(
    state: &GatewayState,
    rq: &RequestCtx,
    plan: Plan,
    policy: RetryPolicy,
) -> Result<Written, WriteFailure> {
    let shape = &*SHAPE;
    let landing = Landing::of(&plan);
    let person = plan.person.expect("deep insert has a new person");
    let mut person_body = person.body;
    for (rel, entity, _) in &shape.details {
        let items: Vec<Json> = plan
            .details
            .iter()
            .filter(|(_, d)| d.entity.logical_name == entity.logical_name)
            .map(|(_, d)| Json::Object(d.body.clone()))
            .collect();
        if !items.is_empty() {
            person_body.insert(rel.navigation_property.clone(), Json::Array(items));
        }
    }
    let mut body = plan.candidate.body;
    body.insert(
        shape.person_relation.navigation_property.clone(),
        Json::Object(person_body),
    );
    let w = match state
        .send_write_with(
            rq,
            Method::POST,
            &shape.candidate.entity_set,
            &Json::Object(body),
            false,
            policy,
        )
        .await
    {
        Ok(w) => w,
        // Refused (an answered 4xx, not a lost answer): it should have written nothing.
        Err(e) if !e.outcome_unknown() && e.status.is_some_and(|s| (400..500).contains(&s)) => {
            let mut errors = vec![SubmissionError::upstream(&e, Some(1), None)];
            compensate_landed(state, rq, &landing, &mut errors).await;
            return Err(WriteFailure { errors, upstream: None });
        }
        Err(e) => return Err(WriteFailure::upstream(e, Some(1))),
    };
    let id = w
        .entity_id
        .ok_or_else(|| WriteFailure::unreadable("The upstream did not say which candidate it created."))?;
    Ok(Written {
        candidate_id: id,
        strategy: Strategy::DeepInsert,
    })
}

/// A record the flat strategy created, for the compensating deletes.
struct Created {
    entity: &'static Entity,
    /// `None` when the upstream did not say which record it created.
    id: Option<String>,
    /// The record's property holding the new person's party number: how a record whose id was
    /// not given is found again.
    person_key: Option<String>,
}

/// The `DELETE` URL of a created record; none without a GUID, so that a compensation never
/// sends `DELETE set()` (which names no record).
fn delete_url(entity: &Entity, id: &str) -> Option<String> {
    crate::odata::escape::guid(id)
        .ok()
        .map(|g| format!("{}({g})", entity.entity_set))
}

/// A create's answer that does not say which record it created.
fn no_id(entity: &Entity, status: u16) -> UpstreamError {
    UpstreamError::new(
        crate::odata::UpstreamErrorKind::InvalidResponse,
        Some(status),
        format!(
            "The upstream did not say which {} it created.",
            entity.name.to_lowercase()
        ),
    )
}

/// The flat strategy: the person (unless it exists), the candidate, then each detail, one POST
/// each; on a failure, what was created is deleted again ([`compensate`]).
async fn write_flat(state: &GatewayState, rq: &RequestCtx, plan: Plan) -> Result<Written, Vec<SubmissionError>> {
    let mut run = FlatRun {
        state,
        rq,
        created: Vec::new(),
        new_person: None,
        step: 0,
    };
    match run.write(&plan).await {
        Ok(candidate_id) => Ok(Written {
            candidate_id,
            strategy: Strategy::Flat,
        }),
        Err((e, n, what)) => {
            let mut errors = vec![SubmissionError::upstream(&e, Some(n), Some(what))];
            compensate(state, rq, &run.created, run.new_person.as_deref(), &mut errors).await;
            Err(errors)
        }
    }
}

/// A failed flat POST: the error, its 1-based request number and the input path it wrote.
type FlatFailure = (UpstreamError, usize, String);

/// A flat write under way: what it created so far (for compensation).
struct FlatRun<'a> {
    state: &'a GatewayState,
    rq: &'a RequestCtx,
    created: Vec<Created>,
    /// The party number of the person this submission created: every record linked to it is
    /// the submission's own.
    new_person: Option<String>,
    /// The number of the current request.
    step: usize,
}

impl FlatRun<'_> {
    /// The POSTs in order; the candidate's id.
    async fn write(&mut self, plan: &Plan) -> Result<String, FlatFailure> {
        let party_number = match (&plan.person, &plan.party_number) {
            (Some(p), _) => self.post_person(p).await?,
            (None, Some(pn)) => pn.clone(),
            (None, None) => unreachable!("validated"),
        };
        let person_ref = PersonRef::PartyNumber(party_number);
        let shape = &*SHAPE;
        let body = linked(plan.candidate.body.clone(), shape.person_relation, &person_ref);
        let child_key = shape.person_relation.child_readable_key.clone();
        let w = self.post(shape.candidate, body, "candidate", false, child_key).await?;
        let candidate_id = w
            .entity_id
            .ok_or_else(|| (no_id(shape.candidate, w.status), self.step, "candidate".to_string()))?;
        for (_, d) in &plan.details {
            let back = back_relation(d.entity);
            let body = linked(d.body.clone(), back, &person_ref);
            let w = self
                .post(d.entity, body, &d.path, false, back.child_readable_key.clone())
                .await?;
            if w.entity_id.is_none() {
                return Err((no_id(d.entity, w.status), self.step, d.path.clone()));
            }
        }
        Ok(candidate_id)
    }

    /// Creates the new person; its party number, which links everything else to it.
    async fn post_person(&mut self, p: &Planned) -> Result<String, FlatFailure> {
        let shape = &*SHAPE;
        let key = shape.person_relation.parent_readable_key.as_deref().unwrap_or_default();
        let w = self
            .post(shape.person, p.body.clone(), &p.path, true, Some(key.to_string()))
            .await?;
        let party_number = w.body.as_ref().and_then(|b| b.get(key)).and_then(Json::as_str);
        self.new_person = party_number.map(str::to_owned);
        if w.entity_id.is_none() {
            return Err((no_id(shape.person, w.status), self.step, p.path.clone()));
        }
        party_number.map(str::to_owned).ok_or_else(|| {
            let e = UpstreamError::new(
                crate::odata::UpstreamErrorKind::InvalidResponse,
                None,
                "The created person came back without its party number.",
            );
            (e, self.step, p.path.clone())
        })
    }

    /// One POST, as the next request; what it created is remembered (also without an id).
    async fn post(
        &mut self,
        entity: &'static Entity,
        body: Map<String, Json>,
        path: &str,
        representation: bool,
        person_key: Option<String>,
    ) -> Result<crate::odata::WriteResult, FlatFailure> {
        self.step += 1;
        let w = self
            .state
            .send_write(
                self.rq,
                Method::POST,
                &entity.entity_set,
                &Json::Object(body),
                representation,
            )
            .await
            .map_err(|e| (e, self.step, path.to_string()))?;
        self.created.push(Created {
            entity,
            id: w.entity_id.clone(),
            person_key,
        });
        Ok(w)
    }
}

/// Deletes what a failed flat write created, newest first (details before the candidate before
/// the person, which is the order the upstream accepts deletes in). A record whose id the
/// upstream did not give is looked up by the new person's party number; without a new person it
/// cannot be told from the person's older records, and is reported as left behind.
async fn compensate(
    state: &GatewayState,
    rq: &RequestCtx,
    created: &[Created],
    new_person: Option<&str>,
    errors: &mut Vec<SubmissionError>,
) {
    let known: Vec<String> = created.iter().filter_map(|c| c.id.clone()).collect();
    for c in created.iter().rev() {
        let what = c.entity.name.to_lowercase();
        let ids = match &c.id {
            Some(id) => vec![id.clone()],
            None => match find_created(state, rq, c, new_person, &known).await {
                Ok(ids) => ids,
                Err(why) => {
                    tracing::error!(entity = %c.entity.entity_set, reason = why, "compensation impossible: a partial submission remains");
                    errors.push(SubmissionError::compensation_failed(format!(
                        "Could not delete the {what} created before the failure: {why}."
                    )));
                    continue;
                }
            },
        };
        for id in ids {
            let Some(url) = delete_url(c.entity, &id) else {
                tracing::error!(entity = %c.entity.entity_set, record.id = %id, "compensation impossible: the record's id is not a GUID");
                errors.push(SubmissionError::compensation_failed(format!(
                    "Could not delete the {what} {id:?} created before the failure: not a GUID."
                )));
                continue;
            };
            if let Err(d) = state.send_write(rq, Method::DELETE, &url, &Json::Null, false).await {
                tracing::error!(entity = %c.entity.entity_set, record.id = %id, error.code = d.code(), upstream.status = d.status, "compensating delete failed: a partial submission remains");
                errors.push(SubmissionError::compensation_failed(format!(
                    "Could not delete the {what} {id} created before the failure: {}",
                    d.message
                )));
            }
        }
    }
}

/// What finds the records of a refused atomic write that the upstream kept anyway.
struct Landing {
    probe: Option<crate::graphql::idempotency::Probe>,
    new_person: bool,
    /// The detail entities of the submission, each once.
    details: Vec<&'static Entity>,
    /// Records the whole submission writes.
    records: usize,
}

impl Landing {
    fn of(plan: &Plan) -> Self {
        let mut details: Vec<&'static Entity> = Vec::new();
        for (_, d) in &plan.details {
            if !details.iter().any(|e| e.logical_name == d.entity.logical_name) {
                details.push(d.entity);
            }
        }
        Landing {
            probe: plan.probe.clone(),
            new_person: plan.person.is_some(),
            details,
            records: plan.record_count(),
        }
    }
}

/// After a refused change set or deep insert: looks for what of the submission the upstream kept,
/// and deletes it as [`compensate`] does for `flat`.
///
/// Dataverse documents a change set (and a deep insert) as one transaction, but nothing documents
/// that F&O virtual tables roll one back, and a transaction spanning a virtual and a native table
/// is documented as unsupported. So a refusal is not proof that nothing was written. The check
/// is one read (the recovery look-up of the submission's candidate, [`super::recovery::look`]);
/// against an upstream that did roll back it finds nothing, and that one read is the price of not
/// leaving half a candidate behind unnoticed. Records are found by the candidate (the look-alike
/// probe), then by the party number it links to: the new person and its details (every record
/// linked to a new person is the submission's own). Parts before the candidate (the new person
/// alone, when the candidate's part failed) and details of an existing person cannot be told
/// from other records; the latter are reported as possibly left behind. As with a lost answer,
/// the look-up can be fooled only by an identical candidate created elsewhere since the
/// validation read (and not claimed by another idempotency key).
async fn compensate_landed(
    state: &GatewayState,
    rq: &RequestCtx,
    landing: &Landing,
    errors: &mut Vec<SubmissionError>,
) {
    let candidate_id = match super::recovery::look(state, rq, landing.probe.as_ref()).await {
        super::recovery::Found::NotWritten => return,
        super::recovery::Found::Written(id) => id,
        super::recovery::Found::CannotTell(why) => {
            tracing::warn!(reason = %why, "a refused change set: cannot tell whether the upstream kept part of it");
            errors.push(SubmissionError::compensation_failed(format!("The upstream refused the write; whether it kept part of it (it documents no rollback) could not be checked: {why}.")));
            return;
        }
    };
    tracing::warn!(candidate.id = %candidate_id, "the upstream refused a change set but kept part of it; compensating");
    let Some(kept) = kept_records(state, rq, landing, &candidate_id, errors).await else {
        return;
    };
    let failures_before = errors.len();
    compensate(state, rq, &kept.created, kept.new_person.as_deref(), errors).await;
    if errors.len() == failures_before {
        errors.push(compensated(&kept.created));
    }
}

/// What of a refused atomic write the upstream kept, in the order [`compensate`] takes.
struct Kept {
    created: Vec<Created>,
    /// The party number of the new person it kept.
    new_person: Option<String>,
}

/// The records kept with the candidate `candidate_id`: the new person (by the party number the
/// candidate links to), the candidate, and the details linked to the new person. `None` when
/// they make up the whole submission: that is another, identical submission that succeeded,
/// not this write's remains.
async fn kept_records(
    state: &GatewayState,
    rq: &RequestCtx,
    landing: &Landing,
    candidate_id: &str,
    errors: &mut Vec<SubmissionError>,
) -> Option<Kept> {
    let shape = &*SHAPE;
    let mut created: Vec<Created> = Vec::new();
    let mut new_person: Option<String> = None;
    if landing.new_person {
        match candidate_party_number(state, rq, candidate_id).await {
            Some(pn) => {
                let person = Created {
                    entity: shape.person,
                    id: None,
                    person_key: shape.person_relation.parent_readable_key.clone(),
                };
                created.extend(resolve(state, rq, &person, Some(&pn), errors).await);
                new_person = Some(pn);
            }
            None => errors.push(SubmissionError::compensation_failed(format!("The upstream kept the candidate {candidate_id} of the refused write; its person and details could not be found and may remain."))),
        }
    }
    created.push(Created {
        entity: shape.candidate,
        id: Some(candidate_id.to_string()),
        person_key: shape.person_relation.child_readable_key.clone(),
    });
    if new_person.is_some() {
        for d in &landing.details {
            let c = Created {
                entity: d,
                id: None,
                person_key: back_relation(d).child_readable_key.clone(),
            };
            created.extend(resolve(state, rq, &c, new_person.as_deref(), errors).await);
        }
        // A refused write that was kept is kept in part (the parts before the failing one). A
        // look-alike with every record of the submission is not this write's remains: it is an
        // identical submission that succeeded meanwhile, and deleting it would lose its data.
        if created.len() >= landing.records {
            tracing::warn!(candidate.id = %candidate_id, records = created.len(), "a refused change set: the look-alike found is complete, so it is another submission's; nothing deleted");
            return None;
        }
    } else if !landing.details.is_empty() && !landing.new_person {
        let sets: Vec<&str> = landing.details.iter().map(|d| d.entity_set.as_str()).collect();
        errors.push(SubmissionError::compensation_failed(format!("The upstream kept part of the refused write; details of the existing person written before the failing part cannot be told from the person's older ones and may remain in {}.", sets.join(", "))));
    }
    Some(Kept { created, new_person })
}

/// The report of a compensation that deleted everything the upstream kept.
fn compensated(created: &[Created]) -> SubmissionError {
    let mut by_set: Vec<(&str, usize)> = Vec::new();
    for c in created {
        match by_set.iter_mut().find(|(s, _)| *s == c.entity.entity_set) {
            Some((_, n)) => *n += 1,
            None => by_set.push((&c.entity.entity_set, 1)),
        }
    }
    let list: Vec<String> = by_set.iter().map(|(s, n)| format!("{n} {s}")).collect();
    SubmissionError {
        code: ErrorCode::Compensated,
        message: format!(
            "The upstream did not roll back the refused write: it kept {} records, which the gateway deleted ({}).",
            created.len(),
            list.join(", ")
        ),
        path: None,
        part: None,
    }
}

/// The records of `c`'s set linked to the new person, each as a [`Created`] with its id.
async fn resolve(
    state: &GatewayState,
    rq: &RequestCtx,
    c: &Created,
    new_person: Option<&str>,
    errors: &mut Vec<SubmissionError>,
) -> Vec<Created> {
    match find_created(state, rq, c, new_person, &[]).await {
        Ok(ids) => ids
            .into_iter()
            .map(|id| Created {
                entity: c.entity,
                id: Some(id),
                person_key: c.person_key.clone(),
            })
            .collect(),
        Err(why) => {
            errors.push(SubmissionError::compensation_failed(format!(
                "Records of {} the upstream kept may remain: {why}.",
                c.entity.entity_set
            )));
            Vec::new()
        }
    }
}

/// The party number a candidate links to.
async fn candidate_party_number(state: &GatewayState, rq: &RequestCtx, candidate_id: &str) -> Option<String> {
    let shape = &*SHAPE;
    let key = shape.person_relation.child_readable_key.clone()?;
    let guid = crate::odata::escape::guid(candidate_id).ok()?;
    let mut query = crate::odata::ODataQuery::new(shape.candidate);
    query.select = vec![shape.candidate.primary_key.clone(), key.clone()];
    query.filter = Some(format!("{} eq {guid}", shape.candidate.primary_key));
    let page = state.get_page_fresh(rq, &query.to_relative_url(), None).await.ok()?;
    page.value
        .first()
        .and_then(|r| r.get(&key))
        .and_then(Json::as_str)
        .map(str::to_owned)
}

/// The ids of the records of `c`'s set linked to the new person, other than those `known`.
async fn find_created(
    state: &GatewayState,
    rq: &RequestCtx,
    c: &Created,
    new_person: Option<&str>,
    known: &[String],
) -> Result<Vec<String>, &'static str> {
    let (Some(party_number), Some(key)) = (new_person, &c.person_key) else {
        return Err("the upstream did not say which record it created");
    };
    let mut query = crate::odata::ODataQuery::new(c.entity);
    query.select = vec![c.entity.primary_key.clone()];
    query.filter = Some(format!(
        "{key} eq {}",
        crate::odata::escape::string_literal(party_number)
    ));
    let page = state
        .get_page_fresh(rq, &query.to_relative_url(), None)
        .await
        .map_err(|_| "the upstream did not say which record it created, and looking for it failed")?;
    Ok(page
        .value
        .iter()
        .filter_map(|r| r.get(&c.entity.primary_key).and_then(Json::as_str))
        .filter(|id| !known.iter().any(|k| k.eq_ignore_ascii_case(id)))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compensation_never_deletes_without_a_key() {
        let candidate = SHAPE.candidate;
        for id in ["", " ", "()", "not-a-guid", "1"] {
            assert_eq!(delete_url(candidate, id), None, "{id:?}");
        }
        let id = "5F2B7E31-0000-4000-8000-00000000ABCD";
        assert_eq!(
            delete_url(candidate, id),
            Some(format!(
                "{}(5f2b7e31-0000-4000-8000-00000000abcd)",
                candidate.entity_set
            ))
        );
    }
}
