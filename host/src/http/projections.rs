//! Projection status, and waiting for a projection to catch up
//! (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use super::error::ApiError;
use super::extract::Path;
use super::schema::{
    DeadLetters, ErrorBody, Paused, ProjectionEntry, ProjectionList, ProjectionView, RebuildStarted,
    RefusedCommands, Retrying, Skipped,
};
use crate::App;
use crate::projection::Projection;
use crate::projection::history::{INTERVAL, Sample};
use axum::extract::State;
use axum::http::StatusCode;

/// A projection's status with the log's head, and its lag in events and in
/// milliseconds (how long ago the oldest event it has not applied was
/// recorded).
async fn view(app: &App, p: &Projection) -> ProjectionView {
    let status = p.status();
    let head = app.log.head();
    let lag = head.saturating_sub(status.position);
    let lag_ms = if lag == 0 {
        0
    } else {
        match app.log.recorded_at(status.position + 1).await {
            Ok(Some(at)) => (crate::db::unix_ms() - at).max(0),
            _ => 0,
        }
    };
    ProjectionView { status, head, lag, lag_ms }
}

/// Takes a sample of every projection's progress for its history; called
/// once a second.
pub async fn sample(app: &App) {
    let all = app.projections.all();
    for p in &all {
        let v = view(app, p).await;
        app.history.record(
            p.name(),
            Sample {
                at: crate::db::unix_ms(),
                position: v.status.position,
                head: v.head,
                lag: v.lag,
                lag_ms: v.lag_ms,
                events_per_second: v.status.events_per_second,
            },
        );
    }
    app.history.retain(&all.iter().map(|p| p.name().to_owned()).collect::<Vec<_>>());
}

/// A projection's recent progress.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HistoryBody {
    /// The projection.
    pub name: String,
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// Oldest first: the last ten minutes at most.
    pub samples: Vec<Sample>,
}

/// A projection's position, lag and rate over the last minutes, sampled
/// once a second (kept in memory: empty after a restart).
#[utoipa::path(
    get,
    path = "/projections/{name}/history",
    operation_id = "projection_history",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 200, description = "Its samples, oldest first", body = HistoryBody),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn history(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<HistoryBody>, ApiError> {
    if app.projections.get(&name).is_none() {
        return Err(ApiError::not_found(format!("no projection named {name:?}")));
    }
    let samples = app.history.of(&name);
    Ok(axum::Json(HistoryBody { name, interval_ms: INTERVAL.as_millis() as u64, samples }))
}

/// The path parameter naming a projection.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NameParam {
    /// The projection's name.
    #[allow(dead_code)]
    name: String,
}

/// Every projection: status, position, lag; and the plugin files that
/// failed to load.
#[utoipa::path(
    get,
    path = "/projections",
    operation_id = "list_projections",
    tag = "projections",
    responses((status = 200, description = "Every projection, then the invalid plugin files", body = ProjectionList))
)]
pub async fn list(State(app): State<Arc<App>>) -> axum::Json<ProjectionList> {
    let mut projections = Vec::new();
    for p in app.projections.all() {
        projections.push(ProjectionEntry::Loaded(Box::new(view(&app, &p).await)));
    }
    projections.extend(app.invalid_plugins().into_iter().map(ProjectionEntry::Invalid));
    axum::Json(ProjectionList { projections, head: app.log.head() })
}

/// One projection's status (or, for a plugin file that failed to load,
/// the reason).
#[utoipa::path(
    get,
    path = "/projections/{name}",
    operation_id = "get_projection",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 200, description = "Its status", body = ProjectionEntry),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<ProjectionEntry>, ApiError> {
    if let Some(p) = app.projections.get(&name) {
        return Ok(axum::Json(ProjectionEntry::Loaded(Box::new(view(&app, &p).await))));
    }
    if let Some(i) = app.invalid_plugins().into_iter().find(|i| i.name == name) {
        return Ok(axum::Json(ProjectionEntry::Invalid(i)));
    }
    Err(unknown(&name))
}

/// 404 for an unknown projection.
pub fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("no projection named {name:?}; GET /projections lists them"))
}

/// Looks up `name` and, when `min_position` is given, waits (at most
/// `wait_ms`, capped by the configured maximum) until the projection has
/// applied the log up to it; 504 if it has not by then.
pub async fn caught_up(
    app: &App,
    name: &str,
    min_position: Option<u64>,
    wait_ms: Option<u64>,
) -> Result<Arc<Projection>, ApiError> {
    let p = app.projections.get(name).ok_or_else(|| unknown(name))?;
    let Some(min) = min_position else {
        return Ok(p);
    };
    let wait = Duration::from_millis(wait_ms.unwrap_or(app.http.default_wait.as_millis() as u64))
        .min(app.http.max_wait);
    let reached = p.wait_for(min, wait).await;
    if reached < min {
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "projection {name} is at position {reached}, behind the requested min_position {min} \
                 after waiting {} ms; retry, or raise wait_ms (at most {} ms)",
                wait.as_millis(),
                app.http.max_wait.as_millis()
            ),
        )
        .with("position", reached)
        .with("min_position", min)
        .with("head", app.log.head()));
    }
    Ok(p)
}

fn loaded(app: &App, name: &str) -> Result<Arc<Projection>, ApiError> {
    app.projections.get(name).ok_or_else(|| unknown(name))
}

/// Stops applying events until resumed; survives restarts.
#[utoipa::path(
    post,
    path = "/projections/{name}/pause",
    operation_id = "pause",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 200, description = "Paused", body = Paused),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn pause(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Paused>, ApiError> {
    let p = loaded(&app, &name)?;
    p.pause();
    Ok(axum::Json(Paused { name, paused: true }))
}

/// Continues after a pause, or retries the event a failed projection
/// stopped at.
#[utoipa::path(
    post,
    path = "/projections/{name}/resume",
    operation_id = "resume",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 200, description = "Resumed", body = Paused),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn resume(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Paused>, ApiError> {
    let p = loaded(&app, &name)?;
    p.resume();
    Ok(axum::Json(Paused { name, paused: false }))
}

/// Moves the event a failed projection stopped at into its dead letters,
/// and continues.
#[utoipa::path(
    post,
    path = "/projections/{name}/skip",
    operation_id = "skip",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 200, description = "Skipped", body = Skipped),
        (status = 404, description = "No such projection", body = ErrorBody),
        (status = 409, description = "The projection is not stopped at an event", body = ErrorBody),
    )
)]
pub async fn skip(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<Skipped>, ApiError> {
    let p = loaded(&app, &name)?;
    let position = p.skip().map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(axum::Json(Skipped { name, skipped: position }))
}

/// Rebuilds the projection from position 1, blue/green: the serving build
/// keeps answering until the new one has caught up. A request while a
/// rebuild of the same plugin bytes is under way joins it (`started`:
/// false).
#[utoipa::path(
    post,
    path = "/projections/{name}/rebuild",
    operation_id = "rebuild",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 202, description = "A build is under way", body = RebuildStarted),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn rebuild(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, axum::Json<RebuildStarted>), ApiError> {
    use crate::projection::RebuildStart;
    match app.projections.rebuild(&name) {
        Ok(Some(start)) => {
            let (build, started) = match start {
                RebuildStart::Started { build } => (build, true),
                RebuildStart::AlreadyRunning { build } => (build, false),
            };
            Ok((StatusCode::ACCEPTED, axum::Json(RebuildStarted { name, rebuilding: true, started, build })))
        }
        Ok(None) => Err(unknown(&name)),
        Err(e) => Err(ApiError::internal(format!("cannot start the rebuild: {e:#}"))),
    }
}

/// A consistent copy of the projection's read model: an SQLite file with
/// its tables, its checkpoint and the hash of the plugin that built it. A
/// node started with it (`refract serve --snapshot NAME=FILE`) continues
/// from that checkpoint instead of replaying the log from position 1.
#[utoipa::path(
    get,
    path = "/projections/{name}/snapshot",
    operation_id = "snapshot",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 200, description = "The read model's file; its checkpoint and plugin hash are in the headers",
            content_type = "application/vnd.sqlite3", body = Vec<u8>,
            headers(("x-refract-position" = u64, description = "Its checkpoint"),
                    ("x-refract-plugin-hash" = String, description = "SHA-256 of the plugin that built it"))),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn snapshot(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    let p = loaded(&app, &name)?;
    let dir = app.projections.scratch_dir();
    let (file, meta) = tokio::task::spawn_blocking(move || p.snapshot(&dir))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot copy the read model: {e}")))?;
    let body =
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)));
    let disposition = format!("attachment; filename=\"{name}-{}.db\"", meta.position);
    axum::response::Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.sqlite3")
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("x-refract-position", meta.position)
        .header("x-refract-plugin-hash", meta.hash)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Most entries to list (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "super::number::optional")]
    limit: Option<u64>,
}

/// The events the projection gave up on, oldest first.
#[utoipa::path(
    get,
    path = "/projections/{name}/dead-letters",
    operation_id = "list_dead_letters",
    tag = "projections",
    params(NameParam, LimitQuery),
    responses(
        (status = 200, description = "Its dead letters", body = DeadLetters),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn dead_letters(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    super::extract::Query(q): super::extract::Query<LimitQuery>,
) -> Result<axum::Json<DeadLetters>, ApiError> {
    let p = loaded(&app, &name)?;
    let limit = super::page_limit(q.limit, 100, 1000)?;
    let p2 = p.clone();
    let dead_letters = tokio::task::spawn_blocking(move || p2.dead_letters(limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(DeadLetters { name, count: p.status().dead_letters, dead_letters }))
}

/// The commands a reactor decided that their handler refused (or that were
/// not valid at all), oldest first. The reactor went on past each.
#[utoipa::path(
    get,
    path = "/projections/{name}/refused-commands",
    operation_id = "list_refused_commands",
    tag = "projections",
    params(NameParam, LimitQuery),
    responses(
        (status = 200, description = "Its refused commands", body = RefusedCommands),
        (status = 404, description = "No such reactor", body = ErrorBody),
    )
)]
pub async fn refused_commands(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    super::extract::Query(q): super::extract::Query<LimitQuery>,
) -> Result<axum::Json<RefusedCommands>, ApiError> {
    let p = loaded(&app, &name)?;
    let Some(stats) = p.status().commands else {
        return Err(ApiError::not_found(format!(
            "{name} is a projection, not a reactor: it sends no commands"
        )));
    };
    let limit = super::page_limit(q.limit, 100, 1000)?;
    let commands = tokio::task::spawn_blocking(move || p.refused_commands(limit))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(RefusedCommands { name, count: stats.refused, commands }))
}

/// Applies every dead letter again, each on its own; those that succeed
/// leave the dead letters.
#[utoipa::path(
    post,
    path = "/projections/{name}/dead-letters/retry",
    operation_id = "retry_dead_letters",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 202, description = "The retry is under way", body = Retrying),
        (status = 404, description = "No such projection", body = ErrorBody),
    )
)]
pub async fn retry_dead_letters(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, axum::Json<Retrying>), ApiError> {
    let p = loaded(&app, &name)?;
    p.retry_dead_letters();
    Ok((StatusCode::ACCEPTED, axum::Json(Retrying { name, retrying: true })))
}

/// Rebuilds the projection into a scratch database up to the serving
/// build's checkpoint and compares the two row for row; 200 with the
/// report whether or not they agree.
#[utoipa::path(
    post,
    path = "/projections/{name}/verify",
    operation_id = "verify",
    tag = "projections",
    params(NameParam),
    responses(
        (status = 200, description = "The comparison", body = crate::projection::VerifyReport),
        (status = 404, description = "No such projection", body = ErrorBody),
        (status = 409, description = "The serving build's plugin was replaced; verify once the new build serves", body = ErrorBody),
    )
)]
pub async fn verify(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<axum::Json<crate::projection::VerifyReport>, ApiError> {
    let app2 = app.clone();
    let name2 = name.clone();
    let report = tokio::task::spawn_blocking(move || app2.projections.verify(&name2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            crate::projection::VerifyError::PluginReplaced(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            crate::projection::VerifyError::Failed(e) => {
                ApiError::internal(format!("cannot verify {name}: {e}"))
            }
        })?;
    let report = report.ok_or_else(|| unknown(&name))?;
    Ok(axum::Json(report))
}
