//! Event evolution over HTTP: the registered schemas, the loaded
//! upcasters, and checking a schema against the stored events before it
//! is deployed (`refract schema check`).

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::Json;
use crate::App;
use crate::evolution::contracts;
use crate::evolution::{SchemaInfo, UpcasterInfo};
use crate::log::RecordedEvent;
use crate::plugin::EventVersion;

/// Every registered event schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchemaList {
    /// By type, then version.
    pub schemas: Vec<SchemaInfo>,
}

/// Lists the event schemas (`<EventType>.v<N>.schema.json` files in the
/// plugins directory).
#[utoipa::path(get, path = "/schemas", operation_id = "list_schemas", tag = "evolution",
    responses((status = 200, description = "The schemas", body = SchemaList)))]
pub async fn schemas(State(app): State<Arc<App>>) -> axum::Json<SchemaList> {
    axum::Json(SchemaList { schemas: app.handlers.contracts.list() })
}

/// Every loaded upcaster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpcasterList {
    /// By type, then version.
    pub upcasters: Vec<UpcasterInfo>,
}

/// Lists the loaded upcasters.
#[utoipa::path(get, path = "/upcasters", operation_id = "list_upcasters", tag = "evolution",
    responses((status = 200, description = "The upcasters", body = UpcasterList)))]
pub async fn upcasters(State(app): State<Arc<App>>) -> axum::Json<UpcasterList> {
    axum::Json(UpcasterList { upcasters: app.upcasters.list() })
}

/// A schema to check against the log.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The event type: 1 to 256 characters, no control characters.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub event_type: String,
    /// The version the schema would be registered as.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(deserialize_with = "super::number::whole_u32")]
    pub version: u32,
    /// The JSON Schema: an object, or `true` / `false`.
    #[schema(schema_with = json_schema)]
    pub schema: serde_json::Value,
}

/// What a JSON Schema document is: an object or a boolean.
fn json_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Object)))
        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean)))
        .description(Some("A JSON Schema: an object, or true (accepts all) / false (refuses all)"))
        .into()
}

/// A stored event a schema refuses.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefusedEvent {
    /// Its position.
    pub position: u64,
    /// Its stream.
    pub stream_id: String,
    /// Its version in the stream.
    pub stream_version: u64,
    /// The schema version it is stored at (older ones are upcast first).
    pub stored_version: u32,
    /// A JSON Pointer into its data (after upcasting).
    pub path: String,
    /// Why.
    pub error: String,
}

/// A loaded plugin that reads the type.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Consumer {
    /// Its name.
    pub name: String,
    /// `projection`, `reactor` or `handler`.
    pub kind: &'static str,
    /// The version it declared; null: it reads events as stored.
    pub reads_version: Option<u32>,
}

/// What a schema would make of the log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    /// The event type.
    pub event_type: String,
    /// The version checked.
    pub version: u32,
    /// Whether it accepts every stored event of the type at or below its
    /// version.
    pub accepts: bool,
    /// Stored events checked.
    pub checked: u64,
    /// Stored events at newer versions, not checked.
    pub newer: u64,
    /// How many it refuses.
    pub refused_total: u64,
    /// The first 100 it refuses, in log order.
    pub refused: Vec<RefusedEvent>,
    /// The loaded plugins that read the type.
    pub consumers: Vec<Consumer>,
}

/// Most refused events listed.
const MAX_LISTED: usize = 100;

/// Checks a schema against every stored event of its type: events at
/// older versions are upcast to it by the loaded upcasters first. Nothing
/// is registered: deploy the schema file to register it.
#[utoipa::path(post, path = "/schemas/check", operation_id = "check_schema", tag = "evolution",
    request_body = CheckBody,
    responses(
        (status = 200, description = "What the schema accepts and refuses, and who reads the type", body = CheckReport),
        (status = 422, description = "Not a valid JSON Schema, or not a valid type", body = super::schema::ErrorBody),
    ))]
pub async fn check(
    State(app): State<Arc<App>>,
    Json(body): Json<CheckBody>,
) -> Result<axum::Json<CheckReport>, ApiError> {
    let invalid = |m: String| ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, m);
    crate::log::validate_name("event type", &body.event_type).map_err(|e| invalid(e.to_string()))?;
    if !(1..=crate::log::MAX_SCHEMA_VERSION).contains(&body.version) {
        return Err(invalid(format!("version must be from 1 to {}", crate::log::MAX_SCHEMA_VERSION)));
    }
    let validator = contracts::compile(&body.schema).map_err(invalid)?;
    let wanted = [EventVersion { event_type: body.event_type.clone(), version: body.version }];
    let plan = app.upcasters.plan(&wanted, &app.metrics);
    let mut report = CheckReport {
        event_type: body.event_type.clone(),
        version: body.version,
        accepts: true,
        checked: 0,
        newer: 0,
        refused_total: 0,
        refused: Vec::new(),
        consumers: consumers(&app, &body.event_type),
    };
    let mut after = 0;
    loop {
        let page = app.log.read_all(after, 1000, Some(vec![body.event_type.clone()])).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        // Upcasting runs plugins and validating is CPU work.
        tokio::task::block_in_place(|| {
            for e in page {
                check_event(e, body.version, plan.as_deref(), &validator, &mut report);
            }
        });
    }
    report.accepts = report.refused_total == 0;
    Ok(axum::Json(report))
}

fn check_event(
    mut e: RecordedEvent,
    version: u32,
    plan: Option<&crate::evolution::UpcastPlan>,
    validator: &jsonschema::Validator,
    report: &mut CheckReport,
) {
    let stored_version = e.schema_version;
    if stored_version > version {
        report.newer += 1;
        return;
    }
    report.checked += 1;
    let upcast = match plan {
        Some(plan) => plan.events(std::slice::from_mut(&mut e)).map_err(|(_, m)| m),
        None => Ok(()),
    };
    let failure = match upcast {
        Err(m) => Some((String::new(), m)),
        Ok(()) => match serde_json::from_str::<serde_json::Value>(e.data.get()) {
            Ok(data) => contracts::first_failure(validator, &data),
            Err(err) => Some((String::new(), format!("data is not JSON: {err}"))),
        },
    };
    if let Some((path, error)) = failure {
        report.refused_total += 1;
        if report.refused.len() < MAX_LISTED {
            report.refused.push(RefusedEvent {
                position: e.position,
                stream_id: e.stream_id,
                stream_version: e.stream_version,
                stored_version,
                path,
                error,
            });
        }
    }
}

/// The loaded projections, reactors and handlers that read `event_type`.
fn consumers(app: &App, event_type: &str) -> Vec<Consumer> {
    let declared =
        |versions: &[EventVersion]| versions.iter().find(|v| v.event_type == event_type).map(|v| v.version);
    let mut out = Vec::new();
    for p in app.projections.all() {
        let Some(plugin) = p.plugin() else { continue };
        let d = &plugin.description;
        if d.event_types.is_empty() || d.event_types.iter().any(|t| t == event_type) {
            out.push(Consumer {
                name: d.name.clone(),
                kind: match plugin.kind() {
                    crate::plugin::Kind::Reactor => "reactor",
                    crate::plugin::Kind::Projection => "projection",
                },
                reads_version: declared(&d.event_versions),
            });
        }
    }
    for h in app.handlers.list() {
        if let Some(plugin) = app.handlers.get(&h.name) {
            let reads_version = declared(&plugin.description.event_versions);
            // A handler reads whatever its streams hold; one that declares
            // the type is known to read it.
            if reads_version.is_some() {
                out.push(Consumer { name: h.name, kind: "handler", reads_version });
            }
        }
    }
    out
}
