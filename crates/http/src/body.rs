//! Reading large request bodies: within a size limit and a time limit, and
//! their JSON and base64 decoded off the async workers, so a few large
//! bodies cannot stall every other request.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use likeness_codes::ErrorCode;

use crate::error::ApiError;

/// Reads `body` whole: refused at once when its declared length is over
/// `limit`, cut when it passes it (`too_large`) or takes over `timeout`.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
    too_large: impl Fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    read_within(body, limit, timeout, too_large).await
}

/// The same without looking at the declared length first: the body is read
/// up to the limit before a refusal, so a client that writes its whole body
/// before reading the answer still reads the 413 (the connection is not
/// closed under it).
async fn read_within(
    body: Body,
    limit: usize,
    timeout: Duration,
    too_large: impl Fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::new(ErrorCode::RequestMalformed, format!("the body could not be read: {e}"))),
        Err(_) => Err(ApiError::new(
            ErrorCode::RequestBodyTimeout,
            format!("the body did not arrive within {} s", timeout.as_secs()),
        )),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A JSON body of at most `max_body_bytes`, read within the body timeout.
pub(crate) async fn read_json(
    state: &crate::state::AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::new(
            ErrorCode::RequestUnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    let limit = state.config.max_body_bytes;
    read_within(body, limit, state.config.server.body_timeout, || {
        ApiError::new(ErrorCode::RequestTooLarge, "the request body is over the size limit")
    })
    .await
}

/// `application/json` or any `+json` type, as axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Runs CPU work of a request (parsing a large body, encoding a large
/// answer) on a blocking thread. Bounded by admission: only admitted
/// requests get here.
pub(crate) async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(ApiError::task_failed)?
}
