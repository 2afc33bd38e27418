//! The `Subscription` root: changes of recruiting requests, their positions and candidates to
//! hire, pushed from the change watchers (`watch`).
//!
//! Each field takes the entity's list filter and `includeExisting`, and streams
//! `<Type>Change` events: `kind`, `changedFields`, the record's `id` and the `record` itself, a
//! normal object resolved through the operation's loaders (nested selections work and cost what
//! they cost in a query). The loaders and the request's memos are emptied before each event, so
//! that a long subscription holds no more than one event's worth of records. Over WebSocket and
//! SSE a field hands its watch off ([`Handoff`]) and each event is resolved by a run of its own,
//! so that an idle subscriber costs its watch and its request's text, not a live execution.

use super::context::{GatewayState, RequestCtx};
use super::loaders::{ChildKey, ChildLoader, RecordKey, RecordLoader};
use super::resolve::Row;
use super::types::names;
use super::watch::{self, ChangeEvent, WatchKey};
use crate::graphql::loaders::Cache;
use crate::model::{model, Entity};
use async_graphql::dataloader::DataLoader;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputValue, Object, SchemaBuilder, Subscription, SubscriptionField,
    SubscriptionFieldFuture, TypeRef,
};
use async_graphql::Value;
use futures::StreamExt;
use std::sync::Arc;

/// The entity sets with a subscription field (the ATS loop's "notice a change" steps).
pub const WATCHED: [&str; 3] = [
    "mshr_hcmrecruitingrequestentities",
    "mshr_hcmrecruitingrequestpositionentities",
    "mshr_hcmcandidatetohireentities",
];

const CHANGE_KIND: &str = "ChangeKind";

/// The name of an entity's change event type (`RecruitingRequestChange`).
pub fn change_type(e: &Entity) -> String {
    format!("{}Change", e.graphql.type_name)
}

/// The name of an entity's subscription field (`recruitingRequestChanged`).
pub fn field_name(e: &Entity) -> String {
    format!("{}Changed", e.graphql.single_field)
}

/// Registers the change types and returns the `Subscription` root.
pub fn register(mut builder: SchemaBuilder) -> (SchemaBuilder, Subscription) {
    builder = builder.register(
        Enum::new(CHANGE_KIND)
            .description("What happened to a watched record between two reads of the upstream.")
            .item(EnumItem::new("CREATED").description(
                "It matches the filter now and did not at the last read (created, or changed into the filter's set).",
            ))
            .item(EnumItem::new("UPDATED").description("It matched at both reads and some of its properties changed."))
            .item(EnumItem::new("DELETED").description(
                "It matched at the last read and does not now (deleted, or changed out of the filter's set).",
            )),
    );
    let mut root = Subscription::new("Subscription").description(
        "Changes pushed as they are noticed. The gateway reads each distinct (caller, entity, filter) once per `--watch-interval` (30 s by default) for all its subscribers and diffs the reads, so an event arrives within about one interval of the change. Over WebSocket at `/graphql/ws` (`graphql-transport-ws` or `graphql-ws`) or GraphQL over SSE (`Accept: text/event-stream` on `/graphql`).",
    );
    for set in WATCHED {
        let Some(e) = model().entities.iter().find(|e| e.entity_set == set) else {
            continue;
        };
        builder = builder.register(change_object(e));
        root = root.field(subscription_field(e));
    }
    (builder, root)
}

fn change_object(e: &'static Entity) -> Object {
    let ty = &e.graphql.type_name;
    let value = |name: &'static str, ty: TypeRef, desc: String, get: fn(&ChangeEvent) -> Value| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::new(async move {
                let event = ctx.parent_value.try_downcast_ref::<Arc<ChangeEvent>>()?;
                Ok(Some(FieldValue::value(get(event))))
            })
        })
        .description(desc)
    };
    Object::new(change_type(e))
        .description(format!("A change of a {}.", e.name.to_lowercase()))
        .field(value(
            "eventId",
            TypeRef::named_nn(TypeRef::ID),
            "The event's id, the same for the same change on every replica and retry: deduplicate by it.".into(),
            |ev| Value::String(ev.id.clone()),
        ))
        .field(value(
            "kind",
            TypeRef::named_nn(CHANGE_KIND),
            "Created, updated or deleted.".into(),
            |ev| Value::Enum(async_graphql::Name::new(ev.kind.as_str())),
        ))
        .field(value(
            "id",
            TypeRef::named_nn(TypeRef::ID),
            format!("The {}'s id (also for a deleted one).", e.name.to_lowercase()),
            |ev| Value::String(ev.key.clone()),
        ))
        .field(value(
            "changedFields",
            TypeRef::named_nn_list_nn(TypeRef::STRING),
            format!("The fields of {ty} whose value changed (`UPDATED`); empty for `CREATED` and `DELETED`."),
            |ev| Value::List(ev.changed_fields.iter().map(|f| Value::String(f.to_string())).collect()),
        ))
        .field(value(
            "notices",
            TypeRef::named_nn_list_nn(TypeRef::STRING),
            "How this event came: such as the upstream throttling the watch (it backed off, so the event may be late; none is lost) or this subscriber falling behind.".into(),
            |ev| Value::List(ev.notices.iter().map(|n| Value::String(n.clone())).collect()),
        ))
        .field(
            Field::new("record", TypeRef::named(ty), move |ctx| {
                FieldFuture::new(async move {
                    let event = ctx.parent_value.try_downcast_ref::<Arc<ChangeEvent>>()?;
                    Ok(event
                        .record
                        .clone()
                        .map(|record| FieldValue::owned_any(Row { entity: e, record })))
                })
            })
            .description(format!(
                "The {} as read (relations load as in a query); null for `DELETED`.",
                e.name.to_lowercase()
            )),
        )
}

/// Where a subscription field hands its subscriber's watch to whoever runs the operation, instead
/// of streaming it itself (request data; `server::subscriptions` puts it in).
///
/// An operation streaming its field holds async-graphql's state for it for as long as it lives:
/// the parsed document, the request's data, the execution's futures, about 10 kB a subscriber.
/// Handed off, the runner holds only the watch and the request's text, and resolves each event
/// by running the document once more with the event given ([`PresetEvent`]), so that the
/// selection, nested relations through fresh loaders, limits and errors work as in a query. The
/// field hands off the subscription still pending (the watch's first read), so that not even
/// the start of many subscribers at once holds their executions while the watchers read.
#[derive(Clone, Default)]
pub struct Handoff(Arc<std::sync::Mutex<Option<PendingWatch>>>);

/// A subscription to a watch, done when the watch has its first read (or failed).
pub type PendingWatch = futures::future::BoxFuture<'static, Result<watch::Subscription, watch::WatchError>>;

impl Handoff {
    /// Takes `pending` unless this operation's handoff already holds one (then gives it back:
    /// a second subscription field streams as usual).
    fn put(&self, pending: PendingWatch) -> Option<PendingWatch> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Some(pending);
        }
        *slot = Some(pending);
        None
    }

    /// The subscription handed off, if one was.
    pub fn take(&self) -> Option<PendingWatch> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The one event a run of a handed-off subscription's document resolves (request data).
pub struct PresetEvent(pub Result<Arc<ChangeEvent>, watch::WatchError>);

fn subscription_field(e: &'static Entity) -> SubscriptionField {
    let ty = &e.graphql.type_name;
    SubscriptionField::new(field_name(e), TypeRef::named_nn(change_type(e)), move |ctx| {
        SubscriptionFieldFuture::new(async move {
            let state = ctx.data::<Arc<GatewayState>>()?;
            let rq = ctx.data::<RequestCtx>()?;
            let filter = ctx.args.get("filter").map(|v| v.as_value().clone());
            let include_existing = match ctx.args.get("includeExisting") {
                Some(v) if !v.is_null() => v.boolean()?,
                _ => false,
            };
            if let Some(preset) = ctx.data_opt::<PresetEvent>() {
                // One event, resolved by a run of the document for it (see `Handoff`).
                let item = preset.0.clone();
                return Ok(futures::stream::once(async move {
                    item.map(FieldValue::owned_any).map_err(|err| err.to_graphql())
                })
                .boxed());
            }
            let key = WatchKey::new(state, rq, e, filter.as_ref())?;
            let owned = state.clone();
            let mut pending: PendingWatch =
                Box::pin(async move { watch::subscribe(&owned, key, include_existing).await });
            if let Some(handoff) = ctx.data_opt::<Handoff>() {
                match handoff.put(pending) {
                    // Handed off: this run ends, and with it everything it held.
                    None => return Ok(futures::stream::empty().boxed()),
                    Some(back) => pending = back,
                }
            }
            let events = pending.await.map_err(|err| err.to_graphql())?;
            let records = ctx.data_opt::<DataLoader<RecordLoader, Cache>>();
            let children = ctx.data_opt::<DataLoader<ChildLoader, Cache>>();
            Ok(events
                .map(move |item| {
                    // Each event resolves with empty loaders and memos: nothing grows with time.
                    if let Some(l) = records {
                        l.clear::<RecordKey>();
                    }
                    if let Some(l) = children {
                        l.clear::<ChildKey>();
                    }
                    rq.memo.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    rq.records.clear();
                    item.map(FieldValue::owned_any).map_err(|err| err.to_graphql())
                })
                .boxed())
        })
    })
    .argument(
        InputValue::new("filter", TypeRef::named(names::filter(ty))).description(
            "Only the records that match (as in the list query). Subscribers with the same filter share one watcher.",
        ),
    )
    .argument(
        InputValue::new("includeExisting", TypeRef::named(TypeRef::BOOLEAN)).description(
            "Emit every current match first, as `CREATED` (default false: only changes after subscribing).",
        ),
    )
    .description(format!(
        "Changes of {} matching `filter`, noticed by reading them every watch interval.",
        e.name.to_lowercase()
    ))
}
