//! Builds the example plugins and the test-only plugins for wasm32-wasip2
//! and hands their paths to the tests as `REFRACT_PLUGIN_<NAME>`.

use std::path::{Path, PathBuf};

use refract_plugin_build::{Build, BuildError, Lang, Sdks, package_name, plugin_crates, plugin_dirs};

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
    for dir in [
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "guest-sdk/js/src",
        "guest-sdk/js/bin",
        "guest-sdk/js/package-lock.json",
        "guest-sdk/python/refract_sdk",
        "guest-sdk/python/requirements.txt",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // TypeScript and Python plugins, built on threads of their own while
    // cargo builds the Rust ones.
    let polyglot_dir = target_dir.join("polyglot");
    std::fs::create_dir_all(&polyglot_dir).expect("cannot create the polyglot plugin directory");
    let sdks = Sdks::locate();
    let mut polyglot = Vec::new();
    for lang in [Lang::TypeScript, Lang::Python] {
        for dir in [root.join("plugins"), manifest_dir.join("plugins")] {
            let found =
                plugin_dirs(&dir, lang).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            for plugin in found {
                let name = plugin.file_name().unwrap().to_string_lossy().into_owned();
                let out = polyglot_dir.join(format!("{name}.wasm"));
                let sdks = sdks.clone();
                polyglot.push((name, std::thread::spawn(move || sdks.build(lang, &plugin, &out, true))));
            }
        }
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
    for (name, build) in polyglot {
        match build.join().expect("a plugin build thread panicked") {
            Ok(path) => {
                let var = format!("REFRACT_PLUGIN_{}", name.to_uppercase().replace('-', "_"));
                println!("cargo:rustc-env={var}={}", path.display());
            }
            Err(e) => panic!("building the plugin {name} failed: {e}"),
        }
    }
}

fn name(dir: &Path) -> String {
    package_name(dir).unwrap_or_else(|e| panic!("{e}"))
}
