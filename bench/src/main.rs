//! refract benchmarks: every scenario of BENCHMARKS.md, each against its
//! baseline in the same run.
//!
//! `cargo run --release -p refract-bench -- all` runs them all and writes
//! BENCHMARKS.md; `-- p1` (…) runs one; `--quick` runs small sizes, to check
//! that the benchmarks still work (CI does), not to measure.

mod evolution;
mod integration;
mod load;
mod polyglot;
mod postgres;
mod report;
mod scenarios;
mod sys;
mod twins;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use report::Row;
use scenarios::Size;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Small sizes and one repetition: checks the benchmarks, measures
    /// nothing worth keeping.
    #[arg(long, global = true)]
    quick: bool,
}

#[derive(Subcommand, Clone, PartialEq, Eq)]
enum Scenario {
    /// Every scenario; writes the report (see --output).
    All {
        /// Where to write the report (default: BENCHMARKS.md at the
        /// workspace root; with --quick, target/BENCHMARKS.quick.md).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Replay through order-summary.wasm against its native twin.
    P1,
    /// Replay rate by batch size.
    P1b,
    /// Batched and single-event appends against raw SQLite (P2, P2b).
    P2,
    /// Reading a row by key against a static handler.
    P3,
    /// Append → visible in the read model.
    P4,
    /// Plugin load: cold, from the cache; instantiation.
    P5,
    /// Replay time by log size, the native twin beside it.
    P5b,
    /// Idle memory by number of projections.
    P6,
    /// Commands over HTTP against the native twin of the decision logic.
    P7,
    /// Hot reload: changed .wasm → new version serving.
    Reload,
    /// Appends into the PostgreSQL log against raw inserts; group commit
    /// against a transaction per append.
    P8,
    /// Append on one node → visible in another node's read model.
    P9,
    /// P1 with the log in PostgreSQL against the SQLite log.
    P1pg,
    /// 1 000 SSE subscribers: append → frame latency.
    P10,
    /// The outbox against a raw async-nats publisher; append → JetStream.
    P11,
    /// Replay by plugin language (Rust, TypeScript, Python); memory after a
    /// cold load of a large component.
    Pl,
    /// Commands on long streams with handler snapshots; replay through an
    /// upcaster.
    P12,
    /// (internal) load one component cold and print the idle RSS.
    #[command(hide = true)]
    LoadChild {
        #[arg(long)]
        cache: PathBuf,
        #[arg(long)]
        compile_in_child: bool,
        file: PathBuf,
    },
    /// (internal) compile a component into a cache, as `refract compile`.
    #[command(hide = true)]
    Compile(refract::plugin::CompileArgs),
    /// (internal) measure the memory of a host with N projections.
    #[command(hide = true)]
    RssChild {
        #[arg(long)]
        projections: usize,
        #[arg(long)]
        cache: PathBuf,
    },
}

fn run(s: &Scenario, rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let idle = sys::cpu_idle(Duration::from_millis(if size.quick { 200 } else { 1000 }));
    let mut rows = match s {
        Scenario::P1 => scenarios::p1(rt, size)?,
        Scenario::P1b => scenarios::p1b(rt, size)?,
        Scenario::P2 => scenarios::p2(rt, size)?,
        Scenario::P3 => scenarios::p3(rt, size)?,
        Scenario::P4 => scenarios::p4(rt, size)?,
        Scenario::P5 => scenarios::p5(size)?,
        Scenario::P5b => scenarios::p5b(rt, size)?,
        Scenario::P6 => scenarios::p6(size)?,
        Scenario::P7 => scenarios::p7(rt, size)?,
        Scenario::Reload => scenarios::reload(rt, size)?,
        Scenario::P8 => postgres::p8(rt, size)?,
        Scenario::P9 => postgres::p9(rt, size)?,
        Scenario::P1pg => postgres::p1_postgres(rt, size)?,
        Scenario::P10 => integration::p10(rt, size)?,
        Scenario::P11 => integration::p11(rt, size)?,
        Scenario::Pl => polyglot::pl(rt, size)?,
        Scenario::P12 => evolution::p12(rt, size)?,
        Scenario::All { .. }
        | Scenario::RssChild { .. }
        | Scenario::LoadChild { .. }
        | Scenario::Compile(_) => Vec::new(),
    };
    for r in &mut rows {
        r.idle = idle;
    }
    Ok(rows)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let size = Size { quick: cli.quick };
    if let Scenario::RssChild { projections, cache } = &cli.scenario {
        let (projections, cache) = (*projections, cache.clone());
        return scenarios::rss_child(projections, &cache);
    }
    if let Scenario::LoadChild { cache, compile_in_child, file } = &cli.scenario {
        return polyglot::load_child(cache, file, *compile_in_child);
    }
    if let Scenario::Compile(args) = &cli.scenario {
        return args.run();
    }
    let rt = tokio::runtime::Runtime::new()?;
    let Scenario::All { output } = cli.scenario.clone() else {
        let rows = run(&cli.scenario, &rt, size)?;
        print!("{}", report::table(&rows));
        return Ok(());
    };
    let all = [
        Scenario::P1,
        Scenario::P1b,
        Scenario::P2,
        Scenario::P3,
        Scenario::P4,
        Scenario::P5,
        Scenario::P5b,
        Scenario::P6,
        Scenario::P7,
        Scenario::Reload,
        Scenario::P8,
        Scenario::P9,
        Scenario::P1pg,
        Scenario::P10,
        Scenario::P11,
        Scenario::Pl,
        Scenario::P12,
    ];
    let mut rows = Vec::new();
    for s in all {
        rows.extend(run(&s, &rt, size)?);
        eprint!("{}", report::table(&rows));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = output.unwrap_or_else(|| {
        if cli.quick { root.join("target/BENCHMARKS.quick.md") } else { root.join("BENCHMARKS.md") }
    });
    let command = if cli.quick {
        "cargo run --release -p refract-bench -- all --quick"
    } else {
        "cargo run --release -p refract-bench -- all"
    };
    // Read when the report is written, so the analysis can be revised while
    // a long run is under way.
    let analysis = std::fs::read_to_string(root.join("bench/ANALYSIS.md")).unwrap_or_default();
    let text = report::markdown(&rows, &sys::machine(), command, &analysis);
    std::fs::write(&output, text)?;
    eprintln!("wrote {}", output.display());
    Ok(())
}
