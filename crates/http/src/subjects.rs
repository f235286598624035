//! `/v1/subjects`: people whose likeness a user may use, with their
//! enrolled face embeddings (never the photos).

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use likeness_codes::ErrorCode;
use likeness_consent::{Relationship, Subject, MAX_ENROLLMENT_PHOTOS};
use likeness_pipeline::ReferenceInput;
use likeness_store::Revoked;
use serde::{Deserialize, Serialize};

use crate::auth::TenantId;
use crate::error::ApiError;
use crate::records::{self, Status, UserQuery};
use crate::state::AppState;
use crate::upload::UploadBody;

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
    relationship: Relationship,
    minor: bool,
    guardian_consent: bool,
    created_at: String,
    expires_at: Option<String>,
    deleted_at: Option<String>,
    /// How many face embeddings are enrolled (the embeddings never leave).
    enrolled_faces: usize,
    status: Status,
}

impl SubjectView {
    fn new(s: Subject, now_ms: i64) -> SubjectView {
        let withdrawn = s.deleted_at_ms.map(|_| Status::Deleted);
        SubjectView {
            status: records::status(withdrawn, s.expires_at_ms, now_ms),
            enrolled_faces: s.embeddings.len(),
            id: s.id,
            user: s.user,
            name: s.name,
            relationship: s.relationship,
            minor: s.minor,
            guardian_consent: s.guardian_consent,
            created_at: records::format_time(s.created_at_ms),
            expires_at: s.expires_at_ms.map(records::format_time),
            deleted_at: s.deleted_at_ms.map(records::format_time),
        }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::SubjectNotFound, format!("no subject {id} for this app"))
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    body: Result<Json<SubjectBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let relationship = Relationship::parse(&body.relationship).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RequestInvalid,
            format!("relationship: {:?} is not one of self, family, friend, other", body.relationship),
        )
    })?;
    if body.enroll.len() > MAX_ENROLLMENT_PHOTOS {
        return Err(ApiError::new(
            ErrorCode::RequestInvalid,
            format!("enroll: at most {MAX_ENROLLMENT_PHOTOS} photos"),
        ));
    }
    let now = state.clock.now_ms();
    let mut subject = Subject {
        id: records::new_id("sub"),
        tenant,
        user: body.user,
        name: body.name,
        relationship,
        minor: body.minor,
        guardian_consent: body.guardian_consent,
        created_at_ms: now,
        expires_at_ms: records::parse_time("expires_at", body.expires_at.as_deref())?,
        deleted_at_ms: None,
        embeddings: Vec::new(),
    };
    likeness_consent::validate_subject(&subject, now).map_err(records::invalid_record)?;
    let photos: Vec<ReferenceInput> =
        body.enroll.into_iter().enumerate().map(|(i, EnrollBody::Upload(u))| u.decode(i)).collect::<Result<_, _>>()?;
    if !photos.is_empty() {
        // Enrollment runs the vision models: it takes a CPU slot like a generation.
        let minor = subject.minor;
        let pipeline = state.pipeline.clone();
        subject.embeddings = state.admission.run_now(move || pipeline.enroll(photos, minor)).await??;
    }
    state.store.put_subject(&subject).await?;
    tracing::info!(subject = %subject.id, faces = subject.embeddings.len(), "subject created");
    Ok(records::created(format!("/v1/subjects/{}", subject.id), SubjectView::new(subject, now)))
}

#[derive(Serialize)]
pub(crate) struct SubjectList {
    subjects: Vec<SubjectView>,
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<SubjectList>, ApiError> {
    let user = records::user_query(query)?;
    let now = state.clock.now_ms();
    let subjects = state.store.subjects_for_user(&tenant, &user).await?;
    Ok(Json(SubjectList { subjects: subjects.into_iter().map(|s| SubjectView::new(s, now)).collect() }))
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Json<SubjectView>, ApiError> {
    let s = state.store.subject(&tenant, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(SubjectView::new(s, state.clock.now_ms())))
}

/// Deletes the subject's embeddings (and name) at once; the id stays so
/// receipts that name it still resolve, and any request declaring it is
/// refused from now on.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let outcome = state.store.delete_subject(&tenant, &id, state.clock.now_ms()).await?;
    if outcome == Revoked::Now {
        tracing::info!(subject = %id, "subject deleted");
    }
    records::withdrawn(outcome, || not_found(&id))
}
