//! Validating a `submitCandidateToHire` input into a [`Plan`]: a candidate, its person (or an
//! existing person's party number) and any number of person details, every problem reported with
//! its input path, and the records it refers to checked in one read (which also fetches the
//! candidates that already look like this one, for `recovery`).
//!
//! Also the submission's vocabulary: its [`Shape`] (which entities, found from the model), the
//! [`Plan`] that `write` writes and the [`SubmissionError`]s a payload reports.

use super::inputs::{self, FieldProblem};
use crate::batch::{BatchRequestItem, BatchResponseItem};
use crate::graphql::context::{GatewayState, RequestCtx};
use crate::graphql::errors::ErrorCode;
use crate::graphql::idempotency::Probe;
use crate::model::{model, Entity, LookupSide, Relation};
use crate::odata::escape::string_literal;
use crate::odata::options::OptionSetLabels;
use crate::odata::{part_page, UpstreamError};
use async_graphql::Value;
use serde_json::{Map, Value as Json};
use std::sync::LazyLock;

/// The entities of a submission, found from the model's structure: the candidate is the entity
/// that mirrors a person (a required lookup whose readable key it may not write); the person's
/// details are its to-many relations whose records are keyed by the person's readable key.
pub struct Shape {
    pub candidate: &'static Entity,
    pub person_relation: &'static Relation,
    pub person: &'static Entity,
    /// (the person's relation, the detail entity, the detail's relation back to the person)
    pub details: Vec<(&'static Relation, &'static Entity, &'static Relation)>,
    /// Candidate properties that are the person's own (names, gender, …): given once, on the person.
    pub shared: Vec<String>,
}

pub static SHAPE: LazyLock<Shape> = LazyLock::new(|| {
    let m = model();
    let (candidate, person_relation) = m
        .entities
        .iter()
        .find_map(|e| {
            e.graphql
                .relations
                .iter()
                .find(|r| {
                    r.lookup_on == LookupSide::This
                        && e.property(&r.lookup_property).is_some_and(|p| p.required)
                        && r.child_readable_key
                            .as_deref()
                            .and_then(|k| e.property(k))
                            .is_some_and(|p| p.read_only)
                })
                .map(|r| (e, r))
        })
        .expect("the model has a candidate that mirrors a person");
    let person = m.by_logical_name(&person_relation.target).expect("person in model");
    let details = person
        .graphql
        .relations
        .iter()
        .filter(|r| r.lookup_on == LookupSide::Target)
        .filter_map(|r| {
            let detail = m.by_logical_name(&r.target)?;
            let back = detail.graphql.relations.iter().find(|b| {
                b.lookup_on == LookupSide::This
                    && b.lookup_property == r.lookup_property
                    && b.target == person.logical_name
            })?;
            (detail.primary_field_parts.first() == back.child_readable_key.as_ref()).then_some((r, detail, back))
        })
        .collect();
    let shared = candidate
        .properties
        .iter()
        .filter(|p| inputs::writable(p) && person.property(&p.name).is_some_and(inputs::writable))
        .map(|p| p.name.clone())
        .collect();
    Shape {
        candidate,
        person_relation,
        person,
        details,
        shared,
    }
});

/// The person's readable key (the party number) as a GraphQL field name.
pub fn party_number_field() -> &'static str {
    let key = SHAPE
        .person_relation
        .parent_readable_key
        .as_deref()
        .expect("person has a readable key");
    &SHAPE
        .person
        .property(key)
        .expect("readable key is a property")
        .graphql_field
}

/// A problem the payload reports.
#[derive(Debug, Clone)]
pub struct SubmissionError {
    pub code: ErrorCode,
    pub message: String,
    pub path: Option<String>,
    /// 1-based number of the failing upstream part (batch) or request (flat).
    pub part: Option<usize>,
}

impl SubmissionError {
    /// Something written before a failure could not be undone: `message` says what may remain.
    pub fn compensation_failed(message: String) -> Self {
        SubmissionError {
            code: ErrorCode::CompensationFailed,
            message,
            path: None,
            part: None,
        }
    }

    /// A problem with the idempotency key.
    fn key(code: ErrorCode, message: impl Into<String>) -> Self {
        SubmissionError {
            code,
            message: message.into(),
            path: Some("idempotencyKey".into()),
            part: None,
        }
    }

    /// The idempotency key is too long.
    pub fn key_too_long() -> Self {
        Self::key(
            ErrorCode::ValidationFailed,
            "idempotencyKey is longer than 200 characters",
        )
    }

    /// A submission with the same key is still running.
    pub fn key_in_progress() -> Self {
        Self::key(
            ErrorCode::IdempotencyKeyInProgress,
            "A submission with this idempotency key is still running; retry shortly.",
        )
    }

    /// The store of idempotency keys (Redis, or the state database) cannot be used now: nothing
    /// was written, rather than risk writing twice.
    pub fn state_unavailable() -> Self {
        Self::key(
            ErrorCode::StateUnavailable,
            "The gateway cannot reach the store of idempotency keys now, so it wrote nothing rather than risk a duplicate. Retry with the same key shortly.",
        )
    }

    /// The key was used with another input.
    pub fn key_reused() -> Self {
        Self::key(
            ErrorCode::IdempotencyKeyReused,
            "This idempotency key was used with a different input; use a new key for a new submission.",
        )
    }

    /// This run's write under a key lost its answer: the retry looks before writing again.
    pub fn key_answer_lost() -> Self {
        Self::key(ErrorCode::IdempotencyOutcomeUnknown, "The upstream's answer was lost: the candidate may have been written. Retry with the same idempotency key: the gateway looks for it before writing again.")
    }

    /// An earlier attempt under the key lost its answer, and looking for its candidate failed
    /// (`why`).
    pub fn key_cannot_tell(why: &str) -> Self {
        Self::key(ErrorCode::IdempotencyOutcomeUnknown, format!("An earlier attempt with this key may have written the candidate, and the gateway cannot tell ({why}). Retry with the same key later, or check for the candidate before using a new key."))
    }

    /// A write without a key lost its answer.
    pub fn answer_lost() -> Self {
        SubmissionError {
            code: ErrorCode::OutcomeUnknown,
            message: "The upstream's answer was lost: the candidate may have been written. Check before submitting again (an idempotency key makes retries safe).".into(),
            path: None,
            part: None,
        }
    }

    fn validation(p: FieldProblem) -> Self {
        SubmissionError {
            code: ErrorCode::ValidationFailed,
            message: format!("{} {}", p.path, p.message),
            path: Some(p.path),
            part: None,
        }
    }

    pub fn upstream(e: &UpstreamError, part: Option<usize>, what: Option<String>) -> Self {
        let code = match e.kind {
            crate::odata::UpstreamErrorKind::BadRequest
            | crate::odata::UpstreamErrorKind::NotFound
            | crate::odata::UpstreamErrorKind::Forbidden => ErrorCode::UpstreamRejected,
            _ => ErrorCode::upstream(&e.kind),
        };
        SubmissionError {
            code,
            message: e.message.clone(),
            path: what,
            part,
        }
    }
}

/// One record to write: its entity, its body, and where it came from in the input.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) entity: &'static Entity,
    pub(super) body: Map<String, Json>,
    pub(super) path: String,
}

/// A validated submission, ready to write.
#[derive(Clone)]
pub struct Plan {
    pub(super) candidate: Planned,
    /// `None` for an internal candidate.
    pub(super) person: Option<Planned>,
    pub(super) party_number: Option<String>,
    pub(super) details: Vec<(usize, Planned)>,
    /// How to find the candidate upstream after a lost response (asked for by `validate`).
    pub probe: Option<Probe>,
}

impl Plan {
    /// Records the submission creates.
    pub fn record_count(&self) -> usize {
        1 + usize::from(self.person.is_some()) + self.details.len()
    }

    /// Values the created candidate will hold, by OData property: its own string properties,
    /// the person's ones it mirrors, and the party number of an existing person.
    pub fn candidate_strings(&self) -> Vec<(String, String)> {
        let candidate = SHAPE.candidate;
        let mut out = std::collections::BTreeMap::new();
        let bodies = self.person.iter().map(|p| &p.body).chain([&self.candidate.body]);
        for body in bodies {
            for (name, value) in body {
                let is_string = candidate
                    .property(name)
                    .is_some_and(|p| p.ty == crate::model::PropType::String);
                if let (true, Some(v)) = (is_string, value.as_str()) {
                    out.insert(name.clone(), v.to_string());
                }
            }
        }
        if let (Some(pn), Some(key)) = (&self.party_number, &SHAPE.person_relation.child_readable_key) {
            out.insert(key.clone(), pn.clone());
        }
        out.into_iter().collect()
    }
}

/// Checks the whole input (every problem, with its path) and the records it refers to. With
/// `probe`, the same read also asks which candidates already look like this one (the baseline of
/// [`Plan::probe`]).
pub async fn validate(
    state: &GatewayState,
    rq: &RequestCtx,
    input: &Value,
    probe: bool,
) -> Result<Plan, Vec<SubmissionError>> {
    let Value::Object(fields) = input else {
        return Err(vec![SubmissionError::validation(FieldProblem {
            path: "input".into(),
            message: "must be an object".into(),
        })]);
    };
    let mut problems = Vec::new();
    let mut plan = plan_input(input, fields, &state.labels(), &mut problems);
    let mut errors: Vec<SubmissionError> = problems.into_iter().map(SubmissionError::validation).collect();
    let checks = reference_checks(&plan);
    let probe_url = if probe && errors.is_empty() {
        super::recovery::probe_url(&plan)
    } else {
        None
    };
    if !checks.is_empty() || probe_url.is_some() {
        read_checks(state, rq, &checks, probe_url, &mut plan, &mut errors).await;
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(plan)
}

/// The fields of an input object.
type Fields = async_graphql::indexmap::IndexMap<async_graphql::Name, Value>;

/// The input as records to write, every problem with its path in `problems`.
fn plan_input(input: &Value, fields: &Fields, labels: &OptionSetLabels, problems: &mut Vec<FieldProblem>) -> Plan {
    let shape = &*SHAPE;
    let candidate_body = inputs::to_body(shape.candidate, input, labels, "", problems);
    let party_number = match fields.get(party_number_field()) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    };
    let person = planned_person(fields, party_number.is_some(), labels, problems);
    let details = planned_details(fields, labels, problems);
    Plan {
        candidate: Planned {
            entity: shape.candidate,
            body: candidate_body,
            path: String::new(),
        },
        person,
        party_number,
        details,
        probe: None,
    }
}

/// The new person, when the input gives one: exactly one of a new person and an existing
/// person's party number must be given.
fn planned_person(
    fields: &Fields,
    has_party_number: bool,
    labels: &OptionSetLabels,
    problems: &mut Vec<FieldProblem>,
) -> Option<Planned> {
    let shape = &*SHAPE;
    let person_value = fields
        .get(shape.person_relation.field.as_str())
        .filter(|v| !matches!(v, Value::Null));
    match (person_value, has_party_number) {
        (Some(_), true) => {
            problems.push(FieldProblem {
                path: party_number_field().into(),
                message: format!(
                    "and `{}` exclude each other: give a new person or an existing party number",
                    shape.person_relation.field
                ),
            });
            None
        }
        (None, false) => {
            problems.push(FieldProblem {
                path: shape.person_relation.field.clone(),
                message: format!(
                    "is missing: give the new person, or `{}` of an existing one",
                    party_number_field()
                ),
            });
            None
        }
        (Some(v), false) => {
            let path = shape.person_relation.field.clone();
            let body = inputs::to_body(shape.person, v, labels, &path, problems);
            Some(Planned {
                entity: shape.person,
                body,
                path,
            })
        }
        (None, true) => None,
    }
}

/// The person's details, numbered in input order.
fn planned_details(
    fields: &Fields,
    labels: &OptionSetLabels,
    problems: &mut Vec<FieldProblem>,
) -> Vec<(usize, Planned)> {
    let mut details = Vec::new();
    for (rel, entity, _) in &SHAPE.details {
        if let Some(Value::List(items)) = fields.get(rel.field.as_str()) {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{}[{i}]", rel.field);
                let body = inputs::to_body(entity, item, labels, &path, problems);
                details.push((details.len(), Planned { entity, body, path }));
            }
        }
    }
    details
}

/// A record the submission refers to, which must exist: the read that finds it, and the problem
/// reported at `path` when it finds nothing.
struct Check {
    url: String,
    path: String,
    message: String,
}

/// One read per reference of the candidate (recruiting request, position, …) and one for the
/// party number of an existing person.
fn reference_checks(plan: &Plan) -> Vec<Check> {
    let shape = &*SHAPE;
    let mut checks: Vec<Check> = shape
        .candidate
        .references
        .iter()
        .filter_map(|r| reference_check(r, &plan.candidate.body))
        .collect();
    if let Some(pn) = &plan.party_number {
        let key = shape.person_relation.parent_readable_key.as_deref().unwrap_or_default();
        checks.push(Check {
            url: exists_url(shape.person, &format!("{key} eq {}", string_literal(pn))),
            path: party_number_field().to_string(),
            message: format!("`{pn}` is not the party number of an existing person"),
        });
    }
    checks
}

/// The check of one reference, when the candidate's body sets all its properties.
fn reference_check(r: &crate::model::Reference, body: &Map<String, Json>) -> Option<Check> {
    let values: Vec<&str> = r
        .properties
        .iter()
        .map(|p| body.get(p).and_then(Json::as_str))
        .collect::<Option<_>>()?;
    let target = model().by_logical_name(&r.entity).expect("reference target in model");
    let filter = r
        .keys
        .iter()
        .zip(&values)
        .map(|(k, v)| format!("{k} eq {}", string_literal(v)))
        .collect::<Vec<_>>()
        .join(" and ");
    let last = r.properties.last().expect("a reference has properties");
    let path = SHAPE
        .candidate
        .property(last)
        .map(|p| p.graphql_field.clone())
        .unwrap_or_default();
    Some(Check {
        url: exists_url(target, &filter),
        path,
        message: format!(
            "refers to a {} that does not exist ({})",
            target.name.to_lowercase(),
            values.join(" / ")
        ),
    })
}

/// A read of at most one id of `entity` matching `filter`.
fn exists_url(entity: &Entity, filter: &str) -> String {
    format!(
        "{}?$select={}&$filter={}&$top=1",
        entity.entity_set,
        entity.primary_key,
        crate::odata::escape::percent_encode_query_value(filter)
    )
}

/// Runs the checks (and the look-alike probe, last) in one `$batch` of reads: a check that finds
/// nothing is a validation error; the probe's answer becomes the plan's baseline.
async fn read_checks(
    state: &GatewayState,
    rq: &RequestCtx,
    checks: &[Check],
    probe_url: Option<String>,
    plan: &mut Plan,
    errors: &mut Vec<SubmissionError>,
) {
    let mut parts: Vec<BatchRequestItem> = checks
        .iter()
        .map(|c| BatchRequestItem::Request(state.upstream.batch_get_part(&c.url, None)))
        .collect();
    if let Some(url) = &probe_url {
        parts.push(BatchRequestItem::Request(state.upstream.batch_get_part(url, None)));
    }
    let mut responses = match state.batch(rq, parts, true, None).await {
        Ok(responses) => responses,
        Err(e) => return errors.push(SubmissionError::upstream(&e, None, None)),
    };
    let probe_response = match probe_url {
        Some(_) if responses.len() > checks.len() => responses.pop(),
        _ => None,
    };
    if let (Some(url), Some(BatchResponseItem::Response(part))) = (probe_url, probe_response) {
        plan.probe = probe_baseline(url, &part);
    }
    for (check, resp) in checks.iter().zip(responses) {
        let BatchResponseItem::Response(part) = resp else {
            continue;
        };
        match part_page(&part) {
            Ok(page) if page.value.is_empty() => errors.push(SubmissionError::validation(FieldProblem {
                path: check.path.clone(),
                message: check.message.clone(),
            })),
            Ok(_) => {}
            Err(e) => errors.push(SubmissionError::upstream(&e, None, Some(check.path.clone()))),
        }
    }
}

/// The look-alike candidates the probe found, as the plan's [`Probe`]; `None` (with a warning)
/// when the probe failed.
fn probe_baseline(url: String, part: &crate::batch::HttpResponsePart) -> Option<Probe> {
    match part_page(part) {
        Ok(page) => Some(Probe {
            url,
            baseline: super::recovery::candidate_ids(&page.value),
        }),
        Err(e) => {
            tracing::warn!(
                error.code = e.code(),
                upstream.status = e.status,
                "could not read which candidates look like this submission; a lost response will not be resolved"
            );
            None
        }
    }
}
