//! Credentials toward the upstream: which `Authorization` header each call carries, by mode.
//!
//! - `none`: no header (the emulator without `--require-auth`).
//! - `pass-through`: the caller's own `Authorization` value, already a Dataverse token.
//! - `client-credentials`: one application token from the Entra token endpoint (contract §10),
//!   shared by every call.
//! - `on-behalf-of`: the caller's bearer token exchanged for a Dataverse token for that user
//!   (the jwt-bearer grant), so that Dataverse applies the user's own security roles.
//!
//! Tokens are cached (moka) until a little before they expire (a quarter of their lifetime, at
//! most five minutes, early), keyed by "the application" or by a fingerprint of the user's token;
//! concurrent requests for a missing token share one token request (moka's `try_get_with`).
//! When the upstream answers 401 the client calls [`TokenSource::rejected`] and asks again:
//! the token is dropped only if it is still the cached one, so a burst of 401s costs one refresh.
//! Tokens and secrets are [`Secret`]s: never logged, never in an error.

use super::error::{UpstreamError, UpstreamErrorKind};
use crate::secret::{fingerprint, Secret};
use moka::future::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An application registered in Microsoft Entra ID, and what it asks tokens for.
#[derive(Debug, Clone)]
pub struct EntraApp {
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`, or the emulator's.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://<org>.crm.dynamics.com/.default` (client credentials) or
    /// `https://<org>.crm.dynamics.com/user_impersonation` (on-behalf-of).
    pub scope: String,
}

/// How the gateway authenticates toward the upstream.
#[derive(Debug, Clone, Default)]
pub enum UpstreamAuth {
    #[default]
    None,
    PassThrough,
    ClientCredentials(EntraApp),
    OnBehalfOf(EntraApp),
}

impl UpstreamAuth {
    /// Whether the gateway has no upstream identity of its own and calls only with its callers'
    /// (pass-through, on-behalf-of): its own calls (option-set labels) then go without a token.
    pub fn acts_only_for_callers(&self) -> bool {
        matches!(self, UpstreamAuth::PassThrough | UpstreamAuth::OnBehalfOf(_))
    }

    /// The setting's name (`client-credentials`, ...), for logs and `/readyz`.
    pub fn mode(&self) -> &'static str {
        match self {
            UpstreamAuth::None => "none",
            UpstreamAuth::PassThrough => "pass-through",
            UpstreamAuth::ClientCredentials(_) => "client-credentials",
            UpstreamAuth::OnBehalfOf(_) => "on-behalf-of",
        }
    }
}

/// What one call sends: the header, and the upstream identity it counts against (for the
/// per-identity concurrency slots).
#[derive(Debug, Clone)]
pub struct Credential {
    pub header: Option<Secret>,
    pub identity: String,
    /// The token cache's key, when the header came from it.
    cache_key: Option<String>,
}

#[derive(Debug)]
struct Token {
    bearer: Secret,
    /// When the cache lets go of it (before it expires).
    renew_in: Duration,
}

struct RenewBeforeExpiry;

impl moka::Expiry<String, Arc<Token>> for RenewBeforeExpiry {
    fn expire_after_create(&self, _key: &String, value: &Arc<Token>, _created_at: Instant) -> Option<Duration> {
        Some(value.renew_in)
    }
}

/// Hands out upstream credentials (see the module docs).
pub struct TokenSource {
    auth: UpstreamAuth,
    http: reqwest::Client,
    tokens: Cache<String, Arc<Token>>,
    requested: AtomicU64,
    observer: std::sync::OnceLock<super::client::Observer>,
    /// Retries of a token request that failed for the endpoint's sake (5xx, 429, no answer).
    retry: super::resilience::ResilienceConfig,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("mode", &self.auth.mode()).finish()
    }
}

/// The cache key of the application token.
const APP_KEY: &str = "app";

/// The Entra token response (only what is used).
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: u64,
}

/// The Entra error response.
#[derive(serde::Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
    /// A Conditional Access claims challenge (with `interaction_required`).
    #[serde(default)]
    claims: Option<String>,
}

impl TokenSource {
    pub fn new(auth: UpstreamAuth, http: reqwest::Client, retry: super::resilience::ResilienceConfig) -> Self {
        TokenSource {
            auth,
            http,
            tokens: Cache::builder()
                .max_capacity(10_000)
                .expire_after(RenewBeforeExpiry)
                .build(),
            requested: AtomicU64::new(0),
            observer: std::sync::OnceLock::new(),
            retry,
        }
    }

    /// Tells `observer` about every token request (as entity set `$token`, for the metrics).
    pub fn set_observer(&self, observer: super::client::Observer) {
        let _ = self.observer.set(observer);
    }

    fn observe(&self, status: Option<u16>, started: Instant) {
        if let Some(o) = self.observer.get() {
            o(&super::client::UpstreamEvent {
                entity_set: "$token",
                status,
                elapsed: started.elapsed(),
                attempt: 1,
            });
        }
    }

    pub fn mode(&self) -> &'static str {
        self.auth.mode()
    }

    /// Token requests sent to the token endpoint so far.
    pub fn token_requests(&self) -> u64 {
        self.requested.load(Ordering::Relaxed)
    }

    /// Whether a 401 may be cured by asking for a new token.
    pub fn can_refresh(&self) -> bool {
        matches!(
            self.auth,
            UpstreamAuth::ClientCredentials(_) | UpstreamAuth::OnBehalfOf(_)
        )
    }

    /// The credential for a call made for a caller whose `Authorization` value is `caller`.
    pub async fn credential(&self, caller: Option<&str>) -> Result<Credential, UpstreamError> {
        match &self.auth {
            UpstreamAuth::None => Ok(Credential {
                header: None,
                identity: "gateway".to_string(),
                cache_key: None,
            }),
            UpstreamAuth::PassThrough => Ok(Credential {
                header: caller.map(Secret::new),
                identity: caller.map(fingerprint).unwrap_or_else(|| "anonymous".to_string()),
                cache_key: None,
            }),
            UpstreamAuth::ClientCredentials(app) => {
                let token = self.cached(APP_KEY, app, None).await?;
                Ok(Credential {
                    header: Some(token.bearer.clone()),
                    identity: format!("app:{}", app.client_id),
                    cache_key: Some(APP_KEY.to_string()),
                })
            }
            // The gateway's own calls (readiness probe, option-set labels) have no user to act
            // for: they go without a token, and a 401 still shows that the upstream answers.
            UpstreamAuth::OnBehalfOf(_) if caller.is_none() => Ok(Credential {
                header: None,
                identity: "anonymous".to_string(),
                cache_key: None,
            }),
            UpstreamAuth::OnBehalfOf(app) => {
                let Some(assertion) = caller.and_then(bearer_token) else {
                    return Err(UpstreamError::not_sent(
                        UpstreamErrorKind::Unauthorized,
                        "the gateway calls the upstream on behalf of its caller, so it needs the caller's own bearer token (Authorization: Bearer <token>)",
                    ));
                };
                let key = format!("user:{}", fingerprint(assertion));
                let token = self.cached(&key, app, Some(assertion)).await?;
                Ok(Credential {
                    header: Some(token.bearer.clone()),
                    identity: key.clone(),
                    cache_key: Some(key),
                })
            }
        }
    }

    /// The upstream identity a call for `caller` is made as, without asking for a token: the
    /// same as [`TokenSource::credential`]'s `identity` (`None` when that would fail: on behalf
    /// of a caller without a bearer token). Coalescing and the read cache key by it.
    pub fn identity_of(&self, caller: Option<&str>) -> Option<String> {
        match &self.auth {
            UpstreamAuth::None => Some("gateway".to_string()),
            UpstreamAuth::PassThrough => Some(caller.map(fingerprint).unwrap_or_else(|| "anonymous".to_string())),
            UpstreamAuth::ClientCredentials(app) => Some(format!("app:{}", app.client_id)),
            UpstreamAuth::OnBehalfOf(_) if caller.is_none() => Some("anonymous".to_string()),
            UpstreamAuth::OnBehalfOf(_) => caller
                .and_then(bearer_token)
                .map(|t| format!("user:{}", fingerprint(t))),
        }
    }

    /// The upstream refused `used` (401): forget its token unless a newer one replaced it already.
    pub async fn rejected(&self, used: &Credential) {
        let Some(key) = &used.cache_key else { return };
        if let Some(current) = self.tokens.get(key).await {
            if Some(&current.bearer) == used.header.as_ref() {
                tracing::info!(
                    mode = self.mode(),
                    "upstream refused the cached token (401); getting a new one"
                );
                self.tokens.invalidate(key).await;
            }
        }
    }

    async fn cached(&self, key: &str, app: &EntraApp, assertion: Option<&str>) -> Result<Arc<Token>, UpstreamError> {
        self.tokens
            .try_get_with(key.to_string(), self.request_token(app, assertion))
            .await
            .map_err(|e: Arc<UpstreamError>| (*e).clone())
    }

    /// A token from the endpoint, retrying (with the upstream's backoff, inside the caller's
    /// deadline, which bounds [`TokenSource::credential`]) what failed for the endpoint's sake.
    async fn request_token(&self, app: &EntraApp, assertion: Option<&str>) -> Result<Arc<Token>, UpstreamError> {
        let mut retry = 0;
        loop {
            match self.request_token_once(app, assertion).await {
                Err(e) if e.kind == UpstreamErrorKind::Unavailable && retry < self.retry.max_retries => {
                    retry += 1;
                    let wait = super::resilience::backoff(&self.retry, retry);
                    tracing::info!(error = %e.message, retry, wait_ms = wait.as_millis() as u64, "token request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// One request to the token endpoint: post the grant's form, then read a token or the
    /// endpoint's refusal.
    async fn request_token_once(&self, app: &EntraApp, assertion: Option<&str>) -> Result<Arc<Token>, UpstreamError> {
        self.requested.fetch_add(1, Ordering::Relaxed);
        let grant = if assertion.is_some() {
            "on-behalf-of"
        } else {
            "client-credentials"
        };
        let (status, body) = self.post_form(app, token_form(app, assertion), grant).await?;
        if (200..300).contains(&status) {
            return token_from(status, &body, assertion);
        }
        Err(refusal(status, &body, assertion))
    }

    /// Posts a token request's form; the answer's status and body.
    async fn post_form(&self, app: &EntraApp, form: String, grant: &str) -> Result<(u16, bytes::Bytes), UpstreamError> {
        let started = Instant::now();
        let resp = self
            .http
            .post(&app.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                self.observe(None, started);
                tracing::warn!(grant, error = %e, "token endpoint unreachable");
                UpstreamError::new(
                    UpstreamErrorKind::Unavailable,
                    None,
                    format!("the token endpoint could not be reached: {e}"),
                )
            })?;
        let status = resp.status().as_u16();
        self.observe(Some(status), started);
        let body = resp.bytes().await.map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Unavailable,
                Some(status),
                format!("the token endpoint's answer was cut off: {e}"),
            )
        })?;
        tracing::info!(
            grant,
            status,
            duration_ms = started.elapsed().as_millis() as u64,
            "token request"
        );
        Ok((status, body))
    }
}

/// The form of a token request: client credentials, or (with the caller's token as `assertion`)
/// the on-behalf-of exchange.
fn token_form(app: &EntraApp, assertion: Option<&str>) -> String {
    let mut form: Vec<(&str, &str)> = vec![
        ("client_id", &app.client_id),
        ("client_secret", app.client_secret.expose()),
        ("scope", &app.scope),
    ];
    match assertion {
        None => form.push(("grant_type", "client_credentials")),
        Some(a) => form.extend([
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", a),
        ]),
    }
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish()
}

/// The bearer token of a 2xx answer, cached for [`keep_for`].
fn token_from(status: u16, body: &[u8], assertion: Option<&str>) -> Result<Arc<Token>, UpstreamError> {
    let t: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        UpstreamError::new(
            UpstreamErrorKind::InvalidResponse,
            Some(status),
            format!("the token endpoint's answer is not a token response: {e}"),
        )
    })?;
    if !t
        .token_type
        .as_deref()
        .unwrap_or("Bearer")
        .eq_ignore_ascii_case("bearer")
        || t.access_token.is_empty()
    {
        return Err(UpstreamError::new(
            UpstreamErrorKind::InvalidResponse,
            Some(status),
            "the token endpoint did not return a bearer token",
        ));
    }
    let lifetime = Duration::from_secs(t.expires_in);
    Ok(Arc::new(Token {
        bearer: Secret::new(format!("Bearer {}", t.access_token)),
        renew_in: keep_for(lifetime, assertion.and_then(seconds_left)),
    }))
}

/// The error of a refused token request: the user must sign in again (on-behalf-of, with the
/// claims challenge), the endpoint is down (5xx, 429), or the credentials were refused.
fn refusal(status: u16, body: &[u8], assertion: Option<&str>) -> UpstreamError {
    let parsed = serde_json::from_slice::<TokenError>(body).ok();
    if let Some(e) = parsed
        .as_ref()
        .filter(|e| e.error == "interaction_required" && assertion.is_some())
    {
        return UpstreamError::new(
            UpstreamErrorKind::InteractionRequired { claims: e.claims.clone() },
            Some(status),
            format!(
                "the user must sign in again before the gateway may act on their behalf (Conditional Access): {}; send the `claims` of this error with the next sign-in",
                first_line(&e.error_description)
            ),
        );
    }
    let detail = parsed
        .map(|e| format!("{}: {}", e.error, first_line(&e.error_description)))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let kind = if status >= 500 || status == 429 {
        UpstreamErrorKind::Unavailable
    } else {
        UpstreamErrorKind::Unauthorized
    };
    let whose = match assertion {
        None => "the token endpoint refused the gateway's client credentials",
        Some(_) => "the token endpoint refused to exchange the caller's token for an upstream token (on-behalf-of)",
    };
    UpstreamError::new(kind, Some(status), format!("{whose}: {detail}"))
}

/// How long a token of `lifetime` stays cached: until a quarter of its lifetime (at most five
/// minutes) before it expires, and never past the user's own token it was exchanged for
/// (`assertion_left`), so that an expired user token cannot keep using a cached exchange.
fn keep_for(lifetime: Duration, assertion_left: Option<Duration>) -> Duration {
    let own = lifetime.saturating_sub((lifetime / 4).min(Duration::from_secs(300)));
    match assertion_left {
        Some(left) => own.min(left),
        None => own,
    }
}

/// Time left before a JWT's `exp`, read without checking its signature: it can only shorten how
/// long an exchanged token is kept (zero when it cannot be read).
fn seconds_left(jwt: &str) -> Option<Duration> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: u64,
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match jsonwebtoken::dangerous::insecure_decode::<Exp>(jwt) {
        Ok(t) => Some(Duration::from_secs(t.claims.exp.saturating_sub(now))),
        Err(_) => Some(Duration::ZERO),
    }
}

/// The token of a `Bearer` authorization value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Entra's descriptions end with trace and correlation ids on further lines.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn exchanged_tokens_are_kept_no_longer_than_the_users_own() {
        let hour = Duration::from_secs(3600);
        assert_eq!(keep_for(hour, None), Duration::from_secs(3300));
        assert_eq!(keep_for(Duration::from_secs(8), None), Duration::from_secs(6));
        assert_eq!(keep_for(hour, Some(Duration::from_secs(60))), Duration::from_secs(60));
        assert_eq!(seconds_left("not a jwt"), Some(Duration::ZERO));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let app = EntraApp {
            token_url: "http://x/t/oauth2/v2.0/token".into(),
            client_id: "id".into(),
            client_secret: Secret::new("s3cr3t-value"),
            scope: "http://x/.default".into(),
        };
        let printed = format!("{:?}", UpstreamAuth::ClientCredentials(app));
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
    }

    #[tokio::test]
    async fn none_and_pass_through_need_no_token_endpoint() {
        let http = reqwest::Client::new();
        let none = TokenSource::new(UpstreamAuth::None, http.clone(), Default::default());
        assert!(none.credential(Some("Bearer x")).await.unwrap().header.is_none());
        let pass = TokenSource::new(UpstreamAuth::PassThrough, http, Default::default());
        let c = pass.credential(Some("Bearer x")).await.unwrap();
        assert_eq!(c.header.unwrap().expose(), "Bearer x");
        assert_ne!(c.identity, pass.credential(Some("Bearer y")).await.unwrap().identity);
        assert_eq!(pass.token_requests(), 0);
    }

    #[tokio::test]
    async fn identity_of_names_the_identity_credential_would_use() {
        let http = reqwest::Client::new();
        for auth in [UpstreamAuth::None, UpstreamAuth::PassThrough] {
            let tokens = TokenSource::new(auth, http.clone(), Default::default());
            for caller in [None, Some("Bearer x"), Some("Bearer y")] {
                let c = tokens.credential(caller).await.unwrap();
                assert_eq!(tokens.identity_of(caller), Some(c.identity));
            }
        }
        let app = EntraApp {
            token_url: "http://127.0.0.1:9/t/oauth2/v2.0/token".into(),
            client_id: "the-app".into(),
            client_secret: Secret::new("s"),
            scope: "http://x/.default".into(),
        };
        let cc = TokenSource::new(
            UpstreamAuth::ClientCredentials(app.clone()),
            http.clone(),
            Default::default(),
        );
        assert_eq!(cc.identity_of(Some("Bearer x")), cc.identity_of(Some("Bearer y")));
        let obo = TokenSource::new(UpstreamAuth::OnBehalfOf(app), http, Default::default());
        let (x, y) = (obo.identity_of(Some("Bearer x")), obo.identity_of(Some("Bearer y")));
        assert_eq!(x, Some(format!("user:{}", fingerprint("x"))));
        assert_ne!(x, y, "two users are two identities");
        assert_eq!(obo.identity_of(Some("Basic x")), None);
        assert_eq!(
            obo.identity_of(None),
            Some(obo.credential(None).await.unwrap().identity)
        );
    }
}
