//! `/v1/policy`: the policy in force, and a dry run of it on an input
//! document, for the trust-and-safety team's tooling.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::{Extension, Json};
use likeness_policy::{Evaluation, Input, Status};
use serde::Serialize;

use crate::auth::TenantId;
use crate::error::ApiError;
use crate::records::format_time;
use crate::state::AppState;

#[derive(Serialize)]
pub(crate) struct PolicyView {
    pub(crate) version: String,
    loaded_at: String,
    rules: Vec<String>,
    /// The last edit that failed to load, while this version kept serving.
    pub(crate) rejected: Option<serde_json::Value>,
}

pub(crate) fn view(status: Status) -> PolicyView {
    PolicyView {
        version: status.version,
        loaded_at: format_time(status.loaded_at_ms),
        rules: status.rules,
        rejected: status
            .rejected
            .map(|r| serde_json::json!({ "version": r.version, "at": format_time(r.at_ms), "problems": r.problems })),
    }
}

pub(crate) async fn get(State(state): State<Arc<AppState>>) -> Json<PolicyView> {
    Json(view(state.pipeline.policies().status()))
}

#[derive(Serialize)]
pub(crate) struct DryRun {
    /// The outcome: the action, and the reason of the rule that decided.
    action: &'static str,
    reason: Option<String>,
    message: Option<String>,
    labels: Vec<String>,
    /// A rule that could not be evaluated: the request would be refused.
    error: Option<String>,
    /// Every rule of the stage, fired or not.
    evaluation: Evaluation,
}

/// Evaluates an input document against the policy in force, as the
/// caller's tenant (its overlay applies); nothing is stored.
pub(crate) async fn evaluate(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    body: Result<Json<Input>, JsonRejection>,
) -> Result<Json<DryRun>, ApiError> {
    let Json(mut input) = body?;
    input.tenant = tenant;
    let evaluation = state.pipeline.policies().current().evaluate(&input);
    let outcome = evaluation.outcome();
    Ok(Json(DryRun {
        action: outcome.action.as_str(),
        reason: outcome.reason,
        message: outcome.message,
        labels: outcome.labels,
        error: outcome.failed.map(|(rule, e)| format!("rule {rule}: {e}")),
        evaluation,
    }))
}
