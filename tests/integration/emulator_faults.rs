//! Service protection and fault injection, and the request counters tests rely on.

use crate::harness::{client, Emu};
use ats_gateway::emulator::faults::{Faults, Throttle};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn request_budget_answers_429_with_retry_after_per_caller() {
    let emu = Emu::with_faults(Faults {
        throttle: Some(Throttle {
            requests: 3,
            window_seconds: 60,
        }),
        ..Faults::default()
    });
    for _ in 0..3 {
        let r = client()
            .get(emu.url("mshr_hcmratinglevelentities?$top=1"))
            .bearer_auth("alice")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = client()
        .get(emu.url("mshr_hcmratinglevelentities?$top=1"))
        .bearer_auth("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "0x80072322");
    let r = client()
        .get(emu.url("mshr_hcmratinglevelentities?$top=1"))
        .bearer_auth("bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another caller has its own budget");
}

#[tokio::test]
async fn injected_latency_errors_and_drops() {
    let emu = Emu::with_faults(Faults::default());
    let set = |f: serde_json::Value| {
        let url = format!("{}faults", emu.admin);
        async move { assert_eq!(client().put(url).json(&f).send().await.unwrap().status(), 204) }
    };
    set(json!({"latencyMs": 150})).await;
    let t = Instant::now();
    assert_eq!(client().get(emu.url("")).send().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    set(json!({"errorRate": 1.0})).await;
    let r = client().get(emu.url("")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    set(json!({"dropRate": 1.0})).await;
    let r = client().get(emu.url("mshr_hcmratinglevelentities")).send().await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "a dropped connection never yields a complete body");
    let r = client()
        .put(format!("{}faults", emu.admin))
        .json(&json!({"latency": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown fault keys are rejected");
}

#[tokio::test]
async fn counters_count_per_entity_set_and_reset() {
    let emu = Emu::fresh();
    emu.reset_stats().await;
    emu.get("mshr_hcmratinglevelentities?$top=1").await;
    emu.get("mshr_hcmratinglevelentities?$top=1").await;
    emu.get("mshr_dirpersonentities?$top=1").await;
    let s = emu.stats().await;
    assert_eq!(s["total"], 3);
    assert_eq!(s["byEntitySet"]["mshr_hcmratinglevelentities"], 2);
    emu.reset_stats().await;
    assert_eq!(emu.stats().await["total"], 0);
}
