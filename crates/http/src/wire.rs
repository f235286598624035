//! Wire types of the native API and their handlers.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine as _;
use likeness_media::{MediaType, OutputFormat};
use likeness_pipeline::{Decision, GenerationRequest, ReferenceInput, RequestConsent};
use serde::{Deserialize, Serialize};

use crate::{consent, ApiError, AppState, RequestId, TenantId};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationBody {
    user: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    style: Option<String>,
    #[serde(default)]
    references: Vec<ReferenceBody>,
    #[serde(default = "default_n")]
    n: u32,
    #[serde(default = "default_size")]
    size: String,
    #[serde(default = "default_format")]
    output_format: String,
    #[serde(default)]
    seed: Option<u64>,
    /// The photo-access grant that covers the library references.
    #[serde(default)]
    grant_id: Option<String>,
    /// Subjects whose likeness the references may show.
    #[serde(default)]
    subjects: Vec<String>,
}

/// Most subjects one request may declare.
const MAX_DECLARED_SUBJECTS: usize = 32;

fn default_n() -> u32 {
    1
}
fn default_size() -> String {
    "1024x1024".into()
}
fn default_format() -> String {
    "jpeg".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ReferenceBody {
    Upload(UploadBody),
    Library(LibraryBody),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadBody {
    data: String,
    #[serde(default)]
    mime: Option<String>,
}

/// A photo picked from the user's library (Google Photos Picker style).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryBody {
    media_item_id: String,
    /// Optional; when given it must be the provider's for this media item.
    #[serde(default)]
    base_url: String,
    access_token: String,
    /// The album the app picked it from, for grants that name albums.
    #[serde(default)]
    album_id: Option<String>,
}

#[derive(Serialize)]
pub struct GenerationResponse {
    id: String,
    created: u64,
    images: Vec<ImageBody>,
    decision: Decision,
}

#[derive(Serialize)]
struct ImageBody {
    asset_id: String,
    mime: &'static str,
    data: String,
    manifest_id: String,
    /// The watermark in the pixels: algorithm and payload (base64), the
    /// soft binding by which the resolver finds the manifest.
    soft_binding: Option<likeness_provenance::SoftBinding>,
}

fn parse_size(size: &str) -> Result<(u32, u32), ApiError> {
    let bad = || ApiError::invalid("request.size_invalid", format!("size must look like 1024x768, got {size:?}"));
    let (w, h) = size.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?))
}

fn parse_format(format: &str) -> Result<OutputFormat, ApiError> {
    match format.trim().to_ascii_lowercase().as_str() {
        "jpeg" | "jpg" => Ok(OutputFormat::Jpeg { quality: 90 }),
        "png" => Ok(OutputFormat::Png),
        other => Err(ApiError::invalid(
            "request.output_format_unknown",
            format!("output_format must be jpeg or png, got {other:?}"),
        )),
    }
}

pub(crate) fn reference_input(index: usize, upload: UploadBody) -> Result<ReferenceInput, ApiError> {
    let declared = match upload.mime.as_deref() {
        None => None,
        Some(m) => Some(MediaType::from_mime(m).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "reference.unsupported_format",
                format!("reference {}: {m:?} is not supported (image/jpeg, image/png, image/webp)", index + 1),
            )
        })?),
    };
    let bytes = B64.decode(upload.data.trim()).map_err(|e| {
        ApiError::invalid("reference.invalid_base64", format!("reference {}: data is not valid base64: {e}", index + 1))
    })?;
    Ok(ReferenceInput { bytes, declared })
}

pub async fn create_generation(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<Json<GenerationBody>, JsonRejection>,
) -> Result<Json<GenerationResponse>, ApiError> {
    let Json(body) = body?;
    let (width, height) = parse_size(&body.size)?;
    let output = parse_format(&body.output_format)?;
    let mut seen = std::collections::HashSet::new();
    let subject_ids: Vec<String> = body.subjects.into_iter().filter(|s| seen.insert(s.clone())).collect();
    if subject_ids.len() > MAX_DECLARED_SUBJECTS {
        return Err(ApiError::invalid("request.invalid", format!("subjects: at most {MAX_DECLARED_SUBJECTS}")));
    }
    // Uploads are decoded from base64 now; library photos are fetched only
    // once consent allows it. Their slots stay empty until then.
    let mut references = Vec::with_capacity(body.references.len());
    let mut sources = Vec::with_capacity(body.references.len());
    let mut library = Vec::new();
    for (i, r) in body.references.into_iter().enumerate() {
        match r {
            ReferenceBody::Upload(u) => {
                references.push(reference_input(i, u)?);
                sources.push(likeness_consent::ReferenceSource::Upload);
            }
            ReferenceBody::Library(l) => {
                references.push(ReferenceInput { bytes: Vec::new(), declared: None });
                sources.push(likeness_consent::ReferenceSource::Library {
                    media_item_id: l.media_item_id.clone(),
                    album_id: l.album_id,
                });
                library.push((
                    i,
                    likeness_photos::LibraryItem {
                        media_item_id: l.media_item_id,
                        base_url: l.base_url,
                        access_token: likeness_photos::AccessToken::new(l.access_token),
                    },
                ));
            }
        }
    }
    let mut req = GenerationRequest {
        request_id: request_id.clone(),
        user: body.user,
        prompt: body.prompt,
        style: body.style,
        references,
        count: body.n,
        width,
        height,
        output,
        seed: body.seed,
        consent: RequestConsent {
            receipt_id: consent::receipt_id(),
            grant_id: body.grant_id.clone(),
            references: Vec::new(),
            subjects: Vec::new(),
        },
    };
    // Cheap checks before anything is loaded, fetched or queued.
    state.pipeline.validate(&req)?;

    let checked =
        consent::check_generation(&state, &tenant, &req.user, body.grant_id.as_deref(), &subject_ids, &sources).await?;
    // Album coverage is the provider's word, not the app's.
    for (index, item) in &library {
        let allowed = &checked.references[*index];
        if let (Some("album"), Some(album)) = (allowed.covered_by, allowed.album_id.as_deref()) {
            let member = state
                .photos
                .album_contains(album, &item.media_item_id, &item.access_token)
                .await
                .map_err(|e| ApiError::photo(index + 1, e))?;
            if !member {
                return Err(likeness_consent::ConsentError::PhotoNotGranted {
                    index: index + 1,
                    media_item_id: item.media_item_id.clone(),
                    grant: body.grant_id.clone(),
                }
                .into());
            }
        }
    }
    req.consent.references = checked.references;
    req.consent.subjects = checked.subjects;

    // Admitted before fetching: photos in memory are bounded like the work.
    let admitted = state.admit()?;
    if !library.is_empty() {
        let items: Vec<_> = library.iter().map(|(_, item)| item.clone()).collect();
        let fetched = state.photos.fetch_all(&items).await;
        for ((index, _), result) in library.iter().zip(fetched) {
            let photo = result.map_err(|e| ApiError::photo(index + 1, e))?;
            req.references[*index] = ReferenceInput {
                declared: photo.content_type.as_deref().and_then(MediaType::from_mime),
                bytes: photo.bytes,
            };
        }
    }

    let pipeline = state.pipeline.clone();
    let user = req.user.clone();
    let receipt_id = req.consent.receipt_id.clone();
    let outcome = state.run_admitted(admitted, move || pipeline.run(req)).await??;

    // The receipt and every manifest are stored before any image leaves, all
    // or none, in bounded time, and only if consent still holds: a grant
    // revoked or a subject deleted while this request ran stops it here.
    let receipt = likeness_store::ReceiptRecord {
        id: receipt_id,
        tenant: tenant.clone(),
        request_id: outcome.request_id.clone(),
        user: user.clone(),
        grant_id: body.grant_id,
        created_at_ms: likeness_store::now_ms(),
        body: serde_json::to_string(&outcome.decision.consent).unwrap_or_default(),
    };
    let records: Vec<likeness_store::ManifestRecord> = outcome
        .assets
        .iter()
        .map(|a| likeness_store::ManifestRecord {
            manifest_id: a.manifest_id().to_string(),
            asset_id: a.asset_id().to_string(),
            tenant: tenant.clone(),
            request_id: outcome.request_id.clone(),
            created_at_ms: likeness_store::now_ms(),
            manifest_store: a.manifest_store().to_vec(),
            soft_bindings: a
                .soft_binding()
                .map(|b| likeness_store::SoftBindingRecord { alg: b.alg.clone(), value: b.value.clone() })
                .into_iter()
                .collect(),
        })
        .collect();
    let still_allowed = consent::recheck(user, subject_ids.clone());
    let stored = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        state.store.record_generation(&receipt, &subject_ids, &records, &still_allowed),
    )
    .await;
    match stored {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(withdrawn))) => return Err(withdrawn.into()),
        Ok(Err(e)) => return Err(storage_failed(&e.to_string())),
        Err(_) => return Err(storage_failed("timed out")),
    }
    tracing::info!(tenant = %tenant, receipt = %receipt.id, images = outcome.assets.len(), "generated");

    let images = outcome
        .assets
        .into_iter()
        .map(|a| ImageBody {
            asset_id: a.asset_id().to_string(),
            mime: a.media_type().mime(),
            manifest_id: a.manifest_id().to_string(),
            soft_binding: a.soft_binding().cloned(),
            data: B64.encode(a.bytes()),
        })
        .collect();
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(Json(GenerationResponse { id: outcome.request_id, created, images, decision: outcome.decision }))
}

fn storage_failed(detail: &str) -> ApiError {
    tracing::error!(error = %detail, "storing the receipt and manifests failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage.unavailable",
        "could not store the credentials; retry later",
    )
}
