//! `POST /v1/generations`: one personalized generation, from the wire to
//! signed images. The handler is the request path in order; each step is
//! a function of its own below or in a submodule.

mod consent;
mod record;
mod wire;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::{Extension, Json};
use likeness_consent::ReferenceSource;
use likeness_media::MediaType;
use likeness_photos::LibraryItem;
use likeness_pipeline::{GenerationRequest, ReferenceInput};

use crate::{ApiError, AppState, RequestId, TenantId};
use wire::{GenerationBody, GenerationResponse};

/// A generation as the gateway understands it, before consent is checked.
pub(crate) struct Order {
    pub request: GenerationRequest<Reference>,
    /// The photo-access grant that covers the library references.
    pub grant_id: Option<String>,
    /// Subjects the references may show, without duplicates.
    pub subjects: Vec<String>,
}

/// A reference as received: uploaded bytes, or a library photo not yet fetched.
pub(crate) enum Reference {
    Upload(ReferenceInput),
    Library(LibraryReference),
}

/// A library photo to fetch once consent allows it.
pub(crate) struct LibraryReference {
    pub item: LibraryItem,
    /// The album the app picked it from, for grants that name albums.
    pub album_id: Option<String>,
}

impl Reference {
    fn source(&self) -> ReferenceSource {
        match self {
            Reference::Upload(_) => ReferenceSource::Upload,
            Reference::Library(l) => {
                ReferenceSource::Library { media_item_id: l.item.media_item_id.clone(), album_id: l.album_id.clone() }
            }
        }
    }
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<Json<GenerationBody>, JsonRejection>,
) -> Result<Json<GenerationResponse>, ApiError> {
    let Json(body) = body?;
    let order = body.into_order(request_id)?;
    state.pipeline.validate(&order.request)?;
    let consent = consent::check(&state, &tenant, &order).await?;
    let recording = record::Recording::new(&state, &tenant, &order, &consent);
    let admitted = state.admit()?;
    let request = fetch_library_photos(&state, order.request).await?;
    let pipeline = state.pipeline.clone();
    let outcome = state.run_admitted(admitted, move || pipeline.run(request, consent)).await??;
    recording.store(&state, &outcome).await?;
    Ok(Json(GenerationResponse::from(outcome)))
}

/// Brings the library photos into memory, all at once; uploads are already
/// there. Called only once consent allows and the request is admitted.
async fn fetch_library_photos(
    state: &AppState,
    mut request: GenerationRequest<Reference>,
) -> Result<GenerationRequest, ApiError> {
    let items: Vec<LibraryItem> = request
        .references
        .iter()
        .filter_map(|r| match r {
            Reference::Library(l) => Some(l.item.clone()),
            Reference::Upload(_) => None,
        })
        .collect();
    let mut fetched = state.photos.fetch_all(&items).await.into_iter();
    let references = std::mem::take(&mut request.references)
        .into_iter()
        .enumerate()
        .map(|(index, r)| match r {
            Reference::Upload(input) => Ok(input),
            Reference::Library(_) => {
                let photo = fetched.next().expect("one fetch per library reference");
                let photo = photo.map_err(|e| ApiError::photo(index + 1, e))?;
                let declared = photo.content_type.as_deref().and_then(MediaType::from_mime);
                Ok(ReferenceInput { bytes: photo.bytes, declared })
            }
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(request.with_references(references))
}
