//! The client's resilience against the fake upstream: which calls retry, `Retry-After` within the
//! deadline, slots per caller and the circuit breaker. Timing assertions are generous bounds.

use super::fake;
use crate::odata::*;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn upstream(root: &str, tune: impl FnOnce(&mut ResilienceConfig)) -> Upstream {
    let mut config = UpstreamConfig::new(root);
    config.timeout = Duration::from_secs(5);
    config.resilience.base_backoff = Duration::from_millis(10);
    tune(&mut config.resilience);
    Upstream::new(config).unwrap()
}

#[tokio::test]
async fn reads_retry_transient_failures_and_writes_do_not() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root, |_| {});
    up.get_json("flaky", None).await.expect("the third attempt answers");
    assert_eq!(fake.hits("flaky"), 3);

    let (fake, root) = fake::start().await;
    let up = upstream(&root, |_| {});
    let e = up
        .send_write(Method::POST, "flaky", &json!({}), None, false)
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(503));
    assert_eq!(fake.hits("flaky"), 1, "an ordinary write is sent once");
    let w = up
        .send_write_with(
            Method::POST,
            "flaky",
            &json!({}),
            None,
            false,
            RetryPolicy::UnlessProcessed,
        )
        .await
        .expect("a 503 did nothing, so a protected write goes again");
    assert_eq!(w.status, 204);
    assert_eq!(fake.hits("flaky"), 3);

    let (fake, root) = fake::start().await;
    let up = upstream(&root, |c| c.max_retries = 1);
    let e = up.get_json("unavailable", None).await.unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_UNAVAILABLE");
    assert_eq!(fake.hits("unavailable"), 2, "one try and max_retries retries");
}

#[tokio::test]
async fn retry_after_is_waited_for_within_the_deadline() {
    let (fake, root) = fake::start().await;
    let up = upstream(&root, |_| {});
    let started = Instant::now();
    up.get_json("throttled-once", None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited Retry-After: 1");
    assert_eq!(fake.hits("throttled-once"), 2);

    // `throttled` asks for 5 s, more than the deadline leaves: the call gives up at once.
    let started = Instant::now();
    let e = with_deadline(Instant::now() + Duration::from_secs(3), up.get_json("throttled", None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "UPSTREAM_THROTTLED");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.hits("throttled"), 1);
    // The caller stays paused: the next call does not even go out.
    let e = with_deadline(Instant::now() + Duration::from_secs(2), up.get_json("html", None))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.delivery), ("UPSTREAM_THROTTLED", Delivery::NotSent));
    assert_eq!(fake.hits("html"), 0);
}

#[tokio::test]
async fn requests_of_one_caller_queue_beyond_their_slots() {
    let (fake, root) = fake::start().await;
    let up = std::sync::Arc::new(upstream(&root, |c| c.concurrency_per_identity = 3));
    let calls = (0..20).map(|_| {
        let up = up.clone();
        async move { up.get_json("gauge", Some("Bearer one")).await }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    let max = fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=3).contains(&max), "at most 3 in flight, saw {max}");
}

#[tokio::test]
async fn the_breaker_fails_fast_while_the_upstream_is_down_and_closes_again() {
    // A port nobody listens on: every connection is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let root = format!("http://{addr}/api/data/v9.2/");
    let up = upstream(&root, |c| {
        c.max_retries = 1;
        c.breaker_threshold = 2;
        c.breaker_cooldown = Duration::from_millis(300);
    });
    for _ in 0..2 {
        let e = up.get_json("", None).await.unwrap_err();
        assert_eq!((e.code(), e.delivery), ("UPSTREAM_UNAVAILABLE", Delivery::NotSent));
    }
    let sent = up.requests_sent();
    assert_eq!(sent, 4, "two calls, each retried once");
    let e = up.get_json("", None).await.unwrap_err();
    assert!(matches!(e.kind, UpstreamErrorKind::CircuitOpen { .. }), "{e:?}");
    assert_eq!(e.code(), "UPSTREAM_UNAVAILABLE");
    assert_eq!(up.requests_sent(), sent, "an open circuit sends nothing");
    // The upstream comes back on the same port; after the cool-down a probe closes the circuit.
    let (fake, _) = fake::start_on(addr).await;
    let known = format!("{}({})", fake::entity().entity_set, fake::KNOWN_ID);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match up.get_page(&known, None, None).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.circuit(), CircuitState::Closed);
    assert!(fake.hits(&format!("({})", fake::KNOWN_ID)) >= 1);
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retried_like_the_upstream() {
    let (fake, root) = fake::start().await;
    let mut config = crate::odata::UpstreamConfig::new(root.clone());
    config.resilience.base_backoff = Duration::from_millis(10);
    config.auth = crate::odata::UpstreamAuth::ClientCredentials(crate::odata::EntraApp {
        token_url: format!("{root}flaky-token"),
        client_id: "app".into(),
        client_secret: crate::secret::Secret::new("s"),
        scope: "http://x/.default".into(),
    });
    let up = crate::odata::Upstream::new(config).unwrap();
    up.get_json("needs-token", None)
        .await
        .expect("the token's third request answers");
    assert_eq!(fake.hits("flaky-token"), 3);
    assert_eq!(up.tokens().token_requests(), 3);
    // Cached: no further token request.
    up.get_json("needs-token", None).await.unwrap();
    assert_eq!(fake.hits("flaky-token"), 3);
}
