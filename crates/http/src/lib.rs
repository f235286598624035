//! The HTTP gateway: the only crate that knows HTTP and JSON wire types.
//!
//! One module per resource, each holding its handlers and wire types:
//! [`generations`], [`grants`], [`subjects`], [`receipts`], the public
//! [`resolver`] and [`health`]. Around them: tenant authentication
//! ([`auth`]), admission of CPU-bound work ([`admission`]), request ids, and
//! [`error`], where every failure becomes a code from the registry
//! (`likeness-codes`) and so a status.

mod admission;
mod auth;
mod clock;
mod error;
mod generations;
mod grants;
mod health;
mod receipts;
mod records;
mod resolver;
mod subjects;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use likeness_pipeline::Pipeline;

pub use auth::{Tenant, TenantId};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ApiError;
pub use resolver::ResolverConfig;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Generations running at once; more wait for a slot.
    pub max_concurrent_generations: usize,
    /// How long a request may wait for a slot before 503.
    pub queue_timeout: Duration,
    /// Generations running or waiting at once; past this, 503 at once, so
    /// waiting requests cannot pile up bodies in memory.
    pub max_pending_generations: usize,
    /// The public soft-binding resolver's limits.
    pub resolver: ResolverConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 48 * 1024 * 1024,
            max_concurrent_generations: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_timeout: Duration::from_secs(30),
            max_pending_generations: 16,
            resolver: ResolverConfig::default(),
        }
    }
}

/// What every request shares.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub store: likeness_store::Store,
    /// The photo-library source; without a provider API, library references
    /// are refused.
    pub photos: Arc<likeness_photos::PhotoLibrary>,
    pub tenants: Vec<Tenant>,
    pub config: HttpConfig,
    /// The time consent is judged at.
    pub clock: Arc<dyn Clock>,
    admission: admission::Admission,
    resolver: resolver::ResolverState,
}

impl AppState {
    pub fn new(
        pipeline: Arc<Pipeline>,
        store: likeness_store::Store,
        photos: likeness_photos::PhotoLibrary,
        tenants: Vec<Tenant>,
        config: HttpConfig,
    ) -> Arc<AppState> {
        AppState::with_clock(pipeline, store, photos, tenants, config, Arc::new(SystemClock))
    }

    /// The same, judging consent by `clock`.
    pub fn with_clock(
        pipeline: Arc<Pipeline>,
        store: likeness_store::Store,
        photos: likeness_photos::PhotoLibrary,
        tenants: Vec<Tenant>,
        config: HttpConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            admission: admission::Admission::new(&config),
            resolver: resolver::ResolverState::new(&config.resolver),
            pipeline,
            store,
            photos: Arc::new(photos),
            tenants,
            config,
            clock,
        })
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/generations", post(generations::create))
        .route("/v1/grants", post(grants::create).get(grants::list))
        .route("/v1/grants/{id}", get(grants::get).delete(grants::revoke))
        .route("/v1/subjects", post(subjects::create).get(subjects::list))
        .route("/v1/subjects/{id}", get(subjects::get).delete(subjects::delete))
        .route("/v1/receipts/{id}", get(receipts::get))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(api)
        .merge(resolver::routes(state.clone()))
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The client's address is what the resolver's rate limit counts by.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// The id of one request, in the response header, the body and every log line.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn request_id(mut req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let id = format!("req_{}", uuid::Uuid::now_v7().simple());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    tracing::info!(parent: &span, status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "done");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
