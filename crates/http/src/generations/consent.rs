//! The consent step of a generation: load the grant and the declared
//! subjects, check them, and ask the provider about albums. Nothing is
//! cached: each request asks the database, so revocations hold across
//! replicas at once. Runs before anything is fetched or queued.

use likeness_consent::{self as consent, ConsentError, Coverage, ReferenceSource};
use likeness_pipeline::RequestConsent;

use super::order::{Order, Reference};
use crate::error::ApiError;
use crate::records::new_id;
use crate::state::AppState;

/// Why consent could not be established: a refusal (logged as a decision)
/// or a failure to check (the database, the provider).
pub(super) enum Refused {
    Consent(ConsentError),
    Other(ApiError),
}

impl From<ConsentError> for Refused {
    fn from(e: ConsentError) -> Refused {
        Refused::Consent(e)
    }
}

impl From<likeness_store::StoreError> for Refused {
    fn from(e: likeness_store::StoreError) -> Refused {
        Refused::Other(e.into())
    }
}

pub(super) async fn check(state: &AppState, tenant: &str, order: &Order) -> Result<RequestConsent, Refused> {
    let now = state.clock.now_ms();
    let user = &order.request.user;
    let grant = match &order.grant_id {
        Some(id) => Some(state.store.grant(tenant, id).await?.ok_or_else(|| ConsentError::GrantUnknown(id.clone()))?),
        None => None,
    };
    let sources: Vec<ReferenceSource> = order.request.references.iter().map(Reference::source).collect();
    let processor = order.backend.as_deref().unwrap_or(consent::BUILTIN);
    let references = consent::check_references(grant.as_ref(), user, now, &sources, processor)?;
    let subjects = state.store.subjects(tenant, &order.subjects).await?;
    consent::check_subjects(&order.subjects, &subjects, user, now, state.confirmation_rule(tenant))?;
    check_albums(state, order, &references).await?;
    Ok(RequestConsent { receipt_id: new_id("rcpt"), grant_id: order.grant_id.clone(), references, subjects })
}

/// A photo covered through its album is covered only if the provider says
/// the album holds it: album coverage is the provider's word, not the app's.
async fn check_albums(
    state: &AppState,
    order: &Order,
    references: &[consent::ReferenceConsent],
) -> Result<(), Refused> {
    for (index, (r, allowed)) in order.request.references.iter().zip(references).enumerate() {
        let (Reference::Library(l), Some(Coverage::Album), Some(album)) =
            (r, allowed.covered_by, allowed.album_id.as_deref())
        else {
            continue;
        };
        let member = state
            .photos
            .album_contains(album, &l.item.media_item_id, &l.item.access_token)
            .await
            .map_err(|e| Refused::Other(ApiError::photo(index + 1, e)))?;
        if !member {
            return Err(Refused::Consent(ConsentError::PhotoNotGranted {
                index: index + 1,
                media_item_id: l.item.media_item_id.clone(),
                grant: order.grant_id.clone(),
            }));
        }
    }
    Ok(())
}
