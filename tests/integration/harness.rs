//! Test servers. Each runs on its own runtime thread, so tests on other runtimes can share it.

use ats_gateway::emulator::{self, faults::Faults, EmulatorConfig, Seed};
use serde_json::Value;
use std::sync::OnceLock;

/// A running emulator, reachable over HTTP.
pub struct Emu {
    pub root: String,
    pub admin: String,
    /// Controls the emulator's thread; it stops for good when every sender is dropped.
    pub _stop: std::sync::mpsc::Sender<EmuControl>,
}

/// What the emulator's thread is asked to do; it answers on the given channel when done.
pub enum EmuControl {
    /// Stop serving (connections are refused), keeping the data and the faults.
    Pause(std::sync::mpsc::Sender<()>),
    /// Serve again on the same port.
    Resume(std::sync::mpsc::Sender<()>),
}

impl Emu {
    /// Starts an emulator on a free port with `config`, on a dedicated thread.
    pub fn start(config: EmulatorConfig) -> Emu {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (control_tx, control_rx) = std::sync::mpsc::channel::<EmuControl>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let running = emulator::start("127.0.0.1:0".parse().unwrap(), &config)
                    .await
                    .expect("emulator starts");
                let (addr, state) = (running.addr, running.state.clone());
                addr_tx.send(addr).unwrap();
                let mut running = Some(running);
                let mut control_rx = control_rx;
                loop {
                    let (rx, command) = tokio::task::spawn_blocking(move || {
                        let command = control_rx.recv();
                        (control_rx, command)
                    })
                    .await
                    .unwrap();
                    control_rx = rx;
                    match command {
                        Err(_) => break,
                        Ok(EmuControl::Pause(done)) => {
                            if let Some(r) = running.take() {
                                r.stop().await;
                            }
                            let _ = done.send(());
                        }
                        Ok(EmuControl::Resume(done)) => {
                            if running.is_none() {
                                let r = emulator::serve(addr, state.clone())
                                    .await
                                    .expect("the emulator gets its port back");
                                running = Some(r);
                            }
                            let _ = done.send(());
                        }
                    }
                }
                if let Some(r) = running {
                    r.stop().await;
                }
            });
        });
        let addr = addr_rx.recv().expect("emulator address");
        Emu {
            root: format!("http://{addr}/api/data/v9.2/"),
            admin: format!("http://{addr}/_emulator/"),
            _stop: control_tx,
        }
    }

    fn control(&self, command: impl FnOnce(std::sync::mpsc::Sender<()>) -> EmuControl) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        self._stop.send(command(done_tx)).expect("the emulator thread runs");
        done_rx.recv().expect("the emulator thread answers");
    }

    /// Stops serving, as an upstream going down: connections to its port are refused. In-flight
    /// requests finish first. Data and faults are kept for [`Emu::resume`].
    pub fn pause(&self) {
        self.control(EmuControl::Pause);
    }

    /// Serves again, on the same port, with the same data.
    pub fn resume(&self) {
        self.control(EmuControl::Resume);
    }

    /// A fresh emulator with the demo seed at a small size.
    pub fn fresh() -> Emu {
        Emu::start(EmulatorConfig {
            seed: Seed::Demo,
            seed_size: 20,
            ..EmulatorConfig::default()
        })
    }

    /// A fresh emulator with faults.
    pub fn with_faults(faults: Faults) -> Emu {
        Emu::start(EmulatorConfig {
            seed: Seed::Demo,
            seed_size: 10,
            faults,
            ..EmulatorConfig::default()
        })
    }

    /// A fresh emulator that wants bearer tokens from its token endpoint, valid for `lifetime`.
    pub fn with_auth(lifetime: std::time::Duration) -> Emu {
        Emu::start(EmulatorConfig {
            seed: Seed::Demo,
            seed_size: 10,
            auth: emulator::auth::AuthConfig {
                required: true,
                token_lifetime: lifetime,
                ..Default::default()
            },
            ..EmulatorConfig::default()
        })
    }

    /// `http://127.0.0.1:port`: the emulator's origin, and the resource of its tokens.
    pub fn origin(&self) -> String {
        self.root.trim_end_matches("/api/data/v9.2/").to_string()
    }

    /// The token endpoint of the tenant `t`.
    pub fn token_url(&self) -> String {
        format!("{}/t/oauth2/v2.0/token", self.origin())
    }

    /// A token for `user` (password grant) for the resource of `scope`.
    pub async fn user_token(&self, user: &str, scope: &str) -> String {
        let form = [
            ("grant_type", "password"),
            ("client_id", emulator::auth::DEMO_CLIENT_ID),
            ("username", user),
            ("password", emulator::auth::DEMO_PASSWORD),
            ("scope", scope),
        ];
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = client()
            .post(self.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "token for {user}");
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Tells the emulator that every resource token issued so far has expired.
    pub async fn expire_tokens(&self) {
        let r = client()
            .post(format!("{}auth/expire", self.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.root, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(client().get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn stats(&self) -> Value {
        get_text(&format!("{}stats", self.admin))
            .await
            .parse()
            .expect("stats are JSON")
    }

    /// Sets the emulator's faults at run time.
    pub async fn set_faults(&self, faults: Value) {
        let r = client()
            .put(format!("{}faults", self.admin))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "faults {faults}");
    }

    pub async fn reset_stats(&self) {
        client()
            .post(format!("{}stats/reset", self.admin))
            .send()
            .await
            .unwrap();
    }

    /// The first record of a collection query.
    pub async fn first(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "{path}: {v}");
        v["value"][0].clone()
    }
}

/// The shared emulator with the default demo seed (200 recruiting requests, 500 candidates).
/// Tests that use it must not write.
pub fn shared() -> &'static Emu {
    static EMU: OnceLock<Emu> = OnceLock::new();
    EMU.get_or_init(|| Emu::start(EmulatorConfig::default()))
}

/// An HTTP client for the current test. Each test runs its own runtime, and a client's pooled
/// connections belong to the runtime that opened them, so clients are not shared across tests.
pub fn client() -> reqwest::Client {
    thread_local! {
        static C: reqwest::Client = reqwest::Client::new();
    }
    C.with(|c| c.clone())
}

pub async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// GETs `url` and reads the answer as text.
pub async fn get_text(url: &str) -> String {
    client().get(url).send().await.unwrap().text().await.unwrap()
}

/// POSTs `body` as JSON to `url` and reads the JSON answer.
pub async fn post_json(url: &str, body: &Value) -> Value {
    client()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The built binary serving a gateway over `upstream`, as a process of its own (for what only a
/// process shows: its memory, its log). Stopped with SIGTERM when dropped.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl GatewayProcess {
    /// Starts `ats-gateway serve --upstream <upstream> <args>` on a free port, with no
    /// configuration from the environment but `env`, writing its output to `log` (or nowhere),
    /// and waits until it answers.
    pub async fn start(
        upstream: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> GatewayProcess {
        let port = free_port();
        let output = || match log {
            Some(path) => {
                std::process::Stdio::from(std::fs::File::options().create(true).append(true).open(path).unwrap())
            }
            None => std::process::Stdio::null(),
        };
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ats-gateway"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--upstream",
                upstream,
            ])
            // No state kept unless the test names a file.
            .args(if args.contains(&"--state-db") {
                &[][..]
            } else {
                &["--state-db", ":memory:"][..]
            })
            .args(args)
            .env_remove("ATS_GATEWAY_LOG")
            .env_remove("ATS_GATEWAY_CONFIG")
            .envs(env.iter().copied())
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap();
        let gw = GatewayProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        assert!(came_up(&gw.base).await, "the gateway process came up");
        gw
    }

    /// POSTs a GraphQL request body and reads the answer.
    pub async fn post(&self, body: &Value) -> Value {
        post_json(&format!("{}/graphql", self.base), body).await
    }

    /// The process's resident memory now, in kB.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc")
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// A gateway in front of its own emulator, both on free ports.
pub struct Gateway {
    pub emu: Emu,
    pub endpoint: String,
    pub _stop: std::sync::mpsc::Sender<()>,
}

impl Gateway {
    /// A gateway over a fresh emulator seeded with `seed_size` recruiting requests.
    pub fn start(seed_size: usize) -> Gateway {
        Self::over(Emu::start(EmulatorConfig {
            seed: Seed::Demo,
            seed_size,
            ..EmulatorConfig::default()
        }))
    }

    /// A gateway over an emulator that is already running.
    pub fn over(emu: Emu) -> Gateway {
        Self::over_with(emu, ats_gateway::graphql::context::ReadConfig::default())
    }

    pub fn over_with(emu: Emu, read: ats_gateway::graphql::context::ReadConfig) -> Gateway {
        Self::configured(emu, read, Default::default())
    }

    /// A gateway with its write settings (strategy, state database).
    pub fn with_writes(emu: Emu, write: ats_gateway::graphql::context::WriteConfig) -> Gateway {
        Self::configured(emu, Default::default(), write)
    }

    pub fn configured(
        emu: Emu,
        read: ats_gateway::graphql::context::ReadConfig,
        write: ats_gateway::graphql::context::WriteConfig,
    ) -> Gateway {
        Self::with_config(emu, |c| {
            c.read = read;
            c.write = write;
        })
    }

    /// A gateway whose settings `tune` adjusts from the test defaults.
    pub fn with_config(emu: Emu, tune: impl FnOnce(&mut ats_gateway::server::GatewayConfig)) -> Gateway {
        let mut config = ats_gateway::server::GatewayConfig {
            upstream: emu.root.clone(),
            read: Default::default(),
            limits: Default::default(),
            upstream_timeout: std::time::Duration::from_secs(10),
            upstream_connect_timeout: std::time::Duration::from_secs(2),
            resilience: Default::default(),
            write: Default::default(),
            http: Default::default(),
            upstream_auth: Default::default(),
            caller_auth: Default::default(),
            cursor_key: None,
            redis_url: None,
            webhooks: Default::default(),
        };
        tune(&mut config);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let running = ats_gateway::server::start("127.0.0.1:0".parse().unwrap(), &config)
                    .await
                    .expect("gateway starts");
                addr_tx.send(running.endpoint()).unwrap();
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                running.stop().await;
            });
        });
        let endpoint = addr_rx.recv().expect("gateway endpoint");
        Gateway {
            emu,
            endpoint,
            _stop: stop_tx,
        }
    }

    /// Asks the gateway to shut down gracefully (in-flight requests finish, new ones are refused).
    pub fn begin_shutdown(&self) {
        let _ = self._stop.send(());
    }

    /// The gateway's base URL (`http://127.0.0.1:port`).
    pub fn base(&self) -> String {
        self.endpoint.trim_end_matches("/graphql").to_string()
    }

    /// GETs one of the gateway's own routes (`/metrics`, `/readyz`, ...): status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = client()
            .get(format!("{}{path}", self.base()))
            .send()
            .await
            .expect("request sent");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Runs a GraphQL query; returns the whole response body.
    pub async fn query(&self, query: &str, variables: Value) -> Value {
        let r = client()
            .post(&self.endpoint)
            .json(&serde_json::json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("request sent");
        r.json().await.expect("a JSON response")
    }

    /// Runs a GraphQL query with one extra request header; returns the status, the
    /// `WWW-Authenticate` header and the body.
    pub async fn query_with(&self, query: &str, header: Option<(&str, &str)>) -> (u16, Option<String>, Value) {
        let mut rb = client().post(&self.endpoint).json(&serde_json::json!({"query": query}));
        if let Some((name, value)) = header {
            rb = rb.header(name, value);
        }
        let r = rb.send().await.expect("request sent");
        let status = r.status().as_u16();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, challenge, r.json().await.expect("a JSON response"))
    }

    /// Runs a query that must succeed; returns `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let v = self.query(query, variables).await;
        assert!(v.get("errors").is_none(), "unexpected errors: {v}");
        v["data"].clone()
    }

    /// Upstream requests the emulator received while `f` ran.
    pub async fn upstream_requests<F: std::future::Future<Output = Value>>(&self, f: F) -> (u64, Value) {
        self.emu.reset_stats().await;
        let v = f.await;
        (self.emu.stats().await["total"].as_u64().unwrap(), v)
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 10 s) until `base`/healthz answers; whether it did.
pub async fn came_up(base: &str) -> bool {
    for _ in 0..100 {
        if client().get(format!("{base}/healthz")).send().await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A shared gateway over a default demo seed (read-only tests).
pub fn shared_gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| Gateway::start(200))
}

// The gateway/upstream pairs every read must work with (`in_both_dialects!` in main.rs, for reads, writes and submissions):
// a Dataverse-dialect gateway over a Dataverse emulator, and a plain-OData gateway
// (`--upstream-dialect odata4`) over a plain OData v4 emulator (`--dialect odata4`, which also
// has no `GlobalOptionSetDefinitions`).
pub use ats_gateway::odata::Dialect;

/// The emulator dialect that matches a gateway dialect.
pub fn emulator_dialect(d: Dialect) -> ats_gateway::emulator::dialect::Dialect {
    match d {
        Dialect::Dataverse => ats_gateway::emulator::dialect::Dialect::Dataverse,
        Dialect::Odata4 => ats_gateway::emulator::dialect::Dialect::Odata4,
    }
}

impl Gateway {
    /// A gateway in `dialect` over a fresh emulator of the same dialect, seeded with `seed_size`
    /// recruiting requests.
    pub fn start_in(dialect: Dialect, seed_size: usize) -> Gateway {
        let emu = Emu::start(EmulatorConfig {
            seed: Seed::Demo,
            seed_size,
            dialect: emulator_dialect(dialect),
            ..EmulatorConfig::default()
        });
        Self::with_config(emu, |c| c.read.dialect = dialect)
    }
}

impl Emu {
    /// [`Emu::fresh`] speaking `dialect`.
    pub fn fresh_in(dialect: Dialect) -> Emu {
        Emu::start(EmulatorConfig {
            seed: Seed::Demo,
            seed_size: 20,
            dialect: emulator_dialect(dialect),
            ..EmulatorConfig::default()
        })
    }
}

impl Gateway {
    /// [`Gateway::with_writes`] with the gateway in `dialect` (`emu` should speak it).
    pub fn with_writes_in(dialect: Dialect, emu: Emu, write: ats_gateway::graphql::context::WriteConfig) -> Gateway {
        Self::with_config(emu, |c| {
            c.read.dialect = dialect;
            c.write = write;
        })
    }
}

/// The shared read-only gateway of `dialect` (the default demo seed).
pub fn shared_gateway_in(dialect: Dialect) -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    match dialect {
        Dialect::Dataverse => shared_gateway(),
        Dialect::Odata4 => GW.get_or_init(|| Gateway::start_in(Dialect::Odata4, 200)),
    }
}

/// An upstream the read suite runs against (`in_every_upstream!` in main.rs): a dialect, and
/// whether the emulator ignores `Prefer: odata.maxpagesize` (serving every row, or pages of its
/// own size with its own strict next links), so that the gateway must page with `$top`. The
/// gateway decides its paging by probing (`--upstream-paging auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub dialect: Dialect,
    pub ignores_maxpagesize: bool,
    pub server_page_size: Option<usize>,
}

impl Profile {
    pub const DATAVERSE: Profile = Profile {
        dialect: Dialect::Dataverse,
        ignores_maxpagesize: false,
        server_page_size: None,
    };
    pub const ODATA4: Profile = Profile {
        dialect: Dialect::Odata4,
        ignores_maxpagesize: false,
        server_page_size: None,
    };
    /// Plain OData v4 that ignores the page size and serves every row (`$top` limits).
    pub const ODATA4_TOP: Profile = Profile {
        dialect: Dialect::Odata4,
        ignores_maxpagesize: true,
        server_page_size: None,
    };
    /// Plain OData v4 that ignores the page size and pages by 50 rows with its own next links
    /// (joins span several of them; tests of list pages choose smaller server pages).
    pub const ODATA4_TOP_PAGED: Profile = Profile {
        dialect: Dialect::Odata4,
        ignores_maxpagesize: true,
        server_page_size: Some(50),
    };

    /// The paging the gateway should decide on against this upstream.
    pub fn paging(self) -> ats_gateway::odata::calls::Paging {
        match self.ignores_maxpagesize {
            true => ats_gateway::odata::calls::Paging::Top,
            false => ats_gateway::odata::calls::Paging::Maxpagesize,
        }
    }

    /// An emulator configuration of this profile with the demo seed of `seed_size`.
    pub fn emulator(self, seed_size: usize) -> EmulatorConfig {
        EmulatorConfig {
            seed: Seed::Demo,
            seed_size,
            dialect: emulator_dialect(self.dialect),
            ignore_maxpagesize: self.ignores_maxpagesize,
            server_page_size: self.server_page_size,
            ..EmulatorConfig::default()
        }
    }
}

impl Gateway {
    /// A gateway over `emu` (which should be of `profile`), in its dialect, its paging probed.
    pub fn over_profile(profile: Profile, emu: Emu) -> Gateway {
        Self::with_config(emu, |c| {
            c.read.dialect = profile.dialect;
            c.read.paging_source = ats_gateway::graphql::context::DialectSource::Auto;
        })
    }

    /// A gateway over a fresh emulator of `profile` seeded with `seed_size` recruiting requests.
    pub fn start_profile(profile: Profile, seed_size: usize) -> Gateway {
        Self::over_profile(profile, Emu::start(profile.emulator(seed_size)))
    }
}

/// The shared read-only gateway of `profile` (the default demo seed).
pub fn shared_gateway_for(profile: Profile) -> &'static Gateway {
    static TOP: OnceLock<Gateway> = OnceLock::new();
    static TOP_PAGED: OnceLock<Gateway> = OnceLock::new();
    match profile {
        Profile::ODATA4_TOP => TOP.get_or_init(|| Gateway::start_profile(profile, 200)),
        Profile::ODATA4_TOP_PAGED => TOP_PAGED.get_or_init(|| Gateway::start_profile(profile, 200)),
        other => shared_gateway_in(other.dialect),
    }
}
