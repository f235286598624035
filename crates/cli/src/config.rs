//! The gateway's configuration file (TOML). Every field has a default, so the
//! gateway starts with no file at all; see `docs/config.example.toml`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<String>,
    /// Reverse proxies (addresses or blocks, `10.0.0.0/8`) whose
    /// `Forwarded` / `X-Forwarded-For` headers name the client for the
    /// per-address rate limits. Empty: the connection's peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub data_dir: Option<PathBuf>,
    /// `postgres://...` for several replicas; unset: `<data_dir>/likeness.db` (SQLite).
    pub database: Option<String>,
    /// A file holding the key (64 hex digits) enrolled face embeddings are
    /// encrypted with at rest; `LIKENESS_EMBEDDING_KEY` (the hex itself)
    /// takes precedence. Unset: `<data_dir>/keys/embedding.key`, created
    /// on first start. Replicas must share it.
    pub embedding_key: Option<PathBuf>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    #[serde(default)]
    pub signing: Signing,
    #[serde(default)]
    pub provenance: ProvenanceSettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub vision: VisionSettings,
    #[serde(default)]
    pub photos: PhotosSettings,
    #[serde(default)]
    pub resolver: ResolverSettings,
    #[serde(default)]
    pub verify: VerifySettings,
    #[serde(default)]
    pub subjects: SubjectsSettings,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub policy: PolicySettings,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub backends: Vec<BackendSettings>,
}

/// A generator backend (`[[backends]]`). Credentials come from the
/// environment, never from the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// What requests (`backend`, or `model` at the OpenAI door) and tenants
    /// (`default_backend`) call it.
    pub name: String,
    /// `openai`, `comfyui`, `sdwebui` or `generic`.
    #[serde(rename = "type")]
    pub kind: String,
    pub base_url: String,
    /// An environment variable holding a bearer token (OpenAI's API key).
    pub api_key_env: Option<String>,
    /// An environment variable holding `user:password` for HTTP basic auth
    /// (Stable Diffusion WebUI's `--api-auth`).
    pub basic_auth_env: Option<String>,
    pub model: Option<String>,
    /// ComfyUI: the workflow template file (API format, with placeholders).
    pub workflow: Option<PathBuf>,
    #[serde(default)]
    pub negative_prompt: String,
    pub denoising_strength: Option<f64>,
    pub timeout_secs: Option<u64>,
    pub connect_timeout_secs: Option<u64>,
    pub max_concurrent: Option<usize>,
    pub queue_timeout_secs: Option<u64>,
    pub retries: Option<u32>,
    pub breaker_threshold: Option<u32>,
    pub breaker_cooldown_secs: Option<u64>,
    /// OpenAI: send `response_format: b64_json` (default: to every model
    /// but `gpt-image-*`, which refuse it).
    pub send_response_format: Option<bool>,
}

impl BackendSettings {
    /// The adapter's config, credentials read from the environment now: a
    /// variable that is named but not set stops the start.
    pub fn to_config(&self, base_dir: &Path) -> anyhow::Result<likeness_backends::BackendConfig> {
        use likeness_backends::{Auth, BackendConfig, Kind, Workflow};
        let kind = Kind::parse(&self.kind).ok_or_else(|| {
            anyhow::anyhow!("backend {}: type {:?} is not openai, comfyui, sdwebui or generic", self.name, self.kind)
        })?;
        let env = |var: &str| {
            std::env::var(var).with_context(|| format!("backend {}: environment variable {var} is not set", self.name))
        };
        let mut c = BackendConfig::new(&self.name, kind, &self.base_url);
        c.auth = match (&self.api_key_env, &self.basic_auth_env) {
            (Some(_), Some(_)) => bail!("backend {}: api_key_env or basic_auth_env, not both", self.name),
            (Some(var), None) => Auth::Bearer(env(var)?),
            (None, Some(var)) => Auth::Basic(env(var)?),
            (None, None) => Auth::None,
        };
        c.model = self.model.clone();
        if let Some(path) = &self.workflow {
            let path = if path.is_relative() { base_dir.join(path) } else { path.clone() };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("backend {}: reading workflow {}", self.name, path.display()))?;
            let template = serde_json::from_str(&text)
                .with_context(|| format!("backend {}: workflow {} is not JSON", self.name, path.display()))?;
            let name = path.file_stem().map_or_else(|| "workflow".into(), |s| s.to_string_lossy().into_owned());
            c.workflow = Some(Workflow { name, template });
        }
        c.negative_prompt = self.negative_prompt.clone();
        if let Some(d) = self.denoising_strength {
            c.denoising_strength = d;
        }
        let secs = std::time::Duration::from_secs;
        if let Some(t) = self.timeout_secs {
            c.timeout = secs(t.max(1));
        }
        if let Some(t) = self.connect_timeout_secs {
            c.connect_timeout = secs(t.max(1));
        }
        if let Some(n) = self.max_concurrent {
            c.max_concurrent = n.max(1);
        }
        if let Some(t) = self.queue_timeout_secs {
            c.queue_timeout = secs(t);
        }
        if let Some(r) = self.retries {
            c.retries = r;
        }
        if let Some(t) = self.breaker_threshold {
            c.breaker_threshold = t.max(1);
        }
        if let Some(t) = self.breaker_cooldown_secs {
            c.breaker_cooldown = secs(t);
        }
        c.send_response_format = self.send_response_format;
        Ok(c)
    }
}

/// The photo-library source. With no allowed host, library references are
/// refused (`photos.host_not_allowed`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhotosSettings {
    /// `host` or `host:port` (e.g. `lh3.googleusercontent.com`); https, or
    /// http on loopback only.
    pub allow_hosts: Vec<String>,
    /// Largest photo fetched, in bytes.
    pub max_bytes: usize,
    /// Deadline for one photo, in seconds.
    pub timeout_secs: u64,
    /// The provider's API (media items by id, album search), e.g.
    /// `https://photoslibrary.googleapis.com`. Unset: library references are refused.
    pub api_base: Option<String>,
}

impl Default for PhotosSettings {
    fn default() -> Self {
        let d = likeness_photos::LibraryConfig::default();
        PhotosSettings {
            allow_hosts: d.allow_hosts,
            max_bytes: d.max_bytes,
            timeout_secs: d.timeout.as_secs(),
            api_base: d.api_base,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// PEM chain, signing certificate first. Unset: the development identity
    /// in `<data_dir>/keys`, created on first start.
    pub chain: Option<PathBuf>,
    /// PKCS#8 PEM Ed25519 private key of the signing certificate.
    pub key: Option<PathBuf>,
    /// The invisible watermark's key (64 hex digits). Every replica must
    /// share it. Unset: `<data_dir>/keys/watermark.key`, created on first start.
    pub watermark_key: Option<PathBuf>,
}

/// What every output's manifest says of who made it (`[provenance]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceSettings {
    /// The provider of the generation service, the operator (e.g. "Example
    /// Corp"): named in every manifest, as the AI-disclosure laws ask.
    /// Required unless `--dev`.
    pub provider_name: Option<String>,
    /// PEM certificates the public detection API (`POST /v1/verify`)
    /// trusts signers under: your CA, and any other whose outputs you vouch
    /// for. Unset: with `--dev`, the development CA; otherwise none (intact
    /// credentials answer `valid`, never `trusted`).
    pub trust_anchors: Option<PathBuf>,
}

/// The policy folder and how it is reloaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// The folder of policy files. Unset: ./policies.
    pub dir: Option<PathBuf>,
    /// How often the folder is looked at for edits, in milliseconds; 0
    /// turns hot reload off.
    pub reload_interval_ms: u64,
    /// Tenants whose overlay (`tenants/<id>.yaml`) may lower an action,
    /// turn a rule to shadow, or set parameters. Others may only add
    /// rules and raise actions.
    pub tenants_may_lower: Vec<String>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings { dir: None, reload_interval_ms: 500, tenants_may_lower: Vec::new() }
    }
}

/// The decision log's signed checkpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Sign the chain's head every this many records...
    pub checkpoint_every: i64,
    /// ...or when the last checkpoint is older than this many seconds.
    pub checkpoint_interval_secs: i64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { checkpoint_every: 100, checkpoint_interval_secs: 300 }
    }
}

/// Subjects: confirmation by the person shown, and the person's own
/// endpoints (`[subjects]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubjectsSettings {
    /// Whether only subjects the person shown confirmed count as
    /// consenting (every subject but `self`); a tenant may say otherwise.
    pub require_confirmation: bool,
    /// Whether a confirmation must come with a photo matching the enrolled
    /// faces; a tenant may say otherwise.
    pub require_confirmation_photo: bool,
    /// How long a confirmation token works.
    pub confirmation_ttl_hours: u64,
    /// The public subject endpoints, per client address.
    pub requests_per_minute: u32,
    pub burst: u32,
}

impl Default for SubjectsSettings {
    fn default() -> Self {
        let d = likeness_http::SubjectsConfig::default();
        SubjectsSettings {
            require_confirmation: true,
            require_confirmation_photo: false,
            confirmation_ttl_hours: d.confirmation_ttl.as_secs() / 3600,
            requests_per_minute: d.requests_per_minute,
            burst: d.burst,
        }
    }
}

/// The public soft-binding resolver (`/matches/...`, `/manifests/...`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverSettings {
    /// Requests per minute per client address.
    pub requests_per_minute: u32,
    /// Requests a client may make at once before the rate applies.
    pub burst: u32,
    /// Uploaded images read for a watermark at once.
    pub max_concurrent_detections: usize,
    /// Uploads being received at once (POST /matches/byContent).
    pub max_uploads_in_flight: usize,
    /// How long an upload may take to arrive.
    pub upload_timeout_secs: u64,
}

/// The public detection API (`POST /v1/verify`) and its feedback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySettings {
    /// Origins (`host` or `host:port`) a `{"url": ...}` may name though they
    /// are not public addresses (e.g. an internal media server); they may
    /// also be plain `http`. Every other host must be public and `https`.
    pub exempt_origins: Vec<String>,
    /// Deadline for fetching one URL: connecting, redirects and the body.
    pub fetch_timeout_secs: u64,
    /// Days feedback on verdicts is kept.
    pub feedback_retention_days: u64,
}

impl Default for VerifySettings {
    fn default() -> Self {
        let web = likeness_photos::WebConfig::default();
        let http = likeness_http::HttpConfig::default();
        VerifySettings {
            exempt_origins: web.exempt_origins,
            fetch_timeout_secs: web.timeout.as_secs(),
            feedback_retention_days: http.feedback_retention.as_secs() / 86_400,
        }
    }
}

/// The listener (`[server]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Seconds a client may take to send a request's headers (and an idle
    /// kept-alive connection stays open).
    pub header_read_timeout_secs: u64,
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Seconds requests in flight get to finish on shutdown (SIGTERM).
    pub drain_timeout_secs: u64,
    /// Seconds an admitted generation's body may take to arrive.
    pub body_timeout_secs: u64,
    /// A second listener serving only `/metrics`, without an API key (e.g.
    /// "127.0.0.1:9464", reachable by the scraper alone). On the main
    /// listener `/metrics` needs a tenant's API key.
    pub metrics_listen: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        let d = likeness_http::ServerConfig::default();
        ServerSettings {
            header_read_timeout_secs: d.header_read_timeout.as_secs(),
            max_connections: d.max_connections,
            drain_timeout_secs: d.drain_timeout.as_secs(),
            body_timeout_secs: d.body_timeout.as_secs(),
            metrics_listen: None,
        }
    }
}

impl Default for ResolverSettings {
    fn default() -> Self {
        let d = likeness_http::ResolverConfig::default();
        ResolverSettings {
            requests_per_minute: d.requests_per_minute,
            burst: d.burst,
            max_concurrent_detections: d.max_concurrent_detections,
            max_uploads_in_flight: d.max_uploads_in_flight,
            upload_timeout_secs: d.upload_timeout.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_image_bytes: usize,
    pub max_image_side: u32,
    pub max_image_pixels: u64,
    pub max_references: usize,
    pub max_outputs: u32,
    pub max_concurrent_generations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let decode = likeness_media::DecodeLimits::default();
        let req = likeness_pipeline::RequestLimits::default();
        let http = likeness_http::HttpConfig::default();
        Limits {
            max_body_bytes: http.max_body_bytes,
            max_image_bytes: decode.max_bytes,
            max_image_side: decode.max_side,
            max_image_pixels: decode.max_pixels,
            max_references: req.max_references,
            max_outputs: req.max_outputs,
            max_concurrent_generations: http.max_concurrent_generations,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionSettings {
    /// Models and manifest.json. Unset: ./models, or the nearest parent's.
    pub models_dir: Option<PathBuf>,
    /// libonnxruntime.so.1.31.1. Unset: ORT_DYLIB_PATH, then .cache/onnxruntime/.
    pub onnxruntime: Option<PathBuf>,
    /// Public-figure gallery. Unset: <models_dir>/gallery.example.json.
    pub gallery: Option<PathBuf>,
    pub match_threshold: f32,
    /// P(age < 18) at or above which an enrollment photo is a possible
    /// minor's. Generation uses the policy's `minor_threshold`.
    pub minor_threshold: f32,
    /// Sessions per model: how many images one model analyses at once.
    /// Each holds its own copy of the weights and its own working memory.
    /// The default, one per two cores, costs no throughput: a request spends
    /// its vision time across four models, so two requests rarely wait for
    /// the same one. Measured on 2 cores: 349 MB peak at 11.0 requests/s
    /// with one session, 556 MB at 11.5 with two.
    pub sessions: usize,
}

impl Default for VisionSettings {
    fn default() -> Self {
        let t = likeness_pipeline::Thresholds::default();
        VisionSettings {
            models_dir: None,
            onnxruntime: None,
            gallery: None,
            match_threshold: t.match_distance,
            minor_threshold: t.minor,
            sessions: std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    /// Hex SHA-256 of the tenant's API key (`printf %s KEY | sha256sum`).
    pub api_key_sha256: String,
    /// The backend its requests go to when they name none [default: builtin].
    #[serde(default)]
    pub default_backend: Option<String>,
    /// Overrides `[subjects] require_confirmation` for this tenant.
    #[serde(default)]
    pub require_subject_confirmation: Option<bool>,
    /// Overrides `[subjects] require_confirmation_photo` for this tenant.
    #[serde(default)]
    pub require_confirmation_photo: Option<bool>,
    /// Generation requests a minute this app may make [default: no quota].
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Generations this app may run or have waiting at once [default: no quota].
    #[serde(default)]
    pub max_concurrent_generations: Option<usize>,
}

impl Config {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        for (i, t) in config.tenants.iter().enumerate() {
            if t.api_key_sha256.len() != 64 || hex::decode(&t.api_key_sha256).is_err() {
                bail!("config {}: tenant {:?}: api_key_sha256 must be 64 hex digits", path.display(), t.id);
            }
            if t.requests_per_minute == Some(0) || t.max_concurrent_generations == Some(0) {
                bail!(
                    "config {}: tenant {:?}: requests_per_minute and max_concurrent_generations must be at least 1",
                    path.display(),
                    t.id
                );
            }
            // One key must mean one tenant: with duplicates the last would silently win.
            if let Some(earlier) = config.tenants[..i].iter().find(|e| e.id == t.id) {
                bail!("config {}: tenant id {:?} is configured twice", path.display(), earlier.id);
            }
            if let Some(earlier) =
                config.tenants[..i].iter().find(|e| e.api_key_sha256.eq_ignore_ascii_case(&t.api_key_sha256))
            {
                bail!(
                    "config {}: tenants {:?} and {:?} have the same api_key_sha256; each tenant needs its own key",
                    path.display(),
                    earlier.id,
                    t.id
                );
            }
        }
        let v = &config.vision;
        // Scores are probabilities (at most 1) and distances (at most 2 for
        // these embeddings): a threshold outside would silently switch a check off.
        for (name, value, max) in
            [("match_threshold", v.match_threshold, 2.0), ("minor_threshold", v.minor_threshold, 1.0)]
        {
            if !(value > 0.0 && value <= max) {
                bail!("config {}: [vision] {name} must be in (0, {max}], got {value}", path.display());
            }
        }
        for p in &config.trusted_proxies {
            if let Err(e) = p.parse::<likeness_http::Cidr>() {
                bail!("config {}: trusted_proxies: {e}", path.display());
            }
        }
        let s = &config.subjects;
        if s.confirmation_ttl_hours == 0 || s.requests_per_minute == 0 || s.burst == 0 {
            bail!(
                "config {}: [subjects] confirmation_ttl_hours, requests_per_minute and burst must be at least 1",
                path.display()
            );
        }
        let r = &config.resolver;
        if r.requests_per_minute == 0
            || r.burst == 0
            || r.max_concurrent_detections == 0
            || r.max_uploads_in_flight == 0
            || r.upload_timeout_secs == 0
        {
            bail!(
                "config {}: [resolver] requests_per_minute, burst, max_concurrent_detections, max_uploads_in_flight \
                 and upload_timeout_secs must be at least 1",
                path.display()
            );
        }
        let v = &config.server;
        if v.header_read_timeout_secs == 0 || v.max_connections == 0 {
            bail!(
                "config {}: [server] header_read_timeout_secs and max_connections must be at least 1",
                path.display()
            );
        }
        for t in &config.tenants {
            if let Some(b) = &t.default_backend {
                if b != "builtin" && !config.backends.iter().any(|c| &c.name == b) {
                    bail!(
                        "config {}: tenant {:?}: default_backend {b:?} is not a configured backend",
                        path.display(),
                        t.id
                    );
                }
            }
        }
        if config.signing.chain.is_some() != config.signing.key.is_some() {
            bail!("config {}: [signing] needs both chain and key, or neither", path.display());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.example.toml");
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.listen.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(config.limits.max_image_side, 8192);
    }

    /// The README's `[[backends]]` example is a config that starts: every
    /// backend type, its template found, its credentials read.
    #[test]
    fn the_readme_backend_example_loads() {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
        let section = &readme[readme.find("## Generator backends").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("comfyui")).unwrap();
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/comfyui/img2img.json");
        std::fs::copy(template, dir.path().join("comfyui/img2img.json")).unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, block.replace('…', &"0".repeat(64))).unwrap();
        let config = Config::load(Some(&path)).unwrap();
        let kinds: Vec<&str> = config.backends.iter().map(|b| b.kind.as_str()).collect();
        assert_eq!(kinds, ["openai", "comfyui", "sdwebui", "generic"]);
        for var in ["OPENAI_API_KEY", "WEBUI_AUTH", "STUDIO_TOKEN"] {
            std::env::set_var(var, "user:secret");
        }
        let configs: Vec<_> = config
            .backends
            .iter()
            .map(|b| b.to_config(dir.path()).unwrap_or_else(|e| panic!("{}: {e:#}", b.name)))
            .collect();
        let backends = likeness_backends::Backends::new(configs).unwrap();
        assert_eq!(backends.names().count(), 4);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expect) in [
            ("listen = 5", "invalid type"),
            ("colour = \"red\"", "unknown field"),
            ("[[tenants]]\nid = \"a\"\napi_key_sha256 = \"abc\"", "64 hex digits"),
            ("[signing]\nchain = \"c.pem\"", "both chain and key"),
            ("[vision]\nnsfw_threshold = 0.5", "unknown field"),
            ("[vision]\nminor_threshold = 0", "minor_threshold must be in (0, 1]"),
            (
                "[[tenants]]\nid = \"a\"\napi_key_sha256 = \"{KEY}\"\n[[tenants]]\nid = \"a\"\napi_key_sha256 = \"{OTHER}\"",
                "tenant id \"a\" is configured twice",
            ),
            (
                "[[tenants]]\nid = \"a\"\napi_key_sha256 = \"{KEY}\"\n[[tenants]]\nid = \"b\"\napi_key_sha256 = \"{KEY_UPPER}\"",
                "tenants \"a\" and \"b\" have the same api_key_sha256",
            ),
            ("[subjects]\nconfirmation_ttl_hours = 0", "[subjects] confirmation_ttl_hours"),
            ("[server]\nmax_connections = 0", "[server] header_read_timeout_secs and max_connections"),
            ("trusted_proxies = [\"10.0.0.0/40\"]", "trusted_proxies: \"10.0.0.0/40\": the prefix must be 0 to 32"),
            ("[[tenants]]\nid = \"a\"\napi_key_sha256 = \"{KEY}\"\nrequire_subject_confirmation = \"yes\"", "invalid type"),
        ] {
            let text = text.replace("{KEY}", &"ab".repeat(32)).replace("{KEY_UPPER}", &"AB".repeat(32));
            let text = text.replace("{OTHER}", &"cd".repeat(32));
            let path = dir.path().join("c.toml");
            std::fs::write(&path, &text).unwrap();
            let err = format!("{:#}", Config::load(Some(&path)).unwrap_err());
            assert!(err.contains(expect), "{text:?}: {err}");
        }
    }
}
