//! Plugins written in TypeScript/JavaScript and in Python: built into
//! components by the SDKs in `guest-sdk/js` (componentize-js) and
//! `guest-sdk/python` (componentize-py), whose toolchains are pinned there
//! (`package-lock.json`, `requirements.txt`) and installed on first use:
//! `npm ci` into `guest-sdk/js/node_modules`, a virtual environment in
//! `guest-sdk/python/.venv`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::BuildError;

/// Held while a toolchain is checked or installed.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The language a plugin directory is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    TypeScript,
    Python,
}

impl Lang {
    /// `rust`, `ts` or `python`: the spelling of `--lang`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::TypeScript => "ts",
            Lang::Python => "python",
        }
    }
}

/// What a plugin directory is written in: a `Cargo.toml` makes it Rust, an
/// `app.py` Python, a `src/index.ts` / `src/index.js` TypeScript.
pub fn lang_of(dir: &Path) -> Option<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Some(Lang::Rust)
    } else if dir.join("app.py").is_file() {
        Some(Lang::Python)
    } else if ["src/index.ts", "src/index.js", "index.ts", "index.js"].iter().any(|f| dir.join(f).is_file()) {
        Some(Lang::TypeScript)
    } else {
        None
    }
}

/// The plugin directories directly below `dir` written in `lang`, sorted.
pub fn plugin_dirs(dir: &Path, lang: Lang) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| lang_of(p) == Some(lang))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The SDKs of `guest-sdk/`.
#[derive(Debug, Clone)]
pub struct Sdks {
    /// The `guest-sdk` directory.
    pub root: PathBuf,
}

fn tool_missing(tool: &str, install: &str) -> BuildError {
    BuildError::ToolMissing { tool: tool.into(), install: install.into() }
}

fn run(mut cmd: Command, what: &str, capture: bool) -> Result<String, BuildError> {
    // No bytecode caches written into plugin or SDK directories.
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    let out = if capture {
        cmd.output()
    } else {
        cmd.stdout(std::process::Stdio::inherit()).stderr(std::process::Stdio::inherit()).output()
    }
    .map_err(BuildError::Spawn)?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(BuildError::Failed { packages: vec![what.into()], output: text })
    }
}

fn has(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success())
}

impl Sdks {
    /// The SDKs beside the `plugin-build` crate in this repository, or
    /// where `REFRACT_SDK` says.
    pub fn locate() -> Sdks {
        let root = std::env::var_os("REFRACT_SDK")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("guest-sdk"));
        Sdks { root }
    }

    fn js(&self) -> PathBuf {
        self.root.join("js")
    }

    fn python(&self) -> PathBuf {
        self.root.join("python")
    }

    /// Installs the JavaScript toolchain (pinned by `package-lock.json`)
    /// unless it is there.
    pub fn ensure_js(&self, capture: bool) -> Result<(), BuildError> {
        // Builds on several threads (a build script's) install once, not
        // all at once into the same directory.
        let _one = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
        if !has("node", "--version") {
            return Err(tool_missing("node", "install Node.js 20 or newer (Debian: apt install nodejs npm)"));
        }
        let js = self.js();
        if js.join("node_modules/@bytecodealliance/componentize-js/package.json").is_file()
            && js.join("node_modules/esbuild/package.json").is_file()
        {
            return Ok(());
        }
        if !has("npm", "--version") {
            return Err(tool_missing("npm", "install npm (Debian: apt install npm)"));
        }
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(&js);
        run(cmd, "npm ci (guest-sdk/js)", capture).map(drop)
    }

    /// The virtual environment's Python with componentize-py (pinned by
    /// `requirements.txt`), created unless it is there.
    pub fn ensure_python(&self, capture: bool) -> Result<PathBuf, BuildError> {
        let _one = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
        let py = self.python();
        let venv = py.join(".venv");
        let python = venv.join("bin").join("python");
        if venv.join("bin").join("componentize-py").is_file() {
            return Ok(python);
        }
        if !has("python3", "--version") {
            return Err(tool_missing(
                "python3",
                "install Python 3.10 or newer with venv (Debian: apt install python3-venv)",
            ));
        }
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(&venv);
        run(cmd, "python3 -m venv (guest-sdk/python/.venv)", capture)?;
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(py.join("requirements.txt"));
        run(cmd, "pip install -r guest-sdk/python/requirements.txt", capture).map(drop)?;
        Ok(python)
    }

    /// Builds the plugin in `dir` into the component `out`.
    pub fn build(&self, lang: Lang, dir: &Path, out: &Path, capture: bool) -> Result<PathBuf, BuildError> {
        let what = dir.display().to_string();
        match lang {
            Lang::Rust => {
                return Err(BuildError::Manifest {
                    path: dir.into(),
                    reason: "a Rust crate; build it with Build".into(),
                });
            }
            Lang::TypeScript => {
                self.ensure_js(capture)?;
                let mut cmd = Command::new("node");
                cmd.arg(self.js().join("bin/refract-js.mjs")).arg("build").arg(dir).arg("-o").arg(out);
                run(cmd, &what, capture)?;
            }
            Lang::Python => {
                let python = self.ensure_python(capture)?;
                let mut cmd = Command::new(python);
                cmd.arg(self.python().join("refract_sdk/build.py")).arg(dir).arg("-o").arg(out);
                run(cmd, &what, capture)?;
            }
        }
        if out.is_file() { Ok(out.to_path_buf()) } else { Err(BuildError::Missing(out.into())) }
    }

    /// Runs the native tests of the plugin (or SDK) in `dir`: the node test
    /// runner on its `*.test.ts` files, or `unittest` on its `test_*.py`;
    /// their output.
    pub fn test(&self, lang: Lang, dir: &Path) -> Result<String, BuildError> {
        let what = format!("tests of {}", dir.display());
        match lang {
            Lang::Rust => Err(BuildError::Manifest {
                path: dir.into(),
                reason: "a Rust crate; test it with cargo".into(),
            }),
            Lang::TypeScript => {
                self.ensure_js(true)?;
                let mut cmd = Command::new("node");
                cmd.arg(self.js().join("bin/refract-js.mjs")).arg("test").arg(dir);
                run(cmd, &what, true)
            }
            Lang::Python => {
                if !has("python3", "--version") {
                    return Err(tool_missing("python3", "install Python 3.10 or newer"));
                }
                let mut cmd = Command::new("python3");
                cmd.args(["-m", "unittest", "discover", "-v", "-t", ".", "-s", ".", "-p", "test_*.py"])
                    .current_dir(dir)
                    .env("PYTHONPATH", self.python());
                run(cmd, &what, true)
            }
        }
    }
}
