//! Builds the example plugins and the test-only plugins for wasm32-wasip2
//! and hands their paths to the tests as `REFRACT_PLUGIN_<NAME>`.

use std::path::{Path, PathBuf};

use refract_plugin_build::{Build, BuildError, package_name, plugin_crates};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("tests/ is inside the workspace").to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // target/<profile>/build/<pkg>/out -> target/wasm-plugins: stable across
    // build-script reruns, so the nested build stays incremental.
    let target_dir = out_dir.ancestors().nth(4).unwrap_or(&out_dir).join("wasm-plugins");

    let mut crates = Vec::new();
    for dir in [root.join("plugins"), manifest_dir.join("plugins")] {
        println!("cargo:rerun-if-changed={}", dir.display());
        crates.extend(plugin_crates(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())));
    }
    for dir in ["guest-sdk/src", "guest-sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let packages: Vec<String> = crates.iter().map(|c| name(c)).collect();
    let build = Build {
        manifest_path: root.join("Cargo.toml"),
        packages: packages.clone(),
        target_dir,
        capture: false,
    };
    match build.run() {
        Ok(paths) => {
            for (package, path) in packages.iter().zip(paths) {
                let var = format!("REFRACT_PLUGIN_{}", package.to_uppercase().replace('-', "_"));
                println!("cargo:rustc-env={var}={}", path.display());
            }
        }
        Err(e @ BuildError::TargetMissing) => panic!("{e}"),
        Err(e) => panic!("building the test plugins failed: {e}"),
    }
}

fn name(dir: &Path) -> String {
    package_name(dir).unwrap_or_else(|e| panic!("{e}"))
}
