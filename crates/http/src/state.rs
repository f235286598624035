//! What every request shares: the pipeline, the store, the photo library,
//! the tenants, the limits, the clock, and the admission and rate-limit
//! state.

use std::sync::Arc;
use std::time::Duration;

use likeness_pipeline::Pipeline;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::admission::Admission;
use crate::clock::Clock;
use crate::rate_limit::RateLimiter;

/// A tenant: an app allowed to call the gateway. Only the SHA-256 of its API
/// key is kept, so a leaked config or database reveals no usable key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub api_key_sha256: [u8; 32],
    /// The backend its requests go to when they name none; none: the
    /// built-in generator.
    pub default_backend: Option<String>,
    /// Whether only subjects the person shown confirmed count as consenting.
    pub confirmation: likeness_consent::ConfirmationRule,
    /// Whether a confirmation must come with a photo matching the enrolled faces.
    pub confirmation_photo_required: bool,
    /// Its generation quotas.
    pub quota: crate::quota::TenantQuota,
}

impl Tenant {
    /// A tenant with the defaults: built-in generator, confirmation
    /// required for every subject but `self`, photo optional.
    pub fn new(id: impl Into<String>, api_key_sha256: [u8; 32]) -> Tenant {
        Tenant {
            id: id.into(),
            api_key_sha256,
            default_backend: None,
            confirmation: likeness_consent::ConfirmationRule::Required,
            confirmation_photo_required: false,
            quota: crate::quota::TenantQuota::default(),
        }
    }

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
    /// Confirmation by the person shown, and their own endpoints.
    pub subjects: SubjectsConfig,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` say who the
    /// client is, for the per-address limits; nobody else's are read.
    pub trusted_proxies: Vec<crate::client::Cidr>,
    /// The listener's timeouts and connection cap.
    pub server: crate::server::ServerConfig,
    /// PEM certificates the public detection API (`POST /v1/verify`) trusts
    /// signers under; none: intact manifests are `valid`, never `trusted`.
    pub trust_anchors: Option<String>,
    /// How long feedback on the detection tool's verdicts is kept.
    pub feedback_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct SubjectsConfig {
    /// How long a confirmation token works.
    pub confirmation_ttl: Duration,
    /// The public subject endpoints (confirmation, and every request with a
    /// personal token): requests per minute per client address.
    pub requests_per_minute: u32,
    pub burst: u32,
}

impl Default for SubjectsConfig {
    fn default() -> Self {
        SubjectsConfig { confirmation_ttl: Duration::from_secs(7 * 24 * 3600), requests_per_minute: 30, burst: 10 }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 48 * 1024 * 1024,
            max_concurrent_generations: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_timeout: Duration::from_secs(30),
            max_pending_generations: 16,
            resolver: ResolverConfig::default(),
            subjects: SubjectsConfig::default(),
            trusted_proxies: Vec::new(),
            server: crate::server::ServerConfig::default(),
            trust_anchors: None,
            feedback_retention: Duration::from_secs(365 * 24 * 3600),
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
    /// Images on the public web, fetched by URL for the detection API.
    pub web: likeness_photos::WebImages,
    pub tenants: Vec<Tenant>,
    pub config: HttpConfig,
    /// The time consent is judged at.
    pub clock: Arc<dyn Clock>,
    /// The configured generator backends; `builtin` is always there.
    pub backends: likeness_backends::Backends,
    pub(crate) admission: Admission,
    /// The public resolver's rate limit, per client address.
    pub(crate) resolver_limiter: RateLimiter,
    /// The person's endpoints' rate limit, per client address.
    pub(crate) subject_limiter: RateLimiter,
    /// The public resolver's reads of uploaded images at once, apart from
    /// the generations' slots.
    pub(crate) detections: Arc<Semaphore>,
    /// The public resolver's uploads being received.
    pub(crate) uploads: Arc<Semaphore>,
    /// The tenants' generation quotas.
    pub(crate) quotas: crate::quota::Quotas,
    /// Checks Content Credentials for the detection API, against the
    /// configured trust anchors (or why they could not be loaded).
    pub(crate) verifier: Result<Arc<likeness_provenance::Verifier>, String>,
    /// Counters and histograms for `/metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
    /// The last database check `/readyz` made, and when.
    pub(crate) storage_check: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

/// What an [`AppState`] is made of.
pub struct Parts {
    pub pipeline: Arc<Pipeline>,
    pub store: likeness_store::Store,
    pub photos: likeness_photos::PhotoLibrary,
    /// Images fetched by URL for the detection API.
    pub web: likeness_photos::WebImages,
    pub tenants: Vec<Tenant>,
    pub config: HttpConfig,
    pub clock: Arc<dyn Clock>,
    pub backends: likeness_backends::Backends,
}

impl AppState {
    pub fn from_parts(p: Parts) -> Arc<AppState> {
        let config = p.config;
        let running = config.max_concurrent_generations.max(1);
        Arc::new(AppState {
            admission: Admission::new(running, config.max_pending_generations.max(running), config.queue_timeout),
            resolver_limiter: RateLimiter::new(config.resolver.requests_per_minute, config.resolver.burst),
            subject_limiter: RateLimiter::new(config.subjects.requests_per_minute, config.subjects.burst),
            detections: Arc::new(Semaphore::new(config.resolver.max_concurrent_detections.max(1))),
            storage_check: tokio::sync::Mutex::new(None),
            metrics: crate::metrics::Metrics::default(),
            verifier: likeness_provenance::Verifier::new(config.trust_anchors.as_deref())
                .map(Arc::new)
                .map_err(|e| format!("the trust anchors do not load: {e}")),
            quotas: crate::quota::Quotas::new(&p.tenants),
            uploads: Arc::new(Semaphore::new(config.resolver.max_uploads_in_flight.max(1))),
            pipeline: p.pipeline,
            store: p.store,
            photos: Arc::new(p.photos),
            web: p.web,
            tenants: p.tenants,
            config,
            clock: p.clock,
            backends: p.backends,
        })
    }

    pub(crate) fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// The tenant's confirmation rule; an unknown tenant gets the strict one.
    pub(crate) fn confirmation_rule(&self, tenant: &str) -> likeness_consent::ConfirmationRule {
        self.tenant(tenant).map_or(likeness_consent::ConfirmationRule::Required, |t| t.confirmation)
    }

    /// The backend a request goes to: the one it names, else its tenant's
    /// default, else none (the built-in generator).
    pub(crate) fn backend_for(
        &self,
        tenant: &str,
        named: Option<&str>,
    ) -> Result<Option<Arc<likeness_backends::Backend>>, crate::ApiError> {
        let default = self.tenants.iter().find(|t| t.id == tenant).and_then(|t| t.default_backend.as_deref());
        match named.or(default) {
            None | Some(likeness_consent::BUILTIN) => Ok(None),
            Some(name) => self.backends.get(name).map(Some).ok_or_else(|| {
                let known: Vec<&str> =
                    std::iter::once(likeness_consent::BUILTIN).chain(self.backends.names()).collect();
                crate::ApiError::new(
                    likeness_codes::ErrorCode::GeneratorUnknown,
                    format!("no backend {name:?}; the configured ones are: {}", known.join(", ")),
                )
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Requests per minute per client address, refilled continuously.
    pub requests_per_minute: u32,
    /// Requests a client may make at once before the rate applies.
    pub burst: u32,
    /// Uploaded images read for a watermark at once; more get 503, so the
    /// public API cannot take the generations' CPU.
    pub max_concurrent_detections: usize,
    /// Uploads being received at once; more get 503 at once, so slow
    /// anonymous senders cannot hold memory open.
    pub max_uploads_in_flight: usize,
    /// How long an upload may take to arrive.
    pub upload_timeout: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            requests_per_minute: 60,
            burst: 20,
            max_concurrent_detections: 1,
            max_uploads_in_flight: 4,
            upload_timeout: Duration::from_secs(30),
        }
    }
}

/// Signs the decision log's checkpoints with the gateway's signing key.
pub struct LogSigner(pub Arc<likeness_provenance::Signer>);

impl likeness_store::CheckpointSigner for LogSigner {
    fn public_key(&self) -> String {
        hex::encode(self.0.public_key())
    }

    fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.0.sign_message(message))
    }
}
