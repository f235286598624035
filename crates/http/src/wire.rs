//! Wire types of the native API and their handlers.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine as _;
use likeness_media::{MediaType, OutputFormat};
use likeness_pipeline::{Decision, GenerationRequest, ReferenceInput};
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState, RequestId, TenantId};

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
}

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadBody {
    data: String,
    #[serde(default)]
    mime: Option<String>,
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

fn reference_input(index: usize, body: ReferenceBody) -> Result<ReferenceInput, ApiError> {
    let ReferenceBody::Upload(upload) = body;
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
    let references =
        body.references.into_iter().enumerate().map(|(i, r)| reference_input(i, r)).collect::<Result<Vec<_>, _>>()?;
    let req = GenerationRequest {
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
    };
    // Cheap checks before queueing for a CPU slot.
    state.pipeline.validate(&req)?;

    let overloaded = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server.overloaded",
            "too many requests in progress; retry later",
        )
    };
    let admitted = state.pending.clone().try_acquire_owned().map_err(|_| overloaded())?;
    let slot = tokio::time::timeout(state.config.queue_timeout, state.slots.clone().acquire_owned())
        .await
        .map_err(|_| overloaded())?
        .map_err(|_| overloaded())?;
    let pipeline = state.pipeline.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // Both permits live as long as the work, even if the client has gone.
        let _held = (admitted, slot);
        pipeline.run(req)
    })
    .await
    .map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the request task failed: {e}"))
    })??;
    // Every manifest is stored before any image leaves, so the resolver can
    // always recover an output's credentials: all of a request's or none, in
    // bounded time. No storage, no images.
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
        })
        .collect();
    let stored = tokio::time::timeout(std::time::Duration::from_secs(10), state.store.put_manifests(&records)).await;
    if let Err(detail) = stored.map_err(|_| "timed out".to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
        tracing::error!(error = %detail, "storing manifests failed");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage.unavailable",
            "could not store the credentials; retry later",
        ));
    }
    tracing::info!(tenant = %tenant, images = outcome.assets.len(), "generated");

    let images = outcome
        .assets
        .into_iter()
        .map(|a| ImageBody {
            asset_id: a.asset_id().to_string(),
            mime: a.media_type().mime(),
            manifest_id: a.manifest_id().to_string(),
            data: B64.encode(a.bytes()),
        })
        .collect();
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(Json(GenerationResponse { id: outcome.request_id, created, images, decision: outcome.decision }))
}
