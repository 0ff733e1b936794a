//! Builds refract plugin crates for `wasm32-wasip2`.
//!
//! Used by the host's `refract dev` command and by the test crate's build
//! script, so both produce plugins the same way: a nested `cargo build` into
//! a target directory of its own (so it never waits on the lock of the build
//! that invoked it), with the caller's compiler flags and wrappers removed
//! (they are meant for the host target, not for wasm).
//!
//! Only `std` is used: this crate is a build dependency and must stay cheap.

mod polyglot;

pub use polyglot::{Lang, Sdks, lang_of, plugin_dirs};

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Environment variables of an enclosing cargo invocation that must not leak
/// into the nested wasm build.
const STRIPPED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_LLVM_COV",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// Why plugins could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The Rust toolchain has no standard library for `wasm32-wasip2`.
    TargetMissing,
    /// `cargo` could not be started.
    Spawn(std::io::Error),
    /// `cargo build` ran and failed; its diagnostics were printed to stderr
    /// (or are in `output` when the build was captured).
    Failed { packages: Vec<String>, output: String },
    /// A plugin crate's manifest could not be read or has no package name.
    Manifest { path: PathBuf, reason: String },
    /// The build succeeded but the expected `.wasm` file is not there (the
    /// crate is probably missing `crate-type = ["cdylib"]`).
    Missing(PathBuf),
    /// A tool a TypeScript or Python plugin needs is not installed.
    ToolMissing { tool: String, install: String },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::TargetMissing => {
                write!(f, "the {TARGET} target is not installed; run `rustup target add {TARGET}`")
            }
            BuildError::Spawn(e) => write!(f, "could not run cargo: {e}"),
            BuildError::Failed { packages, output } => {
                write!(f, "cargo build of {} failed", packages.join(", "))?;
                if !output.is_empty() {
                    write!(f, ":\n{output}")?;
                }
                Ok(())
            }
            BuildError::Manifest { path, reason } => {
                write!(f, "cannot read plugin manifest {}: {reason}", path.display())
            }
            BuildError::ToolMissing { tool, install } => write!(f, "{tool} is not installed: {install}"),
            BuildError::Missing(path) => write!(
                f,
                "build succeeded but {} was not produced; does the crate set crate-type = [\"cdylib\"]?",
                path.display()
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// One nested build of one or more plugin packages.
#[derive(Debug, Clone)]
pub struct Build {
    /// `Cargo.toml` of the workspace (or single crate) holding the packages.
    pub manifest_path: PathBuf,
    /// Package names to build.
    pub packages: Vec<String>,
    /// Where the nested build puts its artifacts.
    pub target_dir: PathBuf,
    /// Capture cargo's diagnostics into [`BuildError::Failed`] instead of
    /// letting them through to stderr.
    pub capture: bool,
}

impl Build {
    /// Runs `cargo build --release --target wasm32-wasip2` and returns the
    /// path of each package's component, in the order of `packages`.
    pub fn run(&self) -> Result<Vec<PathBuf>, BuildError> {
        if !target_installed() {
            return Err(BuildError::TargetMissing);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--release")
            .arg("--target")
            .arg(TARGET)
            .arg("--manifest-path")
            .arg(&self.manifest_path)
            .arg("--target-dir")
            .arg(&self.target_dir);
        for p in &self.packages {
            cmd.arg("-p").arg(p);
        }
        for var in STRIPPED_ENV {
            cmd.env_remove(var);
        }
        let failed = if self.capture {
            let out = cmd.output().map_err(BuildError::Spawn)?;
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
        } else {
            let status = cmd.status().map_err(BuildError::Spawn)?;
            (!status.success()).then(String::new)
        };
        if let Some(output) = failed {
            return Err(BuildError::Failed { packages: self.packages.clone(), output });
        }
        self.packages
            .iter()
            .map(|p| {
                let path = artifact_path(&self.target_dir, p);
                if path.is_file() { Ok(path) } else { Err(BuildError::Missing(path)) }
            })
            .collect()
    }
}

/// Where the component of package `package` lands in `target_dir`.
pub fn artifact_path(target_dir: &Path, package: &str) -> PathBuf {
    target_dir.join(TARGET).join("release").join(format!("{}.wasm", package.replace('-', "_")))
}

/// Whether the active toolchain has the `wasm32-wasip2` standard library.
pub fn target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot).join("lib/rustlib").join(TARGET).is_dir()
}

/// The package name declared in a crate's `Cargo.toml`.
pub fn package_name(crate_dir: &Path) -> Result<String, BuildError> {
    let path = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| BuildError::Manifest { path: path.clone(), reason: e.to_string() })?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().trim_start_matches('=').trim();
            let name = value.trim_matches('"');
            if !name.is_empty() {
                return Ok(name.to_string());
            }
        }
    }
    Err(BuildError::Manifest { path, reason: "no `name` in [package]".into() })
}

/// The plugin crates directly below `dir`: every sub-directory with a
/// `Cargo.toml`, sorted by path.
pub fn plugin_crates(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    Ok(crates)
}
