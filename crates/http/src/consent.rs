//! Consent endpoints (grants, subjects, receipts) and the consent step of a
//! generation: load the records, ask the consent rules, fetch library photos.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use likeness_consent::{self as consent, ConsentError, Grant, Purpose, Relationship, Subject};
use likeness_pipeline::ReferenceInput;
use likeness_store::Revoked;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::wire::{reference_input, UploadBody};
use crate::{ApiError, AppState, TenantId};

pub(crate) fn now_ms() -> i64 {
    likeness_store::now_ms()
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

pub(crate) fn receipt_id() -> String {
    new_id("rcpt")
}

fn parse_time(field: &'static str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let t = time::OffsetDateTime::parse(v, &Rfc3339)
        .map_err(|e| ApiError::invalid("request.invalid", format!("{field}: {v:?} is not an RFC 3339 time ({e})")))?;
    Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn storage_error(e: likeness_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "storage failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage.unavailable", "the database is unavailable; retry later")
}

fn invalid_record(e: consent::InvalidRecord) -> ApiError {
    ApiError::invalid("request.invalid", e.to_string())
}

#[derive(Deserialize)]
pub(crate) struct UserQuery {
    user: String,
}

fn user_query(q: Result<Query<UserQuery>, QueryRejection>) -> Result<String, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::invalid("request.invalid", "add ?user=<the app's user id>"))?;
    Ok(q.user)
}

fn created(location: String, body: impl Serialize) -> Response {
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response()
}

// ---- grants ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    user: String,
    #[serde(default)]
    photos: Vec<String>,
    #[serde(default)]
    albums: Vec<String>,
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
    purpose: &'static str,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    status: &'static str,
}

fn grant_view(g: Grant) -> GrantView {
    let now = now_ms();
    let status = if g.revoked_at_ms.is_some() {
        "revoked"
    } else if g.expires_at_ms.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    GrantView {
        id: g.id,
        user: g.user,
        photos: g.photos,
        albums: g.albums,
        purpose: g.purpose.as_str(),
        created_at: format_time(g.created_at_ms),
        expires_at: g.expires_at_ms.map(format_time),
        revoked_at: g.revoked_at_ms.map(format_time),
        status,
    }
}

pub(crate) async fn create_grant(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    body: Result<Json<GrantBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let purpose = Purpose::parse(&body.purpose).ok_or_else(|| {
        ApiError::invalid("request.invalid", format!("purpose: {:?} is not known (generation)", body.purpose))
    })?;
    let now = now_ms();
    let grant = Grant {
        id: new_id("grt"),
        tenant,
        user: body.user,
        photos: body.photos,
        albums: body.albums,
        purpose,
        created_at_ms: now,
        expires_at_ms: parse_time("expires_at", body.expires_at.as_deref())?,
        revoked_at_ms: None,
    };
    consent::validate_grant(&grant, now).map_err(invalid_record)?;
    state.store.put_grant(&grant).await.map_err(storage_error)?;
    tracing::info!(grant = %grant.id, photos = grant.photos.len(), albums = grant.albums.len(), "grant created");
    Ok(created(format!("/v1/grants/{}", grant.id), grant_view(grant)))
}

pub(crate) async fn list_grants(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = user_query(query)?;
    let grants = state.store.grants_for_user(&tenant, &user).await.map_err(storage_error)?;
    Ok(Json(serde_json::json!({ "grants": grants.into_iter().map(grant_view).collect::<Vec<_>>() })))
}

fn grant_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "grant.not_found", format!("no grant {id} for this app"))
}

pub(crate) async fn get_grant(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Json<GrantView>, ApiError> {
    let grant = state.store.grant(&tenant, &id).await.map_err(storage_error)?.ok_or_else(|| grant_not_found(&id))?;
    Ok(Json(grant_view(grant)))
}

/// Revokes at once: the next request that relies on the grant, through any
/// replica, is refused. Revoking twice is not an error.
pub(crate) async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.store.revoke_grant(&tenant, &id, now_ms()).await.map_err(storage_error)? {
        Revoked::NotFound => Err(grant_not_found(&id)),
        Revoked::Now | Revoked::Already => {
            tracing::info!(grant = %id, "grant revoked");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

// ---- subjects --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubjectBody {
    user: String,
    name: String,
    relationship: String,
    #[serde(default)]
    minor: bool,
    #[serde(default)]
    guardian_consent: bool,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    enroll: Vec<EnrollBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum EnrollBody {
    Upload(UploadBody),
}

#[derive(Serialize)]
pub(crate) struct SubjectView {
    id: String,
    user: String,
    name: String,
    relationship: &'static str,
    minor: bool,
    guardian_consent: bool,
    created_at: String,
    expires_at: Option<String>,
    deleted_at: Option<String>,
    /// How many face embeddings are enrolled (the embeddings never leave).
    enrolled_faces: usize,
    /// `active`, `expired` or `deleted`.
    status: &'static str,
}

fn subject_view(s: Subject) -> SubjectView {
    let now = now_ms();
    let status = if s.deleted_at_ms.is_some() {
        "deleted"
    } else if s.expires_at_ms.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    SubjectView {
        id: s.id,
        user: s.user,
        name: s.name,
        relationship: s.relationship.as_str(),
        minor: s.minor,
        guardian_consent: s.guardian_consent,
        created_at: format_time(s.created_at_ms),
        expires_at: s.expires_at_ms.map(format_time),
        deleted_at: s.deleted_at_ms.map(format_time),
        enrolled_faces: s.embeddings.len(),
        status,
    }
}

pub(crate) async fn create_subject(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    body: Result<Json<SubjectBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let relationship = Relationship::parse(&body.relationship).ok_or_else(|| {
        ApiError::invalid(
            "request.invalid",
            format!("relationship: {:?} is not one of self, family, friend, other", body.relationship),
        )
    })?;
    if body.enroll.len() > consent::MAX_ENROLLMENT_PHOTOS {
        return Err(ApiError::invalid(
            "request.invalid",
            format!("enroll: at most {} photos", consent::MAX_ENROLLMENT_PHOTOS),
        ));
    }
    let now = now_ms();
    let mut subject = Subject {
        id: new_id("sub"),
        tenant,
        user: body.user,
        name: body.name,
        relationship,
        minor: body.minor,
        guardian_consent: body.guardian_consent,
        created_at_ms: now,
        expires_at_ms: parse_time("expires_at", body.expires_at.as_deref())?,
        deleted_at_ms: None,
        embeddings: Vec::new(),
    };
    consent::validate_subject(&subject, now).map_err(invalid_record)?;
    let photos: Vec<ReferenceInput> = body
        .enroll
        .into_iter()
        .enumerate()
        .map(|(i, EnrollBody::Upload(u))| reference_input(i, u))
        .collect::<Result<_, _>>()?;
    if !photos.is_empty() {
        // Enrollment runs the vision models: it takes a CPU slot like a generation.
        let minor = subject.minor;
        let pipeline = state.pipeline.clone();
        subject.embeddings = state.run_blocking(move || pipeline.enroll(photos, minor)).await??;
    }
    state.store.put_subject(&subject).await.map_err(storage_error)?;
    tracing::info!(subject = %subject.id, faces = subject.embeddings.len(), "subject created");
    Ok(created(format!("/v1/subjects/{}", subject.id), subject_view(subject)))
}

pub(crate) async fn list_subjects(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = user_query(query)?;
    let subjects = state.store.subjects_for_user(&tenant, &user).await.map_err(storage_error)?;
    Ok(Json(serde_json::json!({ "subjects": subjects.into_iter().map(subject_view).collect::<Vec<_>>() })))
}

fn subject_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "subject.not_found", format!("no subject {id} for this app"))
}

pub(crate) async fn get_subject(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Json<SubjectView>, ApiError> {
    let s = state.store.subject(&tenant, &id).await.map_err(storage_error)?.ok_or_else(|| subject_not_found(&id))?;
    Ok(Json(subject_view(s)))
}

/// Deletes the subject's embeddings (and name) at once; the id stays so
/// receipts that name it still resolve, and any request declaring it is
/// refused from now on.
pub(crate) async fn delete_subject(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.store.delete_subject(&tenant, &id, now_ms()).await.map_err(storage_error)? {
        Revoked::NotFound => Err(subject_not_found(&id)),
        Revoked::Now | Revoked::Already => {
            tracing::info!(subject = %id, "subject deleted");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

// ---- receipts --------------------------------------------------------------

pub(crate) async fn get_receipt(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = state.store.receipt(&tenant, &id).await.map_err(storage_error)?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "receipt.not_found", format!("no receipt {id} for this app"))
    })?;
    let mut body: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("stored receipt unreadable: {e}"))
    })?;
    body["request_id"] = r.request_id.into();
    body["user"] = r.user.into();
    body["created_at"] = format_time(r.created_at_ms).into();
    Ok(Json(body))
}

// ---- the consent step of a generation --------------------------------------

/// The grant and subjects a generation relies on, checked now.
pub(crate) struct CheckedConsent {
    pub references: Vec<consent::ReferenceConsent>,
    pub subjects: Vec<Subject>,
}

/// Loads the grant and the declared subjects for this tenant and checks
/// them against the request. Nothing is cached: each request asks the
/// database, so revocations hold across replicas at once.
pub(crate) async fn check_generation(
    state: &AppState,
    tenant: &str,
    user: &str,
    grant_id: Option<&str>,
    subject_ids: &[String],
    sources: &[consent::ReferenceSource],
) -> Result<CheckedConsent, ApiError> {
    let now = now_ms();
    let grant = match grant_id {
        Some(id) => Some(
            state
                .store
                .grant(tenant, id)
                .await
                .map_err(storage_error)?
                .ok_or_else(|| ConsentError::GrantUnknown(id.to_string()))?,
        ),
        None => None,
    };
    let references = consent::check_references(grant.as_ref(), user, now, sources)?;
    let subjects = state.store.subjects(tenant, subject_ids).await.map_err(storage_error)?;
    consent::check_subjects(subject_ids, &subjects, user, now)?;
    Ok(CheckedConsent { references, subjects })
}

/// The same checks again, on the records as the store reads them inside the
/// transaction that records the generation.
pub(crate) fn recheck(
    user: String,
    subject_ids: Vec<String>,
) -> impl Fn(Option<&Grant>, &[Subject]) -> Result<(), ConsentError> + Send + Sync {
    move |grant, subjects| {
        let now = now_ms();
        if let Some(g) = grant {
            g.check_usable(&user, Purpose::Generation, now)?;
        }
        consent::check_subjects(&subject_ids, subjects, &user, now)
    }
}
