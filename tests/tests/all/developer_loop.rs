//! `refract new` scaffolds plugin crates that build for wasm32-wasip2, pass
//! their unit test, and load into a running server.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::Server;

const BIN: &str = env!("CARGO_BIN_EXE_refract-under-test");

fn target_dir() -> std::path::PathBuf {
    // Shared across runs, so only the first run pays for the dependencies.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test")
}

fn scaffold(kind: &str, name: &str, parent: &Path) -> std::path::PathBuf {
    let out = Command::new(BIN).args(["new", kind, name, "--dir"]).arg(parent).output().unwrap();
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

#[test]
fn scaffolded_plugins_build_pass_their_tests_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let projection = scaffold("projection", "tally", dir.path());
    let handler = scaffold("handler", "starter", dir.path());
    unit_test(&projection);
    unit_test(&handler);

    let server = Server::start(&[]);
    for crate_dir in [&projection, &handler] {
        refract::dev::build_plugin(crate_dir, &target_dir(), &server.plugins_dir(), true).unwrap();
    }
    let c = server.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = c.command("starter", "Start", "thing-1", json!({}));
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the scaffolded handler never loaded: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = c.append("a", json!("any"), &[("Happened", json!({ "amount": 4 }))]);
    let (status, body) = c.get(&format!(
        "/projections/tally/tables/totals/a?min_position={}&wait_ms=30000",
        r["last_position"]
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row"]["total"], 4);

    let out =
        Command::new(BIN).args(["new", "projection", "Bad Name", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowercase"));
}
