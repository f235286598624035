//! The HTTP gateway: the only crate that knows HTTP and JSON wire types.
//!
//! One module per resource, each holding its handlers and wire types:
//! `generations`, `grants`, `subjects` (with the person's own, public
//! side), `receipts`, `reviews`, `policy`, the public `resolver` and `health`. They share the [`AppState`] (`state`), tenant
//! authentication (`auth`), admission of CPU-bound work (`admission`),
//! request ids, and `error`, where every failure becomes a code from the
//! registry (`likeness-codes`) and so a status. Dependencies between the
//! modules point one way: resources → shared pieces → state.

mod admission;
mod auth;
mod body;
mod client;
mod clock;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod generations;
mod grants;
mod health;
mod metrics;
mod openai;
mod policy;
mod quota;
mod rate_limit;
mod receipts;
mod records;
mod request_id;
mod resolver;
mod reviews;
mod server;
mod state;
mod subjects;
mod upload;
mod verify;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

pub use auth::TenantId;
pub use client::Cidr;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ApiError;
pub use quota::TenantQuota;
pub use request_id::RequestId;
pub use server::ServerConfig;
pub use state::{AppState, HttpConfig, LogSigner, Parts, ResolverConfig, SubjectsConfig, Tenant};

pub fn router(state: Arc<AppState>) -> Router {
    // Generations: the tenant's quotas are checked before the body is read.
    let generate = Router::new()
        .route("/v1/generations", post(generations::create))
        .route_layer(middleware::from_fn_with_state(state.clone(), quota::enforce))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let api = Router::new()
        .route("/v1/grants", post(grants::create).get(grants::list))
        .route("/v1/grants/{id}", get(grants::get).delete(grants::revoke))
        .route("/v1/subjects", post(subjects::create).get(subjects::list))
        .route("/v1/subjects/{id}/confirmation", post(subjects::reissue))
        .route("/v1/receipts/{id}", get(receipts::get))
        .route("/v1/reviews", get(reviews::list))
        .route("/v1/reviews/{id}", get(reviews::get).post(reviews::resolve))
        .route("/v1/policy", get(policy::get))
        .route("/v1/policy/evaluate", post(policy::evaluate))
        .route("/metrics", get(metrics::render))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    // A subject's own endpoints: the app with its API key, or the person
    // shown with their personal token.
    let person = Router::new()
        .route("/v1/subjects/{id}", get(subjects::get).delete(subjects::delete))
        .route("/v1/subjects/{id}/usage", get(subjects::usage))
        .route("/v1/subjects/{id}/withdraw", post(subjects::withdraw))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::app_or_person));
    // The public detection API and feedback on its verdicts: the resolver's
    // rate limit and upload limits.
    let detect = Router::new()
        .route("/v1/verify", post(verify::verify))
        .route("/v1/verify/feedback", post(verify::feedback::create))
        .route_layer(middleware::from_fn_with_state(state.clone(), resolver::rate_limit));
    // Confirmation: public, rate-limited per address.
    let confirm = Router::new()
        .route("/v1/subjects/{id}/confirm", post(subjects::confirm))
        .route_layer(middleware::from_fn_with_state(state.clone(), subject_rate_limit));
    // The OpenAI door: the same tenants, errors in OpenAI's shape.
    let openai = Router::new()
        .route("/v1/images/generations", post(openai::generations))
        .route("/v1/images/edits", post(openai::edits))
        .route_layer(middleware::from_fn_with_state(state.clone(), quota::enforce))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(middleware::from_fn(openai::openai_errors));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi))
        .route("/verify", get(verify::page))
        .merge(generate)
        .merge(api)
        .merge(person)
        .merge(confirm)
        .merge(detect)
        .merge(openai)
        .merge(resolver::routes(state.clone()))
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::count))
        .layer(middleware::from_fn(request_id::request_id))
        .with_state(state)
}

/// Serves `/metrics` alone, without authentication, on a listener only the
/// operator's scraper reaches (`[server] metrics_listen`), with the main
/// listener's limits. Runs until the process ends: scrapes need no drain.
pub async fn serve_metrics(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    let config = state.config.server.clone();
    let app = Router::new()
        .route("/metrics", get(metrics::render))
        .fallback(health::not_found)
        .layer(middleware::from_fn(request_id::request_id))
        .with_state(state);
    server::serve(listener, app, config, std::future::pending()).await
}

async fn subject_rate_limit(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    rate_limit::per_address(&state, &state.subject_limiter, likeness_codes::ErrorCode::SubjectRateLimited, req, next)
        .await
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets
/// requests in flight finish, within the drain deadline
/// ([`ServerConfig`], in the state's config).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config.server.clone();
    server::serve(listener, router(state), config, shutdown).await
}
