//! The writes: `submitCandidateToHire` (one atomic call for a hired candidate with everything
//! under it, idempotent by key) and `create<Type>` / `update<Type>` / `delete<Type>` for every
//! entity with writable properties.
//!
//! - `inputs`: input types derived from the model, conversion to OData bodies, field rules.
//! - `validate`: validation of a submission, into a plan (and the submission's shape, plan and
//!   errors); `write`: the three strategies that write a plan.
//! - `idempotent_run`: one run of a submission: the idempotency key's life around validate and
//!   write.
//! - `recovery`: a submission under an idempotency key whose upstream answer was lost: looking
//!   for the candidate before writing again.
//!
//! Problems come back in the payload's `errors` with a stable `code` (`VALIDATION_FAILED` with the
//! input path, `UPSTREAM_REJECTED` with the upstream's message and the failing part, …: every
//! code is a [`crate::graphql::errors::ErrorCode`]); GraphQL errors are left for what the schema
//! itself refuses.

mod idempotent_run;
pub mod inputs;
pub mod recovery;
pub mod validate;
pub mod write;

use super::context::{GatewayState, RequestCtx};
use super::errors::ErrorCode;
use super::resolve::{select_for, Row};
use crate::model::{model, Entity};
use crate::odata::{Method, ODataQuery, UpstreamErrorKind};
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, SchemaBuilder,
    TypeRef,
};
use async_graphql::Value;
use serde_json::{Map, Value as Json};
use std::sync::Arc;
use validate::{SubmissionError, SHAPE};
use write::Strategy;

const ERROR_TYPE: &str = "MutationError";
const STRATEGY_ENUM: &str = "SubmissionStrategy";
const SUBMISSION_INPUT: &str = "CandidateToHireSubmissionInput";
const SUBMISSION_PAYLOAD: &str = "CandidateToHireSubmissionPayload";
const DELETE_PAYLOAD: &str = "DeletePayload";

fn payload_name(e: &Entity) -> String {
    format!("{}MutationPayload", e.graphql.type_name)
}

fn detail_input_name(e: &Entity) -> String {
    format!("{}DetailInput", e.graphql.type_name)
}

/// The resolved value of every write payload.
#[derive(Default)]
struct PayloadValue {
    entity: Option<&'static Entity>,
    id: Option<String>,
    record: Option<crate::odata::Record>,
    errors: Vec<SubmissionError>,
    strategy: Option<Strategy>,
    replayed: bool,
    created: usize,
    deleted: bool,
}

/// Registers the write types and returns the `Mutation` root.
pub fn register(mut builder: SchemaBuilder) -> (SchemaBuilder, Object) {
    let mut mutation = Object::new("Mutation")
        .description("Writes to the ATS data. Each reports its problems in `errors`; nothing is half-written.");
    builder = builder
        .register(error_type())
        .register(
            Enum::new(STRATEGY_ENUM)
                .description("How a submission was written upstream.")
                .item(EnumItem::new("BATCH").description("One $batch with one change set: all or nothing."))
                .item(
                    EnumItem::new("DEEP_INSERT")
                        .description("One POST with the person and its details nested (the documented deep insert)."),
                )
                .item(
                    EnumItem::new("FLAT")
                        .description("The documented separate POSTs, with compensating deletes on failure."),
                ),
        )
        .register(delete_payload());
    for e in model().entities.iter().filter(|e| inputs::has_writable(e)) {
        builder = builder
            .register(inputs::create_input(e, &inputs::create_input_name(e), &[]))
            .register(inputs::update_input(e))
            .register(entity_payload(e));
        mutation = mutation
            .field(create_field(e))
            .field(update_field(e))
            .field(delete_field(e));
    }
    for (_, detail, back) in &SHAPE.details {
        let except: Vec<String> = back.child_readable_key.iter().cloned().collect();
        builder = builder.register(
            inputs::create_input(detail, &detail_input_name(detail), &except).description(format!(
                "A {} of the submitted person (linked to the person by the submission).",
                detail.name.to_lowercase()
            )),
        );
    }
    builder = builder.register(submission_input()).register(submission_payload());
    mutation = mutation.field(submit_field());
    (builder, mutation)
}

fn error_type() -> Object {
    let f = |name: &str, ty: TypeRef, desc: &str| {
        let key = name.to_string();
        Field::new(name, ty, move |ctx| {
            let key = key.clone();
            FieldFuture::new(async move {
                let e = ctx.parent_value.try_downcast_ref::<SubmissionError>()?;
                Ok(match key.as_str() {
                    "code" => Some(FieldValue::value(e.code.as_str())),
                    "message" => Some(FieldValue::value(e.message.clone())),
                    "path" => e.path.clone().map(FieldValue::value),
                    _ => e.part.map(|p| FieldValue::value(p as i64)),
                })
            })
        })
        .description(desc)
    };
    Object::new(ERROR_TYPE)
        .description("A problem with a write.")
        .field(f("code", TypeRef::named_nn(TypeRef::STRING), "VALIDATION_FAILED, UPSTREAM_REJECTED, UPSTREAM_THROTTLED, UPSTREAM_UNAVAILABLE, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_PROGRESS, COMPENSATION_FAILED, …"))
        .field(f("message", TypeRef::named_nn(TypeRef::STRING), "What is wrong (the upstream's own message for upstream failures)."))
        .field(f("path", TypeRef::named(TypeRef::STRING), "Where in the input, such as `educations[2].startDate`."))
        .field(f("part", TypeRef::named(TypeRef::INT), "The failing upstream part (1-based) of a batch, or request of a flat write."))
}

fn payload_fields(o: Object) -> Object {
    o.field(
        Field::new("errors", TypeRef::named_nn_list_nn(ERROR_TYPE), |ctx| {
            FieldFuture::new(async move {
                let p = ctx.parent_value.try_downcast_ref::<PayloadValue>()?;
                Ok(Some(FieldValue::list(
                    p.errors.iter().cloned().map(FieldValue::owned_any),
                )))
            })
        })
        .description("Problems; empty when the write happened."),
    )
}

fn record_field(name: &str, ty: &str) -> Field {
    Field::new(name, TypeRef::named(ty), |ctx| {
        FieldFuture::new(async move {
            let p = ctx.parent_value.try_downcast_ref::<PayloadValue>()?;
            let Some(entity) = p.entity else { return Ok(None) };
            if let Some(r) = &p.record {
                return Ok(Some(FieldValue::owned_any(Row {
                    entity,
                    record: r.clone(),
                })));
            }
            let Some(id) = &p.id else { return Ok(None) };
            fetch_one(&ctx, entity, id).await
        })
    })
}

/// Reads one record for a payload, with the selection's relations prefetched.
async fn fetch_one<'a>(
    ctx: &ResolverContext<'a>,
    entity: &'static Entity,
    id: &str,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let st = ctx.data::<Arc<GatewayState>>()?;
    let rq = ctx.data::<RequestCtx>()?;
    let mut q = ODataQuery::by_key(entity, id).map_err(|e| async_graphql::Error::new(e.to_string()))?;
    q.select = select_for(entity, ctx.field().selection_set());
    match st.fetch_page(entity, &q.to_relative_url(), rq, None).await {
        Ok(page) => {
            let Some(record) = page.value.into_iter().next() else {
                return Ok(None);
            };
            if let Some(loaders) = super::prefetch::Loaders::from_context(ctx) {
                super::prefetch::prefetch(
                    loaders,
                    entity,
                    ctx.field().selection_set().collect(),
                    vec![record.clone()],
                )
                .await;
            }
            Ok(Some(FieldValue::owned_any(Row { entity, record })))
        }
        Err(e) if e.kind == UpstreamErrorKind::NotFound => Ok(None),
        Err(e) => Err(super::errors::upstream_error(&e)),
    }
}

fn entity_payload(e: &Entity) -> Object {
    payload_fields(
        Object::new(payload_name(e)).description(format!("The result of a write to a {}.", e.name.to_lowercase())),
    )
    .field(
        record_field("record", &e.graphql.type_name)
            .description("The record as it is now; null when the write failed."),
    )
}

fn delete_payload() -> Object {
    payload_fields(Object::new(DELETE_PAYLOAD).description("The result of a delete."))
        .field(Field::new("id", TypeRef::named_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move {
                let p = ctx.parent_value.try_downcast_ref::<PayloadValue>()?;
                Ok(Some(FieldValue::value(p.id.clone().unwrap_or_default())))
            })
        }))
        .field(Field::new("deleted", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
            FieldFuture::new(async move {
                let p = ctx.parent_value.try_downcast_ref::<PayloadValue>()?;
                Ok(Some(FieldValue::value(p.deleted)))
            })
        }))
}

fn payload(p: PayloadValue) -> async_graphql::Result<Option<FieldValue<'static>>> {
    Ok(Some(FieldValue::owned_any(p)))
}

fn upstream_errors(e: &crate::odata::UpstreamError) -> Vec<SubmissionError> {
    vec![SubmissionError::upstream(e, None, None)]
}

fn id_arg(ctx: &ResolverContext<'_>) -> Result<String, Vec<SubmissionError>> {
    let raw = ctx
        .args
        .get("id")
        .and_then(|v| v.string().ok().map(str::to_owned))
        .unwrap_or_default();
    crate::odata::escape::guid(&raw).map_err(|_| {
        vec![SubmissionError {
            code: ErrorCode::ValidationFailed,
            message: format!("id `{raw}` is not a GUID"),
            path: Some("id".into()),
            part: None,
        }]
    })
}

fn body_of(e: &'static Entity, input: &Value, st: &GatewayState) -> Result<Map<String, Json>, Vec<SubmissionError>> {
    let mut problems = Vec::new();
    let body = inputs::to_body(e, input, &st.labels(), "input", &mut problems);
    if problems.is_empty() {
        Ok(body)
    } else {
        Err(problems
            .into_iter()
            .map(|p| SubmissionError {
                code: ErrorCode::ValidationFailed,
                message: format!("{} {}", p.path, p.message),
                path: Some(p.path),
                part: None,
            })
            .collect())
    }
}

/// The three per-entity writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crud {
    Create,
    Update,
    Delete,
}

/// Resolves `create<Type>`, `update<Type>` or `delete<Type>`: arguments checked first (their
/// problems come back in the payload, nothing is sent), then one write.
async fn crud(
    ctx: &ResolverContext<'_>,
    e: &'static Entity,
    op: Crud,
) -> async_graphql::Result<Option<FieldValue<'static>>> {
    let st = ctx.data::<Arc<GatewayState>>()?;
    let rq = ctx.data::<RequestCtx>()?;
    // A delete's payload is the shared `DeletePayload`, which has no record.
    let entity = (op != Crud::Delete).then_some(e);
    let refused = |errors| {
        payload(PayloadValue {
            entity,
            errors,
            ..Default::default()
        })
    };
    let id = match op {
        Crud::Create => None,
        Crud::Update | Crud::Delete => match id_arg(ctx) {
            Ok(id) => Some(id),
            Err(errors) => return refused(errors),
        },
    };
    let body = match op {
        Crud::Delete => Json::Null,
        Crud::Create | Crud::Update => {
            let input = ctx.args.try_get("input")?.as_value().clone();
            match body_of(e, &input, st) {
                Ok(b) => Json::Object(b),
                Err(errors) => return refused(errors),
            }
        }
    };
    let (method, url) = match (op, &id) {
        (Crud::Create, _) => (Method::POST, e.entity_set.clone()),
        (Crud::Update, Some(id)) => (Method::PATCH, format!("{}({id})", e.entity_set)),
        (_, id) => (
            Method::DELETE,
            format!("{}({})", e.entity_set, id.as_deref().unwrap_or_default()),
        ),
    };
    match st.send_write(rq, method, &url, &body, op == Crud::Create).await {
        Ok(w) => payload(PayloadValue {
            entity,
            record: w
                .body
                .and_then(|b| b.as_object().cloned())
                .map(crate::odata::UpstreamRecord::new),
            id: id.or(w.entity_id),
            deleted: op == Crud::Delete,
            ..Default::default()
        }),
        Err(err) => payload(PayloadValue {
            entity,
            id,
            errors: upstream_errors(&err),
            ..Default::default()
        }),
    }
}

fn crud_field(e: &'static Entity, op: Crud) -> Field {
    let (verb, payload_type) = match op {
        Crud::Create => ("create", payload_name(e)),
        Crud::Update => ("update", payload_name(e)),
        Crud::Delete => ("delete", DELETE_PAYLOAD.to_string()),
    };
    Field::new(
        format!("{verb}{}", e.graphql.type_name),
        TypeRef::named_nn(payload_type),
        move |ctx| FieldFuture::new(async move { crud(&ctx, e, op).await }),
    )
}

fn create_field(e: &'static Entity) -> Field {
    crud_field(e, Crud::Create)
        .argument(InputValue::new(
            "input",
            TypeRef::named_nn(inputs::create_input_name(e)),
        ))
        .description(format!(
            "Creates a {}. Readable keys link it to related records.",
            e.name.to_lowercase()
        ))
}

fn update_field(e: &'static Entity) -> Field {
    crud_field(e, Crud::Update)
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new(
            "input",
            TypeRef::named_nn(inputs::update_input_name(e)),
        ))
        .description(format!(
            "Changes a {}: only the fields given change; write-once fields cannot.",
            e.name.to_lowercase()
        ))
}

fn delete_field(e: &'static Entity) -> Field {
    crud_field(e, Crud::Delete)
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .description(format!("Deletes a {}.", e.name.to_lowercase()))
}

fn submission_input() -> InputObject {
    let shape = &*SHAPE;
    let mut o = inputs::create_input(shape.candidate, SUBMISSION_INPUT, &shape.shared).description(
        "A candidate to hire with everything under it: the candidate's own fields, then either the new `person` or the `partyNumber` of an existing one (an internal candidate), and the person's details.",
    );
    o = o
        .field(
            InputValue::new(
                &shape.person_relation.field,
                TypeRef::named(inputs::create_input_name(shape.person)),
            )
            .description("The new person behind an external candidate."),
        )
        .field(
            InputValue::new(validate::party_number_field(), TypeRef::named(TypeRef::STRING))
                .description("The party number of an existing person (an internal candidate), instead of `person`."),
        );
    for (rel, detail, _) in &shape.details {
        o = o.field(
            InputValue::new(&rel.field, TypeRef::named_nn_list(detail_input_name(detail)))
                .description(format!("The person's {} records.", detail.name.to_lowercase())),
        );
    }
    o
}

fn submission_payload() -> Object {
    let shape = &*SHAPE;
    let scalar = |name: &str, ty: TypeRef, desc: &str, get: fn(&PayloadValue) -> Option<Value>| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::new(async move {
                let p = ctx.parent_value.try_downcast_ref::<PayloadValue>()?;
                Ok(get(p).map(FieldValue::value))
            })
        })
        .description(desc)
    };
    payload_fields(Object::new(SUBMISSION_PAYLOAD).description("The result of a submission."))
        .field(record_field("candidate", &shape.candidate.graphql.type_name).description("The created candidate, queryable with its person and details; null when nothing was written."))
        .field(scalar("candidateId", TypeRef::named(TypeRef::ID), "The created candidate's id.", |p| p.id.clone().map(Value::String)))
        .field(scalar("strategy", TypeRef::named(STRATEGY_ENUM), "How the submission was written.", |p| p.strategy.map(|s| Value::Enum(async_graphql::Name::new(s.graphql())))))
        .field(scalar("replayed", TypeRef::named_nn(TypeRef::BOOLEAN), "True when an earlier submission with the same idempotency key and input is returned and nothing new was written.", |p| Some(Value::Boolean(p.replayed))))
        .field(scalar("recordsCreated", TypeRef::named_nn(TypeRef::INT), "Records this call created upstream (0 for a replay or a failure).", |p| Some(Value::from(p.created as i64))))
}

fn submit_field() -> Field {
    Field::new("submitCandidateToHire", TypeRef::named_nn(SUBMISSION_PAYLOAD), |ctx| {
        FieldFuture::new(async move {
            let st = ctx.data::<Arc<GatewayState>>()?;
            let rq = ctx.data::<RequestCtx>()?;
            let input = ctx.args.try_get("input")?.as_value().clone();
            let key = ctx.args.get("idempotencyKey").and_then(|v| v.string().ok().map(str::to_owned)).filter(|k| !k.is_empty());
            payload(idempotent_run::run(st, rq, &input, key.as_deref()).await?)
        })
    })
    .argument(InputValue::new("input", TypeRef::named_nn(SUBMISSION_INPUT)))
    .argument(InputValue::new("idempotencyKey", TypeRef::named(TypeRef::STRING)).description("Retrying with the same key and input returns the first result and writes nothing new."))
    .description("Submits a hired candidate with its person and all of the person's details in one atomic call: everything is validated first, then written all or nothing.")
}

/// The fingerprint an idempotency key binds its input with: SHA-256 over the input's canonical
/// JSON, in which object fields are sorted by name (the same input with its fields in another
/// order is the same submission) and enum values are their names. List order counts.
fn input_hash(v: &Value) -> String {
    fn canonical(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut fields: Vec<_> = map.iter().collect();
                fields.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (name, value)) in fields.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(name.clone()).to_string());
                    out.push(':');
                    canonical(value, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut text = String::new();
    canonical(&v.clone().into_json().unwrap_or(serde_json::Value::Null), &mut text);
    format!("sha256:{}", crate::secret::sha256_hex(text.as_bytes()))
}

#[cfg(test)]
mod input_hash_tests {
    use super::input_hash;
    use async_graphql::Value;

    fn value(json: serde_json::Value) -> Value {
        Value::from_json(json).unwrap()
    }

    #[test]
    fn the_same_input_in_another_field_order_has_the_same_fingerprint() {
        let a = value(
            serde_json::json!({"firstName": "Ada", "person": {"a": 1, "b": [1, 2]}, "skills": [{"x": 1, "y": 2}]}),
        );
        let b = value(
            serde_json::json!({"skills": [{"y": 2, "x": 1}], "person": {"b": [1, 2], "a": 1}, "firstName": "Ada"}),
        );
        assert_eq!(input_hash(&a), input_hash(&b));
        assert!(input_hash(&a).starts_with("sha256:"));
        let reordered_list = value(
            serde_json::json!({"firstName": "Ada", "person": {"a": 1, "b": [2, 1]}, "skills": [{"x": 1, "y": 2}]}),
        );
        assert_ne!(input_hash(&a), input_hash(&reordered_list), "list order counts");
        let other = value(
            serde_json::json!({"firstName": "Adb", "person": {"a": 1, "b": [1, 2]}, "skills": [{"x": 1, "y": 2}]}),
        );
        assert_ne!(input_hash(&a), input_hash(&other));
    }

    #[test]
    fn enum_values_and_their_names_as_strings_are_the_same_input() {
        let mut inline = async_graphql::indexmap::IndexMap::new();
        inline.insert(
            async_graphql::Name::new("status"),
            Value::Enum(async_graphql::Name::new("HIRED")),
        );
        let from_variables = value(serde_json::json!({"status": "HIRED"}));
        assert_eq!(input_hash(&Value::Object(inline)), input_hash(&from_variables));
    }
}
