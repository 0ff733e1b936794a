//! PL: plugins in TypeScript and Python. Replay through the three
//! `order-summary` builds (Rust, TypeScript, Python) on one log, in one
//! run; and the resident memory of a host after a cold load of the Python
//! component, compiled in-process against compiled in a child process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use refract::plugin::{PluginEngine, SandboxLimits};
use refract::projection::RunnerOptions;
use refract_plugin_build::{Lang, Sdks};

use crate::report::Row;
use crate::scenarios::{Size, load_projection, order_log, rate, replay_once, thousands};
use crate::workload::{build_plugin, median, secs};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds a TypeScript or Python plugin of `plugins/` into target/.
pub fn build_polyglot(lang: Lang, name: &str) -> anyhow::Result<PathBuf> {
    build_polyglot_in(lang, "plugins", name)
}

/// Builds the TypeScript or Python plugin `name` of directory `dir` (from
/// the workspace's root) into target/.
pub fn build_polyglot_in(lang: Lang, dir: &str, name: &str) -> anyhow::Result<PathBuf> {
    let out = root().join("target/wasm-plugins/polyglot");
    std::fs::create_dir_all(&out)?;
    let wasm = out.join(format!("{name}.wasm"));
    Ok(Sdks::locate().build(lang, &root().join(dir).join(name), &wasm, true)?)
}

/// PL: replay by plugin language, and memory after a cold load.
pub fn pl(rt: &tokio::runtime::Runtime, size: Size) -> anyhow::Result<Vec<Row>> {
    let n = size.pick(20_000, 200_000);
    let runs = size.pick(1, 3);
    let batch = RunnerOptions::default().batch_size;
    let plugins = [
        ("Rust", build_plugin("order-summary")?),
        ("TypeScript", build_polyglot(Lang::TypeScript, "order-summary-ts")?),
        ("Python", build_polyglot(Lang::Python, "order-summary-py")?),
    ];
    let dir = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let times = rt.block_on(async {
        let log = order_log(dir.path(), n).await?;
        let engine = PluginEngine::new(SandboxLimits::default(), Some(cache.path()))?;
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); plugins.len()];
        for run in 0..runs {
            for (i, (lang, wasm)) in plugins.iter().enumerate() {
                let plugin = load_projection(&engine, wasm)?;
                let t = replay_once(&log, dir.path().join(format!("{i}-{run}")), plugin, batch).await?;
                eprintln!("PL run {}: {lang} {:.3} s", run + 1, secs(t));
                times[i].push(t);
            }
        }
        log.close();
        anyhow::Ok(times)
    })?;
    let rust = rate(n, median(times[0].clone()));
    let cells: Vec<String> = plugins
        .iter()
        .zip(&times)
        .map(|((lang, _), t)| format!("{lang}: {} events/s", thousands(rate(n, median(t.clone())))))
        .collect();
    let ratios: Vec<String> = plugins
        .iter()
        .zip(&times)
        .skip(1)
        .map(|((lang, _), t)| format!("{lang} {:.2}×", rate(n, median(t.clone())) / rust))
        .collect();
    rows.push(Row::new(
        "PL",
        format!("replay {} order events through order-summary in Rust, TypeScript and Python, batch {batch}, median of {runs}", thousands(n as f64)),
        cells.join(" · "),
        format!("the Rust build: {} events/s; {}", thousands(rust), ratios.join(", ")),
        None,
        "report",
        None,
    ));

    // Memory after a cold load: each in a fresh child with an empty cache.
    let exe = std::env::current_exe()?;
    let python = &plugins[2].1;
    let mut rss = Vec::new();
    for in_child in [false, true] {
        let cache = tempfile::tempdir()?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["load-child", "--cache"]).arg(cache.path()).arg(python);
        if in_child {
            cmd.arg("--compile-in-child");
        }
        let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
        anyhow::ensure!(out.status.success(), "the measuring child failed");
        let kib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        eprintln!(
            "PL: cold load, compiled {}: {} MiB",
            if in_child { "in a child" } else { "here" },
            kib / 1024
        );
        rss.push(kib as f64 / 1024.0);
    }
    let size_mib = std::fs::metadata(python)?.len() as f64 / (1 << 20) as f64;
    rows.push(Row::new(
        "PL",
        format!("RSS of a host after a cold load of order-summary-py.wasm ({size_mib:.1} MiB), idle"),
        format!("compiled in a child process (the default): {:.0} MiB", rss[1]),
        format!("compiled in-process: {:.0} MiB", rss[0]),
        Some(rss[0] / rss[1]),
        "give the compile's memory back",
        Some(rss[1] < rss[0]),
    ));
    Ok(rows)
}

/// (in a child) loads `file` cold and prints the idle RSS in KiB.
pub fn load_child(cache: &Path, file: &Path, compile_in_child: bool) -> anyhow::Result<()> {
    let compiler = compile_in_child.then(std::env::current_exe).transpose()?;
    let engine = PluginEngine::new(SandboxLimits::default(), Some(cache))?.with_compiler(compiler);
    let plugin = load_projection(&engine, file)?;
    let instance = plugin.instantiate(None)?;
    std::thread::sleep(Duration::from_secs(1));
    println!("{}", crate::sys::rss_kib());
    drop(instance);
    Ok(())
}
