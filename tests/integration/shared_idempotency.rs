//! The Redis store of idempotency keys on its own, against a `redis-server` of the test's own:
//! what a claim's guard does when it is dropped, renewed or outlived (the replicas' tests in
//! `gateway_replicas` go through the gateway).

use crate::redis_server::RedisServer;
use ats_gateway::graphql::idempotency::{IdempotencyStore, KeyState, Probe};
use ats_gateway::shared_state::SharedState;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;

fn store(redis: &RedisServer) -> IdempotencyStore {
    let url = ats_gateway::secret::Secret::new(redis.url());
    let state = SharedState::connect(&url, Counter::default(), Counter::default()).unwrap();
    IdempotencyStore::shared(Arc::new(state), Duration::from_secs(3600))
}

/// What `key` holds for the next `begin` once the settling a dropped claim sends has run
/// (asked until it is no longer in progress, for at most 5 s).
async fn settled_state(s: &IdempotencyStore, key: &str) -> KeyState {
    for _ in 0..250 {
        let (state, claim) = s.begin("alice", key, "h").await.unwrap();
        if state != KeyState::InProgress {
            // Released again at once: the caller of this helper only looks.
            drop(claim);
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    KeyState::InProgress
}

#[tokio::test]
async fn a_dropped_claim_frees_its_key_or_leaves_it_unknown_once_its_write_may_have_gone_out() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let (state, claim) = s.begin("alice", "before-write", "h").await.unwrap();
    assert_eq!(state, KeyState::Reserved);
    assert_eq!(
        s.begin("alice", "before-write", "h").await.unwrap().0,
        KeyState::InProgress
    );
    drop(claim);
    assert_eq!(
        settled_state(&s, "before-write").await,
        KeyState::Reserved,
        "nothing went out: free again"
    );

    let probe = Probe {
        url: "mshr_hcmcandidatetohireentities?$select=x".into(),
        baseline: vec!["b".into()],
    };
    let (_, claim) = s.begin("alice", "after-write", "h").await.unwrap();
    let mut claim = claim.unwrap();
    claim.prepare(Some(&probe)).await.unwrap();
    drop(claim);
    assert_eq!(
        settled_state(&s, "after-write").await,
        KeyState::Unknown { probe: Some(probe) },
        "the write may have gone out: the next use looks first"
    );
    assert_eq!(
        s.begin("bob", "after-write", "h").await.unwrap().0,
        KeyState::Reserved,
        "keys are per caller"
    );
}

#[tokio::test]
async fn a_live_claim_keeps_its_key_past_its_lease() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let (_, held) = s.begin("alice", "long", "h").await.unwrap();
    tokio::time::sleep(ats_gateway::graphql::idempotency::LEASE + Duration::from_secs(2)).await;
    assert_eq!(
        s.begin("alice", "long", "h").await.unwrap().0,
        KeyState::InProgress,
        "renewed while it lives"
    );
    held.unwrap().complete("c-1", "BATCH").await;
    assert_eq!(
        s.begin("alice", "long", "h").await.unwrap().0,
        KeyState::Completed {
            candidate_id: "c-1".into(),
            strategy: "BATCH".into()
        }
    );
    assert_eq!(
        s.claimed(&["C-1".into(), "c-2".into()]).await.unwrap(),
        vec!["C-1".to_string()]
    );
}

#[tokio::test]
async fn a_claim_whose_lease_expired_cannot_overwrite_the_one_that_took_its_key_over() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let (_, first) = s.begin("alice", "fenced", "h").await.unwrap();
    let mut first = first.unwrap();
    first.prepare(None).await.unwrap();
    // The first holder's lease expires (as when it was cut off from Redis for longer than it).
    let record = format!("ats-gateway:idem:{}", ats_gateway::secret::sha256_hex(b"alice\nfenced"));
    assert_eq!(redis.command(&format!("DEL {record}:lease")).as_deref(), Some(":1"));
    let (state, second) = s.begin("alice", "fenced", "h").await.unwrap();
    assert_eq!(state, KeyState::Unknown { probe: None }, "taken over, looking first");
    first.complete("c-stale", "BATCH").await;
    assert_eq!(s.begin("alice", "fenced", "h").await.unwrap().0, KeyState::InProgress);
    second.unwrap().release().await;
    assert_eq!(
        s.begin("alice", "fenced", "h").await.unwrap().0,
        KeyState::Reserved,
        "the stale holder's candidate was not recorded"
    );
    assert!(s.claimed(&["c-stale".into()]).await.unwrap().is_empty());
}
