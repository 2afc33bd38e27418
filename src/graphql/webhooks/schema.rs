//! The webhook fields: `createWebhookSubscription(input)`, `deleteWebhookSubscription(id)` and
//! the `webhookSubscriptions` query. A registration belongs to the caller's identity
//! (`RequestCtx::identity`): the query lists only the caller's, and another caller's id is not
//! found. The signing secret is in the creation's payload only.

use super::store::{Attempt, Subscription};
use super::{RegisterError, Registration, Webhooks, EVENTS};
use crate::graphql::context::{GatewayState, RequestCtx};
use crate::graphql::errors::{bad_input, ErrorCode};
use crate::graphql::types::names;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, SchemaBuilder,
    TypeRef,
};
use std::sync::Arc;

const EVENT_ENUM: &str = "WebhookEvent";
const STATUS_ENUM: &str = "WebhookStatus";
const FILTER_INPUT: &str = "WebhookFilterInput";
const CREATE_INPUT: &str = "CreateWebhookSubscriptionInput";
const SUBSCRIPTION: &str = "WebhookSubscription";
const ATTEMPT: &str = "WebhookDeliveryAttempt";
const CREATED: &str = "CreateWebhookSubscriptionPayload";

/// Registers the webhook types; returns the query's and the mutation's fields.
pub fn register(mut builder: SchemaBuilder) -> (SchemaBuilder, Vec<Field>, Vec<Field>) {
    let mut events = Enum::new(EVENT_ENUM).description("Which changes a webhook is sent for.");
    let mut filter = InputObject::new(FILTER_INPUT)
        .description("Which records a webhook watches, per entity: a change to a record outside the entity's filter sends nothing. An entity without a filter is watched whole.");
    for (event, ty, field) in EVENTS {
        events = events.item(EnumItem::new(event).description(format!("A {ty} was created, updated or deleted.")));
        filter = filter.field(InputValue::new(field, TypeRef::named(names::filter(ty))));
    }
    builder = builder
        .register(events)
        .register(filter)
        .register(
            Enum::new(STATUS_ENUM)
                .item(EnumItem::new("ACTIVE").description("Changes are delivered."))
                .item(EnumItem::new("DISABLED").description("A delivery failed every retry: see `disabledReason`.")),
        )
        .register(
            InputObject::new(CREATE_INPUT)
                .field(InputValue::new("url", TypeRef::named_nn(TypeRef::STRING)).description("Where events are POSTed: https:// (http:// only with --webhook-allow-http), a public address (private ones only with --webhook-allow-private)."))
                .field(InputValue::new("events", TypeRef::named_nn_list_nn(EVENT_ENUM)))
                .field(InputValue::new("filter", TypeRef::named(FILTER_INPUT)))
                .field(InputValue::new("description", TypeRef::named(TypeRef::STRING))),
        )
        .register(attempt_type())
        .register(subscription_type())
        .register(created_type());
    let query = vec![list_field()];
    let mutation = vec![create_field(), delete_field()];
    (builder, query, mutation)
}

fn webhooks<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<(&'a Arc<Webhooks>, &'a RequestCtx)> {
    let state = ctx.data::<Arc<GatewayState>>()?;
    let webhooks = state
        .webhooks
        .as_ref()
        .ok_or_else(|| bad_input("webhooks are not available on this gateway"))?;
    Ok((webhooks, ctx.data::<RequestCtx>()?))
}

fn store_error(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "webhooks: the state store failed");
    ErrorCode::StateUnavailable.error("the webhook store cannot be reached; retry shortly")
}

fn create_field() -> Field {
    Field::new("createWebhookSubscription", TypeRef::named_nn(CREATED), |ctx| {
        FieldFuture::new(async move {
            let (webhooks, rq) = webhooks(&ctx)?;
            let input = ctx.args.try_get("input")?.object()?;
            let events = input
                .try_get("events")?
                .list()?
                .iter()
                .map(|e| e.enum_name().map(str::to_string))
                .collect::<Result<Vec<_>, _>>()?;
            let registration = Registration {
                url: input.try_get("url")?.string()?.to_string(),
                events,
                filter: match input.get("filter") {
                    Some(f) if !f.is_null() => f.as_value().clone().into_json()?,
                    _ => serde_json::json!({}),
                },
                description: input.get("description").and_then(|d| d.string().ok().map(str::to_string)),
            };
            let state = ctx.data::<Arc<GatewayState>>()?;
            super::watching::keys(state, &rq.identity, &registration.events, &registration.filter)?;
            match webhooks.register(&rq.identity, registration).await {
                Ok((sub, secret)) => Ok(Some(FieldValue::owned_any((sub, secret)))),
                Err(RegisterError::BadInput(why)) => Err(bad_input(why)),
                Err(RegisterError::Store(e)) => Err(store_error(e)),
            }
        })
    })
    .argument(InputValue::new("input", TypeRef::named_nn(CREATE_INPUT)))
    .description("Registers a webhook for the caller: changes are POSTed to `url` as Standard Webhooks, signed with the secret in the payload (shown this once). Refused under --upstream-auth on-behalf-of and pass-through (no upstream token to watch with).")
}

fn delete_field() -> Field {
    Field::new(
        "deleteWebhookSubscription",
        TypeRef::named_nn(TypeRef::BOOLEAN),
        |ctx| {
            FieldFuture::new(async move {
                let (webhooks, rq) = webhooks(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?;
                let deleted = webhooks.delete(&rq.identity, id).await.map_err(store_error)?;
                Ok(Some(FieldValue::value(deleted)))
            })
        },
    )
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    .description(
        "Deletes one of the caller's webhooks and its pending deliveries; false when the caller has none by that id.",
    )
}

fn list_field() -> Field {
    Field::new("webhookSubscriptions", TypeRef::named_nn_list_nn(SUBSCRIPTION), |ctx| {
        FieldFuture::new(async move {
            let (webhooks, rq) = webhooks(&ctx)?;
            let subs = webhooks.store.list(Some(&rq.identity)).await.map_err(store_error)?;
            Ok(Some(FieldValue::list(subs.into_iter().map(FieldValue::owned_any))))
        })
    })
    .description("The caller's webhooks, oldest first.")
}

fn created_type() -> Object {
    Object::new(CREATED)
        .description("A new webhook and its signing secret.")
        .field(Field::new("subscription", TypeRef::named_nn(SUBSCRIPTION), |ctx| {
            FieldFuture::new(async move {
                let (sub, _) = ctx
                    .parent_value
                    .try_downcast_ref::<(Subscription, crate::secret::Secret)>()?;
                Ok(Some(FieldValue::owned_any(sub.clone())))
            })
        }))
        .field(
            Field::new("secret", TypeRef::named_nn(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move {
                    let (_, secret) = ctx
                        .parent_value
                        .try_downcast_ref::<(Subscription, crate::secret::Secret)>()?;
                    Ok(Some(FieldValue::value(secret.expose().to_string())))
                })
            })
            .description("`whsec_` + base64 key: verify `webhook-signature` with it. Shown only here, never again."),
        )
}

/// A field of [`Subscription`] computed by `f`.
fn sub_field(
    name: &str,
    ty: TypeRef,
    f: impl Fn(&Subscription) -> Option<FieldValue<'static>> + Send + Sync + Copy + 'static,
) -> Field {
    Field::new(name, ty, move |ctx| {
        FieldFuture::new(async move { Ok(f(ctx.parent_value.try_downcast_ref::<Subscription>()?)) })
    })
}

fn subscription_type() -> Object {
    Object::new(SUBSCRIPTION)
        .description("A webhook of the caller's.")
        .field(sub_field("id", TypeRef::named_nn(TypeRef::ID), |s| {
            Some(FieldValue::value(s.id.clone()))
        }))
        .field(sub_field("url", TypeRef::named_nn(TypeRef::STRING), |s| {
            Some(FieldValue::value(s.url.clone()))
        }))
        .field(sub_field("events", TypeRef::named_nn_list_nn(EVENT_ENUM), |s| {
            Some(FieldValue::list(s.events.iter().map(|e| {
                FieldValue::value(async_graphql::Value::Enum(async_graphql::Name::new(e)))
            })))
        }))
        .field(
            sub_field("filter", TypeRef::named(TypeRef::STRING), |s| {
                Some(FieldValue::value(s.filter.to_string()))
                    .filter(|_| s.filter.as_object().is_some_and(|m| !m.is_empty()))
            })
            .description("The filter as given, as JSON text; null: none."),
        )
        .field(sub_field("description", TypeRef::named(TypeRef::STRING), |s| {
            s.description.clone().map(FieldValue::value)
        }))
        .field(sub_field("status", TypeRef::named_nn(STATUS_ENUM), |s| {
            let status = if s.disabled_reason.is_some() {
                "DISABLED"
            } else {
                "ACTIVE"
            };
            Some(FieldValue::value(async_graphql::Value::Enum(async_graphql::Name::new(
                status,
            ))))
        }))
        .field(sub_field("disabledReason", TypeRef::named(TypeRef::STRING), |s| {
            s.disabled_reason.clone().map(FieldValue::value)
        }))
        .field(sub_field("createdAt", TypeRef::named_nn(TypeRef::STRING), |s| {
            Some(FieldValue::value(rfc3339(s.created_at)))
        }))
        .field(deliveries_field())
}

fn deliveries_field() -> Field {
    Field::new("deliveries", TypeRef::named_nn_list_nn(ATTEMPT), |ctx| {
        FieldFuture::new(async move {
            let (webhooks, _) = webhooks(&ctx)?;
            let sub = ctx.parent_value.try_downcast_ref::<Subscription>()?;
            let last = ctx.args.get("last").and_then(|v| v.i64().ok()).unwrap_or(20);
            let last = last.clamp(0, webhooks.config.log_size as i64) as usize;
            let log = webhooks.store.attempts(&sub.id, last).await.map_err(store_error)?;
            Ok(Some(FieldValue::list(log.into_iter().map(FieldValue::owned_any))))
        })
    })
    .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)).default_value(20))
    .description("The last attempts (newest first; the log keeps --webhook-log-size of them).")
}

/// A field of [`Attempt`] computed by `f`.
fn attempt_field(
    name: &str,
    ty: TypeRef,
    f: impl Fn(&Attempt) -> Option<FieldValue<'static>> + Send + Sync + Copy + 'static,
) -> Field {
    Field::new(name, ty, move |ctx| {
        FieldFuture::new(async move { Ok(f(ctx.parent_value.try_downcast_ref::<Attempt>()?)) })
    })
}

fn attempt_type() -> Object {
    Object::new(ATTEMPT)
        .description("One POST of an event to a webhook.")
        .field(
            attempt_field("eventId", TypeRef::named_nn(TypeRef::ID), |a| {
                Some(FieldValue::value(a.event_id.clone()))
            })
            .description("The `webhook-id`, the same on every attempt of an event."),
        )
        .field(attempt_field("attempt", TypeRef::named_nn(TypeRef::INT), |a| {
            Some(FieldValue::value(a.attempt as i64))
        }))
        .field(
            attempt_field("statusCode", TypeRef::named(TypeRef::INT), |a| {
                a.status.map(|s| FieldValue::value(s as i64))
            })
            .description("The receiver's status; null when it gave none (see `error`)."),
        )
        .field(attempt_field("error", TypeRef::named(TypeRef::STRING), |a| {
            a.error.clone().map(FieldValue::value)
        }))
        .field(attempt_field("latencyMs", TypeRef::named_nn(TypeRef::INT), |a| {
            Some(FieldValue::value(a.latency_ms as i64))
        }))
        .field(attempt_field("at", TypeRef::named_nn(TypeRef::STRING), |a| {
            Some(FieldValue::value(rfc3339(a.at)))
        }))
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
