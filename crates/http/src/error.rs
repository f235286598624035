//! Errors at the HTTP edge: every failure becomes a status and a stable,
//! dotted reason code that clients can match on. The codes are documented in
//! the README; changing one is a breaking change.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use likeness_media::MediaError;
use likeness_pipeline::PipelineError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The decision behind a refusal: scores and reasons, never pixels.
    pub decision: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), decision: None }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        } else {
            tracing::info!(code = self.code, status = self.status.as_u16(), "request refused");
        }
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(decision) = self.decision {
            body["error"]["decision"] = decision;
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request.too_large",
                "the request body is over the size limit",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid("request.invalid", r.body_text()),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "request.malformed", r.body_text()),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> ApiError {
        let message = e.to_string();
        match e {
            PipelineError::InvalidRequest { field, .. } => ApiError::invalid(
                match field {
                    "n" => "request.n_out_of_range",
                    "size" => "request.size_out_of_range",
                    "references" => "request.too_many_references",
                    "prompt" => "request.prompt_invalid",
                    "user" => "request.user_invalid",
                    _ => "request.invalid",
                },
                message,
            ),
            PipelineError::UnknownStyle(_) => ApiError::invalid("request.unknown_style", message),
            PipelineError::Reference { source, .. } => match source {
                MediaError::TooLarge { .. } => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "reference.too_large", message)
                }
                MediaError::TooManyPixels { .. } => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "reference.too_many_pixels", message)
                }
                MediaError::Unsupported => {
                    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "reference.unsupported_format", message)
                }
                MediaError::MimeMismatch { .. } => ApiError::invalid("reference.mime_mismatch", message),
                MediaError::Corrupt(_) | MediaError::Encode(_) => ApiError::invalid("reference.corrupt", message),
            },
            PipelineError::Generator(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "generator.failed", message)
            }
            PipelineError::Encode(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "output.encode_failed", message)
            }
            // Fail closed: without a signature nothing is returned.
            PipelineError::Signing(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "provenance.signing_failed", message)
            }
            PipelineError::Refused { code, decision, .. } => ApiError {
                decision: serde_json::to_value(&*decision).ok(),
                ..ApiError::new(StatusCode::FORBIDDEN, code, message)
            },
            PipelineError::VisionUnavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "vision.unavailable", message)
            }
            PipelineError::Vision(likeness_vision::VisionError::TooManyFaces { .. }) => {
                ApiError::invalid("vision.too_many_faces", message)
            }
            PipelineError::Vision(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "vision.failed", message),
        }
    }
}
