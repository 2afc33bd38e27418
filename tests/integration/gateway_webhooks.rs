//! Webhooks against the emulator, with a receiver (a small axum server) inside the test: a
//! change made directly at the emulator is delivered, signed (verified here from the Standard
//! Webhooks spec with hmac + sha2 + base64, independently of the gateway's signing code), and a
//! 500 is retried with the same `webhook-id`; a gateway process restarted mid-retry still
//! delivers; the SSRF guard refuses private addresses and `http://` without their flags;
//! registrations are their caller's own.

use crate::harness::{client, Emu, Gateway, GatewayProcess};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    /// What the receiver answered.
    answered: u16,
}

/// A webhook receiver on 127.0.0.1: answers `fail_first` requests with 500, then `status`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(fail_first: usize, status: u16) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(AtomicUsize::new(0));
        let (g, s) = (got.clone(), status.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (g, s, seen) = (g.clone(), s.clone(), seen.clone());
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let answered = if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                        500
                    } else {
                        s.load(Ordering::SeqCst)
                    };
                    g.lock().unwrap().push(Received {
                        id: h("webhook-id"),
                        timestamp: h("webhook-timestamp"),
                        signature: h("webhook-signature"),
                        body: body.to_vec(),
                        answered,
                    });
                    axum::http::StatusCode::from_u16(answered).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            got,
            status,
            _server: server,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits up to `within` for `n` requests.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let end = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() > end {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Verifies a delivery by the Standard Webhooks spec: `v1,` + base64(HMAC-SHA256(base64-decoded
/// secret after `whsec_`, "{id}.{timestamp}.{body}")), among the space-separated signatures.
fn verifies(secret: &str, r: &Received) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(r.id.as_bytes());
    mac.update(b".");
    mac.update(r.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}

/// A GraphQL request to `endpoint` as the caller whose `Authorization` is `auth`.
async fn gql(endpoint: &str, auth: Option<&str>, query: &str, variables: Value) -> Value {
    let mut rb = client()
        .post(endpoint)
        .json(&json!({"query": query, "variables": variables}));
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    rb.send().await.unwrap().json().await.unwrap()
}

const CREATE: &str = "mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { secret subscription { id status events } }
}";

const LIST: &str = "{ webhookSubscriptions { id url status disabledReason description
  deliveries { eventId attempt statusCode error latencyMs at } } }";

/// A position of `emu` still open, and its registration input watching only it.
async fn watched_position(emu: &Emu, url: &str) -> (String, Value) {
    let pos = emu
        .first("mshr_hcmrecruitingrequestpositionentities?$top=1&$filter=mshr_status eq 200000000")
        .await;
    let id = pos["mshr_hcmrecruitingrequestpositionentityid"]
        .as_str()
        .unwrap()
        .to_string();
    let input = json!({
        "url": url,
        "events": ["RECRUITING_REQUEST_POSITION_CHANGED"],
        "filter": {"recruitingRequestPosition": {"id": {"eq": id}}},
        "description": "positions of the test",
    });
    (id, input)
}

/// Sets the position's status at the emulator directly (not through the gateway).
async fn fill_position(emu: &Emu, id: &str) {
    let r = client()
        .patch(emu.url(&format!("mshr_hcmrecruitingrequestpositionentities({id})")))
        .json(&json!({"mshr_status": 200000001}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

fn open_webhooks(c: &mut ats_gateway::server::GatewayConfig) {
    use ats_gateway::graphql::webhooks::{backoff::Backoff, guard::Policy};
    c.webhooks.policy = Policy {
        allow_http: true,
        allow_private: true,
    };
    c.webhooks.backoff = Backoff {
        base: Duration::from_millis(100),
    };
    c.read.watch.interval = Duration::from_secs(1);
}

#[tokio::test]
async fn a_change_at_the_emulator_is_delivered_signed_and_a_500_retried_with_the_same_id() {
    let receiver = Receiver::start(1, 200).await;
    let gw = Gateway::with_config(Emu::fresh(), open_webhooks);
    let (id, input) = watched_position(&gw.emu, &receiver.url).await;
    let v = gql(&gw.endpoint, None, CREATE, json!({"input": input})).await;
    let created = &v["data"]["createWebhookSubscription"];
    let secret = created["secret"].as_str().unwrap_or_else(|| panic!("created: {v}"));
    assert_eq!(created["subscription"]["status"], "ACTIVE");
    fill_position(&gw.emu, &id).await;

    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "one 500, then its retry: {got:?}");
    assert_eq!((got[0].answered, got[1].answered), (500, 200));
    assert_eq!(got[0].id, got[1].id, "the retry keeps the webhook-id");
    for r in &got {
        assert!(verifies(secret, r), "the signature verifies: {r:?}");
        let ts: i64 = r.timestamp.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - ts).abs() < 300, "webhook-timestamp is now: {ts}");
    }
    assert!(
        !verifies("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", &got[1]),
        "another secret does not verify"
    );
    let body: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(body["type"], "recruitingRequestPosition.updated", "{body}");
    assert_eq!(body["data"]["kind"], "UPDATED");
    assert_eq!(body["data"]["entity"], "RecruitingRequestPosition");
    assert_eq!(body["data"]["key"].as_str().unwrap().to_lowercase(), id.to_lowercase());
    let changed = body["data"]["changedFields"].as_array().unwrap();
    assert!(changed.contains(&json!("status")), "{body}");
    assert!(
        body["data"]["record"]["status"].is_string(),
        "the record with GraphQL names and labels: {body}"
    );

    // Nothing more: one change, delivered once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.received().len(), 2);
    let log = gql(&gw.endpoint, None, LIST, json!({})).await;
    let deliveries = &log["data"]["webhookSubscriptions"][0]["deliveries"];
    assert_eq!(deliveries[0]["statusCode"], 200, "{log}");
    assert_eq!(deliveries[0]["attempt"], 2);
    assert_eq!(deliveries[1]["statusCode"], 500);
    assert_eq!(deliveries[0]["eventId"], json!(got[0].id));
}

/// A gateway process that delivers to the test's receiver (plain HTTP on loopback), retries after
/// 100 ms and watches every second.
const QUICK_PROCESS: [&str; 7] = [
    "--webhook-allow-http",
    "--webhook-allow-private",
    "--webhook-retry-base",
    "100ms",
    "--watch-interval",
    "1s",
    "--watch-interval-below-minimum",
];

#[tokio::test]
async fn a_gateway_restarted_mid_retry_still_delivers() {
    let emu = Emu::fresh();
    let receiver = Receiver::start(0, 500).await;
    let state = std::env::temp_dir().join(format!("ats-gw-webhooks-{}.db", uuid::Uuid::new_v4()));
    let state_arg = state.to_string_lossy().to_string();
    let args = [&QUICK_PROCESS[..], &["--state-db", &state_arg]].concat();
    let mut first = GatewayProcess::start(&emu.root, &args, &[], None).await;
    let (id, input) = watched_position(&emu, &receiver.url).await;
    let v = gql(
        &format!("{}/graphql", first.base),
        None,
        CREATE,
        json!({"input": input}),
    )
    .await;
    let secret = v["data"]["createWebhookSubscription"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    fill_position(&emu, &id).await;
    // Attempts 1 and 2 (immediately, then 100 ms later) fail; the third is due 6 s later.
    let failed = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    // Let the second attempt be recorded before the stop (else it is sent again: at least once).
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop();
    receiver.status.store(200, Ordering::SeqCst);

    let second = GatewayProcess::start(&emu.root, &args, &[], None).await;
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "the new process sent the pending delivery: {got:?}");
    assert_eq!(got[2].answered, 200);
    assert_eq!(got[2].id, failed[0].id, "the same event, the same webhook-id");
    assert!(verifies(&secret, &got[2]));
    let log = gql(&format!("{}/graphql", second.base), None, LIST, json!({})).await;
    let deliveries = &log["data"]["webhookSubscriptions"][0]["deliveries"];
    assert_eq!(
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["statusCode"].clone())
            .collect::<Vec<_>>(),
        vec![json!(200), json!(500), json!(500)],
        "{log}"
    );
    drop(second);
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn private_addresses_and_http_are_refused_without_their_flags() {
    let gw = Gateway::with_config(Emu::fresh(), |c| c.read.watch.interval = Duration::from_secs(1));
    for (url, says) in [
        ("http://203.0.113.9/hook", "--webhook-allow-http"),
        ("https://127.0.0.1:8443/hook", "loopback"),
        ("https://localhost/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://[::ffff:192.168.0.1]/hook", "private"),
        ("https://[fd00::1]/hook", "unique-local"),
        ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("ftp://example.com/", "scheme"),
    ] {
        let input = json!({"url": url, "events": ["CANDIDATE_TO_HIRE_CHANGED"]});
        let v = gql(&gw.endpoint, None, CREATE, json!({"input": input})).await;
        let e = &v["errors"][0];
        assert_eq!(e["extensions"]["code"], "BAD_USER_INPUT", "{url}: {v}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(says), "{url}: {message}");
    }
    let v = gql(&gw.endpoint, None, LIST, json!({})).await;
    assert_eq!(v["data"]["webhookSubscriptions"], json!([]), "nothing was registered");
    let input = json!({"url": "https://203.0.113.9/hook", "events": ["CANDIDATE_TO_HIRE_CHANGED"],
        "filter": {"recruitingRequest": {"id": {"eq": "x"}}}});
    let v = gql(&gw.endpoint, None, CREATE, json!({"input": input})).await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "a filter for an event not asked: {v}"
    );
}

#[tokio::test]
async fn another_caller_can_neither_list_nor_delete_a_subscription() {
    let receiver = Receiver::start(0, 200).await;
    let gw = Gateway::with_config(Emu::fresh(), open_webhooks);
    let (alice, bob) = (Some("Bearer alice-token"), Some("Bearer bob-token"));
    let input = json!({"url": receiver.url, "events": ["RECRUITING_REQUEST_CHANGED"],
        "filter": {"recruitingRequest": {"id": {"eq": "00000000-0000-0000-0000-000000000001"}}}});
    let v = gql(&gw.endpoint, alice, CREATE, json!({"input": input})).await;
    let id = v["data"]["createWebhookSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();

    gw.emu.reset_stats().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = gw.emu.stats().await;
    assert!(
        stats["total"].as_u64().unwrap() >= 1,
        "the registration is watched: {stats}"
    );

    let v = gql(&gw.endpoint, bob, LIST, json!({})).await;
    assert_eq!(v["data"]["webhookSubscriptions"], json!([]), "bob sees none: {v}");
    let delete = "mutation($id: ID!) { deleteWebhookSubscription(id: $id) }";
    let v = gql(&gw.endpoint, bob, delete, json!({"id": id})).await;
    assert_eq!(v["data"]["deleteWebhookSubscription"], false, "{v}");

    let v = gql(&gw.endpoint, alice, LIST, json!({})).await;
    let subs = v["data"]["webhookSubscriptions"].as_array().unwrap().clone();
    assert_eq!(subs.len(), 1, "{v}");
    assert_eq!(subs[0]["id"], json!(id));
    assert_eq!(subs[0]["status"], "ACTIVE");
    assert_eq!(subs[0]["deliveries"], json!([]), "the log is readable, and empty");
    assert!(!v.to_string().contains("whsec_"), "the secret is never shown again");
    let v = gql(&gw.endpoint, alice, delete, json!({"id": id})).await;
    assert_eq!(v["data"]["deleteWebhookSubscription"], true, "{v}");
    let v = gql(&gw.endpoint, alice, LIST, json!({})).await;
    assert_eq!(v["data"]["webhookSubscriptions"], json!([]));

    // The deleted webhook's watch is released: the emulator sees no more polls (1 s interval).
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.emu.reset_stats().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = gw.emu.stats().await;
    assert_eq!(stats["total"], 0, "no polls after the delete: {stats}");
}

#[tokio::test]
async fn on_behalf_of_refuses_registration_for_want_of_a_token_to_watch_with() {
    let gw = crate::gateway_auth::on_behalf_of_gateway_with(|_| {});
    let alice = gw.emu.user_token("alice", "api://ats-gateway/access_as_user").await;
    let input = json!({"url": "https://203.0.113.9/hook", "events": ["CANDIDATE_TO_HIRE_CHANGED"]});
    let v = gql(
        &gw.endpoint,
        Some(&format!("Bearer {alice}")),
        CREATE,
        json!({"input": input}),
    )
    .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("on-behalf-of"),
        "{v}"
    );
}

#[tokio::test]
async fn replicas_share_registrations_and_one_delivers_what_a_stopped_one_left() {
    let emu = Emu::fresh();
    let redis = crate::redis_server::RedisServer::start();
    let receiver = Receiver::start(0, 500).await;
    let url = redis.url();
    let args = [&QUICK_PROCESS[..], &["--redis-url", &url]].concat();
    let mut a = GatewayProcess::start(&emu.root, &args, &[], None).await;
    let b = GatewayProcess::start(&emu.root, &args, &[], None).await;
    let (id, input) = watched_position(&emu, &receiver.url).await;
    let v = gql(&format!("{}/graphql", a.base), None, CREATE, json!({"input": input})).await;
    let secret = v["data"]["createWebhookSubscription"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let listed = gql(&format!("{}/graphql", b.base), None, LIST, json!({})).await;
    assert_eq!(
        listed["data"]["webhookSubscriptions"].as_array().map(Vec::len),
        Some(1),
        "B sees A's registration: {listed}"
    );

    fill_position(&emu, &id).await;
    let failed = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.stop();
    receiver.status.store(200, Ordering::SeqCst);
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "replica B sent the pending delivery: {got:?}");
    assert_eq!((got[2].answered, &got[2].id), (200, &failed[0].id));
    assert!(verifies(&secret, &got[2]));
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "one event, enqueued once: {got:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 3, "delivered once");
}
