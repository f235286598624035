//! `/v1/subjects`: people whose likeness a user may use, with their
//! enrolled face embeddings (never the photos), and the person's own side:
//! confirming with the token the app delivered, then seeing, tracing and
//! withdrawing their consent with a personal token, without the app.
//!
//! Tokens are 256 random bits, shown once and kept only as SHA-256; they
//! are compared in constant time, never logged, and only ever travel in a
//! body or an `Authorization` header, never in a URL.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use base64::Engine as _;
use likeness_codes::ErrorCode;
use likeness_consent::{
    Actor, Confirmation, ConfirmationRule, Relationship, Subject, SubjectConfirmation, MAX_ENROLLMENT_PHOTOS,
};
use likeness_pipeline::{PipelineError, ReferenceInput};
use likeness_store::{Confirmed, Reissued, Revoked, SubjectEvent, SubjectUse};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{Caller, TenantId};
use crate::error::ApiError;
use crate::records::{self, UserQuery};
use crate::state::AppState;
use crate::upload::UploadBody;

/// Prefixes that say what a token is for (and let the middleware tell a
/// personal token from an API key without a lookup).
const CONFIRMATION_PREFIX: &str = "lkc_";
const PERSONAL_PREFIX: &str = "lkp_";

/// A new token: a prefix and 256 bits from the OS, base64url.
fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `stored`, in time that does not depend on
/// where they differ; a missing hash is compared against a dummy, so an
/// unknown subject and a wrong token take as long.
fn token_matches(token: &str, stored: Option<&str>) -> bool {
    let given = token_hash(token);
    let expected = stored.unwrap_or("0000000000000000000000000000000000000000000000000000000000000000");
    crate::auth::same_bytes(given.as_bytes(), expected.as_bytes()) && stored.is_some()
}

fn token_invalid() -> ApiError {
    ApiError::new(ErrorCode::SubjectTokenInvalid, "the token is wrong, already used, or not this subject's")
}

/// A personal token as sent; checked against a subject by [`person_subject`].
#[derive(Clone)]
pub(crate) struct PersonalToken(String);

impl PersonalToken {
    pub(crate) fn recognise(bearer: &str) -> Option<PersonalToken> {
        bearer.starts_with(PERSONAL_PREFIX).then(|| PersonalToken(bearer.to_string()))
    }
}

/// The subject `id` if `token` is its personal token. Every failure is the
/// same answer, so a token reveals nothing about other subjects.
async fn person_subject(state: &AppState, id: &str, token: &PersonalToken) -> Result<Subject, ApiError> {
    let access = state.store.subject_access(id).await?;
    if !token_matches(&token.0, access.as_ref().and_then(|a| a.personal_sha256.as_deref())) {
        return Err(token_invalid());
    }
    state.store.subject_by_id(id).await?.ok_or_else(token_invalid)
}

/// The subject a caller may see: the app's own (by tenant), or the person's.
async fn subject_for(state: &AppState, caller: &Caller, id: &str) -> Result<Subject, ApiError> {
    match caller {
        Caller::App(tenant) => state.store.subject(tenant, id).await?.ok_or_else(|| not_found(id)),
        Caller::Person(token) => person_subject(state, id, token).await,
    }
}

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

/// Where a subject's consent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SubjectStatus {
    /// Waiting for the person shown (or a minor's guardian) to confirm.
    Pending,
    Active,
    Expired,
    /// Deleted by the user.
    Deleted,
    /// Withdrawn by the person (or guardian).
    Withdrawn,
}

fn status(s: &Subject, rule: ConfirmationRule, now_ms: i64) -> SubjectStatus {
    if s.withdrawn() {
        SubjectStatus::Withdrawn
    } else if s.deleted_at_ms.is_some() {
        SubjectStatus::Deleted
    } else if s.expires_at_ms.is_some_and(|e| e <= now_ms) {
        SubjectStatus::Expired
    } else if rule == ConfirmationRule::Required && !s.confirmed() {
        SubjectStatus::Pending
    } else {
        SubjectStatus::Active
    }
}

#[derive(Serialize)]
pub(crate) struct ConfirmationView {
    /// Whether the app's tenant counts the subject only once confirmed.
    required: bool,
    confirmed: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    how: Option<SubjectConfirmation>,
}

#[derive(Serialize)]
pub(crate) struct EventView {
    event: String,
    by: Actor,
    at: String,
}

impl From<SubjectEvent> for EventView {
    fn from(e: SubjectEvent) -> EventView {
        EventView { event: e.event, by: e.by, at: records::format_time(e.at_ms) }
    }
}

#[derive(Serialize)]
pub(crate) struct SubjectView {
    id: String,
    /// The app's id of its user: shown to the app, not to the person.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    name: String,
    relationship: Relationship,
    minor: bool,
    guardian_consent: bool,
    created_at: String,
    expires_at: Option<String>,
    deleted_at: Option<String>,
    /// How many face embeddings are enrolled (the embeddings never leave).
    enrolled_faces: usize,
    status: SubjectStatus,
    confirmation: ConfirmationView,
    /// Every change to this consent, oldest first.
    history: Vec<EventView>,
}

impl SubjectView {
    fn new(s: Subject, rule: ConfirmationRule, history: Vec<SubjectEvent>, for_app: bool, now_ms: i64) -> SubjectView {
        SubjectView {
            status: status(&s, rule, now_ms),
            confirmation: ConfirmationView {
                required: rule == ConfirmationRule::Required && s.relationship != Relationship::Myself,
                confirmed: s.confirmed(),
                how: SubjectConfirmation::of(&s),
            },
            history: history.into_iter().map(EventView::from).collect(),
            enrolled_faces: s.embeddings.len(),
            id: s.id,
            user: for_app.then_some(s.user),
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

async fn view(state: &AppState, s: Subject, for_app: bool) -> Result<SubjectView, ApiError> {
    let history = state.store.subject_events(&s.id).await?;
    let rule = state.confirmation_rule(&s.tenant);
    Ok(SubjectView::new(s, rule, history, for_app, state.clock.now_ms()))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::SubjectNotFound, format!("no subject {id} for this app"))
}

/// A confirmation token as the app receives it, once: it delivers the
/// token to the person shown (a link it sends), the gateway never does.
#[derive(Serialize)]
struct IssuedToken {
    confirmation_token: String,
    confirmation_expires_at: String,
}

fn issue(state: &AppState, now_ms: i64) -> (IssuedToken, String, i64) {
    let token = new_token(CONFIRMATION_PREFIX);
    let hash = token_hash(&token);
    let ttl = i64::try_from(state.config.subjects.confirmation_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires = now_ms.saturating_add(ttl);
    (IssuedToken { confirmation_token: token, confirmation_expires_at: records::format_time(expires) }, hash, expires)
}

#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    subject: SubjectView,
    /// Absent for `self`: the user is the person shown.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    token: Option<IssuedToken>,
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
        ended_by: None,
        confirmation: Subject::initial_confirmation(relationship, now),
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
    let issued = (!subject.confirmed()).then(|| issue(&state, now));
    state.store.put_subject(&subject, issued.as_ref().map(|(_, hash, expires)| (hash.as_str(), *expires))).await?;
    tracing::info!(subject = %subject.id, faces = subject.embeddings.len(), "subject created");
    let location = format!("/v1/subjects/{}", subject.id);
    let subject = view(&state, subject, true).await?;
    Ok(records::created(location, Created { subject, token: issued.map(|(t, _, _)| t) }))
}

/// A new confirmation token for a pending subject; the previous one stops
/// working. For a link that expired or got lost.
pub(crate) async fn reissue(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let (token, hash, expires) = issue(&state, now);
    match state.store.reissue_confirmation(&tenant, &id, &hash, expires, now).await? {
        Reissued::Now => Ok(records::created(format!("/v1/subjects/{id}"), token)),
        Reissued::Ended => Err(ApiError::new(
            ErrorCode::SubjectAlreadyConfirmed,
            format!("subject {id} is already confirmed, deleted or withdrawn"),
        )),
        Reissued::NotFound => Err(not_found(&id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmBody {
    token: String,
    /// `person` (default) or `guardian`: who confirms.
    #[serde(default, rename = "as")]
    confirming_as: Option<String>,
    /// A photo of the person shown, matched against the enrolled faces.
    #[serde(default)]
    photo: Option<EnrollBody>,
}

#[derive(Serialize)]
pub(crate) struct ConfirmedView {
    #[serde(flatten)]
    subject: SubjectView,
    /// Shown once: the person's key to their own consent.
    personal_token: String,
}

/// `POST /v1/subjects/{id}/confirm`: public (no API key), rate-limited.
pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<ConfirmBody>, JsonRejection>,
) -> Result<Json<ConfirmedView>, ApiError> {
    let Json(body) = body?;
    let now = state.clock.now_ms();
    let access = state.store.subject_access(&id).await?;
    let stored = access.as_ref().and_then(|a| a.confirmation_sha256.as_deref());
    if !token_matches(&body.token, stored) {
        return Err(token_invalid());
    }
    if access.as_ref().and_then(|a| a.confirmation_expires_at_ms).is_none_or(|e| e <= now) {
        return Err(ApiError::new(
            ErrorCode::SubjectConfirmationExpired,
            "the confirmation token has expired; ask the app for a new link",
        ));
    }
    let subject = state.store.subject_by_id(&id).await?.ok_or_else(token_invalid)?;
    let by = match (body.confirming_as.as_deref(), subject.minor) {
        (None | Some("person"), false) => Actor::Person,
        (Some("guardian"), true) => Actor::Guardian,
        (None | Some("person"), true) => {
            return Err(ApiError::new(
                ErrorCode::SubjectGuardianRequired,
                "this subject is a minor: their guardian confirms, with \"as\": \"guardian\"",
            ))
        }
        (Some("guardian"), false) => {
            return Err(ApiError::new(
                ErrorCode::SubjectGuardianRequired,
                "this subject is an adult: they confirm for themselves (\"as\": \"person\")",
            ))
        }
        (Some(other), _) => {
            return Err(ApiError::new(ErrorCode::RequestInvalid, format!("as: {other:?} is not person or guardian")))
        }
    };
    let photo_required = state.tenant(&subject.tenant).is_some_and(|t| t.confirmation_photo_required);
    let photo = match body.photo {
        Some(EnrollBody::Upload(u)) => Some(u.decode(0)?),
        None if photo_required => {
            return Err(ApiError::new(
                ErrorCode::SubjectConfirmPhotoRequired,
                "this app asks for a photo of the person shown with the confirmation",
            ))
        }
        None => None,
    };
    let with_photo = photo.is_some();
    if let Some(photo) = photo {
        let (pipeline, minor, enrolled) = (state.pipeline.clone(), subject.minor, subject.embeddings.clone());
        let matched = state
            .admission
            .run_now(move || pipeline.match_confirmation_photo(photo, minor, &enrolled))
            .await?
            .map_err(confirmation_photo_error)?;
        if matched.is_none() {
            let why = if subject.embeddings.is_empty() {
                "no face is enrolled for this subject to compare it with"
            } else {
                "it does not show the enrolled person"
            };
            return Err(ApiError::new(
                ErrorCode::SubjectConfirmPhotoMismatch,
                format!("the confirmation photo: {why}"),
            ));
        }
    }
    let personal = new_token(PERSONAL_PREFIX);
    let confirmation = Confirmation { by, at_ms: now, photo: with_photo };
    let hash = token_hash(&body.token);
    match state.store.confirm_subject(&id, &hash, confirmation, &token_hash(&personal)).await? {
        Confirmed::Now => {}
        Confirmed::Stale => return Err(token_invalid()),
    }
    tracing::info!(subject = %id, by = by.as_str(), photo = with_photo, "subject confirmed");
    // The conditional write changed only this: no need to read it back.
    let subject = Subject { confirmation: Some(confirmation), ..subject };
    Ok(Json(ConfirmedView { subject: view(&state, subject, false).await?, personal_token: personal }))
}

/// An enrollment check failing on the confirmation photo keeps its code,
/// with a message about the confirmation photo.
fn confirmation_photo_error(e: PipelineError) -> ApiError {
    match e {
        PipelineError::Enrollment { problem, .. } => {
            let code = PipelineError::Enrollment { index: 1, problem: problem.clone() }.code();
            ApiError::new(code, format!("the confirmation photo: {problem}"))
        }
        other => other.into(),
    }
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
    let subjects = state.store.subjects_for_user(&tenant, &user).await?;
    let mut views = Vec::with_capacity(subjects.len());
    for s in subjects {
        views.push(view(&state, s, true).await?);
    }
    Ok(Json(SubjectList { subjects: views }))
}

/// `GET /v1/subjects/{id}`: the app with its API key, or the person with
/// their personal token.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SubjectView>, ApiError> {
    let s = subject_for(&state, &caller, &id).await?;
    Ok(Json(view(&state, s, matches!(caller, Caller::App(_))).await?))
}

#[derive(Deserialize)]
pub(crate) struct UsageQuery {
    limit: Option<usize>,
}

/// Most generations one usage answer lists, and the default.
const MAX_USAGE: usize = 1000;
const DEFAULT_USAGE: usize = 100;

#[derive(Serialize)]
pub(crate) struct OutputView {
    asset_id: String,
    manifest_id: String,
}

#[derive(Serialize)]
pub(crate) struct UseView {
    request_id: String,
    receipt_id: String,
    created_at: String,
    outputs: Vec<OutputView>,
}

impl From<SubjectUse> for UseView {
    fn from(u: SubjectUse) -> UseView {
        UseView {
            request_id: u.request_id,
            receipt_id: u.receipt_id,
            created_at: records::format_time(u.created_at_ms),
            outputs: u
                .outputs
                .into_iter()
                .map(|(asset_id, manifest_id)| OutputView { asset_id, manifest_id })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct UsageView {
    subject: String,
    /// Generations whose references showed this person, newest first: ids
    /// and times, never images or prompts.
    uses: Vec<UseView>,
}

/// `GET /v1/subjects/{id}/usage`: where this likeness was used.
pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageView>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::RequestInvalid, e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_USAGE).clamp(1, MAX_USAGE);
    let s = subject_for(&state, &caller, &id).await?;
    let uses = state.store.subject_usage(&s.id, limit).await?;
    Ok(Json(UsageView { subject: s.id, uses: uses.into_iter().map(UseView::from).collect() }))
}

/// `POST /v1/subjects/{id}/withdraw`: the person (or guardian) withdraws,
/// with their personal token; the embeddings go at once. The app deletes
/// with `DELETE` instead.
pub(crate) async fn withdraw(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SubjectView>, ApiError> {
    let Caller::Person(token) = &caller else {
        return Err(ApiError::new(
            ErrorCode::SubjectTokenInvalid,
            "withdrawal is the person's own act, with their personal token; the app deletes with DELETE",
        ));
    };
    let s = person_subject(&state, &id, token).await?;
    let by = s.confirmation.map_or(Actor::Person, |c| c.by);
    if state.store.withdraw_subject(&id, by, state.clock.now_ms()).await? == Revoked::Now {
        tracing::info!(subject = %id, by = by.as_str(), "subject withdrawn");
    }
    let s = state.store.subject_by_id(&id).await?.ok_or_else(token_invalid)?;
    Ok(Json(view(&state, s, false).await?))
}

/// Deletes the subject's embeddings (and name) at once; the id stays so
/// receipts that name it still resolve, and any request declaring it is
/// refused from now on.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Caller::App(tenant) = &caller else {
        return Err(ApiError::new(
            ErrorCode::AuthInvalidKey,
            "deleting is the app's act, with its API key; the person withdraws with POST /v1/subjects/{id}/withdraw",
        ));
    };
    let outcome = state.store.delete_subject(tenant, &id, state.clock.now_ms()).await?;
    if outcome == Revoked::Now {
        tracing::info!(subject = %id, "subject deleted");
    }
    records::withdrawn(outcome, || not_found(&id))
}
