//! The emulator's Microsoft Entra ID: a token endpoint and bearer checking, so that every upstream
//! auth mode of the gateway runs end to end without a tenant.
//!
//! - `POST /{tenant}/oauth2/v2.0/token` with the grants Entra documents (contract §10):
//!   `client_credentials` (an application token), `urn:ietf:params:oauth:grant-type:jwt-bearer`
//!   with `requested_token_use=on_behalf_of` (a user's token for another resource), and `password`
//!   (a user's token, so tests and developers can get one without a browser). Errors come as
//!   Entra's `{"error":"invalid_client","error_description":"AADSTS…"}`.
//! - `GET /{tenant}/discovery/v2.0/keys` (JWKS) and `/{tenant}/v2.0/.well-known/openid-configuration`.
//! - Tokens are JWTs signed with a P-256 key made at start (Entra signs with RS256; the gateway
//!   verifies either from the JWKS). Their `aud` is the scope's resource (`http://host:port` for
//!   `http://host:port/.default`).
//! - With `required`, the OData routes want `Authorization: Bearer` with a token for the
//!   emulator's own origin; otherwise 401 with `WWW-Authenticate`, as Dataverse does. The identity
//!   behind each accepted token (`app:<client id>` or `user:<name>`) is what the request counters
//!   and the throttle count by.
//! - `POST /_emulator/auth/expire` makes every resource token issued so far expired, to test
//!   refreshing; the counters below say how many tokens were issued per grant and how many
//!   requests were refused.

use crate::secret::Secret;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A registered application (a confidential client).
#[derive(Debug, Clone)]
pub struct App {
    pub client_id: String,
    pub secret: Secret,
}

/// A user who can sign in with the password grant.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: Secret,
}

/// How the emulator authenticates.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Whether the OData routes require a bearer token (the token endpoint always works).
    pub required: bool,
    /// Lifetime of the tokens it issues.
    pub token_lifetime: Duration,
    pub apps: Vec<App>,
    pub users: Vec<User>,
    /// Users whose tokens Conditional Access will not let an application exchange on their
    /// behalf without a fresh sign-in (MFA): on-behalf-of answers `interaction_required`.
    pub interaction_required: Vec<String>,
}

/// The client id of the emulator's built-in application, for the gateway.
pub const DEMO_CLIENT_ID: &str = "ats-gateway";
/// Its secret: the emulator's own, worthless anywhere else.
pub const DEMO_CLIENT_SECRET: &str = "emulator-only-secret";
/// The password of the emulator's demo users.
pub const DEMO_PASSWORD: &str = "demo";

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            token_lifetime: Duration::from_secs(3600),
            apps: vec![App {
                client_id: DEMO_CLIENT_ID.to_string(),
                secret: Secret::new(DEMO_CLIENT_SECRET),
            }],
            interaction_required: vec!["dave".to_string()],
            users: ["alice", "bob", "carol", "dave"]
                .iter()
                .map(|n| User {
                    name: n.to_string(),
                    password: Secret::new(DEMO_PASSWORD),
                })
                .collect(),
        }
    }
}

/// The claims of the emulator's tokens (a subset of Entra's v2.0 access tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub oid: String,
    pub tid: String,
    /// The client the token was issued to.
    pub azp: String,
    /// `app` for application tokens, `user` for delegated ones.
    pub idtyp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub ver: String,
    /// The emulator's expiry generation when the token was issued (see `expire_all`).
    #[serde(default)]
    pub emu_gen: u64,
}

impl Claims {
    /// The identity requests made with this token are counted under.
    pub fn identity(&self) -> String {
        match &self.preferred_username {
            Some(user) if self.idtyp == "user" => format!("user:{user}"),
            _ => format!("app:{}", self.azp),
        }
    }
}

/// Why a request or a token request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Entra's error code (`invalid_client`, ...), or `invalid_token` for bearer checking.
    pub error: &'static str,
    pub description: String,
    /// A claims challenge (with `interaction_required`).
    pub claims: Option<String>,
}

impl Refusal {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Refusal {
            status,
            error,
            description: description.into(),
            claims: None,
        }
    }
}

/// A successful token response.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub expires_in: u64,
    pub ext_expires_in: u64,
    pub access_token: String,
}

/// The emulator's token service.
pub struct Authority {
    config: AuthConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: JwkSet,
    generation: AtomicU64,
    issued: Mutex<BTreeMap<String, u64>>,
    refused: AtomicU64,
}

/// The on-behalf-of grant type.
pub(crate) const GRANT_OBO: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authority {
    /// Makes a fresh signing key.
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate the emulator's signing key".to_string())?;
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| format!("cannot describe the signing key as a JWK: {e}"))?;
        let kid = crate::secret::fingerprint(&serde_json::to_string(&jwk.algorithm).unwrap_or_default());
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("cannot read the signing key back: {e}"))?;
        Ok(Authority {
            config,
            encoding,
            decoding,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
            generation: AtomicU64::new(0),
            issued: Mutex::new(BTreeMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    pub fn required(&self) -> bool {
        self.config.required
    }

    /// The public keys (`/{tenant}/discovery/v2.0/keys`).
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Makes every resource token issued so far count as expired.
    pub fn expire_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Tokens issued per grant, and requests refused for their token.
    pub fn stats(&self) -> serde_json::Value {
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner()).clone();
        serde_json::json!({
            "tokensIssued": issued,
            "refused": self.refused.load(Ordering::Relaxed),
        })
    }

    pub fn reset_stats(&self) {
        self.issued.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.refused.store(0, Ordering::Relaxed);
    }

    /// Answers a token request (the form fields of the POST body). `issuer` is
    /// `http://host:port/{tenant}/v2.0`: find the app, check the scope, build the claims by grant,
    /// count and sign the token.
    pub fn token(&self, form: &BTreeMap<String, String>, issuer: &str, tenant: &str) -> Result<TokenResponse, Refusal> {
        let form = Form(form);
        let client_id = form.get("client_id");
        let app = self.app(client_id, tenant)?;
        let scope = form.get("scope");
        let (resource, scope_name) = split_scope(scope)?;
        let now = now_secs();
        let base = Claims {
            iss: issuer.to_string(),
            aud: resource.to_string(),
            sub: String::new(),
            oid: String::new(),
            tid: tenant.to_string(),
            azp: client_id.to_string(),
            idtyp: "app".to_string(),
            preferred_username: None,
            scp: None,
            iat: now,
            nbf: now,
            exp: now + self.config.token_lifetime.as_secs().max(1),
            ver: "2.0".to_string(),
            emu_gen: self.generation.load(Ordering::SeqCst),
        };
        let grant = form.get("grant_type");
        let claims = match grant {
            "client_credentials" => client_credentials(app, &form, base, scope, scope_name)?,
            "password" => self.password(&form, base, scope_name)?,
            GRANT_OBO => self.on_behalf_of(app, &form, base, scope_name)?,
            "" => {
                return Err(Refusal::new(
                    400,
                    "invalid_request",
                    "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
                ))
            }
            other => {
                return Err(Refusal::new(
                    400,
                    "unsupported_grant_type",
                    format!("AADSTS70003: The app requested an unsupported grant type '{other}'."),
                ))
            }
        };
        self.count_issued(if grant == GRANT_OBO { "on_behalf_of" } else { grant });
        self.sign(&claims, now)
    }

    /// The registered app `client_id` names.
    fn app(&self, client_id: &str, tenant: &str) -> Result<&App, Refusal> {
        if client_id.is_empty() {
            return Err(Refusal::new(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            ));
        }
        self.config.apps.iter().find(|a| a.client_id == client_id).ok_or_else(|| {
            Refusal::new(
                400,
                "unauthorized_client",
                format!("AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
            )
        })
    }

    /// The password grant: a configured user's name and password.
    fn password(&self, form: &Form<'_>, base: Claims, scope_name: &str) -> Result<Claims, Refusal> {
        let name = form.get("username");
        let user = self
            .config
            .users
            .iter()
            .find(|u| {
                u.name == name
                    && crate::secret::constant_time_eq(u.password.expose().as_bytes(), form.get("password").as_bytes())
            })
            .ok_or_else(|| {
                Refusal::new(
                    400,
                    "invalid_grant",
                    "AADSTS50126: Error validating credentials due to invalid username or password.",
                )
            })?;
        Ok(user_claims(base, &user.name, scope_name))
    }

    /// The on-behalf-of grant: the app's secret and a user's token issued to the app, unless
    /// the user must sign in again (`interaction_required`, with a claims challenge).
    fn on_behalf_of(&self, app: &App, form: &Form<'_>, base: Claims, scope_name: &str) -> Result<Claims, Refusal> {
        check_secret(app, form)?;
        let client_id = app.client_id.as_str();
        if form.get("requested_token_use") != "on_behalf_of" {
            return Err(Refusal::new(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'requested_token_use'.",
            ));
        }
        let assertion = self.verify(form.get("assertion"), None, false).map_err(|r| {
            Refusal::new(
                400,
                "invalid_grant",
                format!(
                    "AADSTS50013: Assertion failed signature validation or is expired. ({})",
                    r.description
                ),
            )
        })?;
        let audiences = [client_id.to_string(), format!("api://{client_id}")];
        if !audiences.contains(&assertion.aud) {
            return Err(Refusal::new(
                400,
                "invalid_grant",
                format!("AADSTS50013: Assertion audience does not match the Client app presenting the assertion. The audience in the assertion was '{}' and the expected audience is '{client_id}'.", assertion.aud),
            ));
        }
        let Some(user) = assertion.preferred_username.filter(|_| assertion.idtyp == "user") else {
            return Err(Refusal::new(
                400,
                "invalid_grant",
                "AADSTS50013: The assertion is not a user's token.",
            ));
        };
        if self.config.interaction_required.contains(&user) {
            return Err(interaction_required());
        }
        Ok(user_claims(base, &user, scope_name))
    }

    /// Counts a token issued by `grant`.
    fn count_issued(&self, grant: &str) {
        *self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(grant.to_string())
            .or_default() += 1;
    }

    /// The signed token for `claims`, issued at `now`.
    fn sign(&self, claims: &Claims, now: u64) -> Result<TokenResponse, Refusal> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let access_token = jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| Refusal::new(500, "server_error", format!("cannot sign the token: {e}")))?;
        Ok(TokenResponse {
            token_type: "Bearer",
            expires_in: claims.exp - now,
            ext_expires_in: claims.exp - now,
            access_token,
        })
    }

    /// Checks the `Authorization` header of an OData request for the resource `origin`
    /// (`http://host:port`), counting refusals.
    pub fn check_bearer(&self, authorization: Option<&str>, origin: &str) -> Result<Claims, Refusal> {
        let result = match authorization.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer "))) {
            None => Err(Refusal::new(401, "invalid_request", "Bearer token required")),
            Some(token) => self.verify(token.trim(), Some(origin), true),
        };
        if result.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Verifies one of the emulator's own tokens: signature, lifetime, and (when given) audience;
    /// with `resource`, also the expiry generation.
    fn verify(&self, token: &str, audience: Option<&str>, resource: bool) -> Result<Claims, Refusal> {
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = 0;
        v.validate_nbf = true;
        match audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Refusal::new(401, "invalid_token", "ExpiredAuthTicket: the access token has expired")
                }
                ErrorKind::InvalidAudience => Refusal::new(
                    401,
                    "invalid_token",
                    "InvalidAuthTicket: the access token is not for this environment",
                ),
                _ => Refusal::new(401, "invalid_token", format!("InvalidAuthTicket: {e}")),
            }
        })?;
        if resource && data.claims.emu_gen < self.generation.load(Ordering::SeqCst) {
            return Err(Refusal::new(
                401,
                "invalid_token",
                "ExpiredAuthTicket: the access token has expired",
            ));
        }
        Ok(data.claims)
    }
}

/// A user's token claims for `name`.
/// The form fields of a token request; a missing field reads as empty.
struct Form<'a>(&'a BTreeMap<String, String>);

impl Form<'_> {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }
}

/// The client credentials grant: the app's secret and a `/.default` scope; the app is the subject.
fn client_credentials(
    app: &App,
    form: &Form<'_>,
    base: Claims,
    scope: &str,
    scope_name: &str,
) -> Result<Claims, Refusal> {
    check_secret(app, form)?;
    if scope_name != ".default" {
        return Err(Refusal::new(
            400,
            "invalid_scope",
            format!("AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        ));
    }
    let oid = format!("app-{}", crate::secret::fingerprint(&app.client_id));
    Ok(Claims {
        sub: oid.clone(),
        oid,
        ..base
    })
}

/// The form's `client_secret` is the app's (compared in constant time).
fn check_secret(app: &App, form: &Form<'_>) -> Result<(), Refusal> {
    if crate::secret::constant_time_eq(form.get("client_secret").as_bytes(), app.secret.expose().as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::new(
            401,
            "invalid_client",
            format!("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", app.client_id),
        ))
    }
}

/// Entra's answer when Conditional Access wants the user to sign in again (MFA), with the claims
/// challenge the client's next sign-in must carry.
fn interaction_required() -> Refusal {
    Refusal {
        claims: Some(r#"{"access_token":{"capolids":{"essential":true,"values":["emulator-mfa-policy"]}}}"#.to_string()),
        ..Refusal::new(
            400,
            "interaction_required",
            "AADSTS50079: Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access this resource.",
        )
    }
}

fn user_claims(base: Claims, name: &str, scope_name: &str) -> Claims {
    let oid = format!("user-{}", crate::secret::fingerprint(name));
    Claims {
        sub: oid.clone(),
        oid,
        idtyp: "user".to_string(),
        preferred_username: Some(name.to_string()),
        scp: Some(if scope_name == ".default" {
            "user_impersonation".to_string()
        } else {
            scope_name.to_string()
        }),
        ..base
    }
}

/// `https://org.crm.dynamics.com/.default` → (`https://org.crm.dynamics.com`, `.default`); the
/// first of several space-separated scopes that is not an OpenID one.
fn split_scope(scope: &str) -> Result<(&str, &str), Refusal> {
    let first = scope
        .split(' ')
        .find(|s| !s.is_empty() && !matches!(*s, "openid" | "profile" | "offline_access" | "email"))
        .unwrap_or("");
    match first.rsplit_once('/') {
        Some((resource, name)) if !resource.is_empty() && !name.is_empty() && !resource.ends_with(':') && !resource.ends_with('/') => Ok((resource, name)),
        _ => Err(Refusal::new(
            400,
            "invalid_scope",
            format!("AADSTS70011: The provided request must include a 'scope' input parameter of the form '<resource>/<permission>'; got '{first}'."),
        )),
    }
}
