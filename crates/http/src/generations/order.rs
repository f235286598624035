//! A generation as the gateway understands it between the wire and the
//! pipeline: its references may still be library photos to fetch.

use likeness_consent::ReferenceSource;
use likeness_photos::LibraryItem;
use likeness_pipeline::{GenerationRequest, ReferenceInput};

/// A generation as the gateway understands it, before consent is checked.
pub(crate) struct Order {
    pub request: GenerationRequest<Reference>,
    /// The photo-access grant that covers the library references.
    pub grant_id: Option<String>,
    /// Subjects the references may show, without duplicates.
    pub subjects: Vec<String>,
    /// A review that approved this request, when it is resubmitted.
    pub review_id: Option<String>,
    /// The backend it names; none: its tenant's default, else the built-in generator.
    pub backend: Option<String>,
    /// What backends that take it may be given (the OpenAI door's quality, background).
    pub options: likeness_backends::Options,
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
    pub fn source(&self) -> ReferenceSource {
        match self {
            Reference::Upload(_) => ReferenceSource::Upload,
            Reference::Library(l) => {
                ReferenceSource::Library { media_item_id: l.item.media_item_id.clone(), album_id: l.album_id.clone() }
            }
        }
    }
}
