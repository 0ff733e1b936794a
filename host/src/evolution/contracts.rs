//! Schema contracts: JSON Schemas of event types, by version, from files
//! named `<EventType>.v<N>.schema.json` in the plugins directory — loaded
//! at start and hot-reloaded like plugins. An append of a type with a
//! schema is validated against the version it states (the newest
//! registered when it states none) and refused with the failing field's
//! path; types without a schema are appended as before, at version 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::log::NewEvent;

/// One registered schema.
pub struct Contract {
    /// The event type.
    pub event_type: String,
    /// Its version.
    pub version: u32,
    /// The file it was read from.
    pub file: PathBuf,
    /// The schema document.
    pub schema: serde_json::Value,
    validator: jsonschema::Validator,
}

impl Contract {
    /// The first failure of `data` against this schema: a JSON Pointer
    /// and what is wrong.
    pub fn first_failure(&self, data: &serde_json::Value) -> Option<(String, String)> {
        first_failure(&self.validator, data)
    }
}

/// A schema as listed by `GET /schemas`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SchemaInfo {
    /// The event type.
    pub event_type: String,
    /// The schema's version.
    pub version: u32,
    /// Whether it is the newest version of the type (what appends that
    /// state no version are checked against).
    pub newest: bool,
    /// Its file.
    pub file: String,
    /// The schema.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

/// An event that does not follow its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which event of the append.
    pub index: usize,
    /// A JSON Pointer to the failing value within the event's data (`""`:
    /// the data itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every registered schema, by type and version.
#[derive(Default)]
pub struct Contracts {
    schemas: RwLock<BTreeMap<(String, u32), Arc<Contract>>>,
}

/// Whether `path` is a schema file: `<EventType>.v<N>.schema.json`, not
/// hidden.
pub fn is_schema_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.ends_with(".schema.json") && !n.starts_with('.')
    })
}

/// The event type and version a schema file's name gives.
pub fn parse_name(path: &Path) -> Result<(String, u32), String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".schema.json").unwrap_or(&name);
    let parsed = stem.rsplit_once(".v").and_then(|(t, v)| {
        let version: u32 = v.parse().ok().filter(|v| (1..=crate::log::MAX_SCHEMA_VERSION).contains(v))?;
        (!t.is_empty() && !v.starts_with('0')).then(|| (t.to_owned(), version))
    });
    let (event_type, version) = parsed.ok_or_else(|| {
        format!("{name}: a schema file is named <EventType>.v<N>.schema.json, N from 1 (for example OrderPlaced.v2.schema.json)")
    })?;
    crate::log::validate_name("event type", &event_type).map_err(|e| format!("{name}: {e}"))?;
    Ok((event_type, version))
}

/// Compiles a schema document.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

/// Checks `data` against `validator`: the first failure's JSON Pointer and
/// message.
pub fn first_failure(
    validator: &jsonschema::Validator,
    data: &serde_json::Value,
) -> Option<(String, String)> {
    validator.validate(data).err().map(|e| (e.instance_path().to_string(), e.to_string()))
}

impl Contracts {
    /// Reads, parses and compiles the schema file `path` and registers it
    /// (replacing the version it had); the type and version it holds.
    pub fn load_file(&self, path: &Path) -> Result<(String, u32), String> {
        let (event_type, version) = parse_name(path)?;
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let schema: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let validator = compile(&schema).map_err(|e| format!("{}: {e}", path.display()))?;
        let contract =
            Contract { event_type: event_type.clone(), version, file: path.to_path_buf(), schema, validator };
        tracing::info!(event_type = %event_type, version, file = %path.display(), "loaded event schema");
        self.schemas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((event_type.clone(), version), Arc::new(contract));
        Ok((event_type, version))
    }

    /// Unregisters the schema read from `path`.
    pub fn remove_file(&self, path: &Path) -> bool {
        let mut schemas = self.schemas.write().unwrap_or_else(|p| p.into_inner());
        let before = schemas.len();
        schemas.retain(|_, c| c.file != path);
        before != schemas.len()
    }

    /// The schema of `event_type` at `version`, if one is registered.
    pub fn get(&self, event_type: &str, version: u32) -> Option<Arc<Contract>> {
        let schemas = self.schemas.read().unwrap_or_else(|p| p.into_inner());
        if schemas.is_empty() {
            return None;
        }
        schemas.get(&(event_type.to_owned(), version)).cloned()
    }

    /// Every schema.
    pub fn list(&self) -> Vec<SchemaInfo> {
        let schemas = self.schemas.read().unwrap_or_else(|p| p.into_inner());
        schemas
            .values()
            .map(|c| SchemaInfo {
                event_type: c.event_type.clone(),
                version: c.version,
                newest: newest_of(&schemas, &c.event_type) == Some(c.version),
                file: c.file.display().to_string(),
                schema: c.schema.clone(),
            })
            .collect()
    }

    /// Gives each event of a type with a schema its version (the newest,
    /// when it states none) and checks its data against that version's
    /// schema. Events of types without a schema pass unchanged.
    pub fn check(&self, events: &mut [NewEvent]) -> Result<(), Violation> {
        let schemas = self.schemas.read().unwrap_or_else(|p| p.into_inner());
        if schemas.is_empty() {
            return Ok(());
        }
        for (index, e) in events.iter_mut().enumerate() {
            let Some(newest) = newest_of(&schemas, &e.event_type) else { continue };
            let version = *e.schema_version.get_or_insert(newest);
            let Some(contract) = schemas.get(&(e.event_type.clone(), version)) else {
                let known: Vec<String> =
                    schemas.keys().filter(|(t, _)| *t == e.event_type).map(|(_, v)| v.to_string()).collect();
                return Err(Violation {
                    index,
                    path: String::new(),
                    message: format!(
                        "{} has no schema version {version}; registered versions: {}",
                        e.event_type,
                        known.join(", ")
                    ),
                });
            };
            let data: serde_json::Value = serde_json::from_str(e.data.get()).map_err(|err| Violation {
                index,
                path: String::new(),
                message: format!("data is not JSON: {err}"),
            })?;
            if let Some((path, message)) = first_failure(&contract.validator, &data) {
                return Err(Violation {
                    index,
                    path,
                    message: format!("{} v{version}: {message}", e.event_type),
                });
            }
        }
        Ok(())
    }
}

/// The newest registered version of `event_type`.
fn newest_of(schemas: &BTreeMap<(String, u32), Arc<Contract>>, event_type: &str) -> Option<u32> {
    schemas
        .range((event_type.to_owned(), 0)..=(event_type.to_owned(), u32::MAX))
        .next_back()
        .map(|(k, _)| k.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_file_names_give_type_and_version() {
        assert_eq!(parse_name(Path::new("d/OrderPlaced.v2.schema.json")).unwrap(), ("OrderPlaced".into(), 2));
        assert_eq!(
            parse_name(Path::new("Order.Placed.v12.schema.json")).unwrap(),
            ("Order.Placed".into(), 12)
        );
        for bad in
            ["OrderPlaced.schema.json", "OrderPlaced.v0.schema.json", ".v1.schema.json", "X.v01.schema.json"]
        {
            assert!(parse_name(Path::new(bad)).is_err(), "{bad}");
        }
        assert!(is_schema_file(Path::new("a/X.v1.schema.json")));
        assert!(!is_schema_file(Path::new("a/.X.v1.schema.json")) && !is_schema_file(Path::new("a/x.json")));
    }
}
