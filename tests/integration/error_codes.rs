//! One insta snapshot per [`ErrorCode`]: the error as a client receives it.
//!
//! `every_error_code_has_a_snapshot` walks `ErrorCode::ALL`; `provoke` matches every variant
//! without a wildcard, so a new code does not compile until it says how it is provoked, and does
//! not pass until its snapshot (`snapshots/integration__error_codes__<CODE>.snap`) is committed.
//! Codes are provoked through the real gateway over HTTP (against the emulator, with its faults
//! where the upstream must fail); the few that need a race, a lost answer or an Entra policy are
//! snapshotted as the gateway builds them (`Via::Built`).

use crate::gateway_writes::{full_input, submit};
use crate::harness::{client, Emu, Gateway};
use ats_gateway::emulator::spelling::SpellingSettings;
use ats_gateway::emulator::{EmulatorConfig, Seed};
use ats_gateway::graphql::context::WriteConfig;
use ats_gateway::graphql::errors::{upstream_error, ErrorCode};
use ats_gateway::graphql::mutations::validate::SubmissionError;
use ats_gateway::graphql::mutations::write::Strategy;
use ats_gateway::odata::{UpstreamError, UpstreamErrorKind};
use ats_gateway::secret::sha256_hex;
use ats_gateway::server::auth::{ApiKey, CallerAuthConfig, CallerAuthMode};
use serde_json::{json, Value};
use std::time::Duration;

/// How a snapshot's error was obtained.
enum Via {
    /// The gateway's HTTP answer: its status and the error in it.
    Http(u16, Value),
    /// Built by the gateway's own constructor (not cheaply provoked over HTTP).
    Built(Value),
}

/// The gateways the provocations run against, each over its own emulator.
struct Gateways {
    /// No retries and a breaker that never opens, so each injected fault shows as itself.
    plain: Gateway,
    /// Writes to an upstream that keeps the parts of a refused change set.
    writes: Gateway,
    /// Over an upstream whose `$metadata` lacks recruiting requests' `mshr_description`.
    lacking: Gateway,
}

fn small_emulator(atomic_change_sets: bool) -> Emu {
    Emu::start(EmulatorConfig {
        seed: Seed::Demo,
        seed_size: 10,
        atomic_change_sets,
        ..EmulatorConfig::default()
    })
}

impl Gateways {
    fn start() -> Gateways {
        let plain = Gateway::with_config(small_emulator(true), |c| {
            c.resilience.max_retries = 0;
            c.resilience.breaker_threshold = 1_000_000;
        });
        let writes = Gateway::with_writes(
            small_emulator(false),
            WriteConfig {
                strategy: Strategy::Batch,
                state_db: None,
                ..Default::default()
            },
        );
        let lacking = Gateway::over(Emu::start(EmulatorConfig {
            seed: Seed::Demo,
            seed_size: 10,
            spelling: SpellingSettings {
                omit_properties: vec!["mshr_hcmrecruitingrequestentities.mshr_description".into()],
                ..Default::default()
            },
            ..EmulatorConfig::default()
        }));
        Gateways { plain, writes, lacking }
    }
}

const LIST: &str = "{ recruitingRequests(first: 1) { nodes { id } } }";
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// POSTs `body` (a JSON text) with `content_type`; the status and the first error.
async fn post_raw(gw: &Gateway, content_type: &str, accept: &str, body: String) -> Via {
    let r = client()
        .post(&gw.endpoint)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("a JSON response");
    Via::Http(status, v["errors"][0].clone())
}

async fn post(gw: &Gateway, body: Value) -> Via {
    post_raw(
        gw,
        "application/json",
        "application/graphql-response+json",
        body.to_string(),
    )
    .await
}

/// The first error of `query` while the emulator injects `faults`.
async fn with_faults(gw: &Gateway, faults: Value, query: &str) -> Via {
    gw.emu.set_faults(faults).await;
    let via = post(gw, json!({"query": query})).await;
    gw.emu.set_faults(json!({})).await;
    via
}

/// The first entry of a write payload's `errors`, from a mutation `field { errors {…} }`.
async fn payload_error(gw: &Gateway, mutation: &str, field: &str, index: usize) -> Via {
    let v = gw.query(mutation, json!({})).await;
    Via::Http(200, v["data"][field]["errors"][index].clone())
}

/// A GraphQL error as the gateway builds it for an upstream failure.
fn built_upstream(kind: UpstreamErrorKind, status: Option<u16>, message: &str) -> Via {
    let e = upstream_error(&UpstreamError::new(kind, status, message));
    Via::Built(json!({"message": e.message, "extensions": e.extensions}))
}

/// A write payload's error as the gateway builds it (the schema's `MutationError`).
fn built_payload(e: SubmissionError) -> Via {
    Via::Built(json!({"code": e.code.as_str(), "message": e.message, "path": e.path, "part": e.part}))
}

/// A submission the upstream refuses in its 20th part (a rating level it does not have).
async fn refused_submission(gw: &Gateway) -> Value {
    let mut input = full_input(&gw.emu, "codes").await;
    input["skills"][1]["levelId"] = json!("99");
    submit(gw, &input, None).await
}

/// Gets the gateway to answer with `code`.
async fn provoke(code: ErrorCode, gws: &Gateways) -> Via {
    let gw = &gws.plain;
    let update = |id: &str| {
        format!("mutation {{ updateRecruitingRequestPosition(id: \"{id}\", input: {{status: FILLED}}) {{ errors {{ code message path part }} }} }}")
    };
    match code {
        ErrorCode::BadUserInput => post(gw, json!({"query": "{ recruitingRequests(first: 1, after: \"not-a-cursor\") { totalCount } }"})).await,
        ErrorCode::QueryTooLarge => post(gw, json!({"query": format!("{LIST} # {}", "x".repeat(70_000))})).await,
        ErrorCode::TooManyAliases => {
            let aliases: Vec<String> = (0..31).map(|i| format!("a{i}: __typename")).collect();
            post(gw, json!({"query": format!("{{ {} }}", aliases.join(" "))})).await
        }
        ErrorCode::QueryTooCostly => post(gw, json!({"query": "{ recruitingRequests(first: 500) { nodes { positions(first: 500) { id } } } }"})).await,
        ErrorCode::TooManyUpstreamRequests => {
            // LIST is one upstream request: over a limit of none.
            let strict = Gateway::with_config(Emu::fresh(), |c| c.limits.operation.max_upstream_requests = 0);
            post(&strict, json!({"query": LIST})).await
        }
        ErrorCode::DeadlineExceeded => {
            let emu = Emu::with_faults(ats_gateway::emulator::faults::Faults {
                latency_ms: 1_500,
                ..Default::default()
            });
            let slow = Gateway::with_config(emu, |c| c.limits.operation.deadline = Duration::from_millis(300));
            post(&slow, json!({"query": LIST})).await
        }
        ErrorCode::UpstreamNotFound => with_faults(gw, json!({"errorRate": 1.0, "errorStatus": 404}), LIST).await,
        ErrorCode::UpstreamBadRequest => with_faults(gw, json!({"errorRate": 1.0, "errorStatus": 400}), LIST).await,
        ErrorCode::UpstreamUnauthorized => with_faults(gw, json!({"errorRate": 1.0, "errorStatus": 401}), LIST).await,
        ErrorCode::InteractionRequired => built_upstream(
            UpstreamErrorKind::InteractionRequired {
                claims: Some(r#"{"access_token":{"capolids":{"essential":true,"values":["a-policy"]}}}"#.into()),
            },
            Some(400),
            "the user must sign in again before the gateway may act on their behalf (Conditional Access): AADSTS50079: …; send the `claims` of this error with the next sign-in",
        ),
        ErrorCode::UpstreamForbidden => with_faults(gw, json!({"errorRate": 1.0, "errorStatus": 403}), LIST).await,
        ErrorCode::UpstreamThrottled => {
            // A gateway of its own: it pauses the throttled caller for the whole minute.
            let throttled = Gateway::over(small_emulator(true));
            with_faults(&throttled, json!({"throttle": {"requests": 0, "windowSeconds": 60}}), LIST).await
        }
        ErrorCode::UpstreamUnavailable => with_faults(gw, json!({"errorRate": 1.0}), LIST).await,
        ErrorCode::UpstreamTimeout => with_faults(gw, json!({"errorRate": 1.0, "errorStatus": 408}), LIST).await,
        ErrorCode::UpstreamBudgetExhausted => {
            // Built: over HTTP the wait left varies (gateway_budget provokes it over HTTP).
            let limit = "6000/5m".parse().unwrap();
            let e = upstream_error(&ats_gateway::odata::rate_limit::spent_error(limit, Duration::from_millis(1500), false));
            Via::Built(json!({"message": e.message, "extensions": e.extensions}))
        }
        ErrorCode::UpstreamInvalidResponse => {
            with_faults(gw, json!({"garbage": {"rate": 1.0, "kind": "invalidJson"}}), LIST).await
        }
        ErrorCode::UpstreamTooManyRows => built_upstream(
            UpstreamErrorKind::TooManyRows,
            None,
            "more than 5000 rows of mshr_hcmrecruitingrequestentities match; refusing to return a partial result (narrow the filter)",
        ),
        ErrorCode::UpstreamError => with_faults(gw, json!({"errorRate": 1.0, "errorStatus": 418}), LIST).await,
        ErrorCode::PropertyMissingUpstream => {
            let q = "{ recruitingRequests(first: 1, filter: {description: {eq: \"x\"}}) { nodes { id } } }";
            post(&gws.lacking, json!({ "query": q })).await
        }
        ErrorCode::Unauthenticated => {
            let locked = Gateway::with_config(Emu::fresh(), |c| {
                c.caller_auth = CallerAuthConfig {
                    mode: CallerAuthMode::ApiKeys(vec![ApiKey {
                        name: "partner".into(),
                        sha256: sha256_hex(b"key-of-partner"),
                    }]),
                    allow_anonymous: false,
                }
            });
            post(&locked, json!({"query": LIST})).await
        }
        ErrorCode::NotAcceptable => post_raw(gw, "application/json", "text/html", json!({"query": LIST}).to_string()).await,
        ErrorCode::UnsupportedMediaType => post_raw(gw, "text/plain", "application/json", LIST.into()).await,
        ErrorCode::ExplainNotAllowed => post(gw, json!({"query": LIST, "extensions": {"explain": true}})).await,
        ErrorCode::MethodNotAllowed => {
            let url = format!(
                "{}?query={}",
                gw.endpoint,
                percent_encoding::utf8_percent_encode(
                    &update("00000000-0000-0000-0000-000000000001"),
                    percent_encoding::NON_ALPHANUMERIC
                )
            );
            let r = client()
                .get(url)
                .send()
                .await
                .expect("request sent");
            let status = r.status().as_u16();
            Via::Http(status, r.json::<Value>().await.expect("JSON")["errors"][0].clone())
        }
        ErrorCode::BadRequest => post_raw(gw, "application/json", "application/json", "{not json".into()).await,
        ErrorCode::PersistedQueryHashMismatch => {
            let ext = json!({"persistedQuery": {"version": 1, "sha256Hash": ZERO_HASH}});
            post(gw, json!({"query": LIST, "extensions": ext})).await
        }
        ErrorCode::PersistedQueryNotSupported => {
            let no_apq = Gateway::with_config(Emu::fresh(), |c| c.http.apq_cache_bytes = 0);
            post(&no_apq, json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": ZERO_HASH}}})).await
        }
        ErrorCode::PersistedQueryNotFound => {
            post(gw, json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": ZERO_HASH}}})).await
        }
        ErrorCode::ValidationFailed => {
            payload_error(gw, &update("not-a-guid"), "updateRecruitingRequestPosition", 0).await
        }
        ErrorCode::UpstreamRejected => {
            let missing = update("00000000-0000-0000-0000-000000000001");
            payload_error(gw, &missing, "updateRecruitingRequestPosition", 0).await
        }
        ErrorCode::Compensated => Via::Http(200, refused_submission(&gws.writes).await["errors"][1].clone()),
        ErrorCode::CompensationFailed => built_payload(SubmissionError::compensation_failed(
            "Could not delete the candidate to hire 00000000-0000-0000-0000-000000000001 created before the failure: …".into(),
        )),
        ErrorCode::IdempotencyKeyInProgress => built_payload(SubmissionError::key_in_progress()),
        ErrorCode::IdempotencyKeyReused => {
            let first = full_input(&gws.writes.emu, "key-a").await;
            let p = submit(&gws.writes, &first, Some("error-codes-key")).await;
            assert!(p["candidateId"].is_string(), "the first use writes: {p}");
            let other = full_input(&gws.writes.emu, "key-b").await;
            Via::Http(200, submit(&gws.writes, &other, Some("error-codes-key")).await["errors"][0].clone())
        }
        ErrorCode::IdempotencyOutcomeUnknown => built_payload(SubmissionError::key_answer_lost()),
        ErrorCode::StateUnavailable => {
            // Shared state in a Redis that does not answer: nothing listens on its port.
            let url = format!("redis://127.0.0.1:{}/", crate::harness::free_port());
            let cut_off = Gateway::with_config(small_emulator(true), |c| {
                c.redis_url = Some(ats_gateway::secret::Secret::new(url))
            });
            let input = full_input(&cut_off.emu, "state").await;
            Via::Http(200, submit(&cut_off, &input, Some("state-key")).await["errors"][0].clone())
        }
        ErrorCode::OutcomeUnknown => built_payload(SubmissionError::answer_lost()),
    }
}

/// The code an error carries: `extensions.code` of a GraphQL error, `code` of a payload's.
fn code_of(error: &Value) -> &str {
    error["extensions"]["code"]
        .as_str()
        .or_else(|| error["code"].as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn every_error_code_has_a_snapshot() {
    let gws = Gateways::start();
    for &code in ErrorCode::ALL {
        let (snapshot, error) = match provoke(code, &gws).await {
            Via::Http(status, error) => (json!({"via": "HTTP", "status": status, "error": error}), error),
            Via::Built(error) => (json!({"via": "built", "error": error}), error),
        };
        assert_eq!(code_of(&error), code.as_str(), "{snapshot}");
        let text = serde_json::to_string_pretty(&snapshot).unwrap();
        insta::assert_snapshot!(code.as_str(), text);
    }
}
