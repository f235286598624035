//! The HTTP gateway: routes, wire types, authentication, and the mapping of
//! errors to status codes. The only crate that knows HTTP and JSON wire types.

mod consent;
mod error;
mod resolver;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use likeness_pipeline::Pipeline;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use error::ApiError;
pub use resolver::ResolverConfig;

/// A tenant: an app allowed to call the gateway. Only the SHA-256 of its API
/// key is kept, so a leaked config or database reveals no usable key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub api_key_sha256: [u8; 32],
}

impl Tenant {
    pub fn hash_key(key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }
}

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

pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub store: likeness_store::Store,
    /// The photo-library source; without allowed hosts, library references
    /// are refused.
    pub photos: Arc<likeness_photos::PhotoLibrary>,
    pub tenants: Vec<Tenant>,
    pub config: HttpConfig,
    /// CPU slots. A permit travels into the blocking job, so a client that
    /// hangs up does not free its slot while its work still runs.
    slots: Arc<Semaphore>,
    /// Admission: running plus waiting generations.
    pending: Arc<Semaphore>,
    /// The resolver's rate limit, per client address.
    resolver_limiter: resolver::RateLimiter,
    /// Watermark reads of uploaded images at once (the public resolver).
    detections: Arc<Semaphore>,
}

impl AppState {
    pub fn new(
        pipeline: Arc<Pipeline>,
        store: likeness_store::Store,
        photos: likeness_photos::PhotoLibrary,
        tenants: Vec<Tenant>,
        config: HttpConfig,
    ) -> Arc<AppState> {
        let slots = Arc::new(Semaphore::new(config.max_concurrent_generations.max(1)));
        let pending =
            Arc::new(Semaphore::new(config.max_pending_generations.max(config.max_concurrent_generations).max(1)));
        let resolver_limiter = resolver::RateLimiter::new(&config.resolver);
        let detections = Arc::new(Semaphore::new(config.resolver.max_concurrent_detections.max(1)));
        Arc::new(AppState {
            pipeline,
            store,
            photos: Arc::new(photos),
            tenants,
            config,
            slots,
            pending,
            resolver_limiter,
            detections,
        })
    }

    /// Admits a request that will hold photos in memory and use a CPU
    /// slot; 503 at once when too many are already running or waiting. Taken
    /// before library photos are fetched, so fetches are bounded too.
    pub(crate) fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.pending.clone().try_acquire_owned().map_err(|_| overloaded())
    }

    /// Runs CPU-bound work (vision, generation) on a blocking thread once a
    /// CPU slot is free; 503 when too many wait or the wait is too long.
    pub(crate) async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let admitted = self.admit()?;
        self.run_admitted(admitted, work).await
    }

    pub(crate) async fn run_admitted<T: Send + 'static>(
        &self,
        admitted: tokio::sync::OwnedSemaphorePermit,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = tokio::time::timeout(self.config.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| overloaded())?
            .map_err(|_| overloaded())?;
        tokio::task::spawn_blocking(move || {
            // Both permits live as long as the work, even if the client has gone.
            let _held = (admitted, slot);
            work()
        })
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the request task failed: {e}"))
        })
    }

    fn tenant_for(&self, key: &str) -> Option<&Tenant> {
        let hash = Tenant::hash_key(key);
        // Compare every tenant's hash in full so timing reveals nothing.
        let mut found = None;
        for t in &self.tenants {
            let diff = t.api_key_sha256.iter().zip(hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(t);
            }
        }
        found
    }
}

fn overloaded() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server.overloaded", "too many requests in progress; retry later")
}

/// The authenticated tenant of a request, set by [`authenticate`].
#[derive(Debug, Clone)]
pub struct TenantId(pub String);

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/generations", post(wire::create_generation))
        .route("/v1/grants", post(consent::create_grant).get(consent::list_grants))
        .route("/v1/grants/{id}", get(consent::get_grant).delete(consent::revoke_grant))
        .route("/v1/subjects", post(consent::create_subject).get(consent::list_subjects))
        .route("/v1/subjects/{id}", get(consent::get_subject).merge(delete(consent::delete_subject)))
        .route("/v1/receipts/{id}", get(consent::get_receipt))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // The C2PA Soft Binding Resolution API: public, rate-limited.
    let resolver = Router::new()
        .route("/services/supportedAlgorithms", get(resolver::supported_algorithms))
        .route("/matches/byBinding", get(resolver::by_binding_get).post(resolver::by_binding_post))
        .route("/matches/byContent", post(resolver::by_content))
        .route("/manifests/{id}", get(resolver::manifest))
        .route_layer(middleware::from_fn_with_state(state.clone(), resolver::rate_limit));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .merge(resolver)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when every part a generation needs is loaded. The process only
/// listens after building them, so this reports what was loaded and how.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let signer = state.pipeline.signer();
    let moderation = state.pipeline.moderation();
    let vision = match &moderation.vision {
        Ok(v) => serde_json::json!({
            "ok": true,
            "models": v.models().iter().map(|m| serde_json::json!({ "task": m.task, "file": m.file, "sha256": m.sha256 })).collect::<Vec<_>>(),
            "gallery_entries": moderation.gallery.entries.len(),
        }),
        Err(e) => serde_json::json!({ "ok": false, "error": e }),
    };
    let storage = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {
            serde_json::json!({ "ok": true, "backend": format!("{:?}", state.store.backend()).to_lowercase() })
        }
        Ok(Err(e)) => serde_json::json!({ "ok": false, "error": e.to_string() }),
        Err(_) => serde_json::json!({ "ok": false, "error": "the database did not answer within 2 s" }),
    };
    let ready = moderation.vision.is_ok() && !state.tenants.is_empty() && storage["ok"] == true;
    let body = serde_json::json!({
        "ready": ready,
        "checks": {
            "signing": { "ok": true, "signer": signer.subject() },
            "storage": storage,
            "vision": vision,
            "generator": { "ok": true },
            "tenants": { "ok": !state.tenants.is_empty(), "count": state.tenants.len() },
        }
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route.not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "route.method_not_allowed", "this endpoint does not take that method")
}

async fn authenticate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "auth.missing", "send Authorization: Bearer <API key>")
    })?;
    let key = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "auth.malformed", "expected Authorization: Bearer <API key>")
        })?;
    let tenant = state
        .tenant_for(key)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "auth.invalid_key", "unknown API key"))?;
    req.extensions_mut().insert(TenantId(tenant.id.clone()));
    Ok(next.run(req).await)
}

/// The id of one request, in the response header, the body and every log line.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = format!("req_{}", uuid::Uuid::now_v7().simple());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let _enter = span.enter();
    let started = std::time::Instant::now();
    drop(_enter);
    let mut resp = {
        use tracing::Instrument;
        next.run(req).instrument(span.clone()).await
    };
    tracing::info!(parent: &span, status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "done");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
