//! Errors at the HTTP edge: every failure becomes an [`ErrorCode`] from the
//! registry, whose status and name the client sees. Messages explain; codes
//! are what clients match on.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use likeness_codes::{ErrorCode, Reason};
use likeness_consent::ConsentError;
use likeness_photos::PhotoError;
use likeness_pipeline::PipelineError;
use likeness_store::StoreError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub code: Reason,
    pub message: String,
    /// The decision behind a refusal: scores and reasons, never pixels.
    /// Boxed, with the review, so errors stay small on the common path.
    pub decision: Option<Box<serde_json::Value>>,
    /// The review a `policy.review_required` refusal opened.
    pub review_id: Option<Box<str>>,
}

impl ApiError {
    pub fn new(code: impl Into<Reason>, message: impl Into<String>) -> ApiError {
        ApiError { code: code.into(), message: message.into(), decision: None, review_id: None }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A library reference (1-based `index`) the provider did not deliver.
    pub fn photo(index: usize, e: PhotoError) -> ApiError {
        ApiError::new(e.code(), format!("reference {index}: {e}"))
    }

    /// Work on a blocking thread that panicked or was cancelled.
    pub fn task_failed(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::Internal, format!("the request task failed: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
        } else {
            tracing::info!(code = %self.code, status = status.as_u16(), "request refused");
        }
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        // Every error names its request, so a client's report finds the log line.
        if let Some(id) = crate::request_id::current() {
            body["error"]["request_id"] = id.into();
        }
        if let Some(review) = self.review_id {
            body["error"]["review_id"] = review.as_ref().into();
        }
        if let Some(decision) = self.decision {
            body["error"]["decision"] = *decision;
        }
        let mut resp = (status, Json(body)).into_response();
        resp.extensions_mut().insert(crate::metrics::ErrorReason(self.code));
        resp
    }
}

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> ApiError {
        let decision = e.decision().and_then(|d| serde_json::to_value(d).ok()).map(Box::new);
        ApiError { decision, ..ApiError::new(e.code(), e.to_string()) }
    }
}

/// The one way a database failure reaches a client: 503, logged with the
/// cause, which the client does not see.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "storage failed");
        ApiError::new(ErrorCode::StorageUnavailable, "the database is unavailable; retry later")
    }
}

/// A backend's failure: its code, and a message naming the backend (never
/// its credentials).
impl From<likeness_backends::BackendError> for ApiError {
    fn from(e: likeness_backends::BackendError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(ErrorCode::RequestTooLarge, "the request body is over the size limit")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                ErrorCode::RequestUnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::new(ErrorCode::RequestInvalid, r.body_text()),
            _ => ApiError::new(ErrorCode::RequestMalformed, r.body_text()),
        }
    }
}
