//! The C2PA Soft Binding Resolution API: how anyone holding an image whose
//! metadata was stripped finds its manifest again, through the watermark.
//!
//! Public (no API key) and rate-limited per client address. It answers
//! manifest ids and manifest stores, nothing else: no tenant, no user, no
//! request body is kept; an uploaded image is decoded in memory, read for
//! its watermark and dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use likeness_codes::ErrorCode;
use likeness_media::MediaError;
use likeness_store::FingerprintRecord;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;
use crate::upload::B64;

/// The Soft Binding Resolution API's routes: public, rate-limited.
pub(crate) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/services/supportedAlgorithms", get(supported_algorithms))
        .route("/matches/byBinding", get(by_binding_get).post(by_binding_post))
        .route("/matches/byContent", post(by_content))
        .route("/manifests/{id}", get(manifest))
        .route_layer(middleware::from_fn_with_state(state, rate_limit))
}

/// Middleware on the resolver's routes (and the detection API, which
/// shares its budget): 429 with `Retry-After` past the rate.
pub(crate) async fn rate_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    crate::rate_limit::per_address(&state, &state.resolver_limiter, ErrorCode::ResolverRateLimited, req, next).await
}

/// Matches answered when the query does not say.
const DEFAULT_MAX_RESULTS: usize = 10;

#[derive(Serialize)]
pub(crate) struct AlgList {
    watermarks: Vec<AlgEntry>,
    fingerprints: Vec<AlgEntry>,
}

#[derive(Serialize)]
struct AlgEntry {
    alg: &'static str,
}

async fn supported_algorithms() -> Json<AlgList> {
    // Retired versions stay listed: their assets are still found by value.
    let algs = std::iter::once(likeness_watermark::ALG).chain(likeness_watermark::RETIRED_ALGS);
    Json(AlgList { watermarks: algs.map(|alg| AlgEntry { alg }).collect(), fingerprints: vec![] })
}

#[derive(Serialize)]
pub(crate) struct QueryResult {
    matches: Vec<Match>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    manifest_id: String,
    /// 0 to 100: 100 for an exact binding; for an uploaded image, how
    /// clearly the watermark was read.
    similarity_score: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BindingQuery {
    alg: Option<String>,
    value: Option<String>,
    max_results: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Limit {
    max_results: Option<usize>,
}

#[derive(Deserialize)]
pub(crate) struct BindingBody {
    alg: String,
    value: String,
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ResolverInvalidQuery, message)
}

/// The algorithm asked for, if the resolver knows it: the current
/// watermark, or a retired one (found by binding value only).
fn check_alg(alg: &str) -> Result<&'static str, ApiError> {
    if let Some(known) =
        std::iter::once(likeness_watermark::ALG).chain(likeness_watermark::RETIRED_ALGS).find(|a| *a == alg)
    {
        Ok(known)
    } else {
        Err(ApiError::new(
            ErrorCode::ResolverUnsupportedAlg,
            format!("unsupported soft-binding algorithm {alg:?}; see /services/supportedAlgorithms"),
        ))
    }
}

/// The canonical form of a watermark value: 8 bytes, standard base64. A
/// `+` that a query string turned into a space is taken back.
fn canonical_value(value: &str) -> Result<String, ApiError> {
    let bytes = B64
        .decode(value.trim().replace(' ', "+"))
        .map_err(|_| bad_query("value must be base64 (the 8-byte watermark payload)"))?;
    if bytes.len() != 8 {
        return Err(bad_query(format!("value must be 8 bytes for {}, not {}", likeness_watermark::ALG, bytes.len())));
    }
    Ok(B64.encode(bytes))
}

fn max_results(n: Option<usize>) -> Result<usize, ApiError> {
    match n.unwrap_or(DEFAULT_MAX_RESULTS) {
        0 => Err(bad_query("maxResults must be at least 1")),
        n => Ok(n.min(likeness_store::MAX_MATCHES)),
    }
}

async fn matches(state: &AppState, alg: &str, value: &str, limit: usize, score: u8) -> Result<QueryResult, ApiError> {
    let ids = state.store.manifests_by_binding(alg, value, limit).await?;
    Ok(QueryResult {
        matches: ids.into_iter().map(|manifest_id| Match { manifest_id, similarity_score: score }).collect(),
    })
}

async fn by_binding_get(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BindingQuery>, QueryRejection>,
) -> Result<Json<QueryResult>, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
    let alg = q.alg.ok_or_else(|| bad_query("alg is required"))?;
    let alg = check_alg(&alg)?;
    let value = canonical_value(&q.value.ok_or_else(|| bad_query("value is required"))?)?;
    Ok(Json(matches(&state, alg, &value, max_results(q.max_results)?, 100).await?))
}

async fn by_binding_post(
    State(state): State<Arc<AppState>>,
    query: Result<Query<Limit>, QueryRejection>,
    body: Result<Json<BindingBody>, JsonRejection>,
) -> Result<Json<QueryResult>, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
    let Json(body) = body.map_err(|e| bad_query(e.body_text()))?;
    let alg = check_alg(&body.alg)?;
    let value = canonical_value(&body.value)?;
    Ok(Json(matches(&state, alg, &value, max_results(q.max_results)?, 100).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContentQuery {
    alg: Option<String>,
    max_results: Option<usize>,
}

/// An uploaded image: its watermark is read with the gateway's key and
/// looked up. No watermark, no matches (200, empty), as for any unknown
/// binding.
async fn by_content(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ContentQuery>, QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<QueryResult>, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
    if let Some(alg) = &q.alg {
        check_alg(alg)?;
    }
    let limit = max_results(q.max_results)?;
    require_image(&headers)?;
    let body = read_upload(&state, &headers, body).await?;
    if body.is_empty() {
        return Err(bad_query("the body is empty; send the image"));
    }
    let slot = detection_slot(&state).await?;
    let pipeline = state.pipeline.clone();
    let read = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        pipeline.read_watermark(&body)
    })
    .await
    .map_err(ApiError::task_failed)?;
    let found = read.map_err(upload_error)?;
    let Some(found) = found else { return Ok(Json(QueryResult { matches: vec![] })) };
    let value = likeness_pipeline::soft_binding(&found.detection.payload).value;
    // A manifest whose picture this is not (its mark was carried onto
    // another image) is no match.
    let mut matches = Vec::new();
    for manifest_id in state.store.manifests_by_binding(likeness_watermark::ALG, &value, limit).await? {
        let fingerprint = state.store.fingerprint(&manifest_id).await?;
        if content_of(&manifest_id, fingerprint.as_ref(), &found.content) != Content::Differs {
            // Match or no match, never how clearly: a graded score would
            // tell someone trying to scrub the mark how far they have got.
            matches.push(Match { manifest_id, similarity_score: 100 });
        }
    }
    Ok(Json(QueryResult { matches }))
}

/// Whether the picture a mark was read from is the output it was made in:
/// the watermark crate's content check, against the fingerprint kept with
/// the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Content {
    Matches,
    /// Another picture carrying the output's mark: the manifest is not its.
    Differs,
    /// Too little of the picture to tell (a small crop, a featureless image).
    Inconclusive,
    /// No fingerprint was kept (assets signed before it was).
    Unchecked,
}

pub(crate) fn content_of(
    manifest_id: &str,
    fingerprint: Option<&FingerprintRecord>,
    view: &likeness_watermark::ContentView,
) -> Content {
    let Some(stored) = fingerprint.filter(|f| f.alg == likeness_watermark::FINGERPRINT_ALG) else {
        return Content::Unchecked;
    };
    match likeness_watermark::Fingerprint::from_bytes(&stored.value) {
        Ok(fingerprint) => match view.check(&fingerprint).verdict {
            likeness_watermark::ContentVerdict::Matches => Content::Matches,
            likeness_watermark::ContentVerdict::Differs => Content::Differs,
            likeness_watermark::ContentVerdict::Inconclusive => Content::Inconclusive,
        },
        Err(e) => {
            // The gateway's own record: worth an operator's look, not a
            // refusal of every lookup of this asset.
            tracing::error!(manifest_id, error = %e, "stored fingerprint unreadable");
            Content::Unchecked
        }
    }
}

/// An upload must say it is an image (or just bytes).
pub(crate) fn require_image(headers: &HeaderMap) -> Result<(), ApiError> {
    let media = crate::body::media_type(headers);
    if media.starts_with("image/") || media == "application/octet-stream" {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::ResolverUnsupportedMediaType,
        "send the image as the body, with Content-Type image/jpeg, image/png or image/webp",
    ))
}

/// Receives an upload: refused at once when it says it is larger than
/// decoding accepts, or when `max_uploads_in_flight` are already being
/// received (so anonymous clients cannot hold memory open by sending
/// slowly); cut when it passes the limit or takes longer than
/// `upload_timeout`.
pub(crate) async fn read_upload(
    state: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, ApiError> {
    let limit = state.pipeline.limits().decode.max_bytes;
    if crate::body::declared_over(headers, limit) {
        return Err(image_too_large(limit));
    }
    let _receiving = upload_slot(state)?;
    crate::body::read(body, limit, state.config.resolver.upload_timeout, || image_too_large(limit)).await
}

/// A place among the uploads being received (`max_uploads_in_flight`),
/// held while an image arrives; none free: busy at once.
pub(crate) fn upload_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.uploads.clone().try_acquire_owned().map_err(|_| busy())
}

/// An upload over `limit` bytes, the most decoding accepts.
pub(crate) fn image_too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::ResolverImageTooLarge,
        format!("the upload is over {limit} bytes, the most an image may be"),
    )
}

/// A slot to read an uploaded image's watermark in, apart from the
/// generations' CPU slots; busy after 5 s.
pub(crate) async fn detection_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    tokio::time::timeout(Duration::from_secs(5), state.detections.clone().acquire_owned())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())
}

/// An uploaded image that cannot be read: the resolver's own codes for what
/// a reference photo would be refused with.
pub(crate) fn upload_error(e: MediaError) -> ApiError {
    let code = match e.code() {
        ErrorCode::ReferenceTooLarge | ErrorCode::ReferenceTooManyPixels => ErrorCode::ResolverImageTooLarge,
        ErrorCode::ReferenceUnsupportedFormat => ErrorCode::ResolverUnsupportedMediaType,
        _ => ErrorCode::ResolverImageCorrupt,
    };
    ApiError::new(code, e.to_string())
}

pub(crate) fn busy() -> ApiError {
    ApiError::new(ErrorCode::ResolverBusy, "too many images are being read; retry later")
}

/// The manifest store, `application/c2pa`. Stores hold one manifest (the
/// references are ingredients by hash only), so `returnActiveManifest`
/// changes nothing.
async fn manifest(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let valid = id.strip_prefix("urn:c2pa:").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 200 && rest.chars().all(|c| c.is_ascii_alphanumeric() || "-:._".contains(c))
    });
    if !valid {
        return Err(bad_query("a manifest id looks like urn:c2pa:<uuid>"));
    }
    let record = state
        .store
        .manifest(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ResolverManifestNotFound, "no manifest with this id"))?;
    Ok(([(header::CONTENT_TYPE, "application/c2pa")], record.manifest_store).into_response())
}
