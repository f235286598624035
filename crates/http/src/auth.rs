//! Who calls: a tenant (`Authorization: Bearer <API key>`, compared by
//! SHA-256), or, on a subject's own endpoints, the person shown with their
//! personal token (checked against that subject by the handler).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
        if same_bytes(&t.api_key_sha256, &hash) {
            found = Some(t);
        }
    }
    found
}

/// Whether two secrets' hashes are equal, in time that does not depend on
/// where they first differ.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The tenant whose API key a request carries, if any.
pub(crate) fn tenant_of<'a>(state: &'a AppState, headers: &HeaderMap) -> Option<&'a Tenant> {
    bearer_of(headers).ok().and_then(|key| tenant_for(&state.tenants, key))
}

fn bearer(req: &Request) -> Result<&str, ApiError> {
    bearer_of(req.headers())
}

/// The bearer token of a request, or why there is none.
fn bearer_of(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(ErrorCode::AuthMissing, "send Authorization: Bearer <API key>"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::AuthMalformed, "expected Authorization: Bearer <API key>"))
}

/// Middleware on the tenant API: 401 without a known key.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = bearer(&req)?;
    let tenant =
        tenant_for(&state.tenants, key).ok_or_else(|| ApiError::new(ErrorCode::AuthInvalidKey, "unknown API key"))?;
    req.extensions_mut().insert(TenantId(tenant.id.clone()));
    Ok(next.run(req).await)
}

/// Who calls one of a subject's own endpoints.
#[derive(Clone)]
pub(crate) enum Caller {
    /// The app, with its API key.
    App(String),
    /// Someone holding a personal token: the person shown, once the handler
    /// checks the token against the subject in the path.
    Person(crate::subjects::PersonalToken),
}

/// Middleware on the endpoints both the app and the person may call. A
/// personal token is recognised by its prefix and rate-limited per
/// address, like every public endpoint.
pub(crate) async fn app_or_person(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, std::convert::Infallible> {
    let token = match bearer(&req) {
        Ok(t) => t,
        Err(e) => return Ok(e.into_response()),
    };
    let caller = match crate::subjects::PersonalToken::recognise(token) {
        Some(personal) => {
            if let Some(refused) = crate::rate_limit::refusal(
                &state.subject_limiter,
                &req,
                &state.config.trusted_proxies,
                ErrorCode::SubjectRateLimited,
            ) {
                return Ok(refused);
            }
            Caller::Person(personal)
        }
        None => {
            let Some(tenant) = tenant_for(&state.tenants, token) else {
                return Ok(ApiError::new(ErrorCode::AuthInvalidKey, "unknown API key").into_response());
            };
            Caller::App(tenant.id.clone())
        }
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}
