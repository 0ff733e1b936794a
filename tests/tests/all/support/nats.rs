//! NATS for the tests: a `nats-server` with JetStream of each test's own,
//! on a free port, its store in a temporary directory; stopped with the
//! test. A small client for JetStream on a runtime of its own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`; stopped (and its store removed) when dropped.
pub struct Nats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    /// Starts a server with JetStream on a free port.
    pub fn start() -> Nats {
        let mut nats =
            Nats { port: crate::support::free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        nats.resume();
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the (stopped) server again, on the same port and store.
    pub fn resume(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nats-server ({e}): the NATS tests need it on the PATH; install it (Debian: \
                     `apt-get install nats-server`)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its store stays for [`Nats::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JetStream client with a runtime of its own, for a test's side of the
/// broker.
pub struct Js {
    pub rt: tokio::runtime::Runtime,
    pub js: async_nats::jetstream::Context,
}

impl Js {
    pub fn connect(url: &str) -> Js {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let js = rt.block_on(async {
            let client = async_nats::connect(url).await.expect("the test connects to NATS");
            async_nats::jetstream::new(client)
        });
        Js { js, rt }
    }

    /// Every message of `stream`, in sequence order: its sequence, headers
    /// and payload.
    pub fn messages(&self, stream: &str) -> Vec<(u64, async_nats::HeaderMap, Vec<u8>)> {
        self.rt.block_on(async {
            let mut s = self.js.get_stream(stream).await.expect("the stream exists");
            let last = s.info().await.unwrap().state.last_sequence;
            let first = s.info().await.unwrap().state.first_sequence;
            let mut out = Vec::new();
            for seq in first..=last {
                if let Ok(m) = s.get_raw_message(seq).await {
                    out.push((m.sequence, m.headers, m.payload.to_vec()));
                }
            }
            out
        })
    }
}
