//! Test servers. Each runs on its own runtime thread, so tests on other runtimes can share it.

use ats_gateway::emulator::{self, faults::Faults, EmulatorConfig, Seed};
use serde_json::Value;
use std::sync::OnceLock;

/// A running emulator, reachable over HTTP.
pub struct Emu {
    pub root: String,
    pub admin: String,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Emu {
    /// Starts an emulator on a free port with `config`, on a dedicated thread.
    pub fn start(config: EmulatorConfig) -> Emu {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
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
                addr_tx.send(running.addr).unwrap();
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                running.stop().await;
            });
        });
        let addr = addr_rx.recv().expect("emulator address");
        Emu {
            root: format!("http://{addr}/api/data/v9.2/"),
            admin: format!("http://{addr}/_emulator/"),
            _stop: stop_tx,
        }
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
        client()
            .get(format!("{}stats", self.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
