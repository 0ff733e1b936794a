//! The `refract` command: arguments, logging, run. Everything else is in the
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use refract::client::Client;
use refract::db::Synchronous;
use refract::projection::ErrorPolicy;
use refract::{App, Config};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "refract",
    version,
    about = "CQRS / event-sourcing runtime with sandboxed WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the event log and the plugins of a directory over HTTP,
    /// hot-reloading plugins dropped into it.
    Serve(ServeArgs),
    /// Build the plugin crates of a source directory for wasm32-wasip2,
    /// serve them, and rebuild and hot-reload a crate when its source
    /// changes (the quickest way to try refract).
    Dev {
        /// Directory whose sub-directories are plugin crates.
        #[arg(long, default_value = "plugins")]
        source: PathBuf,
        /// Cargo target directory of the plugin builds.
        #[arg(long, default_value = "target/refract-plugins")]
        target_dir: PathBuf,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Scaffold a plugin (Rust, TypeScript or Python) that builds and has a
    /// passing test.
    New {
        /// `projection`, `handler` or `upcaster`.
        kind: refract::dev::Kind,
        /// The language: `rust`, `ts` or `python`.
        #[arg(long, value_enum, default_value_t)]
        lang: refract::dev::Lang,
        /// The plugin's name (lowercase, digits, '-').
        name: String,
        /// Directory to create the crate in.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
    },
    /// Show every projection and handler of a running server.
    Status(Remote),
    /// Rebuild a projection from position 1 (blue/green), with progress.
    Rebuild {
        /// The projection.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Pause a projection (survives restarts).
    Pause {
        /// The projection.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Resume a paused projection, or retry the event a failed one stopped at.
    Resume {
        /// The projection.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a projection's dead letters.
    DeadLetters {
        /// The projection.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Rebuild a projection into a scratch database and compare it with the
    /// serving one, row for row; exits with status 1 if they differ.
    Verify {
        /// The projection.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write a consistent copy of a projection's read model (its tables,
    /// checkpoint and plugin hash) to a file; a node started with
    /// `serve --snapshot NAME=FILE` continues from its checkpoint instead
    /// of replaying the log from position 1.
    Snapshot {
        /// The projection.
        name: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Event schemas: `refract schema check FILE` tells, before a schema
    /// file is deployed, whether it accepts every stored event of its type
    /// and which loaded plugins read the type; exits with status 1 if it
    /// refuses any.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Compile a component into a server's code cache (run by the server
    /// itself for large components, so their compile's memory dies with
    /// this process).
    #[command(hide = true)]
    Compile(refract::plugin::CompileArgs),
    /// Copy an SQLite event log into an empty PostgreSQL log, keeping
    /// positions, stream versions, data and metadata bytes, recording
    /// times and idempotency keys (one transaction; a non-empty target is
    /// refused).
    CopyLog {
        /// The data directory holding events.db (or the file itself).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL log: postgres://USER@HOST:PORT/DB.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum SchemaAction {
    /// Check a schema file (`<EventType>.v<N>.schema.json`) against the
    /// events a running server's log holds.
    Check {
        /// The schema file.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Args)]
struct Remote {
    /// The running server.
    #[arg(long, env = "REFRACT_URL", default_value = "http://127.0.0.1:7070")]
    url: String,
    /// Its bearer token, if it has one.
    #[arg(long, env = "REFRACT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Remote {
    fn client(&self) -> Client {
        Client::new(&self.url, self.token.clone())
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory: projections/, the compile cache and (with the log
    /// in SQLite) events.db live here.
    #[arg(long, env = "REFRACT_DATA", default_value = ".refract/data")]
    data: PathBuf,
    /// The event log in PostgreSQL, shared by any number of nodes:
    /// postgres://USER[:PASSWORD]@HOST:PORT/DB. Default: the SQLite file
    /// events.db in --data.
    #[arg(long, env = "REFRACT_LOG", value_parser = parse_log_url)]
    log: Option<String>,
    /// With the log in PostgreSQL: how long one append transaction or one
    /// read may take before it is abandoned and answered 503, in ms.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    log_timeout_ms: u64,
    /// With the log in PostgreSQL: how often the head is read whatever
    /// notifications say (the most a lost notification delays a reader),
    /// in ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    log_poll_ms: u64,
    /// With the log in PostgreSQL: do not LISTEN for commits (behind
    /// poolers that drop notifications); readers follow by polling alone.
    #[arg(long)]
    no_log_notify: bool,
    /// Subscribers of `GET /subscribe` at once; one more is answered 503.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    max_subscribers: u32,
    /// Events a subscriber may leave unread before it is sent
    /// `fell-behind` and let go.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    subscriber_buffer: u32,
    /// Seconds between the heartbeats (`: head N`) sent to subscribers.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    sse_heartbeat_secs: u64,
    /// Publish the log to NATS JetStream (the outbox): nats://HOST:4222.
    #[arg(long, env = "REFRACT_PUBLISH")]
    publish: Option<String>,
    /// The JetStream stream the outbox publishes to (created if missing).
    #[arg(long, default_value = "REFRACT")]
    publish_stream: String,
    /// Each published event's subject; {stream_id}, {type} and {position}
    /// are replaced.
    #[arg(long, default_value = "refract.{stream_id}.{type}", value_parser = refract::outbox::Template::parse)]
    publish_subject: refract::outbox::Template,
    /// Publish only events of these types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    publish_types: Vec<String>,
    /// With several nodes on one log, how long the publishing lease lasts
    /// unless renewed: how long the others wait to take over from a node
    /// that died while publishing, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    publish_lease_secs: u64,
    /// Take messages of a NATS JetStream stream in (the inbox), as
    /// stream=S,consumer=C,target=command:HANDLER|stream:ID[,name=N]
    /// [,url=nats://…][,max_deliver=5] (repeatable; url defaults to
    /// --publish's, else nats://127.0.0.1:4222).
    #[arg(long = "ingest", value_name = "SPEC")]
    ingests: Vec<String>,
    /// Start projection NAME from a read-model snapshot (`refract
    /// snapshot`) when it has no read model yet (repeatable).
    #[arg(long = "snapshot", value_name = "NAME=FILE", value_parser = parse_snapshot)]
    snapshots: Vec<(String, PathBuf)>,
    /// Keep a command handler's state for a stream each time it folded at
    /// least this many events, so commands on long streams fold only what
    /// came after (0: no handler snapshots).
    #[arg(long, default_value_t = 100)]
    handler_snapshot_every: u64,
    /// Directory of .wasm plugins (for `dev`: where built plugins are put).
    #[arg(long, env = "REFRACT_PLUGINS", default_value = ".refract/plugins")]
    plugins: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "REFRACT_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Durability of appends.
    #[arg(long, value_enum, default_value_t = Synchronous::Full)]
    sync: Synchronous,
    /// With `--sync full`, do not write the event log's WAL ahead (64 MiB
    /// of zeros when the log opens, so that commits overwrite blocks
    /// instead of extending the file).
    #[arg(long)]
    no_wal_reserve: bool,
    /// Events per projection batch (one `apply` call each).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// While a projection works through a backlog, how long one
    /// transaction may span its batches, in milliseconds (its progress
    /// becomes visible at each commit); 0 commits every batch.
    #[arg(long, default_value_t = 1000)]
    catch_up_commit_ms: u64,
    /// Page cache of a projection's database while it works through a
    /// backlog, in MiB (given back once caught up); 0 keeps SQLite's
    /// default of about 2 MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=4096))]
    catch_up_cache_mib: u32,
    /// Wall-clock budget of one plugin call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    call_timeout_ms: u64,
    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: usize,
    /// Plugin instances alive at once, preallocated as a pool: a quarter
    /// for commands (more wait), the rest for projections (one each, two
    /// while a new version rebuilds). 0 allocates every instance on its
    /// own, without a bound.
    #[arg(long, default_value_t = 1000, value_parser = parse_max_instances)]
    max_instances: u32,
    /// Attempts at a failing batch before the projection is marked failed.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// Largest HTTP request body, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    max_body: usize,
    /// The longest a read with `min_position` waits for its projection, in
    /// milliseconds (a read asking for longer waits this long; 504 past
    /// it).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    max_wait_ms: u64,
    /// Time limit of one read-only query (`POST /projections/{name}/query`),
    /// reading and encoding its rows, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    query_timeout_ms: u64,
    /// Most bytes of rows one read of a read model answers with (a query
    /// is cut short with `truncated`, a page of rows ends early).
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    max_answer_bytes: u64,
    /// HTTP connections served at once; further ones wait to be accepted.
    /// Each holds up to three file descriptors: the soft open-file limit is
    /// raised to the hard one, with a warning if that is too low for this.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds the server waits on a client for a request's headers, for
    /// the next piece of a request's body, between requests, or to read
    /// the answers it asked for, before it closes the connection (at most
    /// a day).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    client_timeout_secs: u64,
    /// What a projection does with an event it cannot apply after its
    /// retries: stop there (`pause`) or record it and move on
    /// (`dead-letter`).
    #[arg(long, value_enum, default_value_t = ErrorPolicy::Pause)]
    error_policy: ErrorPolicy,
    /// Error policy for one projection, as NAME=pause or NAME=dead-letter
    /// (repeatable).
    #[arg(long = "policy", value_name = "NAME=POLICY", value_parser = parse_policy)]
    policies: Vec<(String, ErrorPolicy)>,
    /// A reactor that pauses when a command it sent is refused, until
    /// resumed (repeatable); by default a reactor records the refusal and
    /// goes on.
    #[arg(long = "pause-on-refused", value_name = "REACTOR")]
    pause_on_refused: Vec<String>,
    /// Do not watch the plugins directory (no hot reload).
    #[arg(long)]
    no_watch: bool,
    /// Delete a projection's read databases when its plugin file is removed
    /// (by default they are kept).
    #[arg(long)]
    drop_removed: bool,
    /// Bearer token required for appends, commands and administration.
    #[arg(long, env = "REFRACT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Require the token for reads too.
    #[arg(long)]
    protect_reads: bool,
    /// Allow listening on a non-loopback address without a token.
    #[arg(long)]
    insecure_no_token: bool,
    /// Read every row by key from the database instead of serving rows
    /// already read at the same checkpoint from memory.
    #[arg(long)]
    no_row_cache: bool,
}

fn parse_max_instances(s: &str) -> Result<u32, String> {
    match s.parse::<u32>().map_err(|e| e.to_string())? {
        1 => Err("0 (no pool) or at least 2: one instance for commands, one for a projection".into()),
        n => Ok(n),
    }
}

fn parse_log_url(s: &str) -> Result<String, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_owned())
    } else {
        Err("expected postgres://USER@HOST:PORT/DB (leave --log out for the SQLite file in --data)".into())
    }
}

fn parse_snapshot(s: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = s.split_once('=').ok_or("expected NAME=FILE")?;
    Ok((name.to_owned(), PathBuf::from(file)))
}

fn parse_policy(s: &str) -> Result<(String, ErrorPolicy), String> {
    let (name, policy) = s.split_once('=').ok_or("expected NAME=POLICY")?;
    let policy = <ErrorPolicy as clap::ValueEnum>::from_str(policy, true)
        .map_err(|_| format!("unknown policy {policy:?}; use pause or dead-letter"))?;
    Ok((name.to_owned(), policy))
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::new(&self.data, &self.plugins);
        c.log_url = self.log.clone();
        c.snapshots = self.snapshots.clone();
        c.snapshot_every = self.handler_snapshot_every;
        c.log.postgres.timeout = Duration::from_millis(self.log_timeout_ms);
        c.log.postgres.poll = Duration::from_millis(self.log_poll_ms);
        c.log.postgres.notify = !self.no_log_notify;
        c.listen = self.listen;
        c.subscribe.max_subscribers = self.max_subscribers as usize;
        c.subscribe.buffer = self.subscriber_buffer as usize;
        c.subscribe.heartbeat = Duration::from_secs(self.sse_heartbeat_secs);
        if let Some(url) = &self.publish {
            let mut p = refract::outbox::PublishOptions::new(url);
            p.stream = self.publish_stream.clone();
            p.subject = self.publish_subject.clone();
            p.types = (!self.publish_types.is_empty()).then(|| self.publish_types.clone());
            p.lease = Duration::from_secs(self.publish_lease_secs);
            c.publish = Some(p);
        }
        let default_nats = self.publish.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        for spec in &self.ingests {
            let ingest = refract::inbox::IngestOptions::parse(spec, &default_nats)
                .map_err(|e| anyhow::anyhow!("--ingest {spec:?}: {e}"))?;
            c.ingests.push(ingest);
        }
        c.log.synchronous = self.sync;
        c.log.reserve_wal = !self.no_wal_reserve;
        c.runner.batch_size = self.batch_size.max(1);
        c.runner.max_attempts = self.max_attempts.max(1);
        c.runner.catch_up_commit = Duration::from_millis(self.catch_up_commit_ms);
        c.runner.catch_up_cache_kib = self.catch_up_cache_mib * 1024;
        c.sandbox.call_timeout = Duration::from_millis(self.call_timeout_ms.max(1));
        c.sandbox.memory_bytes = self.memory_mib.max(1) << 20;
        c.sandbox.max_instances = self.max_instances;
        c.compiler = std::env::current_exe().ok();
        c.http.max_body_bytes = self.max_body;
        c.http.max_answer_bytes = self.max_answer_bytes as usize;
        c.http.max_wait = Duration::from_millis(self.max_wait_ms);
        c.http.default_wait = c.http.default_wait.min(c.http.max_wait);
        c.http.query_timeout = Duration::from_millis(self.query_timeout_ms);
        c.http.max_connections = self.max_connections as usize;
        c.http.client_timeout = Duration::from_secs(self.client_timeout_secs);
        c.default_policy = self.error_policy;
        c.policies = self.policies.iter().cloned().collect();
        c.pause_on_refused = self.pause_on_refused.iter().cloned().collect();
        c.watch = !self.no_watch;
        c.drop_removed = self.drop_removed;
        c.http.token = self.token.clone().and_then(refract::http::Token::new);
        c.http.protect_reads = self.protect_reads;
        c.allow_open = self.insecure_no_token;
        c.http.row_cache = !self.no_row_cache;
        Ok(c)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut _dev_watch = None;
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Dev { source, target_dir: target, serve } => {
            let built = refract::dev::build_plugins(&source, &target, &serve.plugins)?;
            tracing::info!(count = built.len(), dir = %serve.plugins.display(), "plugins built");
            _dev_watch = Some(refract::dev::watch_sources(source.clone(), target, serve.plugins.clone())?);
            tracing::info!(source = %source.display(), "watching plugin sources; saving a file rebuilds and reloads its plugin");
            serve
        }
        Command::New { kind, lang, name, dir } => {
            let sdk = std::env::var_os("REFRACT_SDK")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"));
            let sdk = sdk.canonicalize().unwrap_or(sdk);
            let created = refract::dev::scaffold(kind, lang, &name, &dir, &sdk)?;
            let test = match lang {
                refract::dev::Lang::Rust => {
                    format!("cargo test --manifest-path {}/Cargo.toml", created.display())
                }
                refract::dev::Lang::Ts => format!("npm test --prefix {}", created.display()),
                refract::dev::Lang::Python => format!(
                    "cd {} && PYTHONPATH={} python3 -m unittest",
                    created.display(),
                    sdk.join("python").display()
                ),
            };
            println!(
                "created {}; test it with `{test}`; `refract dev` builds and serves it",
                created.display()
            );
            return Ok(());
        }
        Command::Status(r) => return r.client().status(),
        Command::Rebuild { name, remote } => return remote.client().rebuild(&name),
        Command::Pause { name, remote } => return remote.client().set_paused(&name, true),
        Command::Resume { name, remote } => return remote.client().set_paused(&name, false),
        Command::DeadLetters { name, remote } => return remote.client().dead_letters(&name),
        Command::Snapshot { name, out, remote } => return remote.client().snapshot(&name, &out),
        Command::CopyLog { from, to } => {
            let rt = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
            let options = refract::log::PostgresOptions::default();
            let copied =
                rt.block_on(refract::log::copy_log(&from, &to, &options)).context("copy-log failed")?;
            println!(
                "copied {} events (positions 1 to {}) and {} idempotency keys into {}",
                copied.events,
                copied.events,
                copied.keys,
                refract::log::postgres::redact(&to)
            );
            return Ok(());
        }
        Command::Compile(args) => return args.run(),
        Command::Schema { action: SchemaAction::Check { file, remote } } => {
            if remote.client().schema_check(&file)? {
                return Ok(());
            }
            std::process::exit(1);
        }
        Command::Verify { name, remote } => {
            if remote.client().verify(&name)? {
                return Ok(());
            }
            std::process::exit(1);
        }
    };
    let config = args.config()?;
    raise_open_files(config.http.max_connections);
    let rt = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    rt.block_on(async move {
        let app = App::start(&config).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("while binding {}", config.listen))?;
        let served = app.clone().serve(listener, shutdown_signal()).await;
        app.shutdown();
        served
    })
}

/// Descriptors one HTTP connection may hold: its socket, and the database
/// and WAL files of the read-model connection a read uses.
const FILES_PER_CONNECTION: u64 = 3;
/// A floor for the rest: the log, each read model's idle connections (up
/// to 32, two files each), plugins, the watcher.
const OTHER_FILES: u64 = 512;

/// Raises the soft limit on open files to the hard limit, and warns when
/// even that leaves too few for `--max-connections`. The usual soft limit
/// of 1024 is below what the default 1024 connections can hold.
fn raise_open_files(max_connections: usize) {
    let wanted = FILES_PER_CONNECTION * max_connections as u64 + OTHER_FILES;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            wanted,
            max_connections,
            "the open-file limit leaves little room beside --max-connections: past it, connections \
             and read models fail to open; raise `ulimit -n` or lower --max-connections"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::parse_max_instances;

    #[test]
    fn a_pool_of_one_instance_is_refused_with_the_reason() {
        assert!(parse_max_instances("1").unwrap_err().contains("at least 2"));
        assert_eq!(parse_max_instances("0"), Ok(0));
        assert_eq!(parse_max_instances("2"), Ok(2));
        assert!(parse_max_instances("-3").is_err());
    }
}
