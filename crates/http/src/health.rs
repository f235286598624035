//! `/healthz`, `/readyz`, and the answers for unknown routes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use likeness_codes::ErrorCode;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// How long a database check answers every `/readyz` (a load balancer
/// polling it, or anyone on the internet, does not become database load).
const STORAGE_CHECK_TTL: Duration = Duration::from_secs(1);

/// The database's answer to a ping, at most [`STORAGE_CHECK_TTL`] old.
async fn storage_check(state: &AppState) -> Result<(), String> {
    let mut last = state.storage_check.lock().await;
    if let Some((at, result)) = last.as_ref() {
        if at.elapsed() < STORAGE_CHECK_TTL {
            return result.clone();
        }
    }
    let result = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the database did not answer within 2 s".to_string()),
    };
    *last = Some((std::time::Instant::now(), result.clone()));
    result
}

/// Ready when every part a generation needs is loaded. Public: anyone gets
/// `{"ready": …}` and the status (200 or 503), nothing else. With a
/// tenant's API key, the details: what was loaded and how, and why not
/// (signer, model hashes, gallery size, database errors, backends).
pub(crate) async fn readyz(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let moderation = state.pipeline.moderation();
    let vision = match &moderation.vision {
        Ok(v) => json!({
            "ok": true,
            "models": v.models().iter().map(|m| json!({ "task": m.task, "file": m.file, "sha256": m.sha256 })).collect::<Vec<_>>(),
            "gallery_entries": moderation.gallery.entries.len(),
        }),
        Err(e) => json!({ "ok": false, "error": e }),
    };
    let storage = match storage_check(&state).await {
        Ok(()) => json!({ "ok": true, "backend": format!("{:?}", state.store.backend()).to_lowercase() }),
        Err(e) => json!({ "ok": false, "error": e }),
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
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if crate::auth::tenant_of(&state, &headers).is_none() {
        return (status, Json(json!({ "ready": ready }))).into_response();
    }
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
    (status, Json(body)).into_response()
}

/// The API's description (OpenAPI 3.1, `docs/openapi.json`), built into
/// the binary; `tests/openapi.rs` keeps it and the routes equal.
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

pub(crate) async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::RouteMethodNotAllowed, "this endpoint does not take that method")
}
