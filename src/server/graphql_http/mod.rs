//! The GraphQL endpoint, as the GraphQL over HTTP specification describes it.
//!
//! - `media`: the response's media type from `Accept`, and which POST bodies we read.
//! - `params`: the request's parameters from a JSON body or a URL query, checked for shape.
//! - `apq`: automatic persisted queries (Apollo's protocol) over a bounded cache.
//!
//! How a request goes: negotiate the response type (`406` when the client accepts neither
//! `application/graphql-response+json` nor `application/json`); read the parameters (POST:
//! `application/json` only, else `415`; either method: `400` when not well-formed); find the query
//! (`query`, or the persisted-query cache); refuse a mutation over GET (`405`, `Allow: POST`);
//! execute with the caller and fresh loaders; answer with the status the media type calls for.
//!
//! | outcome                                   | `graphql-response+json` | `json` |
//! |-------------------------------------------|-------------------------|--------|
//! | executed (even with errors, even `data: null`) | 200                | 200    |
//! | not executed: parse, validation, operation or variable errors (no `data` entry) | 400 | 200 |
//! | persisted query not found                 | 404                     | 200    |
//! | explain asked for and not allowed (`graphql::explain`) | 403        | 200    |
//! | not a well-formed request                 | 400                     | 400    |

pub mod apq;
pub mod documents;
pub mod media;
pub mod params;

use super::AppState;
use crate::graphql;
use crate::graphql::context::RequestCtx;
use crate::graphql::errors::ErrorCode;
use crate::graphql::execution::Executed;
use apq::ApqError;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use media::ResponseMedia;
use params::{Malformed, Params};
use serde_json::json;
use std::time::Instant;

/// `GET /graphql?query=…`: queries only.
pub async fn graphql_get(State(app): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = Params::from_url_query(query.as_deref().unwrap_or("")).map_err(Refusal::from);
    serve(&app, &headers, Method::Get, params).await
}

/// `POST /graphql` with a JSON body.
pub async fn graphql_post(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match headers.get(header::CONTENT_TYPE).map(HeaderValue::to_str) {
        Some(Ok(ct)) if media::is_json_request(ct) => Params::from_json_body(&body).map_err(Refusal::from),
        Some(_) => Err(Refusal::unsupported_media_type(
            "send the request as `application/json`",
        )),
        None => Err(Refusal::unsupported_media_type(
            "the request has no `Content-Type`: send it as `application/json`",
        )),
    };
    serve(&app, &headers, Method::Post, params).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// Runs one request and logs one line for it.
async fn serve(app: &AppState, headers: &HeaderMap, method: Method, params: Result<Params, Refusal>) -> Response {
    let started = Instant::now();
    let accept = headers.contains_key(header::ACCEPT).then(|| {
        let values: Vec<&str> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        values.join(", ")
    });
    let span = crate::telemetry::otel::operation_span(headers);
    let (media, answer) = match media::negotiate(accept.as_deref()) {
        Some(media) => (
            media,
            tracing::Instrument::instrument(execute(app, headers, method, params), span.clone()).await,
        ),
        // No media type the client reads: the refusal is written as plain JSON.
        None => (ResponseMedia::Json, Answer::refused(Refusal::not_acceptable())),
    };
    tracing::info!(
        graphql.operation = answer.operation.as_deref().unwrap_or("anonymous"),
        caller = answer.caller.as_deref().unwrap_or("-"),
        graphql.errors = answer.errors,
        upstream.requests = answer.upstream_requests,
        upstream.cache_hits = answer.reuse.as_ref().map_or(0, |r| r.cache_hits()),
        upstream.coalesced = answer.reuse.as_ref().map_or(0, |r| r.coalesced()),
        http.status = answer.status(media).as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "graphql request"
    );
    crate::telemetry::otel::finish_operation(&span, || answer.traced());
    answer.into_response(media)
}

/// Finds the query, checks the method, executes, and keeps a newly registered persisted query.
async fn execute(app: &AppState, headers: &HeaderMap, method: Method, params: Result<Params, Refusal>) -> Answer {
    // Who is calling comes first: a refused caller learns nothing else.
    let caller = match app.callers.authenticate(headers).await {
        Ok(c) => c,
        Err(e) => return Answer::refused(Refusal::unauthenticated(e)),
    };
    let (params, explain) = match params.and_then(|p| explain_request(app, &caller, headers, p)) {
        Ok(p) => p,
        Err(refusal) => return Answer::refused(refusal),
    };
    let operation = params.operation_name.clone();
    let resolved = match app
        .persisted_queries
        .resolve(params.query, params.extensions.as_ref())
        .await
    {
        Ok(r) => r,
        Err(e) => return Answer::refused(Refusal::from(e)).named(operation),
    };
    // Parsed here (or found parsed) and handed over, so that the schema does not parse again;
    // over GET, to find the operation too.
    let document = app.documents.parsed(&resolved.query).await;
    if method == Method::Get && document.as_ref().is_some_and(|d| is_mutation(d, operation.as_deref())) {
        return Answer::refused(Refusal::mutation_over_get()).named(operation);
    }
    let to_register = resolved.register.map(|hash| (hash, resolved.query.clone()));
    let mut request = async_graphql::Request::new(resolved.query);
    if let Some(document) = document {
        request.set_parsed_query(document);
    }
    if let Some(name) = &operation {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        request = request.variables(async_graphql::Variables::from_json(variables.into()));
    }
    if let Some(extensions) = params.extensions {
        request.extensions = async_graphql::Extensions(
            extensions
                .into_iter()
                .filter_map(|(k, v)| async_graphql::Value::from_json(v).ok().map(|v| (k, v)))
                .collect(),
        );
    }

    let identity = caller.identity.clone();
    let (caller, records, children) =
        graphql::request_data(&app.gateway, RequestCtx::new(caller.authorization, caller.identity));
    let (upstream, reuse) = (caller.upstream_requests.clone(), caller.reuse.clone());
    // The operation's memos (its pages and records) outlive its run here, to be freed after
    // the answer is sent.
    let memos = (caller.memo.clone(), caller.records.clone());
    reuse.bypass_cache_if(cache_control(headers));
    let executed = Executed::default();
    let request = request
        .data(caller)
        .data(records)
        .data(children)
        .data(executed.clone())
        .data(explain)
        .data(app.cursor_key.clone());
    let mut response = app.schema.execute(request).await;
    drop_after_answer(memos);
    reuse.annotate(&mut response);
    let executed = executed.get();
    // Kept only once it ran: a document that does not parse or validate takes no room.
    if let (Some((hash, query)), true) = (to_register, executed) {
        app.persisted_queries.register(hash, &query).await;
    }
    let challenge = claims_challenge(&response);
    Answer {
        operation,
        caller: Some(identity),
        challenge,
        errors: response.errors.len(),
        upstream_requests: upstream.load(std::sync::atomic::Ordering::Relaxed),
        reuse: Some(reuse),
        body: Body::Graphql { response, executed },
    }
}

/// Drops `value` in a task of its own, which runs once the answer is on its way: freeing a large
/// answer's tree and the records an operation read is 7% of the instructions of a nested read,
/// which the client need not wait for. (Outside a runtime, at once.)
fn drop_after_answer<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(async move { drop(value) })),
        Err(_) => drop(value),
    }
}

/// The `WWW-Authenticate` challenge when an error says the user must sign in again (Conditional
/// Access refused the on-behalf-of exchange): the response is then a 401 carrying the claims, as
/// Microsoft's client libraries expect, so the app can sign the user in again with them.
fn claims_challenge(response: &async_graphql::Response) -> Option<String> {
    use base64::Engine;
    response.errors.iter().find_map(|e| {
        let ext = e.extensions.as_ref()?;
        if ext.get("code") != Some(&async_graphql::Value::from(ErrorCode::InteractionRequired.as_str())) {
            return None;
        }
        let mut challenge = "Bearer realm=\"ats-gateway\", error=\"insufficient_claims\"".to_string();
        if let Some(async_graphql::Value::String(claims)) = ext.get("claims") {
            let encoded = base64::engine::general_purpose::STANDARD.encode(claims);
            challenge.push_str(&format!(", claims=\"{encoded}\""));
        }
        Some(challenge)
    })
}

/// The request's `Cache-Control` values (`no-cache` bypasses the read cache: `graphql::budget`).
fn cache_control(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// The request's parameters with the explain it asks for (`extensions.explain`,
/// `X-ATS-Explain`), if the policy lets this caller have it; refused with 403 (200 under
/// `application/json`) before anything runs if not, since the client asked to see what it costs.
fn explain_request(
    app: &AppState,
    caller: &crate::server::auth::Caller,
    headers: &HeaderMap,
    params: Params,
) -> Result<(Params, graphql::explain::Asked), Refusal> {
    let header = headers.get("x-ats-explain").and_then(|v| v.to_str().ok());
    if !graphql::explain::asked(params.extensions.as_ref(), header) {
        return Ok((params, graphql::explain::Asked(None)));
    }
    match app.gateway.explain.allows(&caller.identity, &caller.roles) {
        Ok(e) => Ok((params, graphql::explain::Asked(Some(e)))),
        Err(why) => Err(Refusal {
            legacy_status: StatusCode::OK,
            ..Refusal::new(StatusCode::FORBIDDEN, ErrorCode::ExplainNotAllowed, why)
        }),
    }
}

/// Whether the operation that `operation_name` picks out of `document` is a mutation. `false`
/// when it picks none: the schema then reports why.
fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    };
    operation.is_some_and(|op| op.node.ty == OperationType::Mutation)
}

/// What the endpoint answers, and what its log line says.
struct Answer {
    operation: Option<String>,
    /// The caller's identity (no credential in it), once authenticated.
    caller: Option<String>,
    /// A 401's `WWW-Authenticate`: the upstream needs the user to sign in again.
    challenge: Option<String>,
    errors: usize,
    upstream_requests: u64,
    /// Cache hits and coalesced reads (see `graphql::budget`), once executed.
    reuse: Option<std::sync::Arc<graphql::budget::ReadReuse>>,
    body: Body,
}

enum Body {
    /// The schema's response. Without `executed` the operation never ran (it did not parse or
    /// validate, or named no operation), and the body has no `data` entry.
    Graphql {
        response: async_graphql::Response,
        executed: bool,
    },
    Refused(Refusal),
}

impl Answer {
    fn refused(refusal: Refusal) -> Answer {
        Answer {
            operation: None,
            caller: None,
            challenge: None,
            errors: 1,
            upstream_requests: 0,
            reuse: None,
            body: Body::Refused(refusal),
        }
    }

    /// What the operation's span records (see `telemetry::otel`).
    fn traced(&self) -> crate::telemetry::otel::OperationOutcome<'_> {
        let error_codes = match &self.body {
            Body::Graphql { response, .. } => response
                .errors
                .iter()
                .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
                    async_graphql::Value::String(code) => Some(code.as_str()),
                    _ => None,
                })
                .collect(),
            Body::Refused(r) => vec![r.code.as_str()],
        };
        crate::telemetry::otel::OperationOutcome {
            caller: self.caller.as_deref(),
            error_codes,
            errors: self.errors,
            upstream_requests: self.upstream_requests,
        }
    }

    fn named(mut self, operation: Option<String>) -> Answer {
        self.operation = operation;
        self
    }

    fn status(&self, media: ResponseMedia) -> StatusCode {
        if self.challenge.is_some() {
            return StatusCode::UNAUTHORIZED;
        }
        match (&self.body, media) {
            (Body::Graphql { executed: true, .. }, _) => StatusCode::OK,
            (Body::Graphql { executed: false, .. }, ResponseMedia::GraphqlResponseJson) => StatusCode::BAD_REQUEST,
            (Body::Graphql { executed: false, .. }, ResponseMedia::Json) => StatusCode::OK,
            (Body::Refused(r), ResponseMedia::GraphqlResponseJson) => r.status,
            (Body::Refused(r), ResponseMedia::Json) => r.legacy_status,
        }
    }

    fn into_response(self, media: ResponseMedia) -> Response {
        let status = self.status(media);
        let mut headers = HeaderMap::new();
        if let Some(v) = self.challenge.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media.content_type()));
        let body = match self.body {
            Body::Graphql { mut response, executed } => {
                if executed && response.is_ok() {
                    if let Some(value) = response
                        .cache_control
                        .value()
                        .and_then(|v| HeaderValue::from_str(&v).ok())
                    {
                        headers.insert(header::CACHE_CONTROL, value);
                    }
                }
                // Written straight from the response: no intermediate JSON tree (a large
                // answer's biggest cost after resolving it).
                let body = match executed {
                    true => serde_json::to_vec(&response),
                    false => serde_json::to_vec(&NotExecuted {
                        errors: &response.errors,
                        extensions: &response.extensions,
                    }),
                };
                headers.extend(std::mem::take(&mut response.http_headers));
                drop_after_answer(response);
                body.unwrap_or_else(|_| b"{}".to_vec())
            }
            Body::Refused(refusal) => {
                if refusal.allow_post {
                    headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
                }
                if let Some(v) = refusal.challenge.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
                json!({"errors": [{"message": refusal.message, "extensions": {"code": refusal.code.as_str()}}]})
                    .to_string()
                    .into_bytes()
            }
        };
        (status, headers, body).into_response()
    }
}

/// The body of an operation that never ran: no `data` entry (GraphQL over HTTP).
#[derive(serde::Serialize)]
struct NotExecuted<'a> {
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [async_graphql::ServerError],
}

/// A request refused before any operation ran, with the status it gets under each media type.
#[derive(Debug)]
struct Refusal {
    /// Under `application/graphql-response+json`.
    status: StatusCode,
    /// Under `application/json`: `200` when the request was well-formed, as with the schema's
    /// request errors.
    legacy_status: StatusCode,
    /// The error's `extensions.code`.
    code: ErrorCode,
    message: String,
    /// Answer with `Allow: POST`.
    allow_post: bool,
    /// A 401's `WWW-Authenticate` challenge.
    challenge: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            legacy_status: status,
            code,
            message: message.into(),
            allow_post: false,
            challenge: None,
        }
    }

    /// 401 under both media types: the caller must authenticate before anything runs.
    fn unauthenticated(e: crate::server::auth::Unauthenticated) -> Refusal {
        Refusal {
            challenge: Some(e.challenge),
            ..Refusal::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, e.message)
        }
    }

    fn not_acceptable() -> Refusal {
        Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            ErrorCode::NotAcceptable,
            "the client accepts neither application/graphql-response+json nor application/json",
        )
    }

    fn unsupported_media_type(message: &str) -> Refusal {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            message,
        )
    }

    fn mutation_over_get() -> Refusal {
        Refusal {
            allow_post: true,
            ..Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "mutations are not run over GET: send them with POST",
            )
        }
    }
}

impl From<Malformed> for Refusal {
    fn from(Malformed(message): Malformed) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
}

impl From<ApqError> for Refusal {
    fn from(e: ApqError) -> Refusal {
        // The messages and codes are those Apollo clients look for.
        match e {
            ApqError::MissingQuery => Refusal::from(Malformed("the request has no `query`".into())),
            ApqError::Malformed(message) => Refusal::from(Malformed(message)),
            ApqError::HashMismatch => Refusal::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::PersistedQueryHashMismatch,
                "provided sha does not match query",
            ),
            ApqError::NotSupported => Refusal {
                legacy_status: StatusCode::OK,
                ..Refusal::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::PersistedQueryNotSupported,
                    "PersistedQueryNotSupported",
                )
            },
            // Not 400: older Apollo clients switch persisted queries off for good on a 400.
            ApqError::NotFound => Refusal {
                legacy_status: StatusCode::OK,
                ..Refusal::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::PersistedQueryNotFound,
                    "PersistedQueryNotFound",
                )
            },
        }
    }
}
