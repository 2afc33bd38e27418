//! Who may call the gateway: caller authentication, and the identity that partitions caches and
//! idempotency keys.
//!
//! Modes (`--caller-auth`):
//! - `none`: callers are not checked. The identity is a fingerprint of the `Authorization` value
//!   (so pass-through and on-behalf-of callers still get caches of their own), or `anonymous`.
//! - `jwt`: `Authorization: Bearer <JWT>` validated against a JWKS (file or URL, refetched when an
//!   unknown key id shows up, at most once a minute) or a shared secret (HS256/384/512), with
//!   issuer and audience checks. The identity is the issuer and subject (fingerprinted).
//! - `api-key`: `X-API-Key: <key>`, compared (in constant time) by SHA-256 with the configured
//!   hashes; the configuration holds no key itself. The identity is the key's name.
//!
//! A request with no credentials is anonymous: refused (401) in `jwt` and `api-key` modes, and
//! always when the gateway calls the upstream with client credentials, unless `allow_anonymous`
//! is set. A request with bad credentials is refused whatever that setting says.

use crate::secret::{constant_time_eq, fingerprint, sha256_hex, Secret};
use axum::http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// Where JWT signing keys come from.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    JwksUrl(String),
    JwksFile(PathBuf),
    SharedSecret(Secret),
}

/// Bearer JWT validation.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub keys: JwtKeys,
    /// The `iss` a token must carry.
    pub issuer: String,
    /// One of these must be in the token's `aud`.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// An API key: a name (the caller's identity) and the SHA-256 of the key, in hex.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: String,
    pub sha256: String,
}

impl std::str::FromStr for ApiKey {
    type Err = String;
    /// `name=sha256:<64 hex digits>`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, hash) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not an API key entry: write name=sha256:<hex of the key's SHA-256>"))?;
        let hash = hash
            .trim()
            .strip_prefix("sha256:")
            .unwrap_or(hash.trim())
            .to_ascii_lowercase();
        if name.trim().is_empty() || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "API key entry `{}`: write name=sha256:<64 hex digits> (the SHA-256 of the key, never the key)",
                name.trim()
            ));
        }
        Ok(ApiKey {
            name: name.trim().to_string(),
            sha256: hash,
        })
    }
}

/// How callers authenticate.
#[derive(Debug, Clone, Default)]
pub enum CallerAuthMode {
    #[default]
    None,
    Jwt(JwtConfig),
    ApiKeys(Vec<ApiKey>),
}

/// Caller authentication settings.
#[derive(Debug, Clone, Default)]
pub struct CallerAuthConfig {
    pub mode: CallerAuthMode,
    /// Let requests without credentials through (as `anonymous`).
    pub allow_anonymous: bool,
}

/// An accepted caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Partitions caches and idempotency keys; safe to log (no credential in it).
    pub identity: String,
    /// The `Authorization` value, for the upstream in pass-through and on-behalf-of modes.
    pub authorization: Option<String>,
    /// The roles of a JWT caller (its `roles` claim), for `--explain-roles`.
    pub roles: Vec<String>,
}

/// A refused caller: the message and the `WWW-Authenticate` challenge of the 401.
#[derive(Debug, Clone)]
pub struct Unauthenticated {
    pub message: String,
    pub challenge: String,
}

/// Checks callers (see the module docs).
pub struct CallerAuth {
    config: CallerAuthConfig,
    /// Whether the upstream is called with the gateway's own application identity.
    app_identity_upstream: bool,
    jwks: RwLock<Jwks>,
    http: reqwest::Client,
}

#[derive(Default)]
struct Jwks {
    set: Option<JwkSet>,
    fetched: Option<Instant>,
}

/// JWKS are refetched for an unknown key id at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(60);
/// And at least this often.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

impl CallerAuth {
    /// Reads a JWKS file now; a JWKS URL is fetched on first use. `app_identity_upstream`: the
    /// upstream auth mode is client credentials.
    pub fn new(config: CallerAuthConfig, app_identity_upstream: bool) -> Result<Self, String> {
        let mut jwks = Jwks::default();
        if let CallerAuthMode::Jwt(j) = &config.mode {
            if j.issuer.is_empty() || j.audiences.is_empty() {
                return Err("JWT caller authentication needs an issuer (--jwt-issuer) and at least one audience (--jwt-audience)".into());
            }
            match &j.keys {
                JwtKeys::JwksFile(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
                    let set: JwkSet = serde_json::from_str(&text)
                        .map_err(|e| format!("{} is not a JWKS document: {e}", path.display()))?;
                    jwks.set = Some(set);
                }
                JwtKeys::SharedSecret(s) if s.expose().len() < 32 => {
                    return Err("the shared JWT secret must be at least 32 bytes long".into());
                }
                _ => {}
            }
        }
        if app_identity_upstream && matches!(config.mode, CallerAuthMode::None) && !config.allow_anonymous {
            return Err("the upstream is called with client credentials, so every caller would read HR data with the gateway's own application identity: configure caller authentication (--caller-auth jwt or api-key), or set --allow-anonymous true if the gateway is reachable only by trusted callers".into());
        }
        Ok(CallerAuth {
            config,
            app_identity_upstream,
            jwks: RwLock::new(jwks),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("cannot build the JWKS client: {e}"))?,
        })
    }

    /// The setting's name, for logs.
    pub fn mode(&self) -> &'static str {
        match self.config.mode {
            CallerAuthMode::None => "none",
            CallerAuthMode::Jwt(_) => "jwt",
            CallerAuthMode::ApiKeys(_) => "api-key",
        }
    }

    /// Accepts or refuses the caller of one request.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Unauthenticated> {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut roles = Vec::new();
        let identity = match &self.config.mode {
            CallerAuthMode::None => authorization.as_ref().map(|a| format!("caller-{}", fingerprint(a))),
            CallerAuthMode::ApiKeys(keys) => match headers.get("x-api-key") {
                None => None,
                Some(v) => {
                    let presented = sha256_hex(v.as_bytes());
                    let found = keys.iter().fold(None, |found, k| {
                        match constant_time_eq(presented.as_bytes(), k.sha256.as_bytes()) {
                            true => Some(k),
                            false => found,
                        }
                    });
                    match found {
                        Some(k) => Some(format!("key:{}", k.name)),
                        None => return Err(self.refuse("the API key is not valid", "error=\"invalid_token\"")),
                    }
                }
            },
            CallerAuthMode::Jwt(j) => match authorization.as_deref() {
                None => None,
                Some(a) => {
                    let Some(token) = crate::odata::auth::bearer_token(a) else {
                        return Err(self.refuse(
                            "the Authorization header must be `Bearer <token>`",
                            "error=\"invalid_request\"",
                        ));
                    };
                    let (identity, claimed) = self.verify_jwt(j, token).await.map_err(|reason| {
                        self.refuse(
                            &format!("the bearer token is not valid: {reason}"),
                            &format!(
                                "error=\"invalid_token\", error_description=\"{}\"",
                                reason.replace('"', "'")
                            ),
                        )
                    })?;
                    roles = claimed;
                    Some(identity)
                }
            },
        };
        match identity {
            Some(identity) => Ok(Caller {
                identity,
                authorization,
                roles,
            }),
            None if self.anonymous_allowed() => Ok(Caller {
                identity: "anonymous".to_string(),
                authorization,
                roles,
            }),
            None => Err(self.refuse(
                match self.config.mode {
                    CallerAuthMode::ApiKeys(_) => "authentication required: send an API key in the X-API-Key header",
                    _ => "authentication required: send a bearer token in the Authorization header",
                },
                "",
            )),
        }
    }

    fn anonymous_allowed(&self) -> bool {
        self.config.allow_anonymous || (matches!(self.config.mode, CallerAuthMode::None) && !self.app_identity_upstream)
    }

    fn refuse(&self, message: &str, params: &str) -> Unauthenticated {
        let scheme = match self.config.mode {
            CallerAuthMode::ApiKeys(_) => "ApiKey",
            _ => "Bearer",
        };
        let challenge = if params.is_empty() {
            format!("{scheme} realm=\"ats-gateway\"")
        } else {
            format!("{scheme} realm=\"ats-gateway\", {params}")
        };
        Unauthenticated {
            message: message.to_string(),
            challenge,
        }
    }

    /// The caller identity and roles (its `roles` claim) of a valid token, or why it is not valid.
    async fn verify_jwt(&self, j: &JwtConfig, token: &str) -> Result<(String, Vec<String>), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT ({e})"))?;
        let key = match &j.keys {
            JwtKeys::SharedSecret(secret) => {
                if !matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    return Err(format!(
                        "algorithm {:?} is not accepted with a shared secret",
                        header.alg
                    ));
                }
                DecodingKey::from_secret(secret.expose().as_bytes())
            }
            _ => {
                if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    return Err("symmetric algorithms are not accepted with a JWKS".into());
                }
                self.key_for(j, header.kid.as_deref(), header.alg).await?
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&j.issuer]);
        v.set_audience(&j.audiences);
        v.leeway = j.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => "it has expired".to_string(),
                    ErrorKind::ImmatureSignature => "it is not valid yet".to_string(),
                    ErrorKind::InvalidIssuer => "it was issued by another issuer".to_string(),
                    ErrorKind::InvalidAudience => "it is meant for another audience".to_string(),
                    ErrorKind::InvalidSignature => "its signature does not verify".to_string(),
                    ErrorKind::MissingRequiredClaim(c) => format!("it has no `{c}` claim"),
                    _ => e.to_string(),
                }
            })?;
        let sub = data.claims.get("sub").and_then(|s| s.as_str()).unwrap_or("");
        let roles = match data.claims.get("roles") {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect(),
            Some(serde_json::Value::String(r)) => vec![r.clone()],
            _ => Vec::new(),
        };
        Ok((format!("jwt:{}", fingerprint(&format!("{}|{sub}", j.issuer))), roles))
    }

    /// The JWKS key for `kid`, refetching the set (URL only) when it is unknown or old.
    async fn key_for(&self, j: &JwtConfig, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, String> {
        let pick = |set: &JwkSet| -> Option<Result<DecodingKey, String>> {
            let jwk = match kid {
                Some(kid) => set.find(kid)?,
                None if set.keys.len() == 1 => &set.keys[0],
                None => return Some(Err("the token names no key (kid) and the JWKS has several".into())),
            };
            if let Some(key_alg) = jwk.common.key_algorithm {
                if format!("{key_alg:?}") != format!("{alg:?}") {
                    return Some(Err(format!("the key is for {key_alg:?}, the token says {alg:?}")));
                }
            }
            Some(DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}")))
        };
        {
            let cached = self.jwks.read().await;
            let fresh = cached.fetched.is_none_or(|t| t.elapsed() < JWKS_MAX_AGE);
            if let (Some(set), true) = (&cached.set, fresh) {
                if let Some(found) = pick(set) {
                    return found;
                }
            }
        }
        let JwtKeys::JwksUrl(url) = &j.keys else {
            return Err("no key in the JWKS matches the token's key id".into());
        };
        let mut cached = self.jwks.write().await;
        // Another request may have refetched while this one waited.
        let recent = cached.fetched.is_some_and(|t| t.elapsed() < JWKS_REFETCH);
        if !recent {
            match self.fetch_jwks(url).await {
                Ok(set) => {
                    cached.set = Some(set);
                    cached.fetched = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(jwks_url = %url, error = %e, "cannot fetch the JWKS");
                    cached.fetched = Some(Instant::now());
                    if cached.set.is_none() {
                        return Err("the signing keys could not be fetched".into());
                    }
                }
            }
        }
        match cached.set.as_ref().and_then(pick) {
            Some(found) => found,
            None => Err("no key in the JWKS matches the token's key id".into()),
        }
    }

    async fn fetch_jwks(&self, url: &str) -> Result<JwkSet, String> {
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| format!("not a JWKS document: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn jwt_auth() -> CallerAuth {
        CallerAuth::new(
            CallerAuthConfig {
                mode: CallerAuthMode::Jwt(JwtConfig {
                    keys: JwtKeys::SharedSecret(Secret::new(SECRET)),
                    issuer: "https://issuer".into(),
                    audiences: vec!["api://gw".into()],
                    leeway: Duration::from_secs(0),
                }),
                allow_anonymous: false,
            },
            false,
        )
        .unwrap()
    }

    fn token(claims: serde_json::Value, alg: Algorithm) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn jwt_with_shared_secret_checks_issuer_audience_and_expiry() {
        let auth = jwt_auth();
        let good = serde_json::json!({"iss": "https://issuer", "aud": "api://gw", "sub": "u1", "exp": now() + 60});
        let caller = auth
            .authenticate(&headers(
                "authorization",
                &format!("Bearer {}", token(good.clone(), Algorithm::HS256)),
            ))
            .await
            .unwrap();
        assert!(caller.identity.starts_with("jwt:"), "{}", caller.identity);
        let cases = [
            ("iss", serde_json::json!("https://evil"), "another issuer"),
            ("aud", serde_json::json!("api://other"), "another audience"),
            ("exp", serde_json::json!(now() - 10), "expired"),
            ("nbf", serde_json::json!(now() + 600), "not valid yet"),
        ];
        for (claim, value, expected) in cases {
            let mut bad = good.clone();
            bad[claim] = value;
            let e = auth
                .authenticate(&headers(
                    "authorization",
                    &format!("Bearer {}", token(bad, Algorithm::HS256)),
                ))
                .await
                .unwrap_err();
            assert!(e.message.contains(expected), "{claim}: {}", e.message);
            assert!(e.challenge.contains("invalid_token"), "{}", e.challenge);
        }
        let e = auth.authenticate(&HeaderMap::new()).await.unwrap_err();
        assert!(e.message.contains("authentication required"), "{}", e.message);
        let e = auth
            .authenticate(&headers("authorization", "Bearer not.a.jwt"))
            .await
            .unwrap_err();
        assert!(e.message.contains("not a JWT"), "{}", e.message);
    }

    #[tokio::test]
    async fn api_keys_are_compared_by_hash() {
        let entry: ApiKey = format!("partner-a=sha256:{}", sha256_hex(b"key-a")).parse().unwrap();
        let auth = CallerAuth::new(
            CallerAuthConfig {
                mode: CallerAuthMode::ApiKeys(vec![entry]),
                allow_anonymous: false,
            },
            true,
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(&headers("x-api-key", "key-a"))
                .await
                .unwrap()
                .identity,
            "key:partner-a"
        );
        assert!(auth.authenticate(&headers("x-api-key", "key-b")).await.is_err());
        assert!(auth.authenticate(&HeaderMap::new()).await.is_err());
        assert!("partner=abc".parse::<ApiKey>().is_err());
    }

    #[test]
    fn client_credentials_without_caller_auth_needs_an_explicit_yes() {
        let e = CallerAuth::new(CallerAuthConfig::default(), true).err().unwrap();
        assert!(e.contains("--allow-anonymous"), "{e}");
        assert!(CallerAuth::new(
            CallerAuthConfig {
                mode: CallerAuthMode::None,
                allow_anonymous: true
            },
            true
        )
        .is_ok());
    }
}
