//! `/v1/receipts/{id}`: what a generation relied on, as stored with it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use likeness_codes::ErrorCode;

use crate::auth::TenantId;
use crate::error::ApiError;
use crate::records::format_time;
use crate::state::AppState;

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = state
        .store
        .receipt(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ReceiptNotFound, format!("no receipt {id} for this app")))?;
    let mut body: serde_json::Value = serde_json::from_str(&r.body)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("stored receipt unreadable: {e}")))?;
    body["request_id"] = r.request_id.into();
    body["user"] = r.user.into();
    body["created_at"] = format_time(r.created_at_ms).into();
    Ok(Json(body))
}
