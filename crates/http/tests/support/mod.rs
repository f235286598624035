//! An in-process gateway for the tests: the real router and state on a
//! SQLite file in a temporary directory, the fake vision models of
//! `likeness-testkit`, and a clock the test moves. Requests go through
//! `tower::ServiceExt::oneshot`, no socket.
#![allow(dead_code)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use http_body_util::BodyExt as _;
use likeness_generators::{Builtin, GenerationJob, Generator, GeneratorError};
use likeness_http::{AppState, HttpConfig, ManualClock, Tenant};
use likeness_testkit::FakeVision;
use serde_json::Value;
use tower::ServiceExt as _;

pub const KEY: &str = "lk_test_key";
/// 2026-01-01T00:00:00Z.
pub const START_MS: i64 = 1_767_225_600_000;

pub struct App {
    router: Router,
    pub state: Arc<AppState>,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
}

impl App {
    pub async fn new(vision: FakeVision) -> App {
        App::with(Ok(vision), HttpConfig::default(), Arc::new(Builtin)).await
    }

    pub async fn with(vision: Result<FakeVision, String>, config: HttpConfig, generator: Arc<dyn Generator>) -> App {
        App::with_policies(vision, config, generator, likeness_testkit::policies()).await
    }

    /// With a policy of the test's own.
    pub async fn with_policies(
        vision: Result<FakeVision, String>,
        config: HttpConfig,
        generator: Arc<dyn Generator>,
        policies: Arc<likeness_policy::Policies>,
    ) -> App {
        App::build(vision, config, generator, policies, likeness_backends::Backends::default(), Setup::default()).await
    }

    /// Every part chosen by the test.
    pub async fn build_with(
        vision: Result<FakeVision, String>,
        config: HttpConfig,
        generator: Arc<dyn Generator>,
        policies: Arc<likeness_policy::Policies>,
        setup: Setup,
    ) -> App {
        App::build(vision, config, generator, policies, likeness_backends::Backends::default(), setup).await
    }

    /// On `database` (None: a SQLite file), the tenant adjusted by `setup`.
    pub async fn with_setup(vision: FakeVision, config: HttpConfig, setup: Setup) -> App {
        let policies = likeness_testkit::policies();
        let backends = likeness_backends::Backends::default();
        App::build(Ok(vision), config, Arc::new(Builtin), policies, backends, setup).await
    }

    /// With generator backends, and the tenant's default backend.
    pub async fn with_backends(
        vision: FakeVision,
        backends: Vec<likeness_backends::BackendConfig>,
        default_backend: Option<&str>,
    ) -> App {
        let backends = likeness_backends::Backends::new(backends).unwrap();
        let generator = Arc::new(Builtin);
        let policies = likeness_testkit::policies();
        let setup = Setup { default_backend: default_backend.map(String::from), ..Setup::default() };
        App::build(Ok(vision), HttpConfig::default(), generator, policies, backends, setup).await
    }

    async fn build(
        vision: Result<FakeVision, String>,
        config: HttpConfig,
        generator: Arc<dyn Generator>,
        policies: Arc<likeness_policy::Policies>,
        backends: likeness_backends::Backends,
        setup: Setup,
    ) -> App {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Arc::new(likeness_testkit::pipeline_with(vision, generator, policies));
        let audit = likeness_store::AuditSettings {
            signer: Arc::new(likeness_http::LogSigner(Arc::new(likeness_testkit::signer().0))),
            every_records: 5,
            every_ms: 60_000,
        };
        let sqlite = dir.path().join("likeness.db").display().to_string();
        let store =
            likeness_store::Store::open(setup.database.as_deref().unwrap_or(&sqlite)).await.unwrap().with_audit(audit);
        let photos = likeness_photos::PhotoLibrary::new(likeness_photos::LibraryConfig::default()).unwrap();
        let mut tenant = Tenant::new("dev", Tenant::hash_key(KEY));
        tenant.default_backend = setup.default_backend;
        if let Some(edit) = setup.tenant {
            edit(&mut tenant);
        }
        let tenants = vec![tenant];
        let clock = Arc::new(ManualClock::new(START_MS));
        let state = AppState::from_parts(likeness_http::Parts {
            pipeline,
            store,
            photos,
            web: likeness_photos::WebImages::new(setup.web).unwrap(),
            tenants,
            config,
            clock: clock.clone(),
            backends,
        });
        App { router: likeness_http::router(state.clone()), state, clock, dir }
    }

    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(req).await.unwrap()
    }

    /// A call with the tenant's key: (status, JSON body or Null).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(KEY), method, path, body).await
    }

    /// A call with another bearer token (a personal token), or none.
    pub async fn call_as(&self, bearer: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        json(self.send(req.body(body).unwrap()).await).await
    }

    pub async fn generate(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/generations", Some(body)).await
    }
}

/// How a test's gateway differs from the default one.
#[derive(Default)]
pub struct Setup {
    /// A database URL; none: a SQLite file in the test's directory.
    pub database: Option<String>,
    pub default_backend: Option<String>,
    pub tenant: Option<fn(&mut Tenant)>,
    /// How `POST /v1/verify` fetches a URL (the test exempts its loopback
    /// servers from the public-address rule).
    pub web: likeness_photos::WebConfig,
}

pub async fn json(resp: Response<Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

/// `/metrics` as the tenant reads it.
pub async fn scrape(app: &App) -> String {
    let req = Request::get("/metrics").header("authorization", format!("Bearer {KEY}")).body(Body::empty()).unwrap();
    let resp = app.send(req).await;
    assert_eq!(resp.status(), 200);
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

pub fn upload(bytes: &[u8]) -> Value {
    use base64::Engine as _;
    serde_json::json!({ "upload": { "data": base64::engine::general_purpose::STANDARD.encode(bytes), "mime": "image/png" } })
}

/// A generator that says when it starts and waits to be let go: a
/// generation held in flight, without sleeping.
pub struct HeldGenerator {
    started: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

/// The test's ends of a [`HeldGenerator`].
pub struct Hold {
    pub started: mpsc::Receiver<()>,
    pub release: mpsc::Sender<()>,
}

impl HeldGenerator {
    pub fn new() -> (Arc<HeldGenerator>, Hold) {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        (
            Arc::new(HeldGenerator { started: Mutex::new(started_tx), release: Mutex::new(release_rx) }),
            Hold { started, release },
        )
    }
}

impl Generator for HeldGenerator {
    fn name(&self) -> &str {
        "held"
    }

    fn generate(&self, job: &GenerationJob<'_>) -> Result<Vec<image::RgbImage>, GeneratorError> {
        self.started.lock().unwrap().send(()).unwrap();
        self.release.lock().unwrap().recv().unwrap();
        Builtin.generate(job)
    }
}

impl Hold {
    /// Blocks (off the async workers) until the generator has started.
    pub async fn wait_started(&self) {
        tokio::task::block_in_place(|| self.started.recv().unwrap());
    }
}

/// A policy of one file's rules (with a parameter `t`).
pub fn policy_of(rules: &str) -> Arc<likeness_policy::Policies> {
    let files = vec![likeness_policy::SourceFile {
        path: "p.yaml".into(),
        text: format!("version: 1\nparams: {{ t: 0.5 }}\nrules:\n{rules}"),
    }];
    let policy = likeness_policy::Policy::load(&files, &Default::default()).unwrap();
    Arc::new(likeness_policy::Policies::new(policy, 0))
}

/// A multipart/form-data body: text fields, then files (name, filename, bytes).
pub fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "likeness-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    for (name, filename, bytes) in files {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
