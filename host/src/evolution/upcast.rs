//! The loaded upcasters, and the plans that bring events up to the
//! versions a plugin reads.
//!
//! A plugin declares the version of each event type it reads
//! (`event-versions`). When it is loaded, the host resolves, for each
//! declared type, the chain of upcasters below that version as it stands
//! then: a [`UpcastPlan`]. The plan's upcasters are part of the plugin's
//! identity ([`UpcastPlan::identity`]), so a new or changed upcaster makes
//! a new build of each projection that reads the type — rebuilt blue/green
//! like a new plugin version — and a build always upcasts the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use super::Contracts;
use crate::log::RecordedEvent;
use crate::metrics::Metrics;
use crate::plugin::{ApplyError, Batch, EventRef, EventVersion, UpcasterPlugin};

/// The loaded upcasters, by event type and the version each reads, and
/// the schemas their output is checked against.
#[derive(Default)]
pub struct Upcasters {
    loaded: RwLock<BTreeMap<(String, u32), Arc<UpcasterPlugin>>>,
    contracts: Arc<Contracts>,
}

/// An upcaster as listed by `GET /upcasters`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UpcasterInfo {
    /// Its name.
    pub name: String,
    /// Its version label.
    pub version: String,
    /// The event type it rewrites.
    pub event_type: String,
    /// The version it reads.
    pub from_version: u32,
    /// The version it writes.
    pub to_version: u32,
    /// SHA-256 of its bytes.
    pub hash: String,
    /// Its file.
    pub file: String,
}

impl Upcasters {
    /// No upcasters yet; what they write is checked against `contracts`'
    /// schema of the version written, when it has one.
    pub fn new(contracts: Arc<Contracts>) -> Self {
        Self { loaded: RwLock::default(), contracts }
    }

    /// Adds `plugin`, replacing one of the same type and version loaded
    /// from the same file; another file's is a conflict.
    pub fn add(&self, plugin: UpcasterPlugin) -> Result<(), String> {
        let key = (plugin.description.event_type.clone(), plugin.description.from_version);
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = loaded.get(&key)
            && existing.path != plugin.path
        {
            return Err(format!(
                "an upcaster of {} from version {} is already loaded from {}; one per type and version",
                key.0,
                key.1,
                existing.path.display()
            ));
        }
        if let Some(other) =
            loaded.values().find(|u| u.description.name == plugin.description.name && u.path != plugin.path)
        {
            return Err(format!(
                "a plugin named {:?} is already loaded from {}; names must be unique",
                plugin.description.name,
                other.path.display()
            ));
        }
        loaded.retain(|_, u| u.path != plugin.path);
        tracing::info!(
            upcaster = %plugin.description.name,
            event_type = %key.0,
            from = key.1,
            file = %plugin.path.display(),
            "loaded upcaster"
        );
        loaded.insert(key, Arc::new(plugin));
        Ok(())
    }

    /// Unloads the upcaster called `name`; the type it rewrote, if any.
    pub fn remove(&self, name: &str) -> Option<String> {
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        let key = loaded.iter().find(|(_, u)| u.description.name == name).map(|(k, _)| k.clone())?;
        loaded.remove(&key);
        Some(key.0)
    }

    /// Every upcaster, by type and version.
    pub fn list(&self) -> Vec<UpcasterInfo> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|u| UpcasterInfo {
                name: u.description.name.clone(),
                version: u.description.version.clone(),
                event_type: u.description.event_type.clone(),
                from_version: u.description.from_version,
                to_version: u.description.from_version + 1,
                hash: u.hash.clone(),
                file: u.path.display().to_string(),
            })
            .collect()
    }

    /// The plan for a plugin that reads `versions`, with the upcasters
    /// loaded now; `None` when it declares none.
    pub fn plan(&self, versions: &[EventVersion], metrics: &Metrics) -> Option<Arc<UpcastPlan>> {
        if versions.is_empty() {
            return None;
        }
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let wanted: HashMap<String, u32> =
            versions.iter().map(|v| (v.event_type.clone(), v.version)).collect();
        let links = loaded
            .iter()
            .filter(|((t, from), _)| wanted.get(t).is_some_and(|w| from < w))
            .map(|(k, u)| (k.clone(), u.clone()))
            .collect();
        Some(Arc::new(UpcastPlan {
            wanted,
            newest: false,
            links,
            contracts: self.contracts.clone(),
            metrics: metrics.clone(),
        }))
    }

    /// A plan that brings each event of `types` as far as the loaded
    /// upcasters reach from the version it is stored at (for
    /// `GET /events?upcast=true`): an event no upcaster reads stays as
    /// stored, whatever versions other events of its type are at.
    pub fn newest_plan(&self, types: &[(String, u32)], metrics: &Metrics) -> UpcastPlan {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let links = loaded
            .iter()
            .filter(|((t, _), _)| types.iter().any(|(wanted, _)| wanted == t))
            .map(|(k, u)| (k.clone(), u.clone()))
            .collect();
        UpcastPlan {
            wanted: HashMap::new(),
            newest: true,
            links,
            contracts: self.contracts.clone(),
            metrics: metrics.clone(),
        }
    }
}

/// How the events a plugin reads are brought to the versions it declared,
/// with the upcasters resolved when it was loaded.
pub struct UpcastPlan {
    /// Event type → the version the plugin reads.
    wanted: HashMap<String, u32>,
    /// Instead of `wanted`: each event as far as the chain from its own
    /// version reaches.
    newest: bool,
    /// (type, version read) → the upcaster to the next version.
    links: HashMap<(String, u32), Arc<UpcasterPlugin>>,
    /// The schemas each upcaster's output must follow (as they stand when
    /// it runs: a schema is a check, not part of a build's identity).
    contracts: Arc<Contracts>,
    metrics: Metrics,
}

/// Why an event could not be brought to the version a plugin reads.
#[derive(Debug, Clone)]
pub struct UpcastFailure {
    /// The event's index in what was being upcast.
    pub index: usize,
    /// Which upcaster (or which missing one), and why.
    pub message: String,
}

impl UpcastPlan {
    /// The plugin's build identity with this plan: `hash` alone when no
    /// upcaster takes part, else a hash of it and of each upcaster's.
    pub fn identity(&self, hash: &str) -> String {
        if self.links.is_empty() {
            return hash.to_owned();
        }
        let mut links: Vec<_> = self.links.iter().collect();
        links.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = Sha256::new();
        h.update(hash.as_bytes());
        for ((t, v), u) in links {
            h.update(format!("\n{t}\n{v}\n{}", u.hash).as_bytes());
        }
        crate::plugin::hex(&h.finalize())
    }

    /// Whether the plan rewrites an event of `event_type` stored at
    /// `version`.
    fn rewrites(&self, event_type: &str, version: u32) -> bool {
        if self.newest {
            return self.links.contains_key(&(event_type.to_owned(), version));
        }
        self.wanted.get(event_type).is_some_and(|w| *w != version)
    }

    /// The version an event of `event_type` stored at `version` is read
    /// at.
    fn target(&self, event_type: &str, version: u32) -> u32 {
        if self.newest {
            let mut v = version;
            while self.links.contains_key(&(event_type.to_owned(), v)) {
                v += 1;
            }
            return v;
        }
        self.wanted.get(event_type).copied().unwrap_or(version)
    }

    /// Brings `data` (events `types[i]` at `versions[i]`) to the plan's
    /// versions, in place, one upcaster call per type and version.
    fn run(&self, types: &[&str], versions: &mut [u32], data: &mut [String]) -> Result<(), UpcastFailure> {
        // Which events still need a step, grouped by (type, version).
        loop {
            let mut groups: BTreeMap<(&str, u32), Vec<usize>> = BTreeMap::new();
            for (i, t) in types.iter().enumerate() {
                let wanted = self.target(t, versions[i]);
                if versions[i] > wanted {
                    return Err(UpcastFailure {
                        index: i,
                        message: format!(
                            "{t} is stored at version {}, newer than version {wanted} that this plugin reads; \
                             update the plugin (events are never downcast)",
                            versions[i]
                        ),
                    });
                }
                if versions[i] < wanted {
                    groups.entry((t, versions[i])).or_default().push(i);
                }
            }
            if groups.is_empty() {
                return Ok(());
            }
            for ((t, v), indices) in groups {
                let Some(u) = self.links.get(&(t.to_owned(), v)) else {
                    return Err(UpcastFailure {
                        index: indices[0],
                        message: format!(
                            "no upcaster of {t} from version {v} to {} is loaded (this plugin reads version {})",
                            v + 1,
                            self.target(t, v)
                        ),
                    });
                };
                let input: Vec<String> = indices.iter().map(|&i| std::mem::take(&mut data[i])).collect();
                let name = &u.description.name;
                let fail = |index: usize, why: String| {
                    self.metrics.upcast(name, "failed", indices.len() as u64);
                    UpcastFailure {
                        index,
                        message: format!("upcaster {name} ({t} v{v} → v{}) failed: {why}", v + 1),
                    }
                };
                let output = match u.upcast(&input) {
                    Ok(Ok(out)) => out,
                    Ok(Err(e)) => {
                        let at = indices.get(e.index as usize).copied().unwrap_or(indices[0]);
                        return Err(fail(at, e.message));
                    }
                    Err(e) if input.len() > 1 => {
                        // Which event it failed on: each alone, up to the
                        // first that fails.
                        let at = (0..input.len())
                            .find(|&k| !matches!(u.upcast(std::slice::from_ref(&input[k])), Ok(Ok(_))))
                            .unwrap_or(0);
                        return Err(fail(indices[at], e.to_string()));
                    }
                    Err(e) => return Err(fail(indices[0], e.to_string())),
                };
                if output.len() != input.len() {
                    return Err(fail(
                        indices[0],
                        format!("returned {} documents for {}", output.len(), input.len()),
                    ));
                }
                // What it writes follows the schema of the version it
                // writes, when there is one: an upcaster's mistake stops
                // its readers at the event, not somewhere in their logic.
                let schema = self.contracts.get(t, v + 1);
                for (k, (&i, out)) in indices.iter().zip(output).enumerate() {
                    match &schema {
                        None => {
                            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&out) {
                                return Err(fail(indices[k], format!("returned data that is not JSON: {e}")));
                            }
                        }
                        Some(schema) => {
                            let value: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                                fail(indices[k], format!("returned data that is not JSON: {e}"))
                            })?;
                            if let Some((path, why)) = schema.first_failure(&value) {
                                return Err(fail(
                                    indices[k],
                                    format!(
                                        "returned data that the {t} v{} schema refuses at {path:?}: {why}",
                                        v + 1
                                    ),
                                ));
                            }
                        }
                    }
                    data[i] = out;
                    versions[i] = v + 1;
                }
                self.metrics.upcast(name, "ok", indices.len() as u64);
            }
        }
    }

    /// `batch` with its events at the plan's versions; `None` when none
    /// needed upcasting. A failure names the event's position.
    pub fn batch(&self, batch: &Batch) -> Result<Option<Batch>, ApplyError> {
        if !batch.iter().any(|e| self.rewrites(e.event_type, e.schema_version)) {
            return Ok(None);
        }
        let events: Vec<EventRef<'_>> = batch.iter().collect();
        let picked: Vec<usize> = (0..events.len())
            .filter(|&i| self.rewrites(events[i].event_type, events[i].schema_version))
            .collect();
        let types: Vec<&str> = picked.iter().map(|&i| events[i].event_type).collect();
        let mut versions: Vec<u32> = picked.iter().map(|&i| events[i].schema_version).collect();
        let mut data: Vec<String> = picked.iter().map(|&i| events[i].data.to_owned()).collect();
        self.run(&types, &mut versions, &mut data)
            .map_err(|f| ApplyError { position: events[picked[f.index]].position, message: f.message })?;
        let grown: usize = data.iter().map(String::len).sum::<usize>();
        let mut out = Batch::with_capacity(events.len(), batch.text_len() + grown);
        let mut next = 0;
        for (i, e) in events.iter().enumerate() {
            if picked.get(next) == Some(&i) {
                out.push(EventRef { data: &data[next], schema_version: versions[next], ..*e });
                next += 1;
            } else {
                out.push(*e);
            }
        }
        Ok(Some(out))
    }

    /// `events` at the plan's versions. A failure names the event's
    /// position.
    pub fn events(&self, events: &mut [RecordedEvent]) -> Result<(), (u64, String)> {
        let picked: Vec<usize> = (0..events.len())
            .filter(|&i| self.rewrites(&events[i].event_type, events[i].schema_version))
            .collect();
        if picked.is_empty() {
            return Ok(());
        }
        let types: Vec<String> = picked.iter().map(|&i| events[i].event_type.clone()).collect();
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        let mut versions: Vec<u32> = picked.iter().map(|&i| events[i].schema_version).collect();
        let mut data: Vec<String> = picked.iter().map(|&i| events[i].data.get().to_owned()).collect();
        self.run(&types, &mut versions, &mut data)
            .map_err(|f| (events[picked[f.index]].position, f.message))?;
        for ((&i, v), d) in picked.iter().zip(versions).zip(data) {
            let e = &mut events[i];
            e.data = serde_json::value::RawValue::from_string(d)
                .map_err(|err| (e.position, format!("upcast data is not JSON: {err}")))?;
            e.schema_version = v;
        }
        Ok(())
    }
}
