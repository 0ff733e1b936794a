//! PostgreSQL for the tests: a database of each test's own on the shared
//! server (created, then dropped), and, for tests that stop or break the
//! database, a private cluster on a free port (`initdb`, `pg_ctl`) and a
//! TCP proxy that can stop forwarding.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The shared server every machine runs (trust authentication).
pub const SHARED: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

fn admin(conninfo: &str) -> postgres::Client {
    postgres::Client::connect(conninfo, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable ({conninfo}): {e}. The PostgreSQL tests need a server on \
             127.0.0.1:5432 with trust authentication for user postgres: install it (Debian: `apt-get \
             install postgresql`) and start it (`pg_ctlcluster --skip-systemctl-redirect $(ls \
             /etc/postgresql) main start`)"
        )
    })
}

/// A database of one test's own, dropped (with its connections) when the
/// last handle goes.
pub struct TestDb {
    pub name: String,
    server: String,
    port: u16,
}

impl TestDb {
    /// A new, empty database on the shared server.
    pub fn create() -> Arc<TestDb> {
        Self::create_on(SHARED, 5432)
    }

    /// A new, empty database on the server reached with `conninfo`.
    pub fn create_on(conninfo: &str, port: u16) -> Arc<TestDb> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "refract_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            crate::support::unique_suffix()
        );
        admin(conninfo).batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        Arc::new(TestDb { name, server: conninfo.to_owned(), port })
    }

    /// Its URL, for `--log`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// A connection to it.
    pub fn client(&self) -> postgres::Client {
        admin(&format!("host=127.0.0.1 port={} user=postgres dbname={}", self.port, self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// The directory of the installed server's programs (`initdb`, `pg_ctl`).
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("pg_ctl").is_file()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server programs (initdb, pg_ctl) under /usr/lib/postgresql/*/bin: install the \
             server (Debian: `apt-get install postgresql`)"
        )
    })
}

/// Runs `program` of the server as user `postgres` when this process is
/// root (PostgreSQL refuses to run as root).
fn as_postgres(program: &str, args: &[&str]) -> Command {
    let program = bin_dir().join(program);
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

/// A PostgreSQL cluster of one test's own, on a free port, in a temporary
/// directory; stopped and removed when dropped.
pub struct Cluster {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `initdb` and start.
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new().prefix("refract-pg-").tempdir_in("/tmp").unwrap();
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if root {
            let status =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown of the cluster's directory failed");
        }
        let data = dir.path().join("data");
        let out = as_postgres(
            "initdb",
            &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        )
        .output()
        .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let cluster = Cluster { port: crate::support::free_port(), dir };
        cluster.resume();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let out = as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "-t", "60", "start"],
        )
        .output()
        .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server the hard way (`immediate`: like a crash, recovery at
    /// the next start).
    pub fn crash(&self) {
        let out =
            as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output().unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The conninfo of its `postgres` database.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
    }
}

/// A TCP proxy in front of a PostgreSQL server that can be cut off: while
/// cut, it forwards nothing (connections hang, new ones are accepted and
/// left waiting), as a network partition looks to a client.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Every connection made, to close them when forwarding resumes.
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn to(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        {
            let (cut, streams) = (cut.clone(), streams.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    if let Ok(c) = client.try_clone() {
                        streams.lock().unwrap().push(c);
                    }
                    if cut.load(Ordering::SeqCst) {
                        continue; // accepted, never answered
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { continue };
                    if let Ok(s) = server.try_clone() {
                        streams.lock().unwrap().push(s);
                    }
                    for (from, to) in
                        [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())]
                    {
                        let (Ok(mut from), Ok(mut to)) = (from, to) else { continue };
                        let cut = cut.clone();
                        std::thread::spawn(move || pump(&mut from, &mut to, &cut));
                    }
                }
            });
        }
        Proxy { port, cut, streams }
    }

    /// Stops forwarding.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Forwards again; the connections that hung are closed, so clients
    /// notice and reconnect.
    pub fn restore(&self) {
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pump(from: &mut TcpStream, to: &mut TcpStream, cut: &AtomicBool) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    loop {
        if cut.load(Ordering::SeqCst) {
            // Nothing crosses while cut.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
