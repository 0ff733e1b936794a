//! The developer loop: `refract dev` builds the plugins of a source
//! directory — Rust crates for wasm32-wasip2, TypeScript and Python
//! projects with the SDKs of `guest-sdk/` — serves them, and rebuilds and
//! hot-reloads a plugin whenever its source changes; `refract new`
//! scaffolds a plugin in any of the three.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use notify::{RecursiveMode, Watcher};
use refract_plugin_build::{Build, BuildError, Sdks, lang_of, package_name};

/// Builds the plugin in `dir` (a Rust crate, a TypeScript or a Python
/// project) and installs its component into `plugins_dir` (written to a
/// hidden file, then renamed, so the server never sees half a file).
/// `capture` keeps the build's output for the error.
pub fn build_plugin(
    dir: &Path,
    target_dir: &Path,
    plugins_dir: &Path,
    capture: bool,
) -> anyhow::Result<PathBuf> {
    let lang = lang_of(dir).with_context(|| format!("{} is not a plugin project", dir.display()))?;
    if lang != refract_plugin_build::Lang::Rust {
        let name = dir.file_name().context("a plugin directory has a name")?.to_string_lossy().into_owned();
        tracing::info!(plugin = %name, lang = lang.as_str(), "building");
        std::fs::create_dir_all(plugins_dir)
            .with_context(|| format!("while creating {}", plugins_dir.display()))?;
        let tmp = plugins_dir.join(format!(".{name}.wasm.tmp"));
        let dest = plugins_dir.join(format!("{name}.wasm"));
        Sdks::locate().build(lang, dir, &std::path::absolute(&tmp)?, capture)?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("while installing {}", dest.display()))?;
        return Ok(dest);
    }
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

/// Builds every plugin directly below `source` into `plugins_dir`.
pub fn build_plugins(source: &Path, target_dir: &Path, plugins_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(source)
        .with_context(|| format!("while listing plugins in {}", source.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| lang_of(p).is_some())
        .collect();
    crates.sort();
    anyhow::ensure!(
        !crates.is_empty(),
        "no plugins in {} (directories with a Cargo.toml, a src/index.ts or an app.py)",
        source.display()
    );
    install_schemas(source, plugins_dir)?;
    crates.iter().map(|dir| build_plugin(dir, target_dir, plugins_dir, false)).collect()
}

/// Copies the event schemas of `source/schemas/` (`<EventType>.v<N>.schema.json`)
/// into `plugins_dir`, where the server loads them; the number copied.
pub fn install_schemas(source: &Path, plugins_dir: &Path) -> anyhow::Result<usize> {
    let dir = source.join("schemas");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
    std::fs::create_dir_all(plugins_dir)
        .with_context(|| format!("while creating {}", plugins_dir.display()))?;
    let mut copied = 0;
    for file in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if !crate::evolution::contracts::is_schema_file(&file) {
            continue;
        }
        let Some(name) = file.file_name() else { continue };
        let dest = plugins_dir.join(name);
        if std::fs::read(&file).ok() == std::fs::read(&dest).ok() {
            continue;
        }
        // Written aside and renamed, so the server reads it whole.
        let tmp = plugins_dir.join(format!(".{}.tmp", name.to_string_lossy()));
        std::fs::copy(&file, &tmp).with_context(|| format!("while copying {}", file.display()))?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("while installing {}", dest.display()))?;
        copied += 1;
    }
    Ok(copied)
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
        // Only changes: the build itself reads every source file, and those
        // reads must not start the next build.
        if let Ok(e) = e
            && crate::reload::watch::changes_content(&e.kind)
        {
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
            if changed.iter().any(|p| crate::evolution::contracts::is_schema_file(p)) {
                match install_schemas(&source, &plugins_dir) {
                    Ok(n) if n > 0 => eprintln!("refract dev: installed {n} changed event schema(s)"),
                    Ok(_) => {}
                    Err(e) => eprintln!("refract dev: cannot install the event schemas: {e:#}"),
                }
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

/// The plugin under `source` that `changed` belongs to, ignoring build
/// outputs, installed packages and caches.
fn crate_of(source: &Path, changed: &Path) -> Option<PathBuf> {
    let rel = changed.strip_prefix(source).ok()?;
    let first = rel.components().next()?;
    let ignored = ["target", "node_modules", "__pycache__", ".venv"];
    if rel.components().any(|c| ignored.iter().any(|i| c.as_os_str() == *i)) {
        return None;
    }
    if rel.extension().is_some_and(|e| e == "wasm" || e == "tmp") {
        return None;
    }
    let dir = source.join(first);
    lang_of(&dir).is_some().then_some(dir)
}

/// The language `refract new` writes a plugin in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate (built with cargo for wasm32-wasip2).
    #[default]
    Rust,
    /// A TypeScript project (built with componentize-js).
    Ts,
    /// A Python project (built with componentize-py).
    Python,
}

/// What `refract new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A projection (events → read tables).
    Projection,
    /// A command handler (command + history → events).
    Handler,
    /// An upcaster (an event type's data at one version → the next).
    Upcaster,
}

/// Creates a plugin `name` of `kind` in `lang` in `parent`, using the SDKs
/// at `sdk` (`guest-sdk/`). It builds and its test passes as generated.
pub fn scaffold(kind: Kind, lang: Lang, name: &str, parent: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
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
    match lang {
        Lang::Rust => {}
        Lang::Ts => return scaffold_ts(kind, name, &dir, sdk),
        Lang::Python => return scaffold_python(kind, name, &dir),
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let ident = type_name(name);
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
{serde_json}
"#,
        sdk.display(),
        // An upcaster keeps the members it does not name as JSON values.
        serde_json = if kind == Kind::Upcaster {
            "serde_json = \"1\"\n"
        } else {
            "\n[dev-dependencies]\nserde_json = \"1\"\n"
        },
    );
    let source = match kind {
        Kind::Projection => include_str!("templates/projection.rs"),
        Kind::Handler => include_str!("templates/handler.rs"),
        Kind::Upcaster => include_str!("templates/upcaster.rs"),
    };
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), source.replace("__NAME__", name).replace("Template", &ident))?;
    Ok(dir)
}

fn scaffold_ts(kind: Kind, name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let (source, test) = match kind {
        Kind::Projection => {
            (include_str!("templates/ts/projection.ts"), include_str!("templates/ts/projection.test.ts"))
        }
        Kind::Handler => {
            (include_str!("templates/ts/handler.ts"), include_str!("templates/ts/handler.test.ts"))
        }
        Kind::Upcaster => {
            (include_str!("templates/ts/upcaster.ts"), include_str!("templates/ts/upcaster.test.ts"))
        }
    };
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("test"))?;
    std::fs::write(dir.join("src/index.ts"), source.replace("__NAME__", name))?;
    std::fs::write(dir.join(format!("test/{name}.test.ts")), test)?;
    let js = sdk.join("js");
    let manifest = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "private": true,
        "type": "module",
        "scripts": {
            "build": format!("node {} build . -o {name}.wasm", js.join("bin/refract-js.mjs").display()),
            "test": format!("node {} test test", js.join("bin/refract-js.mjs").display()),
        },
    });
    std::fs::write(dir.join("package.json"), serde_json::to_string_pretty(&manifest)? + "\n")?;
    // Editors, `refract-js build` and `refract-js test` type-check with the
    // SDK's TypeScript and find the SDK through the same paths the build
    // uses.
    let tsconfig = serde_json::json!({
        "compilerOptions": {
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "allowImportingTsExtensions": true,
            "noEmit": true,
            "strict": true,
            "skipLibCheck": true,
            "typeRoots": [js.join("node_modules/@types")],
            "types": ["node"],
            "paths": {
                "refract-sdk": [js.join("src/index.ts")],
                "refract-sdk/testing": [js.join("src/testing.ts")],
            },
        },
        "include": ["src", "test"],
    });
    std::fs::write(dir.join("tsconfig.json"), serde_json::to_string_pretty(&tsconfig)? + "\n")?;
    Ok(dir.to_path_buf())
}

fn scaffold_python(kind: Kind, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let ident = type_name(name);
    let (source, test) = match kind {
        Kind::Projection => (
            include_str!("templates/python/projection.py"),
            include_str!("templates/python/projection_test.py"),
        ),
        Kind::Handler => {
            (include_str!("templates/python/handler.py"), include_str!("templates/python/handler_test.py"))
        }
        Kind::Upcaster => {
            (include_str!("templates/python/upcaster.py"), include_str!("templates/python/upcaster_test.py"))
        }
    };
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("app.py"), source.replace("__NAME__", name).replace("Template", &ident))?;
    std::fs::write(dir.join("test_app.py"), test)?;
    Ok(dir.to_path_buf())
}

/// `order-summary` → `OrderSummary`: the plugin's type in its source.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}
