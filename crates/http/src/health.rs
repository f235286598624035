//! `/healthz`, `/readyz`, and the answers for unknown routes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use likeness_codes::ErrorCode;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when every part a generation needs is loaded. The process only
/// listens after building them, so this reports what was loaded and how.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let moderation = state.pipeline.moderation();
    let vision = match &moderation.vision {
        Ok(v) => json!({
            "ok": true,
            "models": v.models().iter().map(|m| json!({ "task": m.task, "file": m.file, "sha256": m.sha256 })).collect::<Vec<_>>(),
            "gallery_entries": moderation.gallery.entries.len(),
        }),
        Err(e) => json!({ "ok": false, "error": e }),
    };
    let storage = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => json!({ "ok": true, "backend": format!("{:?}", state.store.backend()).to_lowercase() }),
        Ok(Err(e)) => json!({ "ok": false, "error": e.to_string() }),
        Err(_) => json!({ "ok": false, "error": "the database did not answer within 2 s" }),
    };
    let policy = crate::policy::view(state.pipeline.policies().status());
    let backends: Vec<_> = state
        .backends
        .names()
        .filter_map(|n| state.backends.get(n))
        .map(|b| {
            json!({ "name": b.name(), "type": b.kind().as_str(), "generator": b.generator(),
                    "breaker": if b.breaker_open() { "open" } else { "closed" } })
        })
        .collect();
    let ready = moderation.vision.is_ok() && !state.tenants.is_empty() && storage["ok"] == true;
    let body = json!({
        "ready": ready,
        "checks": {
            "signing": { "ok": true, "signer": state.pipeline.signer().subject() },
            "storage": storage,
            "vision": vision,
            // A backend that is down does not make the gateway unready (the
            // built-in generator and the other backends still serve); its
            // circuit breaker's state says it is failing fast.
            "generator": { "ok": true, "backends": backends },
            // A refused edit does not make the gateway unready: the last good
            // policy keeps serving. It is reported here until a valid one loads.
            "policy": { "ok": true, "version": policy.version, "rejected": policy.rejected },
            "tenants": { "ok": !state.tenants.is_empty(), "count": state.tenants.len() },
        }
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::RouteMethodNotAllowed, "this endpoint does not take that method")
}
