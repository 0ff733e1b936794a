//! The outbox's publisher and the inbox's ingests, as they stand.

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::extract::{Path, Query};
use crate::App;
use crate::inbox::{DeadLetter, IngestStatus};
use crate::outbox::PublisherStatus;

/// `GET /publishers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Publishers {
    /// The outbox's publisher, when the log is published (`--publish`).
    pub publishers: Vec<PublisherStatus>,
}

/// The outbox: where the log is published, how far, the lag.
#[utoipa::path(
    get,
    path = "/publishers",
    operation_id = "list_publishers",
    tag = "integration",
    responses((status = 200, description = "The publishers", body = Publishers))
)]
pub async fn publishers(State(app): State<Arc<App>>) -> axum::Json<Publishers> {
    axum::Json(Publishers { publishers: app.publisher.iter().map(|p| p.status()).collect() })
}

/// `GET /ingests`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ingests {
    /// Every ingest (`--ingest`).
    pub ingests: Vec<IngestStatus>,
}

/// The inbox: each ingest's stream, consumer, target and counts.
#[utoipa::path(
    get,
    path = "/ingests",
    operation_id = "list_ingests",
    tag = "integration",
    responses((status = 200, description = "The ingests", body = Ingests))
)]
pub async fn ingests(State(app): State<Arc<App>>) -> axum::Json<Ingests> {
    let ingests = app.ingests.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|i| i.status()).collect();
    axum::Json(Ingests { ingests })
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Most dead letters to list (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "super::number::optional")]
    limit: Option<u64>,
}

/// `GET /ingests/{name}/dead-letters`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestDeadLetters {
    pub name: String,
    /// How many it has in all.
    pub count: u64,
    /// The first, by stream sequence.
    pub dead_letters: Vec<DeadLetter>,
}

/// The messages an ingest gave up on, with the reasons.
#[utoipa::path(
    get,
    path = "/ingests/{name}/dead-letters",
    operation_id = "list_ingest_dead_letters",
    tag = "integration",
    params(("name" = String, Path, description = "The ingest"), LimitQuery),
    responses(
        (status = 200, description = "Its dead letters", body = IngestDeadLetters),
        (status = 404, description = "No such ingest", body = super::schema::ErrorBody),
    )
)]
pub async fn ingest_dead_letters(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<axum::Json<IngestDeadLetters>, ApiError> {
    let limit = super::page_limit(q.limit, 100, 1000)?;
    let ingest = app
        .ingests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|i| i.status().name == name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no ingest named {name:?}; GET /ingests lists them")))?;
    let (n, dead) = (name.clone(), ingest.dead.clone());
    let (count, dead_letters) = tokio::task::spawn_blocking(move || {
        Ok::<_, rusqlite::Error>((dead.count(&n)?, dead.list(&n, limit)?))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(IngestDeadLetters { name, count, dead_letters }))
}
