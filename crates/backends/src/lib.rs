//! Image generators behind the gateway, over HTTP: the OpenAI Images API
//! (and compatible services), ComfyUI, Stable Diffusion WebUI (AUTOMATIC1111
//! and Forge) and a small generic JSON protocol of our own.
//!
//! Every backend gets the same guards: a connect and a total timeout,
//! bounded retries with jittered backoff on connection errors, 429
//! (honouring `Retry-After`) and 5xx, a circuit breaker that fails fast
//! while the backend is down and probes to close, and a concurrency limit.
//! Errors name the backend, never its credentials.
//!
//! What a backend returns is untrusted: these adapters hand back encoded
//! bytes, and the pipeline decodes them with the limits of uploads and
//! checks their number and size before anything else sees them.

mod breaker;
mod comfyui;
mod generic;
mod http;
mod openai;
mod sdwebui;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use likeness_codes::ErrorCode;
use likeness_pipeline::Job;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use breaker::{Breaker, Permit};
pub use http::Auth;

/// The protocol a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    ComfyUi,
    SdWebUi,
    Generic,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "openai" => Kind::OpenAi,
            "comfyui" => Kind::ComfyUi,
            "sdwebui" => Kind::SdWebUi,
            "generic" => Kind::Generic,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::ComfyUi => "comfyui",
            Kind::SdWebUi => "sdwebui",
            Kind::Generic => "generic",
        }
    }
}

/// A configured backend.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// What requests and tenants call it by, e.g. `studio`.
    pub name: String,
    pub kind: Kind,
    /// e.g. `https://api.openai.com`, `http://comfy.internal:8188`.
    pub base_url: String,
    pub auth: Auth,
    /// The model to ask for (OpenAI: `gpt-image-1`; WebUI: a checkpoint;
    /// generic: passed through).
    pub model: Option<String>,
    /// ComfyUI: the workflow template (API format, with placeholders) and
    /// its name for the manifest.
    pub workflow: Option<Workflow>,
    /// A negative prompt for backends that take one.
    pub negative_prompt: String,
    /// For img2img (WebUI): how far from the references to go, 0 to 1.
    pub denoising_strength: f64,
    pub connect_timeout: Duration,
    /// The whole generation, queueing and polling included.
    pub timeout: Duration,
    /// Generations at once; more wait up to `queue_timeout`.
    pub max_concurrent: usize,
    pub queue_timeout: Duration,
    /// Retries of one call after the first attempt.
    pub retries: u32,
    pub backoff: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// Largest answer read from the backend, in bytes.
    pub max_response_bytes: usize,
    /// ComfyUI: how often `/history` is asked.
    pub poll_interval: Duration,
    /// OpenAI: whether to send `response_format: b64_json`; `None`: to
    /// every model but `gpt-image-*`.
    pub send_response_format: Option<bool>,
}

impl BackendConfig {
    pub fn new(name: &str, kind: Kind, base_url: &str) -> BackendConfig {
        BackendConfig {
            name: name.to_string(),
            kind,
            base_url: base_url.trim_end_matches('/').to_string(),
            auth: Auth::None,
            model: None,
            workflow: None,
            negative_prompt: String::new(),
            denoising_strength: 0.6,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(180),
            max_concurrent: 4,
            queue_timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(250),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            max_response_bytes: 128 * 1024 * 1024,
            poll_interval: Duration::from_millis(250),
            send_response_format: None,
        }
    }
}

/// A ComfyUI workflow template.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub template: serde_json::Value,
}

/// What a request may add for backends that take it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub quality: Option<String>,
    pub background: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("backend {backend} did not answer in time")]
    Timeout { backend: String },
    #[error("backend {backend} is unavailable: {detail}")]
    Unavailable { backend: String, detail: String },
    #[error("backend {backend} is failing; requests are refused for a while (circuit breaker open)")]
    CircuitOpen { backend: String },
    #[error("backend {backend} is busy: no slot within the queue timeout")]
    Busy { backend: String },
    /// An answer that is not what the protocol promises.
    #[error("backend {backend} gave a bad answer: {detail}")]
    BadResponse { backend: String, detail: String },
    /// The backend refused this request (a 4xx other than 429): its own
    /// message, e.g. a content policy. Not a sign the backend is down.
    #[error("backend {backend} refused the request: {detail}")]
    Rejected { backend: String, detail: String },
    /// A workflow or setting that cannot work, found before sending.
    #[error("backend {backend} is misconfigured: {detail}")]
    Config { backend: String, detail: String },
}

impl BackendError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BackendError::Timeout { .. } => ErrorCode::GeneratorTimeout,
            BackendError::Unavailable { .. } | BackendError::CircuitOpen { .. } | BackendError::Busy { .. } => {
                ErrorCode::GeneratorUnavailable
            }
            BackendError::BadResponse { .. } => ErrorCode::GeneratorBadResponse,
            BackendError::Rejected { .. } => ErrorCode::GeneratorRejected,
            BackendError::Config { .. } => ErrorCode::GeneratorFailed,
        }
    }

    /// Whether the backend looked broken (the breaker counts these).
    fn unhealthy(&self) -> bool {
        matches!(
            self,
            BackendError::Timeout { .. } | BackendError::Unavailable { .. } | BackendError::BadResponse { .. }
        )
    }
}

enum Protocol {
    OpenAi,
    ComfyUi(comfyui::ComfyUi),
    SdWebUi,
    Generic,
}

/// One configured backend, ready to call.
pub struct Backend {
    config: BackendConfig,
    http: http::Http,
    protocol: Protocol,
    breaker: Breaker,
    slots: Arc<Semaphore>,
}

/// A slot of a backend's concurrency limit, held while it works.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Backend {
    pub fn new(config: BackendConfig) -> Result<Backend, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("likeness/", env!("CARGO_PKG_VERSION")))
            // Backends get no say over where the gateway goes next.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("backend {}: {e}", config.name))?;
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(format!("backend {}: base_url must be http:// or https://", config.name));
        }
        let protocol = match config.kind {
            Kind::OpenAi => Protocol::OpenAi,
            Kind::ComfyUi => Protocol::ComfyUi(comfyui::ComfyUi::new(&config)?),
            Kind::SdWebUi => Protocol::SdWebUi,
            Kind::Generic => Protocol::Generic,
        };
        let http = http::Http {
            client,
            base: config.base_url.clone(),
            backend: config.name.clone(),
            auth: config.auth.clone(),
            retries: config.retries,
            max_body: config.max_response_bytes,
            backoff: config.backoff,
        };
        Ok(Backend {
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            protocol,
            http,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn kind(&self) -> Kind {
        self.config.kind
    }

    /// What the manifest names as the generator: `openai/gpt-image-1`,
    /// `comfyui/<workflow>`, `sdwebui/<model>`, `generic/<model>`.
    pub fn generator(&self) -> String {
        let what = match (&self.protocol, &self.config.model) {
            (Protocol::ComfyUi(c), _) => c.workflow_name().to_string(),
            (_, Some(m)) => m.clone(),
            (_, None) => "default".to_string(),
        };
        format!("{}/{what}", self.config.kind.as_str())
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Makes `job.count` images. Waits for a slot of the concurrency limit
    /// (not a CPU slot: the gateway's own work is admitted apart), fails
    /// fast while the breaker is open, and gives up after the timeout.
    /// Dropping the future cancels the call (ComfyUI: the queued prompt is
    /// deleted and interrupted).
    pub async fn generate(&self, job: &Job, options: &Options) -> Result<Vec<Vec<u8>>, BackendError> {
        let name = || self.config.name.clone();
        let Some(permit) = self.breaker.permit(Instant::now()) else {
            return Err(BackendError::CircuitOpen { backend: name() });
        };
        let _slot = tokio::time::timeout(self.config.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| BackendError::Busy { backend: name() })?
            .map_err(|_| BackendError::Busy { backend: name() })?;
        let work = async {
            match &self.protocol {
                Protocol::OpenAi => openai::generate(&self.http, &self.config, job, options).await,
                Protocol::ComfyUi(c) => c.generate(&self.http, &self.config, job).await,
                Protocol::SdWebUi => sdwebui::generate(&self.http, &self.config, job).await,
                Protocol::Generic => generic::generate(&self.http, &self.config, job).await,
            }
        };
        let result = match tokio::time::timeout(self.config.timeout, work).await {
            Ok(Ok(images)) if images.is_empty() => Err(self.http.bad("no images in the answer".into())),
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout { backend: name() }),
        };
        permit.record(!result.as_ref().err().is_some_and(BackendError::unhealthy), Instant::now());
        result
    }
}

/// The configured backends by name.
#[derive(Default)]
pub struct Backends {
    by_name: BTreeMap<String, Arc<Backend>>,
}

impl Backends {
    pub fn new(configs: Vec<BackendConfig>) -> Result<Backends, String> {
        let mut by_name = BTreeMap::new();
        for c in configs {
            if c.name == "builtin" || c.name.is_empty() {
                return Err(format!("backend name {:?} is reserved or empty", c.name));
            }
            let name = c.name.clone();
            if by_name.insert(name.clone(), Arc::new(Backend::new(c)?)).is_some() {
                return Err(format!("backend {name} is configured twice"));
            }
        }
        Ok(Backends { by_name })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The backend called `model`, else the first whose model it is (so
    /// `model: "gpt-image-1"` at the OpenAI door finds the backend that
    /// serves it): its name.
    pub fn by_name_or_model(&self, model: &str) -> Option<&str> {
        if let Some((name, _)) = self.by_name.get_key_value(model) {
            return Some(name);
        }
        self.by_name.iter().find(|(_, b)| b.config.model.as_deref() == Some(model)).map(|(n, _)| n.as_str())
    }
}

/// The prompt a backend is given: the request's, with its style said in
/// words (backends know no style parameter of ours).
pub(crate) fn styled_prompt(job: &Job) -> String {
    let style = job.style.replace('-', " ");
    if job.prompt.trim().is_empty() {
        format!("a {style} image")
    } else {
        format!("{}, as a {style}", job.prompt.trim())
    }
}

/// Base64 as the protocols use it (standard, padded).
pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
