//! Subscriptions over the wire: WebSocket at `/graphql/ws` (the `graphql-transport-ws` and the
//! legacy `graphql-ws` subprotocols, through async-graphql-axum) and GraphQL over SSE
//! (distinct-connections mode: `GET` or `POST /graphql` with `Accept: text/event-stream`, one
//! `event: next` per result and `event: complete` at the end).
//!
//! Caller authentication applies to the connection: the upgrade request's headers, or else the
//! `connection_init` payload (`Authorization` / `authorization`, `x-api-key` / `apiKey`, or the
//! same inside a `headers` object); a caller refused there closes the socket (async-graphql closes
//! with 1002 and the reason under `graphql-transport-ws`, `connection_error` under `graphql-ws`). Every operation of a connection gets its caller and fresh loaders,
//! as over HTTP; the schema's limits (size, depth, cost) apply as to any operation. A closed
//! socket or a dropped SSE stream drops its subscriptions, which release their watchers.

use super::auth::Caller;
use super::graphql_http::params::Params;
use super::AppState;
use crate::graphql::context::RequestCtx;
use crate::graphql::subscription::{Handoff, PendingWatch, PresetEvent};
use crate::graphql::watch::{self, ChangeEvent};
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Data, Executor, Request, Response as GqlResponse};
use async_graphql::{Extensions, Variables};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::any::TypeId;
use std::sync::Arc;

/// Runs operations with the request data every operation gets: the caller (from the
/// connection's data, or the one given) and fresh, request-scoped loaders.
#[derive(Clone)]
pub struct GatewayExecutor {
    app: AppState,
    caller: Option<Caller>,
}

impl GatewayExecutor {
    fn request(&self, request: Request, session: Option<&Data>) -> Option<Request> {
        let caller = session
            .and_then(|d| d.get(&TypeId::of::<Caller>()))
            .and_then(|c| c.downcast_ref::<Caller>())
            .or(self.caller.as_ref())?
            .clone();
        let (rq, records, children) = crate::graphql::request_data(
            &self.app.gateway,
            RequestCtx::new(caller.authorization, caller.identity),
        );
        Some(
            request
                .data(rq)
                .data(records)
                .data(children)
                .data(self.app.cursor_key.clone()),
        )
    }
}

fn unauthenticated() -> GqlResponse {
    GqlResponse::from_errors(vec![async_graphql::ServerError::new(
        "The connection is not authenticated.",
        None,
    )])
}

impl Executor for GatewayExecutor {
    async fn execute(&self, request: Request) -> GqlResponse {
        match self.request(request, None) {
            Some(r) => self.app.schema.execute(r).await,
            None => unauthenticated(),
        }
    }

    fn execute_stream(&self, mut request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, GqlResponse> {
        if let Some(document) = Document::of(&mut request, self.app.max_document_chars) {
            return self.handed_off(Arc::new(document), request, session_data);
        }
        match self.request(request, session_data.as_deref()) {
            Some(r) => self
                .app
                .schema
                .execute_stream_with_session_data(r, session_data.unwrap_or_default()),
            None => futures::stream::once(async { unauthenticated() }).boxed(),
        }
    }
}

impl GatewayExecutor {
    /// A subscription of one root field: the first run checks the operation and hands off its
    /// subscription, pending (or answers its errors, and the stream ends); the subscription's
    /// start failing is answered as the field's error; then each event is one run of the
    /// document with the event given. Between events, only the watch and the request's text are
    /// held (see [`Handoff`]); dropping the stream drops the watch.
    fn handed_off(
        &self,
        document: Arc<Document>,
        request: Request,
        session: Option<Arc<Data>>,
    ) -> BoxStream<'static, GqlResponse> {
        let handoff = Handoff::default();
        let Some(first) = self.request(request.data(handoff.clone()), session.as_deref()) else {
            return futures::stream::once(async { unauthenticated() }).boxed();
        };
        let start = self
            .app
            .schema
            .execute_stream_with_session_data(first, session.clone().unwrap_or_default());
        let this = self.clone();
        futures::stream::unfold(Phase::Start(start), move |mut phase| {
            let (this, document, session, handoff) = (this.clone(), document.clone(), session.clone(), handoff.clone());
            async move {
                loop {
                    phase = match phase {
                        Phase::Start(mut run) => match run.next().await {
                            Some(response) => return Some((response, Phase::Start(run))),
                            // The first run ended: everything it held goes.
                            None => Phase::Pending(handoff.take()?),
                        },
                        Phase::Pending(pending) => match pending.await {
                            Ok(events) => Phase::Events(events),
                            Err(e) => return Some((start_failed(&document, e), Phase::Done)),
                        },
                        Phase::Events(mut events) => {
                            let event = events.next().await?;
                            let response = this.event(&document, session, event).await;
                            return Some((response, Phase::Events(events)));
                        }
                        Phase::Done => return None,
                    };
                }
            }
        })
        .boxed()
    }

    /// The response to one event: a run of the subscription's document with the event given.
    async fn event(
        &self,
        document: &Document,
        session: Option<Arc<Data>>,
        event: Result<Arc<ChangeEvent>, watch::WatchError>,
    ) -> GqlResponse {
        let request = document.request().data(PresetEvent(event));
        let Some(request) = self.request(request, session.as_deref()) else {
            return unauthenticated();
        };
        let mut run = self
            .app
            .schema
            .execute_stream_with_session_data(request, session.unwrap_or_default());
        run.next().await.unwrap_or_default()
    }
}

/// Where a handed-off subscription is.
enum Phase {
    /// The first run: checks, then hands off.
    Start(BoxStream<'static, GqlResponse>),
    /// Waiting for the watch's first read.
    Pending(PendingWatch),
    /// Subscribed: one run per event.
    Events(watch::Subscription),
    /// The start failed, and was answered.
    Done,
}

/// The answer to a subscription whose watch could not start: the field's error, as the first
/// run would have answered it.
fn start_failed(document: &Document, e: watch::WatchError) -> GqlResponse {
    let err = e.to_graphql();
    let mut error = async_graphql::ServerError::new(err.message, None);
    error.extensions = err.extensions;
    error.path = vec![async_graphql::PathSegment::Field(document.field.clone())];
    GqlResponse::from_errors(vec![error])
}

/// What a handed-off subscription keeps of its request, to run it again for each event.
struct Document {
    /// The root field's response key (its alias, or its name), for an error's path.
    field: String,
    query: String,
    operation_name: Option<String>,
    variables: Variables,
    extensions: Extensions,
}

impl Document {
    /// The request's parts when its operation is a subscription of a single root field (GraphQL's
    /// rule for subscriptions; a fragment at the root or a second field takes the usual path).
    /// The request is parsed here only within `max_chars` (a longer one is for the limits to
    /// refuse, unparsed), and the parse stays in the request for its run to use.
    fn of(request: &mut Request, max_chars: usize) -> Option<Document> {
        // Bytes: at least the characters the limit counts.
        if request.query.len() > max_chars {
            return None;
        }
        let name = request.operation_name.clone();
        let doc = request.parsed_query().ok()?;
        let op = match (&doc.operations, &name) {
            (DocumentOperations::Single(op), _) => op,
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str())?,
            (DocumentOperations::Multiple(_), None) => return None,
        };
        if op.node.ty != OperationType::Subscription {
            return None;
        }
        let [item] = op.node.selection_set.node.items.as_slice() else {
            return None;
        };
        let Selection::Field(field) = &item.node else {
            return None;
        };
        let field = field.node.response_key().node.to_string();
        Some(Document {
            field,
            query: request.query.clone(),
            operation_name: name,
            variables: request.variables.clone(),
            extensions: request.extensions.clone(),
        })
    }

    fn request(&self) -> Request {
        let mut request = Request::new(self.query.clone()).variables(self.variables.clone());
        request.operation_name = self.operation_name.clone();
        request.extensions = self.extensions.clone();
        request
    }
}

/// The credentials a `connection_init` payload may carry, as request headers.
fn payload_headers(payload: &serde_json::Value) -> HeaderMap {
    let mut out = HeaderMap::new();
    let objects = [Some(payload), payload.get("headers")];
    for obj in objects.into_iter().flatten() {
        let Some(obj) = obj.as_object() else { continue };
        for (name, value) in obj {
            let header = match name.to_ascii_lowercase().as_str() {
                "authorization" => header::AUTHORIZATION,
                "x-api-key" | "apikey" | "api-key" | "api_key" => header::HeaderName::from_static("x-api-key"),
                _ => continue,
            };
            if let Some(v) = value.as_str().and_then(|v| HeaderValue::from_str(v).ok()) {
                out.insert(header, v);
            }
        }
    }
    out
}

fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-api-key")
}

/// The read buffer of a WebSocket, allocated when it opens.
const WS_READ_BUFFER: usize = 8 * 1024;
/// The largest message a WebSocket client may send (a subscribe with its query and variables),
/// as `--max-body-bytes`' default for a POST.
const WS_MAX_MESSAGE: usize = 1024 * 1024;

/// `GET /graphql/ws`: a WebSocket for subscriptions (and queries).
pub async fn websocket(
    State(app): State<AppState>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Credentials on the upgrade request are checked now: refused, no socket.
    let from_upgrade = if has_credentials(&headers) {
        match app.callers.authenticate(&headers).await {
            Ok(c) => Some(c),
            Err(e) => return refused(&e),
        }
    } else {
        None
    };
    let callers = app.callers.clone();
    let executor = GatewayExecutor { app, caller: None };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // A client sends small messages (subscribe, complete, pong): tungstenite's default 128 KiB
        // read buffer, allocated up front, would be most of an idle socket's memory. It grows
        // for a larger message, up to the cap.
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(WS_MAX_MESSAGE)
        .max_frame_size(WS_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, executor, protocol)
                .on_connection_init(move |payload| async move {
                    let caller = match from_upgrade {
                        Some(c) => c,
                        None => callers
                            .authenticate(&payload_headers(&payload))
                            .await
                            // A close frame's reason holds 123 bytes: the message is cut short.
                            .map_err(|e| async_graphql::Error::new(close_reason(&e.message)))?,
                    };
                    let mut data = Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
        })
}

/// A 401 with the challenge, as `POST /graphql` answers a refused caller.
fn refused(e: &super::auth::Unauthenticated) -> Response {
    let body = serde_json::json!({"errors": [{
        "message": e.message,
        "extensions": {"code": crate::graphql::errors::ErrorCode::Unauthenticated.as_str()},
    }]});
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&e.challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// `message` cut to fit a close frame's reason (123 bytes), on a character boundary.
fn close_reason(message: &str) -> String {
    let mut end = message.len().min(120);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

/// Whether a request asks for GraphQL over SSE.
fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|m| m.trim().starts_with("text/event-stream")))
}

/// A layer on `/graphql`: a request that accepts `text/event-stream` is served as GraphQL over
/// SSE; any other goes on.
pub async fn sse_or_next(State(app): State<AppState>, request: HttpRequest, next: Next) -> Response {
    if !wants_sse(request.headers()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let params = match parts.method {
        Method::GET => Params::from_url_query(parts.uri.query().unwrap_or("")),
        // The router's body limit layer bounds the body (`--max-body-bytes`).
        Method::POST => match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => Params::from_json_body(&bytes),
            Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "the body is too large").into_response(),
        },
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    sse(app, parts.headers, params).await
}

async fn sse(
    app: AppState,
    headers: HeaderMap,
    params: Result<Params, super::graphql_http::params::Malformed>,
) -> Response {
    let caller = match app.callers.authenticate(&headers).await {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let params = match params {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.0).into_response(),
    };
    let Some(query) = params.query else {
        return (StatusCode::BAD_REQUEST, "the request has no `query`").into_response();
    };
    let mut request = Request::new(query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        request = request.variables(async_graphql::Variables::from_json(variables.into()));
    }
    let executor = GatewayExecutor {
        app,
        caller: Some(caller),
    };
    let results = executor.execute_stream(request, None).map(|response| {
        let data = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
        Ok::<_, std::convert::Infallible>(Event::default().event("next").data(data))
    });
    let complete = futures::stream::once(async { Ok(Event::default().event("complete").data("")) });
    Sse::new(results.chain(complete))
        .keep_alive(KeepAlive::default())
        .into_response()
}
