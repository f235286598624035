//! The wire form of `POST /v1/generations` and its answer.

use likeness_codes::ErrorCode;
use likeness_media::OutputFormat;
use likeness_photos::{AccessToken, LibraryItem};
use likeness_pipeline::{Decision, GenerationOutcome, GenerationRequest};
use serde::{Deserialize, Serialize};

use super::order::{LibraryReference, Order, Reference};
use crate::error::ApiError;
use crate::upload::{UploadBody, B64};

/// Most subjects one request may declare.
const MAX_DECLARED_SUBJECTS: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenerationBody {
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
    /// The approved review of this very request, when resubmitted after one.
    #[serde(default)]
    review_id: Option<String>,
    /// A configured backend by name, or `builtin`.
    #[serde(default)]
    backend: Option<String>,
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
    Library(LibraryBody),
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

impl GenerationBody {
    /// The request as the gateway understands it. Uploads are decoded from
    /// base64 now; library photos stay to be fetched once consent allows.
    pub(crate) fn into_order(self, request_id: String) -> Result<Order, ApiError> {
        let (width, height) = parse_size(&self.size)?;
        let output = parse_format(&self.output_format)?;
        let mut seen = std::collections::HashSet::new();
        let subjects: Vec<String> = self.subjects.into_iter().filter(|s| seen.insert(s.clone())).collect();
        if subjects.len() > MAX_DECLARED_SUBJECTS {
            return Err(ApiError::new(ErrorCode::RequestInvalid, format!("subjects: at most {MAX_DECLARED_SUBJECTS}")));
        }
        let references = self
            .references
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                ReferenceBody::Upload(u) => u.decode(i).map(Reference::Upload),
                ReferenceBody::Library(l) => Ok(Reference::Library(LibraryReference {
                    album_id: l.album_id,
                    item: LibraryItem {
                        media_item_id: l.media_item_id,
                        base_url: l.base_url,
                        access_token: AccessToken::new(l.access_token),
                    },
                })),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request = GenerationRequest {
            request_id,
            user: self.user,
            prompt: self.prompt,
            style: self.style,
            references,
            count: self.n,
            width,
            height,
            output,
            seed: self.seed,
        };
        Ok(Order {
            request,
            grant_id: self.grant_id,
            subjects,
            review_id: self.review_id,
            backend: self.backend,
            options: Default::default(),
        })
    }
}

fn parse_size(size: &str) -> Result<(u32, u32), ApiError> {
    let bad = || ApiError::new(ErrorCode::RequestSizeInvalid, format!("size must look like 1024x768, got {size:?}"));
    let (w, h) = size.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?))
}

fn parse_format(format: &str) -> Result<OutputFormat, ApiError> {
    match format.trim().to_ascii_lowercase().as_str() {
        "jpeg" | "jpg" => Ok(OutputFormat::Jpeg { quality: 90 }),
        "png" => Ok(OutputFormat::Png),
        other => Err(ApiError::new(
            ErrorCode::RequestOutputFormatUnknown,
            format!("output_format must be jpeg or png, got {other:?}"),
        )),
    }
}

#[derive(Serialize)]
pub(crate) struct GenerationResponse {
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

impl From<GenerationOutcome> for GenerationResponse {
    fn from(outcome: GenerationOutcome) -> GenerationResponse {
        use base64::Engine as _;
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
        GenerationResponse { id: outcome.request_id, created, images, decision: outcome.decision }
    }
}
