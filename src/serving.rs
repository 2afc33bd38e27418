//! Serving an axum router in the background with graceful shutdown: shared by the emulator and
//! the gateway, each of which is started in-process by `cargo run`, the tests and the benchmarks.

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A router being served; `stop` refuses new connections and waits for in-flight requests.
pub struct Serving {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Serving {
    /// Serves `router` on `listener` until [`Serving::stop`]; `name` labels the error log.
    /// Binds `listen` and serves `router` on it: the address bound (a port 0 resolved) and the
    /// serving task.
    pub async fn bind(
        listen: std::net::SocketAddr,
        router: axum::Router,
        name: &'static str,
    ) -> std::io::Result<(std::net::SocketAddr, Serving)> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        Ok((addr, Serving::spawn(listener, router, name)))
    }

    pub fn spawn(listener: TcpListener, router: axum::Router, name: &'static str) -> Serving {
        let (tx, rx) = oneshot::channel::<()>();
        // Answers go out as soon as they are written: without TCP_NODELAY, a write that follows
        // a small one waits for its acknowledgement (Nagle), as HTTP servers are told to avoid.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::trace!(error = %e, "TCP_NODELAY not set on a connection");
            }
        });
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                tracing::error!(server = name, error = %e, "server stopped");
            }
        });
        Serving {
            shutdown: Some(tx),
            task,
        }
    }

    /// Stops accepting connections and waits for the requests in flight.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}
