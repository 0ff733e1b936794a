//! Extractors that reject with the JSON error body instead of axum's plain
//! text, keeping axum's status codes (400, 413, 415, 422), and 408 for a
//! body that stopped arriving.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::{DeserializeOwned, Error as _};

use super::error::ApiError;

/// `axum::Json` with JSON errors. Bodies that are not valid JSON or do not
/// fit the expected shape are 400 (axum's 422 for shape errors is kept for
/// invalid events only, which the handlers report themselves).
///
/// A body is parsed once, straight into `T`; only a body that fails is parsed
/// again by `axum::Json`, whose error names the path of the bad value
/// (`events[3].type: ...`). Tracking that path for every value costs a
/// large append more than the parse itself.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(Default::default())));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        // One UTF-8 check of the whole body, so the parser need not check
        // each string and raw value again.
        let parsed =
            std::str::from_utf8(&bytes).map_err(serde_json::Error::custom).and_then(serde_json::from_str);
        match parsed {
            Ok(v) => Ok(Json(v)),
            Err(fast) => match axum::Json::<T>::from_bytes(&bytes) {
                Ok(axum::Json(v)) => Ok(Json(v)),
                Err(rejection) => {
                    tracing::trace!("JSON body rejected: {fast}");
                    Err(json_rejection(rejection))
                }
            },
        }
    }
}

/// Whether the request says its body is JSON: `application/json` or
/// `application/<anything>+json`, parameters (`; charset=utf-8`) allowed,
/// as `axum::Json` decides.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype.get(subtype.len() - 5..).is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

/// A body that could not be read: too large, cut off, or too slow (the
/// server's body timeout, see `serve`).
fn body_rejection(r: BytesRejection) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&r);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body stopped arriving for longer than the server waits (--client-timeout-secs)",
            );
        }
        cause = e.source();
    }
    rejected(r.status(), r.body_text())
}

fn json_rejection(r: JsonRejection) -> ApiError {
    rejected(r.status(), r.body_text())
}

fn rejected(status: StatusCode, text: String) -> ApiError {
    let status = match status {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        s => s,
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "request body is larger than the configured limit (--max-body)".to_owned()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "send the body as JSON with `Content-Type: application/json`".to_owned()
        }
        _ => text,
    };
    ApiError::new(status, message)
}

/// `axum::extract::Query` with JSON errors.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::bad_request(r.body_text()))
            }
            Err(r) => Err(ApiError::new(r.status(), r.body_text())),
        }
    }
}

/// `axum::extract::Path` with JSON errors.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(r) => Err(ApiError::bad_request(r.body_text())),
        }
    }
}
