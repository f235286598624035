//! Errors at the HTTP edge: every failure becomes a status and a stable,
//! dotted reason code that clients can match on. The codes are documented in
//! the README; changing one is a breaking change.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use likeness_consent::ConsentError;
use likeness_media::MediaError;
use likeness_photos::PhotoError;
use likeness_pipeline::{EnrollmentProblem, PipelineError};
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

    /// A library reference (1-based `index`) the provider did not deliver.
    pub fn photo(index: usize, e: PhotoError) -> ApiError {
        let message = format!("reference {index}: {e}");
        let (status, code) = match e {
            PhotoError::HostNotAllowed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "photos.host_not_allowed"),
            PhotoError::InvalidUrl(_) | PhotoError::BadAllowEntry(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "photos.invalid_url")
            }
            PhotoError::BaseUrlMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "photos.base_url_mismatch"),
            PhotoError::InvalidToken => (StatusCode::UNPROCESSABLE_ENTITY, "photos.invalid_token"),
            PhotoError::NotConfigured => (StatusCode::UNPROCESSABLE_ENTITY, "photos.not_configured"),
            PhotoError::Rejected { .. } => (StatusCode::BAD_GATEWAY, "photos.rejected"),
            PhotoError::BadAnswer(_) => (StatusCode::BAD_GATEWAY, "photos.unavailable"),
            PhotoError::Unauthorized { .. } => (StatusCode::FORBIDDEN, "photos.unauthorized"),
            PhotoError::NotFound { .. } => (StatusCode::NOT_FOUND, "photos.not_found"),
            PhotoError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "photos.too_large"),
            PhotoError::RedirectElsewhere { .. } | PhotoError::Unavailable(_) => {
                (StatusCode::BAD_GATEWAY, "photos.unavailable")
            }
        };
        ApiError::new(status, code, message)
    }
}

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> ApiError {
        let code = match e {
            ConsentError::PhotoNotGranted { .. } => "consent.photo_not_granted",
            ConsentError::GrantUnknown(_) => "consent.grant_unknown",
            ConsentError::GrantOtherUser { .. } => "consent.grant_other_user",
            ConsentError::GrantWrongPurpose { .. } => "consent.grant_wrong_purpose",
            ConsentError::GrantExpired(_) => "consent.grant_expired",
            ConsentError::GrantRevoked(_) => "consent.grant_revoked",
            ConsentError::SubjectUnknown(_) => "consent.subject_unknown",
            ConsentError::SubjectOtherUser(_) => "consent.subject_other_user",
            ConsentError::SubjectExpired(_) => "consent.subject_expired",
            ConsentError::SubjectRevoked(_) => "consent.subject_revoked",
        };
        ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
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
            // Fail closed: an output whose mark cannot be read back is not returned.
            PipelineError::Watermark { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "watermark.failed", message)
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
            PipelineError::Enrollment { problem, .. } => ApiError::invalid(
                match problem {
                    EnrollmentProblem::NoFace => "subject.enroll_no_face",
                    EnrollmentProblem::SeveralFaces(_) => "subject.enroll_several_faces",
                    EnrollmentProblem::PublicFigure(_) => "subject.enroll_public_figure",
                    EnrollmentProblem::PossibleMinor(_) => "subject.enroll_possible_minor",
                    EnrollmentProblem::DifferentPerson(_) => "subject.enroll_different_people",
                },
                message,
            ),
        }
    }
}
