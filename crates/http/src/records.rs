//! What the consent records' endpoints share: ids, times on the wire, the
//! `?user=` query and the 201 answer.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use likeness_codes::ErrorCode;
use likeness_store::Revoked;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;

/// A new record id: a prefix and a time-ordered UUID.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// An optional RFC 3339 time field, in ms since the epoch.
pub(crate) fn parse_time(field: &'static str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let t = time::OffsetDateTime::parse(v, &Rfc3339).map_err(|e| {
        ApiError::new(ErrorCode::RequestInvalid, format!("{field}: {v:?} is not an RFC 3339 time ({e})"))
    })?;
    Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

pub(crate) use likeness_consent::format_time;

/// A grant's state at a moment: revoked outranks expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Active,
    Expired,
    Revoked,
}

pub(crate) fn status(withdrawn: Option<Status>, expires_at_ms: Option<i64>, now_ms: i64) -> Status {
    match withdrawn {
        Some(s) => s,
        None if expires_at_ms.is_some_and(|e| e <= now_ms) => Status::Expired,
        None => Status::Active,
    }
}

#[derive(Deserialize)]
pub(crate) struct UserQuery {
    user: String,
}

pub(crate) fn user_query(q: Result<Query<UserQuery>, QueryRejection>) -> Result<String, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::new(ErrorCode::RequestInvalid, "add ?user=<the app's user id>"))?;
    Ok(q.user)
}

pub(crate) fn invalid_record(e: likeness_consent::InvalidRecord) -> ApiError {
    ApiError::new(ErrorCode::RequestInvalid, e.to_string())
}

/// The answer to a revocation or deletion: 204 whether it happened now or
/// before (doing it twice is not an error), 404 when there is no such record.
pub(crate) fn withdrawn(outcome: Revoked, not_found: impl FnOnce() -> ApiError) -> Result<StatusCode, ApiError> {
    match outcome {
        Revoked::NotFound => Err(not_found()),
        Revoked::Now | Revoked::Already => Ok(StatusCode::NO_CONTENT),
    }
}

pub(crate) fn created(location: String, body: impl Serialize) -> Response {
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response()
}
