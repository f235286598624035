//! Reading large request bodies: within a size limit and a time limit, and
//! their JSON and base64 decoded off the async workers, so a few large
//! bodies cannot stall every other request.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt as _;
use likeness_codes::ErrorCode;

use crate::error::ApiError;

/// Whether the request says its body is over `limit` bytes: refusing it
/// then costs nothing, but closes the connection under a client that writes
/// its whole body before reading the answer (fine for anonymous uploads,
/// not for a generation whose client should read its 413).
pub(crate) fn declared_over(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// Reads `body` whole, cut when it passes `limit` (`too_large`) or takes
/// over `timeout`. Past the limit it goes on reading, and dropping, up to
/// [`LINGER_BYTES`] for at most [`LINGER`] before answering: a client that
/// writes its whole body before reading the answer then reads its 413
/// instead of a connection closed under it (as a server's lingering close
/// does).
pub(crate) async fn read(
    mut body: Body,
    limit: usize,
    timeout: Duration,
    too_large: impl Fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    let whole = async {
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| ApiError::new(ErrorCode::RequestMalformed, format!("the body could not be read: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > limit {
                    return Ok(None);
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(Some(Bytes::from(bytes)))
    };
    match tokio::time::timeout(timeout, whole).await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => {
            linger(body).await;
            Err(too_large())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(timed_out(timeout)),
    }
}

/// How much of a body past its limit is still read (and dropped).
const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// How long that may take.
const LINGER: Duration = Duration::from_secs(2);

async fn linger(mut body: Body) {
    let drain = async {
        let mut dropped = 0;
        while dropped <= LINGER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => dropped += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A body (or form) that did not arrive in time.
pub(crate) fn timed_out(timeout: Duration) -> ApiError {
    ApiError::new(ErrorCode::RequestBodyTimeout, format!("the body did not arrive within {} s", timeout.as_secs()))
}

/// A JSON body (`application/json` or any `+json` type, as axum's `Json`
/// accepts) of at most `max_body_bytes`, read within the body timeout and
/// up to the limit before a 413.
pub(crate) async fn read_json(
    state: &crate::state::AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let media = media_type(headers);
    if !(media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))) {
        return Err(not_json());
    }
    let limit = state.config.max_body_bytes;
    read(body, limit, state.config.server.body_timeout, || {
        ApiError::new(ErrorCode::RequestTooLarge, "the request body is over the size limit")
    })
    .await
}

/// The most a public JSON body (a URL to verify, feedback) may hold.
const MAX_SMALL_BODY: usize = 16 * 1024;

/// A small JSON body from anyone (`application/json` only): at most
/// [`MAX_SMALL_BODY`] bytes, within the resolver's upload timeout.
pub(crate) async fn read_small_json<T: serde::de::DeserializeOwned>(
    state: &crate::state::AppState,
    req: axum::extract::Request,
) -> Result<T, ApiError> {
    if media_type(req.headers()) != "application/json" {
        return Err(not_json());
    }
    let timeout = state.config.resolver.upload_timeout;
    let body = read(req.into_body(), MAX_SMALL_BODY, timeout, || {
        ApiError::new(ErrorCode::RequestTooLarge, format!("this body is at most {MAX_SMALL_BODY} bytes"))
    })
    .await?;
    let axum::Json(value) = axum::Json::<T>::from_bytes(&body)?;
    Ok(value)
}

fn not_json() -> ApiError {
    ApiError::new(ErrorCode::RequestUnsupportedMediaType, "send the body as JSON with Content-Type: application/json")
}

/// The request's media type, lower case, without parameters (empty when
/// there is none).
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Runs CPU work of a request (parsing a large body, encoding a large
/// answer) on a blocking thread. Bounded by admission: only admitted
/// requests get here.
pub(crate) async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(ApiError::task_failed)?
}
