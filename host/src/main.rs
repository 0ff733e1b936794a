//! The `refract` command: arguments, logging, run. Everything else is in the
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use refract::db::Synchronous;
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
    /// Serve the event log and the plugins of a directory over HTTP.
    Serve(ServeArgs),
    /// Build the plugin crates of a source directory for wasm32-wasip2,
    /// then serve them (the quickest way to try refract).
    Dev {
        /// Directory whose sub-directories are plugin crates.
        #[arg(long, default_value = "plugins")]
        source: PathBuf,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory: events.db and projections/ live here.
    #[arg(long, env = "REFRACT_DATA", default_value = ".refract/data")]
    data: PathBuf,
    /// Directory of .wasm plugins (for `dev`: where built plugins are put).
    #[arg(long, env = "REFRACT_PLUGINS", default_value = ".refract/plugins")]
    plugins: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "REFRACT_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Durability of appends.
    #[arg(long, value_enum, default_value_t = Synchronous::Full)]
    sync: Synchronous,
    /// Events per projection batch (one transaction each).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Wall-clock budget of one plugin call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    call_timeout_ms: u64,
    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: usize,
    /// Attempts at a failing batch before the projection is marked failed.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// Largest HTTP request body, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    max_body: usize,
}

impl ServeArgs {
    fn config(&self) -> Config {
        let mut c = Config::new(&self.data, &self.plugins);
        c.listen = self.listen;
        c.log.synchronous = self.sync;
        c.runner.batch_size = self.batch_size.max(1);
        c.runner.max_attempts = self.max_attempts.max(1);
        c.sandbox.call_timeout = Duration::from_millis(self.call_timeout_ms.max(1));
        c.sandbox.memory_bytes = self.memory_mib.max(1) << 20;
        c.http.max_body_bytes = self.max_body;
        c
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Dev { source, serve } => {
            let target = PathBuf::from("target/refract-plugins");
            let built = refract::dev::build_plugins(&source, &target, &serve.plugins)?;
            tracing::info!(count = built.len(), dir = %serve.plugins.display(), "plugins built");
            serve
        }
    };
    let config = args.config();
    let rt = tokio::runtime::Runtime::new().context("while starting the async runtime")?;
    rt.block_on(async move {
        let app = App::start(&config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("while binding {}", config.listen))?;
        let served = app.clone().serve(listener, shutdown_signal()).await;
        app.shutdown();
        served
    })
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
