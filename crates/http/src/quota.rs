//! Per-tenant quotas on generations, checked before the request's body is
//! read: requests per minute and generations at once. One app's burst, or
//! its compromised key, cannot take every slot (or the memory that large
//! bodies cost) from the others. Then admission, also before the body: a
//! body is read only into one of the gateway's bounded places.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use likeness_codes::ErrorCode;
use tokio::sync::Semaphore;

use crate::auth::TenantId;
use crate::error::ApiError;
use crate::rate_limit::RateLimiter;
use crate::state::{AppState, Tenant};

/// A tenant's limits; none: only the gateway's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantQuota {
    /// Generation requests per minute (bursts of as many).
    pub requests_per_minute: Option<u32>,
    /// Generations running or waiting at once.
    pub max_concurrent_generations: Option<usize>,
}

/// The quotas' live state, one entry per tenant that has any.
pub(crate) struct Quotas {
    /// Buckets by tenant, each at its own rate.
    rate: RateLimiter<String>,
    slots: HashMap<String, Arc<Semaphore>>,
    quotas: HashMap<String, TenantQuota>,
}

impl Quotas {
    pub(crate) fn new(tenants: &[Tenant]) -> Quotas {
        let slots = tenants
            .iter()
            .filter_map(|t| {
                t.quota.max_concurrent_generations.map(|n| (t.id.clone(), Arc::new(Semaphore::new(n.max(1)))))
            })
            .collect();
        let quotas = tenants.iter().map(|t| (t.id.clone(), t.quota)).collect();
        Quotas { rate: RateLimiter::new(60, 1), slots, quotas }
    }
}

/// Middleware on the generation routes, after authentication.
pub(crate) async fn enforce(
    State(state): State<Arc<AppState>>,
    Extension(TenantId(tenant)): Extension<TenantId>,
    mut req: Request,
    next: Next,
) -> Response {
    let quotas = &state.quotas;
    let quota = quotas.quotas.get(&tenant).copied().unwrap_or_default();
    if let Some(per_minute) = quota.requests_per_minute {
        if let Err(wait) = quotas.rate.take_at_rate(tenant.clone(), Instant::now(), per_minute) {
            return crate::rate_limit::too_many(ErrorCode::TenantRateLimited, wait, |secs| {
                format!("this app's quota is {per_minute} generation requests a minute; retry in {secs} s")
            });
        }
    }
    // The slot is held until the answer is made, the body's reading included.
    let _slot = match quotas.slots.get(&tenant) {
        None => None,
        Some(slots) => match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return ApiError::new(
                    ErrorCode::TenantConcurrencyExceeded,
                    format!(
                        "this app may run {} generations at once; retry when one has finished",
                        quota.max_concurrent_generations.unwrap_or(1)
                    ),
                )
                .into_response()
            }
        },
    };
    // A place among the generations running or waiting, taken before the
    // body is read and held until the answer is made.
    match state.admission.admit() {
        Ok(admitted) => req.extensions_mut().insert(admitted),
        Err(e) => return e.into_response(),
    };
    next.run(req).await
}
