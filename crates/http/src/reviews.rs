//! `/v1/reviews`: the human review queue. A policy rule with `action:
//! review` refuses a request with `policy.review_required` and opens a
//! review here; a person approves or denies it; an approval lets the
//! identical request through once within 24 hours (`review_id` in the
//! resubmitted request), the output policy still running.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use likeness_codes::ErrorCode;
use likeness_store::{DecisionRecord, Kind, Resolved, Review, ReviewStatus};
use serde::{Deserialize, Serialize};

use crate::auth::TenantId;
use crate::error::ApiError;
use crate::records::format_time;
use crate::state::AppState;

/// Most reviews one listing answers.
const MAX_LISTED: i64 = 500;

#[derive(Serialize)]
pub(crate) struct ReviewView {
    id: String,
    user: String,
    request_id: String,
    status: &'static str,
    created_at: String,
    /// Scores, rules and reference hashes: what the person decides on.
    summary: serde_json::Value,
    reviewer: Option<String>,
    note: Option<String>,
    resolved_at: Option<String>,
    used_at: Option<String>,
    used_by: Option<String>,
}

impl From<Review> for ReviewView {
    fn from(r: Review) -> ReviewView {
        ReviewView {
            summary: serde_json::from_str(&r.summary).unwrap_or_default(),
            id: r.id,
            user: r.user,
            request_id: r.request_id,
            status: r.status.as_str(),
            created_at: format_time(r.created_at_ms),
            reviewer: r.reviewer,
            note: r.note,
            resolved_at: r.resolved_at_ms.map(format_time),
            used_at: r.used_at_ms.map(format_time),
            used_by: r.used_by,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct ReviewList {
    reviews: Vec<ReviewView>,
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ReviewList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::RequestInvalid, e.body_text()))?;
    let status = match q.status.as_deref() {
        None => ReviewStatus::Pending,
        Some(s) => ReviewStatus::parse(s).ok_or_else(|| {
            ApiError::new(ErrorCode::RequestInvalid, format!("status: {s:?} is not pending, approved or denied"))
        })?,
    };
    let reviews = state.store.reviews(&tenant, status, MAX_LISTED).await?;
    Ok(Json(ReviewList { reviews: reviews.into_iter().map(ReviewView::from).collect() }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::ReviewNotFound, format!("no review {id} for this app"))
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Json<ReviewView>, ApiError> {
    let review = state.store.review(&tenant, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(review.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resolution {
    /// `approve` or `deny`.
    resolution: String,
    /// Who decided: a name or id the tenant's reviewers use.
    reviewer: String,
    #[serde(default)]
    note: String,
}

/// Resolves a pending review, once; the resolution joins the decision log.
pub(crate) async fn resolve(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
    body: Result<Json<Resolution>, JsonRejection>,
) -> Result<Json<ReviewView>, ApiError> {
    let Json(body) = body?;
    let approve = match body.resolution.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(ApiError::new(
                ErrorCode::RequestInvalid,
                format!("resolution: {other:?} is not approve or deny"),
            ))
        }
    };
    let reviewer = body.reviewer.trim();
    if reviewer.is_empty() || reviewer.len() > 256 || body.note.chars().count() > 2000 {
        return Err(ApiError::new(
            ErrorCode::RequestInvalid,
            "reviewer: 1 to 256 bytes; note: at most 2000 characters",
        ));
    }
    let now = state.clock.now_ms();
    let review = state.store.review(&tenant, &id).await?.ok_or_else(|| not_found(&id))?;
    let log = DecisionRecord {
        id: format!("{id}:resolution"),
        kind: Kind::ReviewResolution,
        tenant: tenant.clone(),
        user: review.user.clone(),
        created_at_ms: now,
        action: if approve { "allow" } else { "block" }.into(),
        reason: None,
        body: serde_json::json!({ "review": id, "request_id": review.request_id, "resolution": body.resolution,
                                  "reviewer": reviewer, "note": body.note })
        .to_string(),
    };
    let resolution =
        likeness_store::Resolution { approve, reviewer: reviewer.to_string(), note: body.note.clone(), at_ms: now };
    match state.store.resolve_review(&tenant, &id, &resolution, &log).await? {
        Resolved::Now(r) => {
            tracing::info!(review = %id, resolution = %body.resolution, "review resolved");
            Ok(Json(r.into()))
        }
        Resolved::Already(r) => Err(ApiError::new(
            ErrorCode::ReviewAlreadyResolved,
            format!("review {id} was {} already", r.status.as_str()),
        )),
        Resolved::NotFound => Err(not_found(&id)),
    }
}
