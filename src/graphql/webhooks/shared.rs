//! The webhook store in Redis (`--redis-url`), for replicas: every replica sees every
//! registration, an event is enqueued once (`SET NX` on the delivery's key, whichever replica
//! watched it), and a due delivery is claimed by one replica (a Lua script moves it in the due
//! set to the end of its lease: a replica that dies mid-attempt leaves it due again when the
//! lease ends, at least once).
//!
//! Keys (`ats-gateway:` namespace): `wh-sub:<id>` (the registration, JSON, secret included),
//! `wh-subs` (every id), `wh-subs-of:<sha256 of identity>` (a caller's ids), `wh-del:<id>:<event>`
//! (a delivery: body and attempts, kept a day after its last change), `wh-due` (a sorted set of
//! `<id> <event>` by due time, unix ms), `wh-log:<id>` (the last attempts, a list).

use super::store::{Attempt, Due, Next, StoreError, Subscription};
use crate::shared_state::SharedState;
use redis::AsyncCommands;
use std::sync::{Arc, LazyLock};

/// Deliveries (and so their event ids) are kept this long after their last change.
const KEEP_SECS: u64 = 2 * 24 * 3600;

/// Leases up to ARGV[3] members of KEYS[1] due by ARGV[1], until ARGV[2].
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due
"#,
    )
});

impl From<crate::shared_state::StateUnavailable> for StoreError {
    fn from(e: crate::shared_state::StateUnavailable) -> Self {
        StoreError(e.to_string())
    }
}

/// A registration as kept in Redis.
#[derive(serde::Serialize, serde::Deserialize)]
struct SubJson {
    id: String,
    identity: String,
    url: String,
    events: Vec<String>,
    filter: serde_json::Value,
    description: Option<String>,
    secret: String,
    disabled_reason: Option<String>,
    created_at: i64,
}

impl From<&Subscription> for SubJson {
    fn from(s: &Subscription) -> Self {
        SubJson {
            id: s.id.clone(),
            identity: s.identity.clone(),
            url: s.url.clone(),
            events: s.events.clone(),
            filter: s.filter.clone(),
            description: s.description.clone(),
            secret: s.secret.expose().to_string(),
            disabled_reason: s.disabled_reason.clone(),
            created_at: s.created_at,
        }
    }
}

impl From<SubJson> for Subscription {
    fn from(s: SubJson) -> Self {
        Subscription {
            id: s.id,
            identity: s.identity,
            url: s.url,
            events: s.events,
            filter: s.filter,
            description: s.description,
            secret: crate::secret::Secret::new(s.secret),
            disabled_reason: s.disabled_reason,
            created_at: s.created_at,
        }
    }
}

/// A delivery as kept in Redis.
#[derive(serde::Serialize, serde::Deserialize)]
struct DeliveryJson {
    body: String,
    attempts: u32,
}

/// The Redis webhook store.
#[derive(Clone)]
pub struct SharedStore {
    state: Arc<SharedState>,
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError(format!("a stored webhook record is not readable: {e}"))
}

impl SharedStore {
    pub fn new(state: Arc<SharedState>) -> Self {
        SharedStore { state }
    }

    fn sub_key(&self, id: &str) -> String {
        self.state.key("wh-sub", id)
    }

    fn delivery_key(&self, id: &str, event: &str) -> String {
        self.state.key("wh-del", &format!("{id}:{event}"))
    }

    async fn get_text(&self, key: String) -> Result<Option<String>, StoreError> {
        Ok(self
            .state
            .call("GET", |mut c| async move { c.get::<_, Option<String>>(&key).await })
            .await?)
    }

    async fn put_sub(&self, s: &Subscription) -> Result<(), StoreError> {
        let (key, text) = (
            self.sub_key(&s.id),
            serde_json::to_string(&SubJson::from(s)).map_err(json_error)?,
        );
        self.state
            .call("SET", |mut c| async move { c.set::<_, _, ()>(&key, text).await })
            .await?;
        Ok(())
    }

    pub async fn create(&self, s: Subscription) -> Result<(), StoreError> {
        self.put_sub(&s).await?;
        let (all, mine) = (
            self.state.key("wh-subs", "all"),
            self.state.identity_key("wh-subs-of", &s.identity),
        );
        let id = s.id.clone();
        self.state
            .call("SADD", |mut c| async move {
                redis::pipe()
                    .sadd(&all, &id)
                    .sadd(&mine, &id)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        match self.get_text(self.sub_key(id)).await? {
            Some(text) => Ok(Some(serde_json::from_str::<SubJson>(&text).map_err(json_error)?.into())),
            None => Ok(None),
        }
    }

    pub async fn delete(&self, identity: &str, id: &str) -> Result<bool, StoreError> {
        match self.get(id).await? {
            Some(s) if s.identity == identity => {}
            _ => return Ok(false),
        }
        let keys = (
            self.sub_key(id),
            self.state.key("wh-log", id),
            self.state.key("wh-subs", "all"),
            self.state.identity_key("wh-subs-of", identity),
        );
        let id = id.to_string();
        self.state
            .call("DEL", |mut c| async move {
                redis::pipe()
                    .del(&keys.0)
                    .del(&keys.1)
                    .srem(&keys.2, &id)
                    .srem(&keys.3, &id)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        // Its deliveries leave the due set when next claimed (their registration is gone).
        Ok(true)
    }

    pub async fn list(&self, identity: Option<&str>) -> Result<Vec<Subscription>, StoreError> {
        let set = match identity {
            Some(i) => self.state.identity_key("wh-subs-of", i),
            None => self.state.key("wh-subs", "all"),
        };
        let ids: Vec<String> = self
            .state
            .call("SMEMBERS", |mut c| async move { c.smembers(&set).await })
            .await?;
        let mut subs = Vec::new();
        for id in ids {
            subs.extend(self.get(&id).await?);
        }
        subs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(subs)
    }

    pub async fn attempts(&self, id: &str, n: usize) -> Result<Vec<Attempt>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let key = self.state.key("wh-log", id);
        let texts: Vec<String> = self
            .state
            .call("LRANGE", |mut c| async move { c.lrange(&key, 0, n as isize - 1).await })
            .await?;
        texts
            .iter()
            .map(|t| serde_json::from_str::<Attempt>(t).map_err(json_error))
            .collect()
    }

    pub async fn enqueue(&self, id: &str, event_id: &str, body: String, now: i64) -> Result<bool, StoreError> {
        match self.get(id).await? {
            Some(s) if s.disabled_reason.is_none() => {}
            _ => return Ok(false),
        }
        let key = self.delivery_key(id, event_id);
        let text = serde_json::to_string(&DeliveryJson { body, attempts: 0 }).map_err(json_error)?;
        let added: Option<String> = self
            .state
            .call("SET NX", |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(text)
                    .arg("NX")
                    .arg("EX")
                    .arg(KEEP_SECS)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if added.is_none() {
            return Ok(false);
        }
        let (due, member) = (self.state.key("wh-due", "all"), format!("{id} {event_id}"));
        self.state
            .call(
                "ZADD",
                |mut c| async move { c.zadd::<_, _, _, ()>(&due, member, now).await },
            )
            .await?;
        Ok(true)
    }

    pub async fn claim_due(&self, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let due_key = self.state.key("wh-due", "all");
        let members: Vec<String> = {
            let due_key = due_key.clone();
            self.state
                .call("claim", |mut c| async move {
                    CLAIM
                        .key(&due_key)
                        .arg(now)
                        .arg(now + lease_ms)
                        .arg(limit)
                        .invoke_async(&mut c)
                        .await
                })
                .await?
        };
        let mut out = Vec::new();
        for member in members {
            let Some((id, event)) = member.split_once(' ') else {
                continue;
            };
            match self.due(id, event).await? {
                Some(d) => out.push(d),
                None => {
                    // Its registration or delivery is gone, or it is disabled: not due any more.
                    let (key, member) = (due_key.clone(), member.clone());
                    self.state
                        .call("ZREM", |mut c| async move { c.zrem::<_, _, ()>(&key, member).await })
                        .await?;
                }
            }
        }
        Ok(out)
    }

    async fn due(&self, id: &str, event: &str) -> Result<Option<Due>, StoreError> {
        let Some(sub) = self.get(id).await?.filter(|s| s.disabled_reason.is_none()) else {
            return Ok(None);
        };
        let Some(text) = self.get_text(self.delivery_key(id, event)).await? else {
            return Ok(None);
        };
        let d: DeliveryJson = serde_json::from_str(&text).map_err(json_error)?;
        Ok(Some(Due {
            subscription_id: id.to_string(),
            event_id: event.to_string(),
            body: d.body,
            attempts: d.attempts,
            url: sub.url,
            secret: sub.secret,
        }))
    }

    pub async fn record(&self, due: &Due, a: Attempt, next: Next, keep: usize) -> Result<(), StoreError> {
        let log = self.state.key("wh-log", &due.subscription_id);
        // An attempt is kept in the log as its JSON.
        let entry = serde_json::to_string(&a).map_err(json_error)?;
        let delivery = self.delivery_key(&due.subscription_id, &due.event_id);
        let text = serde_json::to_string(&DeliveryJson {
            body: due.body.clone(),
            attempts: a.attempt,
        })
        .map_err(json_error)?;
        let (due_key, member) = (
            self.state.key("wh-due", "all"),
            format!("{} {}", due.subscription_id, due.event_id),
        );
        let retry_at = match &next {
            Next::RetryAt(at) => Some(*at),
            _ => None,
        };
        self.state
            .call("record", |mut c| async move {
                let mut p = redis::pipe();
                p.lpush(&log, entry).ltrim(&log, 0, keep as isize - 1);
                p.cmd("SET").arg(&delivery).arg(text).arg("XX").arg("EX").arg(KEEP_SECS);
                match retry_at {
                    Some(at) => p.zadd(&due_key, &member, at),
                    None => p.zrem(&due_key, &member),
                };
                p.query_async::<()>(&mut c).await
            })
            .await?;
        if let Next::GiveUp(reason) = next {
            if let Some(mut sub) = self.get(&due.subscription_id).await? {
                sub.disabled_reason = Some(reason);
                self.put_sub(&sub).await?;
            }
        }
        Ok(())
    }

    pub async fn pending(&self, id: &str) -> Result<usize, StoreError> {
        let due_key = self.state.key("wh-due", "all");
        let members: Vec<String> = self
            .state
            .call("ZRANGE", |mut c| async move { c.zrange(&due_key, 0, -1).await })
            .await?;
        Ok(members.iter().filter(|m| m.split(' ').next() == Some(id)).count())
    }
}
