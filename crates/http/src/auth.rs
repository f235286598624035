//! Tenant authentication: `Authorization: Bearer KEY`, compared by SHA-256.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use likeness_codes::ErrorCode;

use crate::error::ApiError;
use crate::state::{AppState, Tenant};

/// The authenticated tenant of a request, set by [`authenticate`].
#[derive(Debug, Clone)]
pub struct TenantId(pub String);

/// The tenant whose key this is. Every tenant's hash is compared in full,
/// so timing reveals nothing.
fn tenant_for<'a>(tenants: &'a [Tenant], key: &str) -> Option<&'a Tenant> {
    let hash = Tenant::hash_key(key);
    let mut found = None;
    for t in tenants {
        let diff = t.api_key_sha256.iter().zip(hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(t);
        }
    }
    found
}

/// Middleware on the tenant API: 401 without a known key.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(ErrorCode::AuthMissing, "send Authorization: Bearer <API key>"))?;
    let key = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::AuthMalformed, "expected Authorization: Bearer <API key>"))?;
    let tenant =
        tenant_for(&state.tenants, key).ok_or_else(|| ApiError::new(ErrorCode::AuthInvalidKey, "unknown API key"))?;
    req.extensions_mut().insert(TenantId(tenant.id.clone()));
    Ok(next.run(req).await)
}
