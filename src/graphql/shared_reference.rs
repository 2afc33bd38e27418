//! Reference data's second cache level, in Redis (`--redis-url`), behind the local moka cache
//! (`GatewayState::reference_cache`): a page one replica fetched is served to the others for
//! the same caller identity, so the replicas fetch it upstream once between them.
//!
//! The key is `ats-gateway:reference:<SHA-256 of caller identity, URL, page size>`: keyed by
//! identity as the local cache is, so no caller is ever served data fetched with another
//! caller's credentials; the hash keeps identities and URLs (filter values) out of Redis' key
//! space. The value is the page as JSON (rows, next link, count), expiring with the local
//! cache's TTL (`PX`). A local miss asks Redis before the upstream; a Redis that fails or
//! answers something unreadable is a miss (the page is read upstream); the write after an
//! upstream read runs in a task of its own, so the caller does not wait for it. Only reference
//! data goes through here: lists and records never add a Redis round trip. A page taken from
//! Redis starts a new local TTL, so a replica may serve a page up to twice the TTL old.

use crate::odata::Page;
use crate::shared_state::SharedState;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The Redis key of the page of `url` read as `identity` with `page_size`.
pub fn key(shared: &SharedState, identity: &str, url: &str, page_size: Option<usize>) -> String {
    let mut h = Sha256::new();
    for part in [identity.as_bytes(), url.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(page_size.map_or(-1, |n| n as i64).to_be_bytes());
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    shared.key("reference", &digest)
}

/// The page stored under `key`, if Redis has it (a failure or an unreadable value: `None`).
pub async fn get(shared: &SharedState, key: &str) -> Option<Page> {
    let key = key.to_string();
    let stored = shared
        .call("reference GET", |mut c| async move {
            redis::cmd("GET").arg(&key).query_async::<Option<Vec<u8>>>(&mut c).await
        })
        .await
        .ok()??;
    decode(&stored)
}

/// Stores `page` under `key` for `ttl`, in a task of its own; a failure is counted and dropped.
pub fn put(shared: &Arc<SharedState>, key: String, page: &Page, ttl: Duration) {
    let bytes = encode(page);
    let ms = (ttl.as_millis() as u64).max(1);
    let shared = shared.clone();
    tokio::spawn(async move {
        let _ = shared
            .call("reference SET", |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    });
}

fn encode(page: &Page) -> Vec<u8> {
    // Reference data is read without `$expand`: a record's properties are all of it.
    let rows: Vec<&crate::odata::record::Props> = page.value.iter().map(|r| r.properties()).collect();
    let doc = serde_json::json!({"value": rows, "nextLink": page.next_link, "count": page.count});
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<Page> {
    let Value::Object(mut doc) = serde_json::from_slice(bytes).ok()? else {
        return None;
    };
    let Value::Array(rows) = doc.remove("value")? else {
        return None;
    };
    let value = rows
        .into_iter()
        .map(|r| match r {
            Value::Object(m) => Some(crate::odata::UpstreamRecord::new(m)),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Page {
        value,
        next_link: doc.get("nextLink").and_then(Value::as_str).map(str::to_owned),
        count: doc.get("count").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_back_as_written_and_garbage_is_a_miss() {
        let mut row = serde_json::Map::new();
        row.insert("mshr_ratinglevelid".into(), Value::String("A".into()));
        let page = Page {
            value: vec![crate::odata::UpstreamRecord::new(row)],
            next_link: Some("https://x/api/data/v9.2/set?$skiptoken=1".into()),
            count: Some(7),
        };
        assert_eq!(decode(&encode(&page)), Some(page));
        assert_eq!(decode(b"not json"), None);
        assert_eq!(decode(br#"{"value": [1]}"#), None);
    }
}
