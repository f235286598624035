//! `/v1/grants`: a user's permission for the app to use some library photos.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use likeness_codes::ErrorCode;
use likeness_consent::{Grant, Purpose};
use likeness_store::Revoked;
use serde::{Deserialize, Serialize};

use crate::auth::TenantId;
use crate::error::ApiError;
use crate::records::{self, Status, UserQuery};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    user: String,
    #[serde(default)]
    photos: Vec<String>,
    #[serde(default)]
    albums: Vec<String>,
    /// Backends the photos may go to; none: any configured backend.
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default = "default_purpose")]
    purpose: String,
    #[serde(default)]
    expires_at: Option<String>,
}

fn default_purpose() -> String {
    "generation".into()
}

#[derive(Serialize)]
pub(crate) struct GrantView {
    id: String,
    user: String,
    photos: Vec<String>,
    albums: Vec<String>,
    processors: Vec<String>,
    purpose: Purpose,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    status: Status,
}

impl GrantView {
    fn new(g: Grant, now_ms: i64) -> GrantView {
        let withdrawn = g.revoked_at_ms.map(|_| Status::Revoked);
        GrantView {
            status: records::status(withdrawn, g.expires_at_ms, now_ms),
            id: g.id,
            user: g.user,
            photos: g.photos,
            albums: g.albums,
            processors: g.processors,
            purpose: g.purpose,
            created_at: records::format_time(g.created_at_ms),
            expires_at: g.expires_at_ms.map(records::format_time),
            revoked_at: g.revoked_at_ms.map(records::format_time),
        }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::GrantNotFound, format!("no grant {id} for this app"))
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    body: Result<Json<GrantBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let purpose = Purpose::parse(&body.purpose).ok_or_else(|| {
        ApiError::new(ErrorCode::RequestInvalid, format!("purpose: {:?} is not known (generation)", body.purpose))
    })?;
    // A misspelt backend would quietly keep the photos from every backend
    // but `builtin`: name only what is configured.
    if let Some(unknown) =
        body.processors.iter().find(|p| p.as_str() != likeness_consent::BUILTIN && state.backends.get(p).is_none())
    {
        let known: Vec<&str> = std::iter::once(likeness_consent::BUILTIN).chain(state.backends.names()).collect();
        return Err(ApiError::new(
            ErrorCode::RequestInvalid,
            format!("processors: no backend {unknown:?}; the configured ones are: {}", known.join(", ")),
        ));
    }
    let now = state.clock.now_ms();
    let grant = Grant {
        id: records::new_id("grt"),
        tenant,
        user: body.user,
        photos: body.photos,
        albums: body.albums,
        processors: body.processors,
        purpose,
        created_at_ms: now,
        expires_at_ms: records::parse_time("expires_at", body.expires_at.as_deref())?,
        revoked_at_ms: None,
    };
    likeness_consent::validate_grant(&grant, now).map_err(records::invalid_record)?;
    state.store.put_grant(&grant).await?;
    tracing::info!(grant = %grant.id, photos = grant.photos.len(), albums = grant.albums.len(), "grant created");
    Ok(records::created(format!("/v1/grants/{}", grant.id), GrantView::new(grant, now)))
}

#[derive(Serialize)]
pub(crate) struct GrantList {
    grants: Vec<GrantView>,
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<GrantList>, ApiError> {
    let user = records::user_query(query)?;
    let now = state.clock.now_ms();
    let grants = state.store.grants_for_user(&tenant, &user).await?;
    Ok(Json(GrantList { grants: grants.into_iter().map(|g| GrantView::new(g, now)).collect() }))
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Json<GrantView>, ApiError> {
    let grant = state.store.grant(&tenant, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(GrantView::new(grant, state.clock.now_ms())))
}

/// Revokes at once: the next request that relies on the grant, through any
/// replica, is refused. Revoking twice is not an error.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let outcome = state.store.revoke_grant(&tenant, &id, state.clock.now_ms()).await?;
    if outcome == Revoked::Now {
        tracing::info!(grant = %id, "grant revoked");
    }
    records::withdrawn(outcome, || not_found(&id))
}
