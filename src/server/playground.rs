//! The playground: GraphiQL over this gateway, served from the binary itself.
//!
//! The page is built from the npm `graphiql` package into `playground/dist/` by
//! `playground/build.sh`, committed, and embedded here at compile time: `cargo run` on a machine
//! without npm or internet access serves it, and the page loads nothing but these routes and
//! `/graphql`.
//!
//! - `GET /`, and `GET /graphql` from a browser (`Accept` lists `text/html`): the page.
//! - `GET /playground/app.js`, `/playground/app.css`: the bundle.
//! - `GET /playground/examples.json`: the operations of `playground/examples/`, which the page
//!   opens as its first tabs. They are embedded from their source files rather than bundled into
//!   `app.js`, so that changing an example needs no npm rebuild and the page always shows the
//!   examples this binary was built with.
//!
//! Every file is answered with an `ETag` and `Cache-Control: no-cache`: browsers keep a copy and
//! revalidate it, and a new binary with a new bundle is picked up on the next load.

use axum::extract::Request;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::sync::LazyLock;

/// Only this origin, for everything the page loads or sends; fonts and icons are `data:` URLs
/// inside `app.css`, and GraphiQL sets inline styles.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// One example tab: an operation and, where it takes any, its variables.
pub struct Example {
    /// The file stem in `playground/examples/`.
    pub name: &'static str,
    pub query: &'static str,
    pub variables: Option<&'static str>,
    /// The request headers the tab sends, as GraphiQL's Headers editor holds them (JSON).
    pub headers: Option<&'static str>,
}

/// An example tab: `playground/examples/<name>.graphql` with its `.variables.json`.
macro_rules! example {
    ($name:literal) => {
        Example {
            name: $name,
            query: include_str!(concat!("../../playground/examples/", $name, ".graphql")),
            variables: Some(include_str!(concat!(
                "../../playground/examples/",
                $name,
                ".variables.json"
            ))),
            headers: None,
        }
    };
    ($name:literal, headers: $headers:literal) => {
        Example {
            headers: Some($headers),
            ..example!($name)
        }
    };
}

/// The example tabs, in the order the page shows them.
pub const EXAMPLES: [Example; 6] = [
    example!("recruiting-request"),
    example!("candidate-with-person"),
    example!("active-requests-page"),
    example!("submit-candidate-to-hire"),
    example!("activated-requests"),
    example!("explain-upstream-requests", headers: "{\n  \"X-ATS-Explain\": \"true\"\n}"),
];

/// A response body with its content type and validator, worked out once.
struct Served {
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
}

impl Served {
    fn new(content_type: &'static str, body: Bytes) -> Served {
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", crate::secret::sha256_u64(&body)))
            .expect("hex is a valid header value");
        Served {
            content_type,
            body,
            etag,
        }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim() == self.etag || tag.trim() == "*");
        let headers = [
            (ETAG, self.etag.clone()),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        let mut response = (
            headers,
            [(CONTENT_TYPE, HeaderValue::from_static(self.content_type))],
            self.body.clone(),
        )
            .into_response();
        if self.content_type.starts_with("text/html") {
            response
                .headers_mut()
                .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
        }
        response
    }
}

static PAGE: LazyLock<Served> = LazyLock::new(|| {
    Served::new(
        "text/html; charset=utf-8",
        Bytes::from_static(include_bytes!("../../playground/dist/index.html")),
    )
});
static APP_JS: LazyLock<Served> = LazyLock::new(|| {
    Served::new(
        "text/javascript; charset=utf-8",
        Bytes::from_static(include_bytes!("../../playground/dist/app.js")),
    )
});
static APP_CSS: LazyLock<Served> = LazyLock::new(|| {
    Served::new(
        "text/css; charset=utf-8",
        Bytes::from_static(include_bytes!("../../playground/dist/app.css")),
    )
});
static EXAMPLES_JSON: LazyLock<Served> = LazyLock::new(|| {
    let tabs: Vec<serde_json::Value> = EXAMPLES
        .iter()
        .map(|e| serde_json::json!({"name": e.name, "query": e.query, "variables": e.variables, "headers": e.headers}))
        .collect();
    Served::new(
        "application/json",
        Bytes::from(serde_json::to_vec(&tabs).expect("strings serialize")),
    )
});

/// The page and its files, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { PAGE.respond(&headers) }))
        .route(
            "/playground/app.js",
            get(|headers: HeaderMap| async move { APP_JS.respond(&headers) }),
        )
        .route(
            "/playground/app.css",
            get(|headers: HeaderMap| async move { APP_CSS.respond(&headers) }),
        )
        .route(
            "/playground/examples.json",
            get(|headers: HeaderMap| async move { EXAMPLES_JSON.respond(&headers) }),
        )
}

/// Middleware for `/graphql`: a browser's GET gets the page, anything else goes on to the GraphQL
/// handler. GET answers vary with `Accept` either way.
pub async fn page_for_browsers(request: Request, next: Next) -> Response {
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = if get && accepts_html(request.headers()) {
        PAGE.respond(request.headers())
    } else {
        next.run(request).await
    };
    if get {
        response.headers_mut().append(VARY, HeaderValue::from_static("accept"));
    }
    response
}

/// Whether `Accept` lists `text/html`, as a browser's navigation does and GraphQL clients don't.
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_an_accept_that_lists_html_is_a_browser() {
        assert!(accepts_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(accepts_html(&accept("TEXT/HTML; q=0.5")));
        assert!(!accepts_html(&accept("application/json")));
        assert!(!accepts_html(&accept("*/*")));
        assert!(!accepts_html(&accept(
            "application/graphql-response+json, text/html-ish"
        )));
        assert!(!accepts_html(&HeaderMap::new()));
    }

    #[test]
    fn a_matching_etag_is_not_modified() {
        let served = Served::new("text/plain", Bytes::from_static(b"x"));
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, served.etag.clone());
        assert_eq!(served.respond(&h).status(), StatusCode::NOT_MODIFIED);
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(served.respond(&h).status(), StatusCode::OK);
    }
}
