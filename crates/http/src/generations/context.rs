//! What the pipeline needs to know of a request beyond the request itself:
//! the user's recent refusals (the policy's history) and whether a person
//! approved this very request after a review.

use likeness_codes::ErrorCode;
use likeness_pipeline::RequestContext;
use likeness_policy::HistoryFacts;
use likeness_store::ReviewStatus;

use crate::error::ApiError;
use crate::state::AppState;

/// The window of history a policy sees, and of an approval's validity.
const DAY_MS: i64 = 24 * 3600 * 1000;

pub(super) async fn of(
    state: &AppState,
    tenant: &str,
    user: &str,
    review_id: Option<&str>,
    fingerprint: &str,
) -> Result<RequestContext, ApiError> {
    let now = state.clock.now_ms();
    let refusals_24h = state.store.refusals_since(tenant, user, now - DAY_MS).await?;
    let history = HistoryFacts { refusals_24h_total: refusals_24h.values().sum(), refusals_24h };
    if let Some(id) = review_id {
        approved(state, tenant, id, fingerprint, now).await?;
    }
    Ok(RequestContext {
        tenant: tenant.to_string(),
        history,
        review_approved: review_id.is_some(),
        ..RequestContext::default()
    })
}

/// The review `id` approved this request, within a day, and was not used.
async fn approved(state: &AppState, tenant: &str, id: &str, fingerprint: &str, now: i64) -> Result<(), ApiError> {
    let review = state
        .store
        .review(tenant, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ReviewNotFound, format!("no review {id} for this app")))?;
    if review.status != ReviewStatus::Approved {
        return Err(ApiError::new(
            ErrorCode::ReviewNotApproved,
            format!("review {id} is {}, not approved", review.status.as_str()),
        ));
    }
    if review.fingerprint != fingerprint {
        return Err(ApiError::new(
            ErrorCode::ReviewMismatch,
            format!(
                "review {id} approved another request (references, prompt, subjects, style and size must be the same)"
            ),
        ));
    }
    if review.used_at_ms.is_some() || review.resolved_at_ms.is_some_and(|t| now - t > DAY_MS) {
        return Err(ApiError::new(
            ErrorCode::ReviewSpent,
            format!("review {id} was used already or was approved over 24 hours ago"),
        ));
    }
    Ok(())
}
