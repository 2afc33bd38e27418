//! A `redis-server` of the test's own (Debian's package, `/usr/bin/redis-server`), on a free port
//! of 127.0.0.1, never a system service. It keeps nothing on disk while it runs (`--save ""
//! --appendonly no`); [`RedisServer::stop`] shuts it down saving once into a directory of its
//! own, so that [`RedisServer::restart`] comes back on the same port with the same keys, as a
//! Redis deployed with persistence would. Dropped, it is killed and its directory removed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        let port = crate::harness::free_port();
        let dir = std::env::temp_dir().join(format!("ats-gateway-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the test's Redis");
        let mut server = RedisServer { port, dir, child: None };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server again on its port (after [`RedisServer::stop`]), with the keys it had.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the test's Redis is already running");
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--logfile", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's redis-server package; .ci/run installs it)");
        self.child = Some(child);
        let since = Instant::now();
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "the test's Redis did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (connections refused from now on), saving its keys for
    /// [`RedisServer::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SHUTDOWN closes the connection instead of answering.
        let _ = self.command("SHUTDOWN SAVE");
        let since = Instant::now();
        while matches!(child.try_wait(), Ok(None)) {
            if since.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one inline command and reads the first line of the answer.
    pub fn command(&self, line: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        text.lines().next().map(str::to_owned)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
