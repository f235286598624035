//! The decision log's records of generations: every request that reached a
//! decision, allowed or refused (by consent or by the policy), with what it
//! was decided on. Derived data only: hashes, scores, categories, rule ids;
//! never pixels, prompts or embeddings.

use likeness_codes::ErrorCode;
use likeness_consent::ConsentError;
use likeness_pipeline::{Action, Decision, PipelineError};
use likeness_store::{DecisionRecord, Kind, Review, ReviewStatus};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::records::new_id;
use crate::state::AppState;

/// Whose request a record is about.
pub(super) struct Requester {
    pub tenant: String,
    pub user: String,
    pub request_id: String,
}

/// What the log keeps of a decision.
fn body(d: &Decision) -> Value {
    json!({
        "references": d.references,
        "style": d.style,
        "generator": d.generator,
        "policy": d.policy,
        "labels": d.labels,
        "reasons": d.reasons,
        "inputs": d.inputs,
    })
}

impl Requester {
    fn record(&self, now_ms: i64, action: Action, reason: Option<String>, body: Value) -> DecisionRecord {
        DecisionRecord {
            id: self.request_id.clone(),
            kind: Kind::Generation,
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            created_at_ms: now_ms,
            action: action.as_str().to_string(),
            reason,
            body: body.to_string(),
        }
    }

    /// The record of a request that went through: stored with its receipt
    /// and manifests.
    pub(super) fn allowed(&self, now_ms: i64, d: &Decision, assets: &[String], review: Option<&str>) -> DecisionRecord {
        let mut body = body(d);
        body["assets"] = json!(assets);
        body["receipt"] = json!(d.consent.id);
        body["review"] = json!(review);
        self.record(now_ms, d.action, None, body)
    }

    /// Logs a refusal by consent, found before anything was fetched or analysed.
    pub(super) async fn consent_refused(&self, state: &AppState, e: ConsentError) -> ApiError {
        let record = self.record(state.clock.now_ms(), Action::Block, Some(e.code().as_str().into()), json!({}));
        match state.store.append_decision(&record).await {
            Ok(_) => e.into(),
            Err(store) => store.into(),
        }
    }

    /// Logs what the pipeline refused (a policy block, a review, a rule
    /// that could not be evaluated), opening a review for `review`; other
    /// failures are not decisions and are not logged. The answer to send.
    pub(super) async fn refused(&self, state: &AppState, e: PipelineError, fingerprint: &str) -> ApiError {
        let Some(decision) = e.decision() else { return e.into() };
        let now = state.clock.now_ms();
        let code = e.code();
        let mut review_id = None;
        let mut logged = body(decision);
        if decision.action == Action::Review {
            let review = Review {
                id: new_id("rev"),
                tenant: self.tenant.clone(),
                user: self.user.clone(),
                request_id: self.request_id.clone(),
                fingerprint: fingerprint.to_string(),
                status: ReviewStatus::Pending,
                created_at_ms: now,
                summary: json!({
                    "reasons": decision.reasons,
                    "rules": decision.policy.rules,
                    "policy": decision.policy.version,
                    "references": decision.references,
                    "images": decision.images,
                    "style": decision.style,
                })
                .to_string(),
                reviewer: None,
                note: None,
                resolved_at_ms: None,
                used_at_ms: None,
                used_by: None,
            };
            if let Err(store) = state.store.put_review(&review).await {
                return store.into();
            }
            logged["review"] = json!(review.id);
            review_id = Some(review.id);
        }
        let reason = Some(code.as_str().to_string()).filter(|c| c != ErrorCode::PolicyReviewRequired.as_str());
        let reason = reason.or_else(|| decision.reasons.last().cloned());
        if let Err(store) = state.store.append_decision(&self.record(now, decision.action, reason, logged)).await {
            return store.into();
        }
        let mut answer = ApiError::from(e);
        answer.review_id = review_id.map(String::into_boxed_str);
        answer
    }
}
