//! A registration's watch: one `graphql::watch` subscription per event it names (sharing the
//! pollers of GraphQL subscribers with the same question), its changes turned into webhook
//! events and enqueued. The task holds the gateway weakly between (re)subscriptions; while
//! subscribed, the poller holds the gateway as it does for any subscriber, and the task is
//! owned by the registration's [`WatchGuard`] (deleting the registration drops it, and the
//! last subscriber of a poller stops it). A poller rides out 429s and outages by itself (its
//! stream goes on, delayed); a watch whose stream ends with an error (the set grew past
//! `--watch-max-records`, the upstream refused the credentials) or cannot start again is tried
//! again after a pause. Its new start snapshot emits nothing, so changes made between the end
//! and the new start are not delivered (events already stored are).

use super::store::Subscription;
use super::{Change, Inbox, Started, WatchGuard, Watcher, EVENTS};
use crate::graphql::context::{GatewayState, RequestCtx};
use crate::graphql::watch::{self, ChangeEvent, WatchKey};
use crate::model::{model, Entity};
use crate::odata::OptionSetLabels;
use futures::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The pause before a failed watch is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// The watcher [`super::Webhooks::watch_all`] starts registrations' watches with.
pub fn watcher(state: Weak<GatewayState>) -> Watcher {
    Arc::new(move |sub: &Subscription, inbox: Inbox, started: Option<Started>| {
        Some(WatchGuard::spawn(watch(state.clone(), sub.clone(), inbox, started)))
    })
}

/// The watch keys of a registration's events, each with its filter compiled (bad input is a
/// GraphQL error, as for a subscription).
pub fn keys(
    state: &GatewayState,
    identity: &str,
    events: &[String],
    filter: &serde_json::Value,
) -> Result<Vec<WatchKey>, async_graphql::Error> {
    let caller = RequestCtx::new(None, identity.to_string());
    let mut keys = Vec::new();
    for (event, ty, field) in EVENTS.iter().filter(|(e, ..)| events.iter().any(|x| x == e)) {
        let entity: &'static Entity = model()
            .by_graphql_type(ty)
            .ok_or_else(|| async_graphql::Error::new(format!("{event}: no entity {ty} in the model")))?;
        let value = match filter.get(*field) {
            Some(j) if !j.is_null() => Some(async_graphql::Value::from_json(j.clone())?),
            _ => None,
        };
        keys.push(WatchKey::new(state, &caller, entity, value.as_ref())?);
    }
    Ok(keys)
}

/// The registration's watch: subscribes, forwards, and starts again after a failure; answers
/// `started` after the first subscription (a registration whose watch cannot start is refused).
async fn watch(state: Weak<GatewayState>, sub: Subscription, inbox: Inbox, mut started: Option<Started>) {
    loop {
        let (streams, labels) = {
            let Some(st) = state.upgrade() else { return };
            (subscribe_all(&st, &sub).await, st.labels())
        };
        if let Some(started) = started.take() {
            let _ = started.send(streams.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        match streams {
            Ok(streams) => forward(&sub, &inbox, &labels, futures::stream::select_all(streams)).await,
            Err(why) => tracing::warn!(webhook = %sub.id, error = %why, "webhook watch could not start; trying again"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn subscribe_all(state: &Arc<GatewayState>, sub: &Subscription) -> Result<Vec<watch::Subscription>, String> {
    let keys = keys(state, &sub.identity, &sub.events, &sub.filter).map_err(|e| e.message)?;
    let mut streams = Vec::with_capacity(keys.len());
    for key in keys {
        streams.push(watch::subscribe(state, key, false).await.map_err(|e| e.to_string())?);
    }
    Ok(streams)
}

/// Enqueues every change until a stream fails or ends.
async fn forward(
    sub: &Subscription,
    inbox: &Inbox,
    labels: &OptionSetLabels,
    mut events: futures::stream::SelectAll<watch::Subscription>,
) {
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if let Err(e) = inbox.enqueue(&sub.id, &change(&event, labels)).await {
                    tracing::error!(webhook = %sub.id, error = %e, "webhook event not stored");
                }
            }
            Err(e) => {
                tracing::warn!(webhook = %sub.id, error = %e, "webhook watch ended; trying again");
                return;
            }
        }
    }
}

/// A watcher's event as a webhook event, the record with its GraphQL field names and values.
fn change(event: &ChangeEvent, labels: &OptionSetLabels) -> Change {
    let record = event.record.as_ref().map(|row| {
        let mut out = serde_json::Map::new();
        for p in &event.entity.properties {
            if let Some(raw) = row.get(&p.name) {
                let value = crate::graphql::resolve::to_graphql(event.entity, p, raw, labels)
                    .ok()
                    .flatten()
                    .and_then(|v| v.into_json().ok())
                    .unwrap_or(serde_json::Value::Null);
                out.insert(p.graphql_field.clone(), value);
            }
        }
        serde_json::Value::Object(out)
    });
    Change {
        id: event.id.clone(),
        entity: event.entity.graphql.type_name.clone(),
        kind: event.kind.as_str().to_string(),
        changed_fields: event.changed_fields.iter().map(|f| f.to_string()).collect(),
        key: event.key.clone(),
        record,
        seen_at: super::deliver::now_ms(),
    }
}
