//! The developer loop and the operator CLI: `refract new` scaffolds crates
//! that build and pass their unit test; `refract dev` builds and serves
//! them and hot-reloads a crate when its source changes; `refract status`,
//! `pause`, `resume`, `rebuild` and `dead-letters` drive a running server.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{BIN, Client, free_port, wait_healthy};

fn target_dir() -> std::path::PathBuf {
    // Shared across runs, so only the first run pays for the dependencies.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test")
}

fn refract(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn scaffold(kind: &str, name: &str, parent: &Path) -> std::path::PathBuf {
    let out = refract(&["new", kind, name, "--dir", parent.to_str().unwrap()]);
    assert!(out.status.success(), "refract new failed: {}", String::from_utf8_lossy(&out.stderr));
    parent.join(name)
}

fn unit_test(dir: &Path) {
    let out = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the scaffolded crate's tests failed:\n{text}");
    assert!(text.contains("1 passed"), "no unit test ran:\n{text}");
}

struct Dev(Child);

impl Dev {
    /// `refract dev` on the plugins of `source`, its data and plugins in
    /// `home`, listening on `port`.
    fn spawn(source: &Path, home: &Path, port: u16) -> Dev {
        Dev(Command::new(BIN)
            .arg("dev")
            .arg("--source")
            .arg(source)
            .arg("--target-dir")
            .arg(target_dir())
            .arg("--data")
            .arg(home.join("data"))
            .arg("--plugins")
            .arg(home.join("plugins"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("dev.log")).unwrap())
            .spawn()
            .unwrap())
    }
}

/// What `refract dev` printed (builds, errors), for a failure's message.
fn dev_log(home: &Path) -> String {
    std::fs::read_to_string(home.join("dev.log")).unwrap_or_default()
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli(url: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--url", url]);
    let out = refract(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "refract {args:?} failed: {text}");
    text
}

#[test]
fn scaffold_dev_hot_reload_and_the_operator_cli() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src-plugins");
    let projection = scaffold("projection", "tally", &source);
    let handler = scaffold("handler", "starter", &source);
    let upcaster = scaffold("upcaster", "renamer", &source);
    unit_test(&projection);
    unit_test(&handler);
    unit_test(&upcaster);
    let out = refract(&["new", "projection", "Bad Name", "--dir", source.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowercase"));

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _dev = Dev::spawn(&source, dir.path(), port);
    wait_healthy(&url, Duration::from_secs(300));
    let c = Client { base: url.clone() };
    let (status, body) = c.command("starter", "Start", "thing-1", json!({}));
    assert_eq!(status, 200, "{body}");
    let r = c.append("a", json!("any"), &[("Happened", json!({ "amount": 4 }))]);
    let (status, body) = c.get(&format!(
        "/projections/tally/tables/totals/a?min_position={}&wait_ms=30000",
        r["last_position"]
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["total"], 4);
    // The upcaster is served too, rewriting `Happened` from version 1.
    let (_, body) = c.get("/upcasters");
    assert_eq!(body["upcasters"][0]["name"], "renamer", "{body}");
    assert_eq!(
        (&body["upcasters"][0]["event_type"], &body["upcasters"][0]["to_version"]),
        (&json!("Happened"), &json!(2))
    );

    // Saving a change to the source rebuilds and hot-reloads the plugin.
    let before = c.projection("tally")["hash"].clone();
    let lib = projection.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, code.replace("e.amount]", "e.amount * 10]")).unwrap();
    eventually("the edited projection to serve", || {
        let s = c.projection("tally");
        (s["hash"] != before && s["status"] == "live" && s["rebuild"].is_null()).then_some(())
    });
    let (_, body) = c.get("/projections/tally/tables/totals/a");
    assert_eq!(body["row"]["total"], 40, "the new version rebuilt the read model");

    // The operator CLI against the running server.
    assert!(cli(&url, &["status"]).contains("tally"));
    cli(&url, &["pause", "tally"]);
    eventually("the pause", || (c.projection("tally")["status"] == "paused").then_some(()));
    cli(&url, &["resume", "tally"]);
    eventually("the resume", || (c.projection("tally")["status"] == "live").then_some(()));
    assert!(cli(&url, &["rebuild", "tally"]).contains("rebuilt"));
    assert!(cli(&url, &["dead-letters", "tally"]).contains("0 dead letter"));
    let out = refract(&["pause", "nope", "--url", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no projection named"));
}

fn scaffold_in(kind: &str, lang: &str, name: &str, parent: &Path) -> std::path::PathBuf {
    let out = refract(&["new", kind, name, "--lang", lang, "--dir", parent.to_str().unwrap()]);
    assert!(out.status.success(), "refract new failed: {}", String::from_utf8_lossy(&out.stderr));
    parent.join(name)
}

#[test]
fn typescript_and_python_plugins_are_scaffolded_tested_served_and_hot_reloaded() {
    use refract_plugin_build::{Lang, Sdks};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src-plugins");
    let projection = scaffold_in("projection", "ts", "tally-ts", &source);
    let handler = scaffold_in("handler", "python", "starter-py", &source);
    let upcaster = scaffold_in("upcaster", "ts", "renamer-ts", &source);
    // Their own tests pass natively, as generated.
    let sdks = Sdks::locate();
    let out = sdks.test(Lang::TypeScript, &projection).unwrap();
    assert!(out.contains("# pass 1"), "{out}");
    let out = sdks.test(Lang::Python, &handler).unwrap();
    assert!(out.contains("Ran 1 test") && out.contains("OK"), "{out}");
    let out = sdks.test(Lang::TypeScript, &upcaster).unwrap();
    assert!(out.contains("# pass 1"), "{out}");
    // The other kinds pass their tests and build too; they live elsewhere,
    // so that `refract dev` below serves the three above (one upcaster of
    // `Happened` v1 at a time).
    let others = dir.path().join("others");
    for (lang, kind, name, passed) in [
        (Lang::TypeScript, "handler", "starter-ts", "# pass 1"),
        (Lang::Python, "projection", "tally-py", "Ran 1 test"),
        (Lang::Python, "upcaster", "renamer-py", "Ran 1 test"),
    ] {
        let plugin = scaffold_in(kind, if lang == Lang::TypeScript { "ts" } else { "python" }, name, &others);
        let out = sdks.test(lang, &plugin).unwrap();
        assert!(out.contains(passed) && !out.contains("FAILED"), "{name}: {out}");
        let wasm = sdks.build(lang, &plugin, &others.join(format!("{name}.wasm")), true);
        let wasm = wasm.unwrap_or_else(|e| panic!("{name} does not build: {e}"));
        assert!(std::fs::metadata(&wasm).unwrap().len() > 0, "{name}");
    }

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _dev = Dev::spawn(&source, dir.path(), port);
    wait_healthy(&url, Duration::from_secs(300));
    let c = Client { base: url.clone() };
    let (status, body) = c.command("starter-py", "Start", "thing-1", json!({}));
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.command("starter-py", "Start", "thing-1", json!({}));
    assert_eq!((status, &body["code"]), (422, &json!("already_started")), "{body}");
    let r = c.append("a", json!("any"), &[("Happened", json!({ "amount": 4 }))]);
    let (status, body) = c.get(&format!(
        "/projections/tally-ts/tables/totals/a?min_position={}&wait_ms=30000",
        r["last_position"]
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["total"], 4);
    let (_, body) = c.get("/upcasters");
    assert_eq!(body["upcasters"][0]["name"], "renamer-ts", "{body}");

    // Saving a change to the TypeScript source rebuilds and hot-reloads it.
    let before = c.projection("tally-ts")["hash"].clone();
    let index = projection.join("src/index.ts");
    let code = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, code.replace("[event.streamId, amount]", "[event.streamId, amount * 10]"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let after = loop {
        let s = c.projection("tally-ts");
        if s["hash"] != before && s["status"] == "live" && s["rebuild"].is_null() {
            break s["hash"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the edited projection never served: {s}\n{}",
            dev_log(dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (_, body) = c.get("/projections/tally-ts/tables/totals/a");
    assert_eq!(body["row"]["total"], 40, "the new version rebuilt the read model\n{}", dev_log(dir.path()));
    // One save, one rebuild: the builds' own reads of the sources start none.
    std::thread::sleep(Duration::from_secs(5));
    let log = dev_log(dir.path());
    assert_eq!(log.matches("rebuilt").count(), 1, "{log}");
    assert_eq!(c.projection("tally-ts")["hash"], after, "no build after the edit's");
}
