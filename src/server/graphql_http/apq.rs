//! Automatic persisted queries, Apollo's protocol: a client sends the SHA-256 of its query in
//! `extensions.persistedQuery {version: 1, sha256Hash}`, without the query text. If the gateway
//! knows the hash it runs the query; if not it answers `PersistedQueryNotFound` and the client
//! sends the hash again with the text, which the gateway checks against the hash, runs, and keeps.
//!
//! The texts live in a bounded in-memory cache, weighed in bytes, so that clients cannot grow it
//! without limit; an evicted query costs its client one round trip to register it again.
//!
//! With `--redis-url` the replicas share what they keep: a query registered on one replica is
//! also written to Redis (`ats-gateway:apq:<hash>`, for [`SHARED_TTL`]), and a replica that does
//! not know a hash looks there before answering `PersistedQueryNotFound`. A text read from
//! Redis is hashed again before it runs. Redis failing costs only that: the hash is not found
//! and the client sends its query, as after an eviction.

use moka::future::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How many bytes of query text the cache holds by default.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// How long a query registered in Redis is kept there after its last registration.
pub const SHARED_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The persisted-query cache: query texts by the SHA-256 of their text.
#[derive(Clone)]
pub struct PersistedQueries {
    /// `None` when persisted queries are switched off (a capacity of 0).
    cache: Option<Cache<[u8; 32], Arc<str>>>,
    /// Redis, behind the local cache, when replicas share their state.
    shared: Option<Arc<crate::shared_state::SharedState>>,
}

/// The query a request runs.
#[derive(Debug)]
pub struct Resolved {
    pub query: String,
    /// The hash under which to keep the query once it has run: the client sent both.
    pub register: Option<[u8; 32]>,
}

/// Why a request's query could not be had.
#[derive(Debug, PartialEq, Eq)]
pub enum ApqError {
    /// Neither a query nor a persisted-query hash.
    MissingQuery,
    /// `extensions.persistedQuery` is not of the protocol's shape.
    Malformed(String),
    /// Persisted queries are switched off.
    NotSupported,
    /// The hash is not (or no longer) in the cache: the client should send the query.
    NotFound,
    /// The query sent does not hash to the hash sent.
    HashMismatch,
}

impl PersistedQueries {
    /// A cache of at most `capacity_bytes` of query text; 0 switches persisted queries off.
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|_: &[u8; 32], query: &Arc<str>| u32::try_from(32 + query.len()).unwrap_or(u32::MAX))
                .build()
        });
        PersistedQueries { cache, shared: None }
    }

    /// The same cache with Redis behind it (`None`: local only), shared by the replicas.
    pub fn with_shared(self, shared: Option<Arc<crate::shared_state::SharedState>>) -> Self {
        PersistedQueries { shared, ..self }
    }

    /// The query of a request, from its `query` parameter or from the cache by its hash.
    pub async fn resolve(
        &self,
        query: Option<String>,
        extensions: Option<&Map<String, Value>>,
    ) -> Result<Resolved, ApqError> {
        let persisted = extensions
            .and_then(|e| e.get("persistedQuery"))
            .filter(|v| !v.is_null());
        let Some(persisted) = persisted else {
            return query
                .map(|query| Resolved { query, register: None })
                .ok_or(ApqError::MissingQuery);
        };
        let hash = parse_extension(persisted)?;
        let Some(cache) = &self.cache else {
            return Err(ApqError::NotSupported);
        };
        match query {
            Some(query) if Sha256::digest(query.as_bytes()).as_slice() == hash => Ok(Resolved {
                query,
                register: Some(hash),
            }),
            Some(_) => Err(ApqError::HashMismatch),
            None => match cache.get(&hash).await {
                Some(query) => Ok(Resolved {
                    query: query.to_string(),
                    register: None,
                }),
                None => match self.shared_get(&hash).await {
                    Some(query) => {
                        cache.insert(hash, Arc::from(query.as_str())).await;
                        Ok(Resolved { query, register: None })
                    }
                    None => Err(ApqError::NotFound),
                },
            },
        }
    }

    /// Keeps `query` under `hash` (its SHA-256, checked by [`Self::resolve`]), here and in Redis.
    pub async fn register(&self, hash: [u8; 32], query: &str) {
        if let Some(cache) = &self.cache {
            cache.insert(hash, Arc::from(query)).await;
            self.shared_set(&hash, query).await;
        }
    }

    /// The query Redis holds under `hash`, if it does and it hashes to `hash`.
    async fn shared_get(&self, hash: &[u8; 32]) -> Option<String> {
        let shared = self.shared.as_ref()?;
        let key = shared.key("apq", &hex(hash));
        let found = shared
            .call("read a persisted query", |mut c| async move {
                redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut c).await
            })
            .await;
        match found {
            Ok(query) => query.filter(|q| Sha256::digest(q.as_bytes()).as_slice() == hash),
            Err(e) => {
                // Counted in /metrics and shown by /readyz; one line per request would flood.
                tracing::debug!(error = %e, "persisted query not looked up in Redis");
                None
            }
        }
    }

    /// Writes `query` to Redis under `hash` for [`SHARED_TTL`]; a failure is logged only.
    async fn shared_set(&self, hash: &[u8; 32], query: &str) {
        let Some(shared) = &self.shared else { return };
        let (key, query) = (shared.key("apq", &hex(hash)), query.to_string());
        let ttl = SHARED_TTL.as_millis() as u64;
        let stored = shared
            .call("keep a persisted query", |mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(query)
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "persisted query not shared through Redis");
        }
    }
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `{"version": 1, "sha256Hash": "<64 hex digits>"}`.
fn parse_extension(persisted: &Value) -> Result<[u8; 32], ApqError> {
    let malformed = |m: &str| ApqError::Malformed(m.to_owned());
    let Some(persisted) = persisted.as_object() else {
        return Err(malformed(
            "`extensions.persistedQuery` must be an object with `version` and `sha256Hash`",
        ));
    };
    match persisted.get("version").and_then(Value::as_i64) {
        Some(1) => {}
        _ => {
            return Err(malformed(
                "unsupported persisted query version: only version 1 is supported",
            ))
        }
    }
    persisted
        .get("sha256Hash")
        .and_then(Value::as_str)
        .and_then(decode_hash)
        .ok_or_else(|| malformed("`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits"))
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const QUERY: &str = "{ __typename }";

    fn hex(query: &str) -> String {
        Sha256::digest(query.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn ext(hash: &str) -> Map<String, Value> {
        json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
            .as_object()
            .unwrap()
            .clone()
    }

    #[tokio::test]
    async fn registers_then_serves_by_hash() {
        let apq = PersistedQueries::new(DEFAULT_CACHE_BYTES);
        let e = ext(&hex(QUERY));
        assert_eq!(apq.resolve(None, Some(&e)).await.unwrap_err(), ApqError::NotFound);
        let resolved = apq.resolve(Some(QUERY.into()), Some(&e)).await.unwrap();
        apq.register(resolved.register.unwrap(), &resolved.query).await;
        let again = apq.resolve(None, Some(&e)).await.unwrap();
        assert_eq!(again.query, QUERY);
        assert_eq!(again.register, None);
        // Upper-case hex names the same hash.
        let upper = ext(&hex(QUERY).to_uppercase());
        assert_eq!(apq.resolve(None, Some(&upper)).await.unwrap().query, QUERY);
    }

    #[tokio::test]
    async fn refuses_what_is_not_the_protocol() {
        let apq = PersistedQueries::new(DEFAULT_CACHE_BYTES);
        assert_eq!(
            apq.resolve(Some("{ other }".into()), Some(&ext(&hex(QUERY))))
                .await
                .unwrap_err(),
            ApqError::HashMismatch
        );
        assert_eq!(apq.resolve(None, None).await.unwrap_err(), ApqError::MissingQuery);
        for bad in [
            json!({"persistedQuery": {"version": 2, "sha256Hash": hex(QUERY)}}),
            json!({"persistedQuery": {"version": 1, "sha256Hash": "abc"}}),
            json!({"persistedQuery": {"version": 1, "sha256Hash": "zz".repeat(32)}}),
            json!({"persistedQuery": "yes"}),
        ] {
            let r = apq.resolve(None, bad.as_object()).await.unwrap_err();
            assert!(matches!(r, ApqError::Malformed(_)), "{bad}: {r:?}");
        }
        // A null extension is no extension.
        let null = json!({"persistedQuery": null});
        assert_eq!(
            apq.resolve(Some(QUERY.into()), null.as_object())
                .await
                .unwrap()
                .register,
            None
        );
    }

    #[tokio::test]
    async fn capacity_zero_switches_persisted_queries_off() {
        let apq = PersistedQueries::new(0);
        let e = ext(&hex(QUERY));
        assert_eq!(
            apq.resolve(Some(QUERY.into()), Some(&e)).await.unwrap_err(),
            ApqError::NotSupported
        );
        assert_eq!(apq.resolve(Some(QUERY.into()), None).await.unwrap().query, QUERY);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bytes() {
        let apq = PersistedQueries::new(4096);
        for i in 0..200 {
            let query = format!("query Q{i} {{ __typename }} # {}", "x".repeat(100));
            let hash: [u8; 32] = Sha256::digest(query.as_bytes()).into();
            apq.register(hash, &query).await;
        }
        let cache = apq.cache.as_ref().unwrap();
        cache.run_pending_tasks().await;
        assert!(cache.weighted_size() <= 4096, "{} bytes kept", cache.weighted_size());
        assert!(cache.entry_count() > 0);
    }
}
