//! Recording a generation before any image leaves: its receipt and every
//! manifest, all or none, in bounded time, and only if consent still holds:
//! a grant revoked or a subject deleted while the request ran stops it here.

use std::sync::Arc;
use std::time::Duration;

use likeness_codes::ErrorCode;
use likeness_consent::{self as consent, ConsentError, Grant, Purpose, Subject};
use likeness_pipeline::{GenerationOutcome, RequestConsent};
use likeness_store::{
    FingerprintRecord, GenerationRecord, ManifestRecord, NotRecorded, ReceiptRecord, SoftBindingRecord, StoreError,
};

use super::log::Requester;
use super::order::Order;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::state::AppState;

/// How long storing may take before the request fails.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// What is needed to record a generation, taken before it runs.
pub(super) struct Recording {
    tenant: String,
    user: String,
    grant_id: Option<String>,
    subjects: Vec<String>,
    receipt_id: String,
    review_id: Option<String>,
    rule: consent::ConfirmationRule,
    clock: Arc<dyn Clock>,
}

impl Recording {
    pub(super) fn new(state: &AppState, who: &Requester, order: &Order, consent: &RequestConsent) -> Recording {
        Recording {
            tenant: who.tenant.clone(),
            user: who.user.clone(),
            grant_id: order.grant_id.clone(),
            subjects: order.subjects.clone(),
            receipt_id: consent.receipt_id.clone(),
            review_id: order.review_id.clone(),
            rule: state.confirmation_rule(&who.tenant),
            clock: state.clock.clone(),
        }
    }

    /// Stores the receipt, the manifests and the decision record, using up
    /// the approved review the request relied on.
    pub(super) async fn store(
        self,
        state: &AppState,
        who: &Requester,
        outcome: &GenerationOutcome,
    ) -> Result<(), ApiError> {
        let now = self.clock.now_ms();
        let receipt = ReceiptRecord {
            id: self.receipt_id.clone(),
            tenant: self.tenant.clone(),
            request_id: outcome.request_id.clone(),
            user: self.user.clone(),
            grant_id: self.grant_id.clone(),
            created_at_ms: now,
            body: serde_json::to_string(&outcome.decision.consent).unwrap_or_default(),
        };
        let manifests: Vec<ManifestRecord> = outcome
            .assets
            .iter()
            .map(|a| ManifestRecord {
                manifest_id: a.manifest_id().to_string(),
                asset_id: a.asset_id().to_string(),
                tenant: self.tenant.clone(),
                request_id: outcome.request_id.clone(),
                created_at_ms: now,
                manifest_store: a.manifest_store().to_vec(),
                soft_bindings: a
                    .soft_binding()
                    .map(|b| SoftBindingRecord { alg: b.alg.clone(), value: b.value.clone() })
                    .into_iter()
                    .collect(),
                fingerprint: outcome.fingerprints.iter().find(|(id, _)| *id == a.asset_id()).map(|(_, value)| {
                    FingerprintRecord { alg: likeness_watermark::FINGERPRINT_ALG.to_string(), value: value.clone() }
                }),
            })
            .collect();
        let assets: Vec<String> = manifests.iter().map(|m| m.asset_id.clone()).collect();
        let decision = who.allowed(now, &outcome.decision, &assets, self.review_id.as_deref());
        let record = GenerationRecord {
            receipt: &receipt,
            subject_ids: &self.subjects,
            shown_subjects: &outcome.decision.consent.subjects,
            manifests: &manifests,
            decision: &decision,
            review: self.review_id.as_deref(),
        };
        let still_allowed = |grant: Option<&Grant>, subjects: &[Subject]| self.recheck(grant, subjects);
        let stored = tokio::time::timeout(STORE_TIMEOUT, state.store.record_generation(&record, &still_allowed)).await;
        match stored {
            Ok(Ok(Ok(()))) => {
                tracing::info!(receipt = %receipt.id, images = manifests.len(), "generated");
                Ok(())
            }
            Ok(Ok(Err(NotRecorded::Consent(withdrawn)))) => Err(who.consent_refused(state, withdrawn).await),
            Ok(Ok(Err(NotRecorded::ReviewSpent))) => {
                Err(ApiError::new(ErrorCode::ReviewSpent, "the approved review was used by another request meanwhile"))
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StoreError::TimedOut(STORE_TIMEOUT).into()),
        }
    }

    /// The consent checks again, on the records as the store reads them
    /// inside the transaction that records the generation.
    fn recheck(&self, grant: Option<&Grant>, subjects: &[Subject]) -> Result<(), ConsentError> {
        let now = self.clock.now_ms();
        if let Some(g) = grant {
            g.check_usable(&self.user, Purpose::Generation, now)?;
        }
        consent::check_subjects(&self.subjects, subjects, &self.user, now, self.rule)
    }
}
