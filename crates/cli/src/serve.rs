//! `likeness serve`: load config, make sure keys and a tenant exist, build
//! the pipeline, listen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use likeness_http::{AppState, HttpConfig, Tenant};
use likeness_pipeline::{Moderation, Pipeline, RequestLimits, Thresholds};
use likeness_provenance::keys::KeyPaths;
use likeness_provenance::Signer;
use likeness_vision::{Gallery, Vision, VisionConfig};

use crate::config::Config;
use crate::keys::{self, DataDir};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "LIKENESS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "LIKENESS_LISTEN")]
    listen: Option<String>,
    /// Database URL: `postgres://...`, or a SQLite file [default: <data-dir>/likeness.db].
    #[arg(long, env = "LIKENESS_DATABASE")]
    database: Option<String>,
    /// Public-figure gallery, replacing the shipped example.
    #[arg(long, env = "LIKENESS_GALLERY")]
    gallery: Option<PathBuf>,
    /// Directory of the ONNX models and their manifest.
    #[arg(long, env = "LIKENESS_MODELS")]
    models: Option<PathBuf>,
    /// A photo-library host that may be fetched from, HOST or HOST:PORT
    /// (repeatable; added to the config's [photos] allow_hosts).
    #[arg(long = "allow-photo-host", value_name = "HOST[:PORT]")]
    allow_photo_hosts: Vec<String>,
    /// The policy folder [default: ./policies, or [policy] dir].
    #[arg(long, value_name = "DIR", env = "LIKENESS_POLICIES")]
    policies: Option<PathBuf>,
    /// The photo provider's API base URL (media items by id, album search);
    /// its host is allowed implicitly. Overrides [photos] api_base.
    #[arg(long = "photo-api", value_name = "URL", env = "LIKENESS_PHOTO_API")]
    photo_api: Option<String>,
    /// Development: without a `[signing]` chain and key, sign with a
    /// development CA made in <data-dir>/keys (`make run` does this).
    /// Without it, a missing signing identity stops the start.
    #[arg(long)]
    dev: bool,
}

/// The provider a development gateway (`--dev`) names in its manifests.
const DEV_PROVIDER: &str = "likeness development gateway";

pub fn run(args: ServeArgs, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    init_logging(config.log_format.as_deref());
    let listen = args.listen.or(config.listen.clone()).unwrap_or_else(|| "127.0.0.1:8080".into());
    let data_dir = DataDir::new(data_dir.or(config.data_dir.clone()));
    std::fs::create_dir_all(data_dir.path())
        .with_context(|| format!("creating data dir {}", data_dir.path().display()))?;
    // It holds keys, consent records and face embeddings: its owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making data dir {} private (0700)", data_dir.path().display()))?;
    }

    let key_paths = match (&config.signing.chain, &config.signing.key) {
        (Some(chain), Some(key)) => KeyPaths { chain: chain.clone(), key: key.clone() },
        _ if !args.dev => anyhow::bail!(
            "no signing identity configured: set [signing] chain and key in the config for production, \
             or start with --dev to sign with a development CA made in {} (make run does)",
            data_dir.keys().display()
        ),
        _ => {
            let dir = data_dir.keys();
            if keys::init_signing_identity(&dir, "likeness development")? {
                tracing::warn!(
                    dir = %dir.display(),
                    "no signing key configured: created a development CA and signing certificate; \
                     outputs will verify as trusted only against {}",
                    dir.join(keys::CA_FILE).display()
                );
            }
            keys::signing_paths(&dir)
        }
    };
    keys::refuse_shared_secret(&key_paths.key)?;
    let provider = match config.provenance.provider_name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ if args.dev => DEV_PROVIDER.to_string(),
        _ => anyhow::bail!(
            "no provider named: set [provenance] provider_name (the operator offering this service); every \
             output's manifest names it, as the EU AI Act (Art. 50) and California's AI Transparency Act ask"
        ),
    };
    let signer = Signer::from_paths(&key_paths).context("loading the signing identity")?.with_provider(provider);
    tracing::info!(signer = %signer.subject(), chain = %key_paths.chain.display(), "signing identity loaded");

    let watermark_key = match &config.signing.watermark_key {
        Some(path) => path.clone(),
        None => {
            let dir = data_dir.keys();
            if keys::init_watermark_key(&dir)? {
                tracing::warn!(
                    dir = %dir.display(),
                    "no watermark key configured: created one; replicas must share it to read each other's marks"
                );
            }
            keys::watermark_key_in(&dir)
        }
    };
    keys::refuse_shared_secret(&watermark_key)?;
    let watermark_key = keys::load_watermark_key(&watermark_key)?;
    let embedding_key = embedding_key(&config, &data_dir)?;

    let tenants = tenants(&config, &data_dir)?;
    let limits = &config.limits;
    let request_limits = RequestLimits {
        max_references: limits.max_references,
        max_outputs: limits.max_outputs,
        decode: likeness_media::DecodeLimits {
            max_bytes: limits.max_image_bytes,
            max_side: limits.max_image_side,
            max_pixels: limits.max_image_pixels,
        },
        ..RequestLimits::default()
    };
    let moderation = load_moderation(&config, args.models, args.gallery)?;
    let policy_dir =
        args.policies.or(config.policy.dir.clone()).unwrap_or_else(|| PathBuf::from(crate::policy::DEFAULT_DIR));
    let policy_options =
        likeness_policy::LoadOptions { tenants_may_lower: config.policy.tenants_may_lower.iter().cloned().collect() };
    let policies = Arc::new(load_policies(&policy_dir, &policy_options)?);
    let signer = Arc::new(signer);
    let audit = likeness_store::AuditSettings {
        signer: Arc::new(likeness_http::LogSigner(signer.clone())),
        every_records: config.audit.checkpoint_every.max(1),
        every_ms: config.audit.checkpoint_interval_secs.max(1) * 1000,
    };
    let pipeline = Arc::new(Pipeline::new(
        Arc::new(likeness_generators::Builtin),
        signer,
        watermark_key,
        moderation,
        request_limits,
        policies.clone(),
    ));
    let trust_anchors = match &config.provenance.trust_anchors {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading [provenance] trust_anchors {}", path.display()))?,
        ),
        None if args.dev => std::fs::read_to_string(data_dir.keys().join(keys::CA_FILE)).ok(),
        None => None,
    };
    if let Some(pem) = &trust_anchors {
        likeness_provenance::Verifier::new(Some(pem)).context("loading [provenance] trust_anchors")?;
    }
    let http_config = HttpConfig {
        trust_anchors,
        feedback_retention: std::time::Duration::from_secs(config.verify.feedback_retention_days.max(1) * 86_400),
        max_body_bytes: limits.max_body_bytes,
        max_concurrent_generations: limits.max_concurrent_generations,
        resolver: likeness_http::ResolverConfig {
            requests_per_minute: config.resolver.requests_per_minute,
            burst: config.resolver.burst,
            max_concurrent_detections: config.resolver.max_concurrent_detections,
            max_uploads_in_flight: config.resolver.max_uploads_in_flight,
            upload_timeout: std::time::Duration::from_secs(config.resolver.upload_timeout_secs),
        },
        server: likeness_http::ServerConfig {
            header_read_timeout: std::time::Duration::from_secs(config.server.header_read_timeout_secs),
            max_connections: config.server.max_connections,
            drain_timeout: std::time::Duration::from_secs(config.server.drain_timeout_secs),
            body_timeout: std::time::Duration::from_secs(config.server.body_timeout_secs),
        },
        subjects: likeness_http::SubjectsConfig {
            confirmation_ttl: std::time::Duration::from_secs(config.subjects.confirmation_ttl_hours * 3600),
            requests_per_minute: config.subjects.requests_per_minute,
            burst: config.subjects.burst,
        },
        trusted_proxies: config.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect(),
        ..HttpConfig::default()
    };
    let mut allow_hosts = config.photos.allow_hosts.clone();
    allow_hosts.extend(args.allow_photo_hosts);
    let photos = likeness_photos::PhotoLibrary::new(likeness_photos::LibraryConfig {
        allow_hosts,
        max_bytes: config.photos.max_bytes,
        timeout: std::time::Duration::from_secs(config.photos.timeout_secs.max(1)),
        api_base: args.photo_api.or(config.photos.api_base.clone()),
    })
    .context("the photo-library settings")?;
    let web = likeness_photos::WebImages::new(likeness_photos::WebConfig {
        exempt_origins: config.verify.exempt_origins.clone(),
        timeout: std::time::Duration::from_secs(config.verify.fetch_timeout_secs.max(1)),
    })
    .context("the [verify] settings")?;
    if photos.is_enabled() {
        tracing::info!(hosts = ?photos.allowed_hosts(), "photo library enabled");
    }
    let database =
        args.database.or(config.database.clone()).unwrap_or_else(|| data_dir.database().display().to_string());
    // Workflow files are found beside the config file.
    let config_dir = args.config.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let backend_configs =
        config.backends.iter().map(|b| b.to_config(&config_dir)).collect::<anyhow::Result<Vec<_>>>()?;
    let backends = likeness_backends::Backends::new(backend_configs).map_err(|e| anyhow::anyhow!(e))?;
    for name in backends.names() {
        tracing::info!(backend = name, "backend configured");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store = likeness_store::Store::open(&database)
            .await
            .context("opening the database")?
            .with_audit(audit)
            .with_embedding_key(likeness_store::EmbeddingKey::new(&embedding_key));
        store.check_embedding_key().await.context(
            "the embedding key does not open the stored face embeddings: give the key they were sealed with \
             (LIKENESS_EMBEDDING_KEY or embedding_key; replicas share one)",
        )?;
        tracing::info!(backend = ?store.backend(), "database ready");
        let state = AppState::from_parts(likeness_http::Parts {
            pipeline,
            store,
            photos,
            web,
            tenants,
            config: http_config,
            clock: Arc::new(likeness_http::SystemClock),
            backends,
        });
        if config.policy.reload_interval_ms > 0 {
            let every = std::time::Duration::from_millis(config.policy.reload_interval_ms);
            tokio::spawn(watch_policies(policy_dir.clone(), policy_options, policies, every));
        }
        if let Some(metrics_listen) = &config.server.metrics_listen {
            let listener = tokio::net::TcpListener::bind(metrics_listen)
                .await
                .with_context(|| format!("binding the metrics listener {metrics_listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, "metrics listening");
            tokio::spawn(likeness_http::serve_metrics(listener, state.clone()));
        }
        let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, data_dir = %data_dir.path().display(), "likeness is listening");
        // Tests and scripts read this line to find an ephemeral port.
        println!("listening on http://{addr}");
        likeness_http::serve(listener, state, shutdown_signal()).await.context("serving")
    })
}

/// The policy at start. A folder that does not load stops the start: the
/// gateway never runs without a policy it could check.
fn load_policies(dir: &Path, options: &likeness_policy::LoadOptions) -> anyhow::Result<likeness_policy::Policies> {
    let files = crate::policy::read_dir(dir)?;
    let policy = likeness_policy::Policy::load(&files, options).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!("the policy in {} does not load:\n{}", dir.display(), list.join("\n"))
    })?;
    tracing::info!(dir = %dir.display(), version = %policy.version(), rules = policy.rule_ids().len(), "policy loaded");
    Ok(likeness_policy::Policies::new(policy, likeness_store::now_ms()))
}

/// Hot reload: looks at the folder every `every`; a valid edit goes live, a
/// broken one is logged and reported by /readyz and GET /v1/policy while
/// the last good policy keeps serving.
async fn watch_policies(
    dir: PathBuf,
    options: likeness_policy::LoadOptions,
    policies: Arc<likeness_policy::Policies>,
    every: std::time::Duration,
) {
    let mut seen = policies.current().version().to_string();
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let files = match crate::policy::read_dir(&dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "the policy folder cannot be read: {e:#}");
                continue;
            }
        };
        let version = likeness_policy::version_of_files(&files);
        if version == seen {
            continue;
        }
        seen = version.clone();
        let now = likeness_store::now_ms();
        match likeness_policy::Policy::load(&files, &options) {
            Ok(policy) => {
                tracing::info!(version = %policy.version(), rules = policy.rule_ids().len(), "policy reloaded");
                policies.replace(policy, now);
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!(problem = %p, "policy edit refused; the last good policy stays");
                }
                policies.reject(version, problems, now);
            }
        }
    }
}

/// The vision models and gallery. Models that cannot be loaded do not stop
/// the gateway: it starts, says why in the log and in /readyz, and refuses
/// every generation (fail closed). A broken gallery file does stop it: a
/// typo there must not silently switch public-figure checks off.
fn load_moderation(config: &Config, models: Option<PathBuf>, gallery: Option<PathBuf>) -> anyhow::Result<Moderation> {
    let v = &config.vision;
    let models_dir = models.or(v.models_dir.clone()).unwrap_or_else(likeness_vision::default_models_dir);
    let gallery_path =
        gallery.or(v.gallery.clone()).unwrap_or_else(|| models_dir.join(likeness_vision::EXAMPLE_GALLERY));
    let gallery = Gallery::load(&gallery_path).context("loading the public-figure gallery")?;
    tracing::info!(path = %gallery_path.display(), entries = gallery.entries.len(), "gallery loaded");
    let started = std::time::Instant::now();
    let vision_config = VisionConfig {
        models_dir,
        onnxruntime: v.onnxruntime.clone(),
        sessions: v.sessions,
        ..VisionConfig::default()
    };
    let vision = match Vision::load(&vision_config) {
        Ok(vision) => {
            tracing::info!(ms = started.elapsed().as_millis() as u64, "vision models loaded and checked");
            Ok(Arc::new(vision) as Arc<dyn likeness_pipeline::VisionModels>)
        }
        Err(e) => {
            tracing::error!("vision is unavailable, every generation will be refused: {e}");
            Err(e.to_string())
        }
    };
    Ok(Moderation {
        vision,
        gallery: Arc::new(gallery),
        thresholds: Thresholds { match_distance: v.match_threshold, minor: v.minor_threshold, ..Thresholds::default() },
    })
}

/// Tenants from the config; with none configured, the `dev` tenant whose key
/// is kept in `<data_dir>/dev-api-key` (created on first start, mode 0600).
fn tenants(config: &Config, data_dir: &DataDir) -> anyhow::Result<Vec<Tenant>> {
    if !config.tenants.is_empty() {
        return config
            .tenants
            .iter()
            .map(|t| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&t.api_key_sha256, &mut hash)?;
                let mut tenant = subject_rules(Tenant::new(t.id.clone(), hash), config);
                tenant.default_backend = t.default_backend.clone();
                tenant.quota = likeness_http::TenantQuota {
                    requests_per_minute: t.requests_per_minute,
                    max_concurrent_generations: t.max_concurrent_generations,
                };
                if let Some(required) = t.require_subject_confirmation {
                    tenant.confirmation = rule(required);
                }
                if let Some(required) = t.require_confirmation_photo {
                    tenant.confirmation_photo_required = required;
                }
                Ok(tenant)
            })
            .collect();
    }
    let path = data_dir.dev_api_key();
    // Only a missing file makes a new key: an unreadable one must not
    // silently replace the key the app developer already uses.
    let key = match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => k.trim().to_string(),
        Ok(_) => anyhow::bail!("{} is empty; delete it to have a new key made", path.display()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("reading {}", path.display()));
        }
        Err(_) => {
            let key = format!("lk_dev_{}", hex::encode(rand::random::<[u8; 24]>()));
            keys::write_secret(&path, &key)?;
            tracing::warn!(path = %path.display(), "no tenant configured: created tenant `dev`; its API key is in this file");
            key
        }
    };
    Ok(vec![subject_rules(Tenant::new("dev", Tenant::hash_key(&key)), config)])
}

/// The key enrolled embeddings are sealed with: the environment, the
/// configured file, or one made in the data dir on first start.
fn embedding_key(config: &Config, data_dir: &DataDir) -> anyhow::Result<[u8; 32]> {
    if let Ok(hex) = std::env::var("LIKENESS_EMBEDDING_KEY") {
        return keys::parse_key(hex.trim()).context("LIKENESS_EMBEDDING_KEY: an embedding key is 64 hex digits");
    }
    let path = match &config.embedding_key {
        Some(path) => path.clone(),
        None => {
            let path = keys::embedding_key_in(&data_dir.keys());
            if keys::init_random_key(&path)? {
                tracing::warn!(
                    path = %path.display(),
                    "no embedding key configured: created one; replicas must share it to read each other's subjects"
                );
            }
            path
        }
    };
    keys::refuse_shared_secret(&path)?;
    keys::load_key_bytes(&path, "embedding key")
}

fn rule(required: bool) -> likeness_consent::ConfirmationRule {
    if required {
        likeness_consent::ConfirmationRule::Required
    } else {
        likeness_consent::ConfirmationRule::Optional
    }
}

/// `[subjects]`' defaults for a tenant.
fn subject_rules(mut t: Tenant, config: &Config) -> Tenant {
    t.confirmation = rule(config.subjects.require_confirmation);
    t.confirmation_photo_required = config.subjects.require_confirmation_photo;
    t
}

fn init_logging(format: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIKENESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,c2pa=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
