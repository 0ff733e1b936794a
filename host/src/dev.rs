//! The developer loop: `refract dev` builds the plugin crates of a source
//! directory for wasm32-wasip2, serves them, and rebuilds and hot-reloads a
//! crate whenever its source changes; `refract new` scaffolds a plugin
//! crate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use notify::{RecursiveMode, Watcher};
use refract_plugin_build::{Build, BuildError, package_name, plugin_crates};

/// Builds the plugin crate in `dir` and installs its component into
/// `plugins_dir` (written to a hidden file, then renamed, so the server
/// never sees half a file). `capture` keeps cargo's output for the error.
pub fn build_plugin(
    dir: &Path,
    target_dir: &Path,
    plugins_dir: &Path,
    capture: bool,
) -> anyhow::Result<PathBuf> {
    let package = package_name(dir)?;
    tracing::info!(plugin = %package, "building for {}", refract_plugin_build::TARGET);
    let build = Build {
        manifest_path: dir.join("Cargo.toml"),
        packages: vec![package.clone()],
        target_dir: target_dir.to_path_buf(),
        capture,
    };
    let artifact = build.run()?.pop().context("the build produced no component")?;
    std::fs::create_dir_all(plugins_dir)
        .with_context(|| format!("while creating {}", plugins_dir.display()))?;
    let dest = plugins_dir.join(format!("{package}.wasm"));
    let tmp = plugins_dir.join(format!(".{package}.wasm.tmp"));
    std::fs::copy(&artifact, &tmp).with_context(|| format!("while copying {}", artifact.display()))?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("while installing {}", dest.display()))?;
    Ok(dest)
}

/// Builds every plugin crate directly below `source` into `plugins_dir`.
pub fn build_plugins(source: &Path, target_dir: &Path, plugins_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let crates = plugin_crates(source)
        .with_context(|| format!("while listing plugin crates in {}", source.display()))?;
    anyhow::ensure!(
        !crates.is_empty(),
        "no plugin crates (directories with a Cargo.toml) in {}",
        source.display()
    );
    crates.iter().map(|dir| build_plugin(dir, target_dir, plugins_dir, false)).collect()
}

/// Watches the crates in `source`; on a change, rebuilds the crate and
/// installs it into `plugins_dir`, where the server's watcher hot-reloads
/// it. Build errors are printed and the running version keeps serving.
/// Returns the watcher; the loop runs while it is kept.
pub fn watch_sources(
    source: PathBuf,
    target_dir: PathBuf,
    plugins_dir: PathBuf,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e {
            for p in e.paths {
                let _ = tx.send(p);
            }
        }
    })?;
    watcher.watch(&source, RecursiveMode::Recursive)?;
    std::thread::Builder::new().name("refract-dev-watch".into()).spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut changed = BTreeSet::from([first]);
            while let Ok(p) = rx.recv_timeout(Duration::from_millis(400)) {
                changed.insert(p);
            }
            let crates: BTreeSet<PathBuf> = changed.iter().filter_map(|p| crate_of(&source, p)).collect();
            for dir in crates {
                match build_plugin(&dir, &target_dir, &plugins_dir, true) {
                    Ok(dest) => {
                        eprintln!("refract dev: rebuilt {}; reloading {}", dir.display(), dest.display())
                    }
                    Err(e) => {
                        let detail = match e.downcast_ref::<BuildError>() {
                            Some(BuildError::Failed { output, .. }) => output.clone(),
                            _ => format!("{e:#}"),
                        };
                        eprintln!(
                            "refract dev: build of {} failed; the running version keeps serving\n{detail}",
                            dir.display()
                        );
                    }
                }
            }
        }
    })?;
    Ok(watcher)
}

/// The plugin crate under `source` that `changed` belongs to, ignoring
/// build outputs.
fn crate_of(source: &Path, changed: &Path) -> Option<PathBuf> {
    let rel = changed.strip_prefix(source).ok()?;
    let first = rel.components().next()?;
    if rel.components().any(|c| c.as_os_str() == "target") {
        return None;
    }
    let dir = source.join(first);
    dir.join("Cargo.toml").is_file().then_some(dir)
}

/// What `refract new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A projection (events → read tables).
    Projection,
    /// A command handler (command + history → events).
    Handler,
}

/// Creates a plugin crate `name` of `kind` in `parent`, depending on the
/// SDK at `sdk`. The crate builds and its unit test passes as generated.
pub fn scaffold(kind: Kind, name: &str, parent: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("plugin name {name:?} must be lowercase letters, digits and '-', starting with a letter");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let ident: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
refract-sdk = {{ path = "{}" }}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
serde_json = "1"
"#,
        sdk.display()
    );
    let source = match kind {
        Kind::Projection => include_str!("templates/projection.rs"),
        Kind::Handler => include_str!("templates/handler.rs"),
    };
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), source.replace("__NAME__", name).replace("Template", &ident))?;
    Ok(dir)
}
