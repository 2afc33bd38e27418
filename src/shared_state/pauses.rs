//! A 429's pause, seen by one replica, held by all.
//!
//! The replica that gets a 429 pauses the upstream identity itself (`odata::resilience::Gate`),
//! then shares the pause: it stores `ats-gateway:pause:<hash of the identity>` = the identity,
//! expiring with the pause (`PX`), and publishes `<origin> <milliseconds> <identity>` on
//! `ats-gateway:pauses`, both in one `MULTI`. Every replica keeps one subscription to that
//! channel (a connection of its own, re-opened after a loss) and pauses the identity locally
//! for what remains; on each (re)subscription it reads the pause keys, so a replica that starts
//! or reconnects during a pause honours it too.
//!
//! Why pub/sub rather than reading the key before upstream calls (even at most every 100 ms per
//! identity): the announcement costs Redis work only when a 429 happens, and the hot read path
//! checks the local gate as without Redis, with no round trip and no polling; the key is only
//! for latecomers. The announcement carries the pause's length, not its end, so that the
//! replicas' clocks need not agree. Redis down: the pause holds on the replica that saw the 429
//! only (the announcement fails, counted in `/metrics`), as without `--redis-url`.

use super::SharedState;
use futures::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a lost subscription waits before subscribing again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(500);

/// Told about a pause another replica started: the identity and what remains of the pause.
pub type OnPause = Arc<dyn Fn(&str, Duration) + Send + Sync>;

impl SharedState {
    fn pause_channel(&self) -> String {
        self.key("pauses", "channel")
    }

    /// Shares the pause of `identity` for `pause` with the other replicas, in a task of its own
    /// (the caller that saw the 429 does not wait for Redis). A failure is counted and dropped.
    pub fn share_pause(self: &Arc<Self>, identity: &str, pause: Duration) {
        let ms = (pause.as_millis() as u64).max(1);
        let key = self.identity_key("pause", identity);
        let message = format!("{} {ms} {identity}", self.origin);
        let (channel, identity, state) = (self.pause_channel(), identity.to_string(), self.clone());
        tokio::spawn(async move {
            let _ = state
                .call("pause SET PUBLISH", |mut c| async move {
                    redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(&key)
                        .arg(&identity)
                        .arg("PX")
                        .arg(ms)
                        .ignore()
                        .cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&message)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        });
    }

    /// Follows the other replicas' pauses for as long as this state lives: `on_pause` is called
    /// for each one announced, and for each one under way at every (re)subscription.
    pub fn follow_pauses(self: &Arc<Self>, on_pause: OnPause) {
        let state = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Some(followed) = subscribe(&state).await {
                if let Err(why) = followed.run(&state, &on_pause).await {
                    tracing::debug!(error = %why, "Redis: the subscription to 429 pauses was lost; subscribing again");
                }
                tokio::time::sleep(RESUBSCRIBE_AFTER).await;
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task.abort_handle());
    }
}

/// A subscription to the pauses' channel, or `None` once the state is gone (retrying, with a
/// pause, while Redis cannot be reached).
async fn subscribe(state: &Weak<SharedState>) -> Option<Subscription> {
    loop {
        let (client, channel) = {
            let s = state.upgrade()?;
            (s.client.clone(), s.pause_channel())
        };
        let opened = tokio::time::timeout(super::COMMAND_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = opened {
            return Some(Subscription { pubsub });
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

struct Subscription {
    pubsub: redis::aio::PubSub,
}

impl Subscription {
    /// Applies the pauses under way, then each one announced, until the connection is lost.
    async fn run(self, state: &Weak<SharedState>, on_pause: &OnPause) -> Result<(), String> {
        let origin = {
            let s = state.upgrade().ok_or("stopped")?;
            s.pauses_under_way(on_pause).await?;
            s.origin
        };
        let mut messages = self.pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some((from, pause, identity)) = parse(&text) {
                if from != origin {
                    on_pause(identity, pause);
                }
            }
        }
        Err("the connection closed".into())
    }
}

impl SharedState {
    /// Calls `on_pause` for each pause under way (its key not expired yet).
    async fn pauses_under_way(&self, on_pause: &OnPause) -> Result<(), String> {
        let pattern = self.key("pause", "*");
        let found = self
            .call("pause SCAN", |mut c| async move {
                let mut keys: Vec<String> = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await?;
                    keys.extend(batch);
                    if next == 0 || keys.len() > 10_000 {
                        break;
                    }
                    cursor = next;
                }
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
                }
                pipe.query_async::<Vec<(Option<String>, i64)>>(&mut c).await
            })
            .await
            .map_err(|e| e.0)?;
        for (identity, ms) in found {
            if let (Some(identity), true) = (identity, ms > 0) {
                on_pause(&identity, Duration::from_millis(ms as u64));
            }
        }
        Ok(())
    }
}

/// `<origin> <milliseconds> <identity>` (the identity may hold spaces).
fn parse(text: &str) -> Option<(u64, Duration, &str)> {
    let mut parts = text.splitn(3, ' ');
    let origin = parts.next()?.parse().ok()?;
    let ms: u64 = parts.next()?.parse().ok()?;
    Some((origin, Duration::from_millis(ms), parts.next()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn announcements_read_back() {
        assert_eq!(
            super::parse("7 2000 app:some client"),
            Some((7, std::time::Duration::from_secs(2), "app:some client"))
        );
        assert_eq!(super::parse("7 soon app:x"), None);
        assert_eq!(super::parse("7 2000"), None);
    }
}
