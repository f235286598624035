//! The OpenAI-compatible front door: `POST /v1/images/generations` (JSON)
//! and `POST /v1/images/edits` (multipart), so apps that use an OpenAI SDK
//! change only the base URL. The personalization rides in headers
//! (`X-Likeness-User`, `-Grant`, `-Subjects`, `-Review`); the request then
//! takes the same path as `/v1/generations`. Answers are in OpenAI's shape,
//! errors too (`{"error": {"message", "type", "param", "code"}}`, our stable
//! code in `code`), with the request and receipt ids in headers.

mod wire;

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use likeness_codes::ErrorCode;

use crate::admission::Admitted;
use crate::auth::TenantId;
use crate::error::ApiError;
use crate::generations;
use crate::request_id::RequestId;
use crate::state::AppState;
use wire::{EditForm, GenerationsBody, ImagesResponse, Personal};

pub(crate) async fn generations(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(admitted): Extension<Admitted>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = crate::body::read_json(&state, &headers, body).await?;
    let Json(body) = crate::body::off_workers(move || Ok(Json::<GenerationsBody>::from_bytes(&bytes)?)).await?;
    let personal = Personal::from_headers(&headers, body.user.as_deref())?;
    let order = body.generation(request_id, personal, &state)?;
    answer(&state, tenant, order, admitted).await
}

pub(crate) async fn edits(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    Extension(admitted): Extension<Admitted>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = form.map_err(|e| match e {
        // Not a form at all (another content type, or no boundary): the
        // body's type is what is wrong, as for JSON sent to a JSON route.
        axum::extract::multipart::MultipartRejection::InvalidBoundary(_) => ApiError::new(
            ErrorCode::RequestUnsupportedMediaType,
            "send the edit as a multipart/form-data form, as OpenAI's API takes it",
        ),
        other => ApiError::new(ErrorCode::RequestMalformed, other.body_text()),
    })?;
    let form = EditForm::read(form, state.pipeline.limits().max_references).await?;
    let personal = Personal::from_headers(&headers, form.common.user.as_deref())?;
    let order = form.into_order(request_id, personal, &state)?;
    answer(&state, tenant, order, admitted).await
}

async fn answer(
    state: &AppState,
    tenant: String,
    order: generations::Order,
    admitted: Admitted,
) -> Result<Response, ApiError> {
    let outcome = generations::generate(state, tenant, order, admitted).await?;
    let receipt = outcome.decision.consent.id.clone();
    let request_id = outcome.request_id.clone();
    let answer = crate::body::off_workers(move || {
        serde_json::to_vec(&ImagesResponse::from(outcome)).map_err(ApiError::task_failed)
    })
    .await?;
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], answer).into_response();
    for (name, value) in [("x-likeness-request-id", request_id), ("x-likeness-receipt", receipt)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    Ok(resp)
}

/// Largest error body rewritten (errors are small; anything larger passes).
const MAX_ERROR_BYTES: usize = 1024 * 1024;

/// Middleware on the OpenAI routes: every error, auth and body limits
/// included, in OpenAI's shape, so SDKs raise their usual exceptions with
/// our code in `.code`.
pub(crate) async fn openai_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if status.is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ERROR_BYTES).await else {
        return (status, "error").into_response();
    };
    let Ok(ours) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let code = ours["error"]["code"].as_str().unwrap_or("internal").to_string();
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    let mut error = serde_json::json!({
        "message": ours["error"]["message"],
        "type": kind,
        "param": wire::param_of(&code),
        "code": code,
    });
    for extra in ["decision", "review_id", "request_id"] {
        if !ours["error"][extra].is_null() {
            error[extra] = ours["error"][extra].clone();
        }
    }
    let body = serde_json::json!({ "error": error }).to_string();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    // OpenAI's SDKs retry 408, 409, 429 and 5xx unless told: only a busy
    // gateway or backend is worth another try; a refusal will not change.
    let retry = matches!(status.as_u16(), 429 | 503 | 504);
    parts.headers.insert("x-should-retry", HeaderValue::from_static(if retry { "true" } else { "false" }));
    Response::from_parts(parts, Body::from(body))
}
