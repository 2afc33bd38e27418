//! Authentication end to end: the gateway's four upstream modes against the emulator's token
//! endpoint and bearer checking, caller authentication (JWT against the emulator's JWKS, API
//! keys), and caches and idempotency keys partitioned by caller.

use crate::harness::{Emu, Gateway};
use ats_gateway::odata::{EntraApp, UpstreamAuth};
use ats_gateway::secret::{sha256_hex, Secret};
use ats_gateway::server::auth::{ApiKey, CallerAuthConfig, CallerAuthMode, JwtConfig, JwtKeys};
use serde_json::{json, Value};
use std::time::Duration;

const LIST: &str = "{ recruitingRequests(first: 3) { nodes { recruitingRequestId positions { positionId } } } }";

fn api_keys(names: &[&str]) -> CallerAuthConfig {
    CallerAuthConfig {
        mode: CallerAuthMode::ApiKeys(
            names
                .iter()
                .map(|n| ApiKey {
                    name: n.to_string(),
                    sha256: sha256_hex(format!("key-of-{n}").as_bytes()),
                })
                .collect(),
        ),
        allow_anonymous: false,
    }
}

/// The emulator's demo Entra application, asking for `scope` of the emulator.
pub(crate) fn entra_app(emu: &Emu, scope: &str) -> EntraApp {
    EntraApp {
        token_url: emu.token_url(),
        client_id: ats_gateway::emulator::auth::DEMO_CLIENT_ID.into(),
        client_secret: Secret::new(ats_gateway::emulator::auth::DEMO_CLIENT_SECRET),
        scope: format!("{}/{scope}", emu.origin()),
    }
}

/// A gateway calling the emulator with client credentials, callers identified by API key.
fn client_credentials_gateway(lifetime: Duration) -> Gateway {
    let emu = Emu::with_auth(lifetime);
    let app = entra_app(&emu, ".default");
    Gateway::with_config(emu, move |c| {
        c.upstream_auth = UpstreamAuth::ClientCredentials(app);
        c.caller_auth = api_keys(&["partner-a", "partner-b"]);
    })
}

/// `Authorization: Bearer <token>`, as `query_with` takes a header.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn ok(v: &Value) {
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
}

#[tokio::test]
async fn client_credentials_share_one_token_and_refuse_anonymous_callers() {
    let gw = client_credentials_gateway(Duration::from_secs(3600));
    // No API key: refused before anything runs, with a challenge.
    let (status, challenge, body) = gw.query_with(LIST, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{body}");
    assert!(challenge.unwrap_or_default().starts_with("ApiKey"));
    let (status, _, body) = gw.query_with(LIST, Some(("x-api-key", "a-wrong-key"))).await;
    assert_eq!(status, 401, "{body}");
    // Since the start (option-set labels, then a burst of 20 requests): one token.
    let burst = || async {
        let runs = (0..20).map(|_| gw.query_with(LIST, Some(("x-api-key", "key-of-partner-a"))));
        for (status, _, body) in futures::future::join_all(runs).await {
            assert_eq!(status, 200);
            ok(&body);
        }
    };
    burst().await;
    let stats = gw.emu.stats().await;
    assert_eq!(
        stats["auth"]["tokensIssued"],
        json!({"client_credentials": 1}),
        "{stats}"
    );
    assert_eq!(stats["auth"]["refused"], 0, "{stats}");
    let (_, metrics) = gw.get("/metrics").await;
    let token_line = metrics
        .lines()
        .find(|l| l.starts_with("ats_gateway_upstream_requests_total") && l.contains("\"$token\""));
    assert!(
        token_line.is_some_and(|l| l.ends_with(" 1")),
        "token requests are in the metrics:\n{metrics}"
    );
    // The token expires under a burst: every request meets a 401, and they share one refresh.
    gw.emu.expire_tokens().await;
    burst().await;
    let stats = gw.emu.stats().await;
    assert_eq!(
        stats["auth"]["tokensIssued"],
        json!({"client_credentials": 2}),
        "{stats}"
    );
    assert!(stats["auth"]["refused"].as_u64().unwrap() >= 1, "{stats}");
    let callers: Vec<&String> = stats["byCaller"].as_object().unwrap().keys().collect();
    assert_eq!(callers, ["app:ats-gateway"], "{stats}");
}

#[tokio::test]
async fn an_expired_token_costs_one_refresh_and_one_retry() {
    let gw = client_credentials_gateway(Duration::from_secs(3600));
    let key = Some(("x-api-key", "key-of-partner-b"));
    let (_, _, body) = gw.query_with(LIST, key).await;
    ok(&body);
    gw.emu.expire_tokens().await;
    gw.emu.reset_stats().await;
    let (status, _, body) = gw
        .query_with(
            "{ recruitingRequests(first: 2) { nodes { recruitingRequestId } } }",
            key,
        )
        .await;
    assert_eq!(status, 200);
    ok(&body);
    let stats = gw.emu.stats().await;
    assert_eq!(stats["auth"]["refused"], 1, "one 401: {stats}");
    assert_eq!(
        stats["auth"]["tokensIssued"],
        json!({"client_credentials": 1}),
        "one refresh: {stats}"
    );
    assert_eq!(stats["total"], 1, "the retry is the only request served: {stats}");
    // A write after expiry is retried too: a 401 means the upstream did nothing with it.
    gw.emu.expire_tokens().await;
    gw.emu.reset_stats().await;
    let create = r#"mutation { createRatingLevel(input: { ratingModelId: "Skills", ratingLevelId: "9", description: "Refreshed", factor: 9 }) { errors { message } record { id } } }"#;
    let (status, _, body) = gw.query_with(create, key).await;
    assert_eq!(status, 200);
    ok(&body);
    assert_eq!(body["data"]["createRatingLevel"]["errors"], json!([]), "{body}");
    let stats = gw.emu.stats().await;
    assert_eq!(
        (stats["auth"]["refused"].as_u64(), stats["writes"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let gw = client_credentials_gateway(Duration::from_secs(2));
    let key = Some(("x-api-key", "key-of-partner-a"));
    for _ in 0..3 {
        let (_, _, body) = gw.query_with(LIST, key).await;
        ok(&body);
        tokio::time::sleep(Duration::from_millis(1700)).await;
    }
    let stats = gw.emu.stats().await;
    // Renewed at 3/4 of their 2 s: no request ever met an expired token.
    assert_eq!(stats["auth"]["refused"], 0, "{stats}");
    assert!(
        stats["auth"]["tokensIssued"]["client_credentials"].as_u64().unwrap() >= 2,
        "{stats}"
    );
}

/// A gateway that checks callers' JWTs against the emulator's JWKS and calls the emulator on
/// their behalf.
fn on_behalf_of_gateway() -> Gateway {
    on_behalf_of_gateway_with(|_| {})
}

/// [`on_behalf_of_gateway`], with `tune` adjusting the rest of its configuration.
pub(crate) fn on_behalf_of_gateway_with(tune: impl FnOnce(&mut ats_gateway::server::GatewayConfig)) -> Gateway {
    let emu = Emu::with_auth(Duration::from_secs(3600));
    let app = entra_app(&emu, "user_impersonation");
    let jwt = JwtConfig {
        keys: JwtKeys::JwksUrl(format!("{}/t/discovery/v2.0/keys", emu.origin())),
        issuer: format!("{}/t/v2.0", emu.origin()),
        audiences: vec!["api://ats-gateway".into()],
        leeway: Duration::from_secs(5),
    };
    Gateway::with_config(emu, move |c| {
        c.upstream_auth = UpstreamAuth::OnBehalfOf(app);
        c.caller_auth = CallerAuthConfig {
            mode: CallerAuthMode::Jwt(jwt),
            allow_anonymous: false,
        };
        tune(c);
    })
}

#[tokio::test]
async fn on_behalf_of_two_users_reach_the_upstream_as_themselves() {
    let gw = on_behalf_of_gateway();
    let alice = gw.emu.user_token("alice", "api://ats-gateway/access_as_user").await;
    let bob = gw.emu.user_token("bob", "api://ats-gateway/access_as_user").await;
    gw.emu.reset_stats().await;
    for token in [&alice, &bob, &alice, &bob] {
        let (status, _, body) = gw.query_with(LIST, Some(("authorization", &bearer(token)))).await;
        assert_eq!(status, 200);
        ok(&body);
    }
    let stats = gw.emu.stats().await;
    // Ready although the gateway has no token of its own: the upstream answers (401).
    let (status, ready) = gw.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let by_caller = stats["byCaller"].as_object().unwrap();
    let callers: Vec<&String> = by_caller.keys().collect();
    assert_eq!(callers, ["user:alice", "user:bob"], "{stats}");
    assert_eq!(by_caller["user:alice"], by_caller["user:bob"], "{stats}");
    assert_eq!(
        stats["auth"]["tokensIssued"],
        json!({"on_behalf_of": 2}),
        "one exchange per user, then cached: {stats}"
    );
}

#[tokio::test]
async fn conditional_access_sends_the_user_back_to_sign_in_with_a_claims_challenge() {
    let gw = on_behalf_of_gateway();
    // The emulator's Entra wants MFA from dave before an app may act for him.
    let dave = gw.emu.user_token("dave", "api://ats-gateway/access_as_user").await;
    let (status, challenge, body) = gw.query_with(LIST, Some(("authorization", &bearer(&dave)))).await;
    assert_eq!(status, 401, "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "INTERACTION_REQUIRED", "{body}");
    let claims = error["extensions"]["claims"].as_str().unwrap();
    assert!(claims.contains("capolids"), "{claims}");
    let challenge = challenge.unwrap();
    assert!(
        challenge.contains("insufficient_claims") && challenge.contains("claims=\""),
        "{challenge}"
    );
    assert_eq!(
        gw.emu.stats().await["byCaller"],
        json!({}),
        "nothing reached the OData routes"
    );
}

#[tokio::test]
async fn jwt_callers_are_checked_for_audience_signature_and_presence() {
    let gw = on_behalf_of_gateway();
    // A real token of the emulator, but for Dataverse, not for the gateway.
    let wrong_audience = gw
        .emu
        .user_token("alice", &format!("{}/.default", gw.emu.origin()))
        .await;
    let (status, challenge, body) = gw
        .query_with(LIST, Some(("authorization", &bearer(&wrong_audience))))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("another audience"),
        "{body}"
    );
    assert!(challenge.unwrap().contains("invalid_token"));
    // A forged signature.
    let good = gw.emu.user_token("alice", "api://ats-gateway/access_as_user").await;
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let (status, _, body) = gw
        .query_with(LIST, Some(("authorization", &format!("Bearer {}", parts.join(".")))))
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = gw.query_with(LIST, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        gw.emu.stats().await["byCaller"],
        json!({}),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn jwt_callers_can_be_checked_against_a_jwks_file() {
    // The token endpoint and keys work whether or not the OData routes want tokens.
    let emu = Emu::fresh();
    let (status, jwks) =
        crate::harness::send(crate::harness::client().get(format!("{}/t/discovery/v2.0/keys", emu.origin()))).await;
    assert_eq!(status, 200);
    let file = std::env::temp_dir().join(format!("ats-gw-jwks-{}.json", std::process::id()));
    std::fs::write(&file, jwks.to_string()).unwrap();
    let jwt = JwtConfig {
        keys: JwtKeys::JwksFile(file.clone()),
        issuer: format!("{}/t/v2.0", emu.origin()),
        audiences: vec!["api://ats-gateway".into()],
        leeway: Duration::from_secs(5),
    };
    let alice = emu.user_token("alice", "api://ats-gateway/access_as_user").await;
    let gw = Gateway::with_config(emu, move |c| {
        c.caller_auth = CallerAuthConfig {
            mode: CallerAuthMode::Jwt(jwt),
            allow_anonymous: false,
        };
    });
    let _ = std::fs::remove_file(&file);
    let levels = "{ ratingLevels(first: 1) { nodes { ratingLevelId } } }";
    let (status, _, body) = gw.query_with(levels, Some(("authorization", &bearer(&alice)))).await;
    assert_eq!(status, 200, "{body}");
    ok(&body);
    let (status, _, _) = gw.query_with(levels, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn pass_through_forwards_the_callers_own_dataverse_token() {
    let emu = Emu::with_auth(Duration::from_secs(3600));
    let dataverse = emu.user_token("carol", &format!("{}/.default", emu.origin())).await;
    let gw = Gateway::with_config(emu, |c| c.upstream_auth = UpstreamAuth::PassThrough);
    gw.emu.reset_stats().await;
    let (status, _, body) = gw.query_with(LIST, Some(("authorization", &bearer(&dataverse)))).await;
    assert_eq!(status, 200);
    ok(&body);
    let stats = gw.emu.stats().await;
    assert_eq!(
        stats["byCaller"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["user:carol"]
    );
    // Without a token the upstream refuses, and the gateway says so (nothing to refresh).
    let (_, _, body) = gw.query_with(LIST, None).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UPSTREAM_UNAUTHORIZED",
        "{body}"
    );
    assert_eq!(gw.emu.stats().await["auth"]["refused"], 1);
}

#[tokio::test]
async fn reference_cache_and_idempotency_keys_belong_to_one_caller() {
    let gw = Gateway::with_config(Emu::fresh(), |c| c.caller_auth = api_keys(&["partner-a", "partner-b"]));
    let (a, b) = (
        Some(("x-api-key", "key-of-partner-a")),
        Some(("x-api-key", "key-of-partner-b")),
    );
    let levels = "{ ratingLevels(first: 5) { nodes { ratingLevelId } } }";
    gw.emu.reset_stats().await;
    for caller in [a, a, b] {
        let (_, _, body) = gw.query_with(levels, caller).await;
        ok(&body);
    }
    assert_eq!(
        gw.emu.stats().await["byEntitySet"]["mshr_hcmratinglevelentities"],
        2,
        "partner-a's second read is cached; partner-b gets no share of it"
    );

    let input = crate::gateway_writes::full_input(&gw.emu, "idem").await;
    let submit = |caller: (&'static str, &'static str)| {
        let (endpoint, input) = (gw.endpoint.clone(), input.clone());
        async move {
            let r = crate::harness::client()
                .post(endpoint)
                .header(caller.0, caller.1)
                .json(
                    &json!({"query": crate::gateway_writes::SUBMIT, "variables": {"input": input, "key": "same-key"}}),
                )
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            ok(&v);
            v["data"]["submitCandidateToHire"].clone()
        }
    };
    let first = submit(a.unwrap()).await;
    let again = submit(a.unwrap()).await;
    let other = submit(b.unwrap()).await;
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["candidateId"], first["candidateId"]);
    assert_eq!(other["replayed"], false, "another caller's key is its own: {other}");
    assert_ne!(other["candidateId"], first["candidateId"]);
}

#[tokio::test]
async fn the_binary_keeps_secrets_and_tokens_out_of_its_debug_logs() {
    let (port, emu_port) = (crate::harness::free_port(), crate::harness::free_port());
    let api_key = "key-of-the-log-test-partner";
    let log = std::env::temp_dir().join(format!("ats-gw-auth-log-{}", std::process::id()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--emulator-listen",
            &format!("127.0.0.1:{emu_port}"),
            "--state-db",
            ":memory:",
            "--upstream-auth",
            "client-credentials",
            "--caller-auth",
            "api-key",
            "--api-keys",
            &format!("partner=sha256:{}", sha256_hex(api_key.as_bytes())),
        ])
        .env("ATS_GATEWAY_LOG", "debug")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let up = crate::harness::came_up(&base).await;
    assert!(up, "the gateway came up");
    let run = |key: &'static str, auth: Option<String>| {
        let url = format!("{base}/graphql");
        async move {
            let mut rb = crate::harness::client()
                .post(url)
                .header("x-api-key", key)
                .json(&json!({"query": LIST}));
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            rb.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    // The embedded emulator wants tokens; the gateway gets one with the emulator's app.
    let served = run(api_key, None).await;
    ok(&served);
    let stranger = run(
        "not-a-key",
        Some("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".into()),
    )
    .await;
    assert_eq!(
        stranger["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{stranger}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("token request"), "debug logs were captured:\n{text}");
    // No client secret, API key or token (every JWT starts `eyJ`) in any line.
    for secret in [
        ats_gateway::emulator::auth::DEMO_CLIENT_SECRET,
        api_key,
        "not-a-key",
        "eyJ",
    ] {
        assert!(!text.contains(secret), "`{secret}` is in the logs:\n{text}");
    }
}

#[tokio::test]
async fn a_refused_client_secret_is_a_clear_error_that_does_not_quote_it() {
    let emu = Emu::with_auth(Duration::from_secs(3600));
    let mut app = entra_app(&emu, ".default");
    app.client_secret = Secret::new("a-client-secret-that-must-not-leak");
    let gw = Gateway::with_config(emu, move |c| {
        c.upstream_auth = UpstreamAuth::ClientCredentials(app);
        c.caller_auth = api_keys(&["partner-a"]);
    });
    let (status, _, body) = gw.query_with(LIST, Some(("x-api-key", "key-of-partner-a"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UPSTREAM_UNAUTHORIZED",
        "{body}"
    );
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("client credentials") && message.contains("invalid_client"),
        "{message}"
    );
    assert!(!body.to_string().contains("must-not-leak"), "{body}");
    assert_eq!(gw.emu.stats().await["total"], 0, "nothing reached the OData routes");
}

#[tokio::test]
async fn client_credentials_without_caller_auth_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
            "--emulator-listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
            "--state-db",
            ":memory:",
            "--upstream-auth",
            "client-credentials",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-anonymous"), "{stderr}");
}
