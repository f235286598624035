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

pub(super) async fn check(state: &AppState, tenant: &str, order: &Order) -> Result<RequestConsent, ApiError> {
    let now = state.clock.now_ms();
    let user = &order.request.user;
    let grant = match &order.grant_id {
        Some(id) => Some(state.store.grant(tenant, id).await?.ok_or_else(|| ConsentError::GrantUnknown(id.clone()))?),
        None => None,
    };
    let sources: Vec<ReferenceSource> = order.request.references.iter().map(Reference::source).collect();
    let references = consent::check_references(grant.as_ref(), user, now, &sources)?;
    let subjects = state.store.subjects(tenant, &order.subjects).await?;
    consent::check_subjects(&order.subjects, &subjects, user, now)?;
    check_albums(state, order, &references).await?;
    Ok(RequestConsent { receipt_id: new_id("rcpt"), grant_id: order.grant_id.clone(), references, subjects })
}

/// A photo covered through its album is covered only if the provider says
/// the album holds it: album coverage is the provider's word, not the app's.
async fn check_albums(
    state: &AppState,
    order: &Order,
    references: &[consent::ReferenceConsent],
) -> Result<(), ApiError> {
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
            .map_err(|e| ApiError::photo(index + 1, e))?;
        if !member {
            return Err(ConsentError::PhotoNotGranted {
                index: index + 1,
                media_item_id: l.item.media_item_id.clone(),
                grant: order.grant_id.clone(),
            }
            .into());
        }
    }
    Ok(())
}
