//! The authentication flags of `serve` (see `crate::server::auth` and `crate::odata::auth`).

use super::duration;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args, Clone)]
pub struct AuthArgs {
    /// How the gateway authenticates toward the upstream: none (the emulator), pass-through (the
    /// caller's bearer token, already a Dataverse token), client-credentials (the gateway's own
    /// Entra application) or on-behalf-of (the caller's token exchanged for a Dataverse token for
    /// that user). Without --upstream, any mode but none makes the embedded emulator require tokens.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_AUTH", value_enum, default_value = "none")]
    pub upstream_auth: UpstreamAuthMode,
    /// Entra tenant (id or domain) of the token endpoint.
    #[arg(long, env = "ATS_GATEWAY_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Token endpoint; defaults to https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token
    /// (the embedded emulator's own without --upstream).
    #[arg(long, env = "ATS_GATEWAY_TOKEN_URL")]
    pub token_url: Option<String>,
    /// The gateway's Entra application (client) id.
    #[arg(long, env = "ATS_GATEWAY_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The application's client secret. Prefer the environment variable or --client-secret-file
    /// to a flag, which other users of the machine can see.
    #[arg(long, env = "ATS_GATEWAY_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<crate::secret::Secret>,
    /// A file holding the client secret (trailing whitespace ignored).
    #[arg(long, env = "ATS_GATEWAY_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Scope of upstream tokens; defaults to <upstream origin>/.default for client credentials and
    /// <upstream origin>/user_impersonation for on-behalf-of.
    #[arg(long, env = "ATS_GATEWAY_UPSTREAM_SCOPE")]
    pub upstream_scope: Option<String>,
    /// How callers authenticate to the gateway: none, jwt (bearer JWTs checked against a JWKS or
    /// a shared secret) or api-key (the X-API-Key header).
    #[arg(long, env = "ATS_GATEWAY_CALLER_AUTH", value_enum, default_value = "none")]
    pub caller_auth: CallerAuthKind,
    /// Let callers without credentials in. Required to run client-credentials without caller
    /// authentication: every caller would then read HR data as the gateway's application.
    #[arg(long, env = "ATS_GATEWAY_ALLOW_ANONYMOUS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_anonymous: bool,
    /// The issuer (`iss`) caller JWTs must have, such as https://login.microsoftonline.com/<tenant>/v2.0.
    #[arg(long, env = "ATS_GATEWAY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted audiences (`aud`) of caller JWTs, comma-separated.
    #[arg(long, env = "ATS_GATEWAY_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// URL of the JWKS that signs caller JWTs (https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys).
    #[arg(long, env = "ATS_GATEWAY_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// A JWKS file instead of a URL.
    #[arg(long, env = "ATS_GATEWAY_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// A shared secret (HS256/384/512, at least 32 bytes) instead of a JWKS.
    #[arg(long, env = "ATS_GATEWAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<crate::secret::Secret>,
    /// Clock skew allowed on caller JWTs' exp and nbf.
    #[arg(long, env = "ATS_GATEWAY_JWT_LEEWAY", default_value = "60s", value_parser = duration)]
    pub jwt_leeway: std::time::Duration,
    /// API keys, comma-separated, each name=sha256:<hex SHA-256 of the key> (never the key
    /// itself; `printf %s "$KEY" | sha256sum` gives the hash). The name is the caller's identity.
    #[arg(long, env = "ATS_GATEWAY_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<crate::server::auth::ApiKey>,
}

/// `--upstream-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamAuthMode {
    None,
    PassThrough,
    ClientCredentials,
    OnBehalfOf,
}

/// `--caller-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CallerAuthKind {
    None,
    Jwt,
    ApiKey,
}

impl AuthArgs {
    /// The upstream auth settings. `emulator`: the embedded emulator's address, when it is the
    /// upstream (its token endpoint is then the default).
    pub fn upstream_auth(
        &self,
        upstream: &str,
        emulator: Option<SocketAddr>,
    ) -> Result<crate::odata::UpstreamAuth, String> {
        use crate::odata::{EntraApp, UpstreamAuth};
        let app = |default_scope: &str| -> Result<EntraApp, String> {
            let tenant = self.tenant_id.clone().unwrap_or_else(|| "emulator".to_string());
            let token_url = match (&self.token_url, &self.tenant_id, emulator) {
                (Some(url), _, _) => url.clone(),
                (None, _, Some(addr)) => format!("http://{addr}/{tenant}/oauth2/v2.0/token"),
                (None, Some(t), None) => format!("https://login.microsoftonline.com/{t}/oauth2/v2.0/token"),
                (None, None, None) => return Err("--upstream-auth needs --tenant-id (or --token-url)".into()),
            };
            let (client_id, client_secret) = match emulator {
                Some(_) if self.client_id.is_none() => (
                    crate::emulator::auth::DEMO_CLIENT_ID.to_string(),
                    crate::secret::Secret::new(crate::emulator::auth::DEMO_CLIENT_SECRET),
                ),
                _ => (
                    self.client_id.clone().ok_or("--upstream-auth needs --client-id")?,
                    self.secret()?,
                ),
            };
            let origin = reqwest::Url::parse(upstream)
                .map_err(|e| format!("the upstream {upstream:?} is not a URL: {e}"))?
                .origin()
                .ascii_serialization();
            Ok(EntraApp {
                token_url,
                client_id,
                client_secret,
                scope: self
                    .upstream_scope
                    .clone()
                    .unwrap_or_else(|| format!("{origin}/{default_scope}")),
            })
        };
        Ok(match self.upstream_auth {
            UpstreamAuthMode::None => UpstreamAuth::None,
            UpstreamAuthMode::PassThrough => UpstreamAuth::PassThrough,
            UpstreamAuthMode::ClientCredentials => UpstreamAuth::ClientCredentials(app(".default")?),
            UpstreamAuthMode::OnBehalfOf => UpstreamAuth::OnBehalfOf(app("user_impersonation")?),
        })
    }

    fn secret(&self) -> Result<crate::secret::Secret, String> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(s), None) => Ok(s.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| crate::secret::Secret::new(s.trim_end()))
                .map_err(|e| format!("cannot read the client secret file {}: {e}", path.display())),
            (Some(_), Some(_)) => Err("give the client secret once: --client-secret or --client-secret-file".into()),
            (None, None) => {
                Err("--upstream-auth needs a client secret (ATS_GATEWAY_CLIENT_SECRET or --client-secret-file)".into())
            }
        }
    }

    /// The caller authentication settings.
    pub fn caller_auth(&self) -> Result<crate::server::auth::CallerAuthConfig, String> {
        use crate::server::auth::{CallerAuthConfig, CallerAuthMode, JwtConfig, JwtKeys};
        let mode = match self.caller_auth {
            CallerAuthKind::None => CallerAuthMode::None,
            CallerAuthKind::ApiKey if self.api_keys.is_empty() => {
                return Err("--caller-auth api-key needs --api-keys".into())
            }
            CallerAuthKind::ApiKey => CallerAuthMode::ApiKeys(self.api_keys.clone()),
            CallerAuthKind::Jwt => {
                let keys = match (&self.jwks_url, &self.jwks_file, &self.jwt_secret) {
                    (Some(u), None, None) => JwtKeys::JwksUrl(u.clone()),
                    (None, Some(f), None) => JwtKeys::JwksFile(f.clone()),
                    (None, None, Some(s)) => JwtKeys::SharedSecret(s.clone()),
                    _ => {
                        return Err(
                            "--caller-auth jwt needs exactly one of --jwks-url, --jwks-file, --jwt-secret".into(),
                        )
                    }
                };
                CallerAuthMode::Jwt(JwtConfig {
                    keys,
                    issuer: self.jwt_issuer.clone().ok_or("--caller-auth jwt needs --jwt-issuer")?,
                    audiences: self.jwt_audience.clone(),
                    leeway: self.jwt_leeway,
                })
            }
        };
        Ok(CallerAuthConfig {
            mode,
            allow_anonymous: self.allow_anonymous,
        })
    }
}
