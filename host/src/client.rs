//! The operator commands of the CLI (`refract status`, `rebuild`, `pause`,
//! `resume`, `dead-letters`, `verify`): thin clients of a running server's HTTP API.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// A running refract server.
pub struct Client {
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `url` (for example `http://127.0.0.1:7070`),
    /// sending `token` as a bearer token when given.
    pub fn new(url: &str, token: Option<String>) -> Self {
        Self { base: url.trim_end_matches('/').to_owned(), token }
    }

    fn call(&self, method: &str, path: &str) -> anyhow::Result<Value> {
        self.call_with(method, path, None)
    }

    fn call_with(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::request(method, &url);
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        let sent = match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        };
        let response = match sent {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let body: Value = r.into_json().unwrap_or(Value::Null);
                let message = body["error"].as_str().unwrap_or("no details");
                bail!("{method} {path}: {code}: {message}");
            }
            Err(e) => bail!("cannot reach refract at {}: {e}; is it running (refract serve)?", self.base),
        };
        response.into_json().with_context(|| format!("while reading the answer to {method} {path}"))
    }

    /// Prints every projection's status as a table.
    pub fn status(&self) -> anyhow::Result<()> {
        let body = self.call("GET", "/projections")?;
        println!(
            "{:<24} {:<12} {:>10} {:>10} {:>8} {:>6}  error",
            "PROJECTION", "STATUS", "POSITION", "LAG", "EV/S", "DEAD"
        );
        for p in body["projections"].as_array().into_iter().flatten() {
            let error = p["error"]["message"].as_str().or(p["error"].as_str()).unwrap_or("");
            println!(
                "{:<24} {:<12} {:>10} {:>10} {:>8.0} {:>6}  {}",
                p["name"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?"),
                p["position"].as_u64().unwrap_or(0),
                p["lag"].as_u64().unwrap_or(0),
                p["events_per_second"].as_f64().unwrap_or(0.0),
                p["dead_letters"].as_u64().unwrap_or(0),
                error.lines().next().unwrap_or("")
            );
        }
        let handlers = self.call("GET", "/handlers")?;
        for h in handlers["handlers"].as_array().into_iter().flatten() {
            println!("handler {:<16} {}", h["name"].as_str().unwrap_or("?"), h["command_types"]);
        }
        Ok(())
    }

    /// Downloads a consistent copy of projection `name`'s read model into
    /// `out` (written beside it first, then renamed).
    pub fn snapshot(&self, name: &str, out: &std::path::Path) -> anyhow::Result<()> {
        let url = format!("{}/projections/{name}/snapshot", self.base);
        let mut request = ureq::get(&url);
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let body: Value = r.into_json().unwrap_or(Value::Null);
                bail!("{code}: {}", body["error"].as_str().unwrap_or("the server refused the snapshot"));
            }
            Err(e) => return Err(e).with_context(|| format!("while asking {url}")),
        };
        let position = response.header("x-refract-position").unwrap_or("?").to_owned();
        let hash = response.header("x-refract-plugin-hash").unwrap_or("?").to_owned();
        let partial = out.with_extension("partial");
        let mut file = std::fs::File::create(&partial)
            .with_context(|| format!("while creating {}", partial.display()))?;
        let bytes = std::io::copy(&mut response.into_reader(), &mut file)
            .with_context(|| format!("while writing {}", partial.display()))?;
        file.sync_all()?;
        std::fs::rename(&partial, out).with_context(|| format!("while renaming to {}", out.display()))?;
        println!("{name}: {bytes} bytes at position {position} (plugin {hash}) written to {}", out.display());
        Ok(())
    }

    /// Starts a blue/green rebuild and shows its progress until it serves.
    pub fn rebuild(&self, name: &str) -> anyhow::Result<()> {
        self.call("POST", &format!("/projections/{name}/rebuild"))?;
        let mut out = std::io::stderr();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let s = self.call("GET", &format!("/projections/{name}"))?;
            let head = s["head"].as_u64().unwrap_or(0).max(1);
            match s["rebuild"].as_object() {
                Some(r) => {
                    if let Some(e) = r.get("error").and_then(|e| e["message"].as_str()) {
                        let _ = writeln!(out);
                        bail!("the rebuild of {name} is failing: {e}");
                    }
                    let pos = r.get("position").and_then(Value::as_u64).unwrap_or(0);
                    let frac = (pos as f64 / head as f64).min(1.0);
                    let filled = (frac * 30.0) as usize;
                    let _ = write!(
                        out,
                        "\r{name} [{}{}] {:>3.0}% ({pos}/{head})",
                        "=".repeat(filled),
                        " ".repeat(30 - filled),
                        frac * 100.0
                    );
                    let _ = out.flush();
                }
                None => {
                    let _ = writeln!(
                        out,
                        "\r{name} rebuilt; serving at position {}{}",
                        s["position"],
                        " ".repeat(30)
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Pauses or resumes a projection.
    pub fn set_paused(&self, name: &str, paused: bool) -> anyhow::Result<()> {
        let verb = if paused { "pause" } else { "resume" };
        self.call("POST", &format!("/projections/{name}/{verb}"))?;
        println!("{name}: {verb}d");
        Ok(())
    }

    /// Prints a projection's dead letters.
    pub fn dead_letters(&self, name: &str) -> anyhow::Result<()> {
        let body = self.call("GET", &format!("/projections/{name}/dead-letters"))?;
        println!("{name}: {} dead letter(s)", body["count"]);
        for d in body["dead_letters"].as_array().into_iter().flatten() {
            println!(
                "  position {} {} on {}: {}",
                d["position"],
                d["type"].as_str().unwrap_or("?"),
                d["stream_id"].as_str().unwrap_or("?"),
                d["error"].as_str().unwrap_or("").lines().next().unwrap_or("")
            );
        }
        Ok(())
    }

    /// Rebuilds a projection into a scratch database and compares it with
    /// the serving one; prints the differences. Returns whether they agree.
    pub fn verify(&self, name: &str) -> anyhow::Result<bool> {
        let r = self.call("POST", &format!("/projections/{name}/verify"))?;
        let consistent = r["consistent"].as_bool().unwrap_or(false);
        println!(
            "{name}: {} at position {}{}",
            if consistent { "consistent with a fresh rebuild" } else { "DIFFERS from a fresh rebuild" },
            r["position"],
            match r["dead_letters"].as_u64() {
                Some(0) | None => String::new(),
                Some(n) => format!(" ({n} dead-lettered event(s) left out)"),
            }
        );
        for t in r["tables"].as_array().into_iter().flatten() {
            let rows = |v: &Value| v.as_u64().map_or_else(|| "missing".to_owned(), |n| n.to_string());
            println!(
                "  {:<32} live {:>10}  rebuilt {:>10}  only live {:>6}  only rebuilt {:>6}",
                t["table"].as_str().unwrap_or("?"),
                rows(&t["live_rows"]),
                rows(&t["rebuilt_rows"]),
                t["only_live"],
                t["only_rebuilt"]
            );
            for (label, key) in [("only live", "only_live_sample"), ("only rebuilt", "only_rebuilt_sample")] {
                for row in t[key].as_array().into_iter().flatten() {
                    println!("      {label}: {row}");
                }
            }
        }
        Ok(consistent)
    }

    /// Asks the server whether the schema in `file`
    /// (`<EventType>.v<N>.schema.json`) accepts every stored event of its
    /// type (older versions upcast to it first) and prints the events it
    /// refuses and the plugins that read the type; whether it accepts all.
    pub fn schema_check(&self, file: &std::path::Path) -> anyhow::Result<bool> {
        let (event_type, version) =
            crate::evolution::contracts::parse_name(file).map_err(anyhow::Error::msg)?;
        let text =
            std::fs::read_to_string(file).with_context(|| format!("while reading {}", file.display()))?;
        let schema: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
        let body = serde_json::json!({ "event_type": event_type, "version": version, "schema": schema });
        let r = self.call_with("POST", "/schemas/check", Some(&body))?;
        let accepts = r["accepts"].as_bool().unwrap_or(false);
        println!(
            "{event_type} v{version}: {} — {} stored event(s) checked, {} refused, {} newer left out",
            if accepts { "accepts every stored event" } else { "REFUSES stored events" },
            r["checked"],
            r["refused_total"],
            r["newer"]
        );
        for e in r["refused"].as_array().into_iter().flatten() {
            println!(
                "  position {} ({} v{} of {}): at {:?}: {}",
                e["position"],
                event_type,
                e["stored_version"],
                e["stream_id"].as_str().unwrap_or("?"),
                e["path"].as_str().unwrap_or(""),
                e["error"].as_str().unwrap_or("")
            );
        }
        let consumers = r["consumers"].as_array().cloned().unwrap_or_default();
        if consumers.is_empty() {
            println!("no loaded plugin reads {event_type}");
        }
        for c in consumers {
            println!(
                "  read by {} {} ({})",
                c["kind"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                match c["reads_version"].as_u64() {
                    Some(v) => format!("declares v{v}"),
                    None => "reads events as stored".to_owned(),
                }
            );
        }
        Ok(accepts)
    }
}
