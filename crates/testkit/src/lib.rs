//! What the tests of the request path share, so the HTTP and pipeline
//! crates can be tested in milliseconds without ONNX Runtime, PostgreSQL or
//! Python: [`FakeVision`], a stand-in for the ONNX models that reports the
//! faces a test says an image of a given size shows; [`pipeline`], a real
//! pipeline (built-in generator, real watermark, real C2PA signing) around
//! it; and [`bad_requests`], the data-driven cases of
//! `tests/cases/bad_requests.json` with their payloads made.
//!
//! The end-to-end tests in `crates/cli/tests` run the real models; this is
//! for the edges around them.

pub mod backends;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use likeness_generators::{GenerationJob, Generator, GeneratorError};
use likeness_pipeline::{Moderation, Pipeline, RequestLimits, Thresholds, VisionModels};
use likeness_provenance::{keys, Signer};
use likeness_vision::{
    Embedding, Face, Gallery, GalleryEmbedding, GalleryEntry, ImageAnalysis, ModelInfo, VisionError,
};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("fixtures").join(name)).unwrap()
}

/// A face embedding for person `n`: one axis each, so two people are
/// 1.41 apart (far over the match distance) and a person is 0 from itself.
pub fn person(n: usize) -> [f32; likeness_vision::EMBEDDING_DIM] {
    let mut e = [0.0; likeness_vision::EMBEDDING_DIM];
    e[n % likeness_vision::EMBEDDING_DIM] = 1.0;
    e
}

/// The person the test gallery holds, as a public figure.
pub const PUBLIC_FIGURE: usize = 100;

/// A gallery with one public figure, [`PUBLIC_FIGURE`].
pub fn gallery() -> Gallery {
    Gallery {
        entries: vec![GalleryEntry {
            id: "a-public-figure".into(),
            name: "A. Public Figure".into(),
            embeddings: vec![GalleryEmbedding { vector: person(PUBLIC_FIGURE).to_vec(), source: "test".into() }],
        }],
        ..Gallery::default()
    }
}

/// A face the fake models report: who (see [`person`]) and P(age < 18).
#[derive(Debug, Clone, Copy)]
pub struct FakeFace {
    pub person: usize,
    pub p_minor: f32,
}

impl FakeFace {
    pub fn adult(person: usize) -> FakeFace {
        FakeFace { person, p_minor: 0.01 }
    }
}

/// What the fake models say about images of one size.
#[derive(Debug, Clone)]
struct Scene {
    width: u32,
    height: u32,
    faces: Vec<FakeFace>,
    nsfw: f32,
}

/// The vision models' stand-in: images of a size the test named show the
/// faces it gave; any other image shows no one and scores 0 for NSFW.
#[derive(Debug, Clone, Default)]
pub struct FakeVision {
    scenes: Vec<Scene>,
    models: Vec<ModelInfo>,
}

impl FakeVision {
    pub fn new() -> FakeVision {
        let models = ["face_detection", "age", "face_embedding", "nsfw"]
            .into_iter()
            .map(|task| ModelInfo {
                task: task.into(),
                file: format!("{task}.fake"),
                sha256: "0".repeat(64),
                licence: "test".into(),
                source: "likeness-testkit".into(),
            })
            .collect();
        FakeVision { scenes: Vec::new(), models }
    }

    /// Images of `width` x `height` show `faces` and score `nsfw`.
    pub fn shows(mut self, width: u32, height: u32, faces: &[FakeFace], nsfw: f32) -> FakeVision {
        self.scenes.push(Scene { width, height, faces: faces.to_vec(), nsfw });
        self
    }
}

impl VisionModels for FakeVision {
    fn analyze(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError> {
        let scene = self.scenes.iter().find(|s| (s.width, s.height) == img.dimensions());
        let faces = scene
            .map(|s| &s.faces[..])
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, f)| Face {
                bbox: [10.0 + 40.0 * i as f32, 10.0, 30.0, 30.0],
                score: 0.9,
                landmarks: [[0.0; 2]; 5],
                age: if f.p_minor >= 0.5 { 9.0 } else { 35.0 },
                p_minor: f.p_minor,
                eyes_covered: 0.0,
                embedding: Embedding(person(f.person)),
            })
            .collect();
        Ok(ImageAnalysis { width: img.width(), height: img.height(), faces, nsfw: scene.map_or(0.0, |s| s.nsfw) })
    }

    fn models(&self) -> &[ModelInfo] {
        &self.models
    }
}

/// A solid image of a size, PNG-encoded: a reference whose size tells
/// [`FakeVision`] what it shows.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_pixel(width, height, image::Rgb([120, 140, 160]));
    likeness_media::encode(&img, likeness_media::OutputFormat::Png).unwrap()
}

/// The copy attack on a watermark: one image's fine detail (its luma minus
/// the 3x3 mean, where the mark lives) added to another of the same size,
/// so that the other carries the first one's mark.
pub fn transplant(source: &RgbImage, target: &RgbImage) -> RgbImage {
    assert_eq!(source.dimensions(), target.dimensions(), "a transplant is between images of one size");
    let luma = |x: u32, y: u32| {
        let p = source.get_pixel(x, y);
        0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
    };
    let mut out = target.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        if x == 0 || y == 0 || x + 1 == source.width() || y + 1 == source.height() {
            continue;
        }
        let around: f32 =
            (y - 1..=y + 1).flat_map(|j| (x - 1..=x + 1).map(move |i| (i, j))).map(|(i, j)| luma(i, j)).sum();
        let detail = luma(x, y) - around / 9.0;
        p.0 = p.0.map(|v| (f32::from(v) + detail).round().clamp(0.0, 255.0) as u8);
    }
    out
}

/// A development signing identity, made in memory.
pub fn signer() -> (Signer, String) {
    // One identity per test process, so a test can trust the pipeline's signer.
    static ID: std::sync::OnceLock<keys::DevIdentity> = std::sync::OnceLock::new();
    let id = ID.get_or_init(|| keys::generate_dev_identity("likeness test").unwrap());
    let signer = Signer::new(id.chain_pem.as_bytes(), keys::parse_signing_key(&id.key_pem).unwrap()).unwrap();
    (signer, id.ca_cert_pem.clone())
}

pub const WATERMARK_KEY: [u8; 32] = [7; 32];

/// The shipped policy (`policies/`), as the gateway loads it by default.
pub fn shipped_policy() -> Vec<likeness_policy::SourceFile> {
    let file = |path: &str, text: &str| likeness_policy::SourceFile { path: path.into(), text: text.into() };
    vec![
        file("default.yaml", include_str!("../../../policies/default.yaml")),
        file("categories/sexual.txt", include_str!("../../../policies/categories/sexual.txt")),
        file("categories/minors.txt", include_str!("../../../policies/categories/minors.txt")),
        file("categories/violence.txt", include_str!("../../../policies/categories/violence.txt")),
        file("categories/self_harm.txt", include_str!("../../../policies/categories/self_harm.txt")),
    ]
}

/// The shipped policy, loaded and in force.
pub fn policies() -> Arc<likeness_policy::Policies> {
    let policy =
        likeness_policy::Policy::load(&shipped_policy(), &Default::default()).expect("the shipped policy loads");
    Arc::new(likeness_policy::Policies::new(policy, 0))
}

/// A real pipeline around the fake models (or none: `Err` says why they
/// did not load) and a generator, with the shipped policy and the default
/// limits.
pub fn pipeline(vision: Result<FakeVision, String>, generator: Arc<dyn Generator>) -> Pipeline {
    pipeline_with(vision, generator, policies())
}

/// The same with a policy of the test's own.
pub fn pipeline_with(
    vision: Result<FakeVision, String>,
    generator: Arc<dyn Generator>,
    policies: Arc<likeness_policy::Policies>,
) -> Pipeline {
    let moderation = Moderation {
        vision: vision.map(|v| Arc::new(v) as Arc<dyn VisionModels>),
        gallery: Arc::new(gallery()),
        thresholds: Thresholds::default(),
    };
    Pipeline::new(
        generator,
        Arc::new(signer().0),
        likeness_watermark::Key::new(WATERMARK_KEY),
        moderation,
        RequestLimits::default(),
        policies,
    )
}

/// A generator that always fails, as a broken backend would.
pub struct FailingGenerator;

impl Generator for FailingGenerator {
    fn name(&self) -> &str {
        "failing"
    }

    fn generate(&self, _: &GenerationJob<'_>) -> Result<Vec<RgbImage>, GeneratorError> {
        Err(GeneratorError::InvalidJob("the test generator always fails".into()))
    }
}

/// How a bad-request case authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The tenant's own key.
    Key,
    None,
    /// A bearer key no tenant has.
    Wrong,
    /// Not a bearer token at all.
    Basic,
}

/// One case of `tests/cases/bad_requests.json`, ready to send.
pub struct BadRequest {
    pub name: String,
    pub path: String,
    pub auth: Auth,
    pub content_type: String,
    pub body: Vec<u8>,
    pub status: u16,
    pub code: String,
}

/// The body limit the bad-request cases assume: the `oversized` case sends
/// more than this.
pub const BAD_REQUEST_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The cases, with their placeholders made: `$PHOTO` (a real JPEG),
/// `$BOMB_PNG` (a PNG claiming 100000 x 100000 pixels), `$BOMB_PNG_AS_JPEG`
/// (the same declared as JPEG), `$CORRUPT_JPEG` (a truncated JPEG).
pub fn bad_requests() -> Vec<BadRequest> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(workspace_root().join("tests/cases/bad_requests.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let photo = fixture_bytes("scenes/rocket.jpg");
    let bomb = likeness_media::hostile::forged_png(100_000, 100_000);
    let corrupt = photo[..photo.len() / 3].to_vec();
    let upload = |bytes: &[u8], mime: &str| {
        serde_json::json!({ "upload": { "data": base64::engine::general_purpose::STANDARD.encode(bytes), "mime": mime } })
            .to_string()
    };
    cases
        .iter()
        .map(|case| {
            let body = if case["oversized"] == true {
                let filler = "A".repeat(BAD_REQUEST_BODY_LIMIT + 1024 * 1024);
                serde_json::json!({"user": "u", "prompt": "x", "references": [{"upload": {"data": filler, "mime": "image/jpeg"}}]})
                    .to_string()
            } else if let Some(raw) = case["raw"].as_str() {
                raw.to_string()
            } else {
                case["body"]
                    .to_string()
                    .replace("\"$PHOTO\"", &upload(&photo, "image/jpeg"))
                    .replace("\"$BOMB_PNG\"", &upload(&bomb, "image/png"))
                    .replace("\"$BOMB_PNG_AS_JPEG\"", &upload(&bomb, "image/jpeg"))
                    .replace("\"$CORRUPT_JPEG\"", &upload(&corrupt, "image/jpeg"))
            };
            BadRequest {
                name: case["name"].as_str().unwrap().to_string(),
                path: case["path"].as_str().unwrap_or("/v1/generations").to_string(),
                auth: match case["auth"].as_str() {
                    Some("none") => Auth::None,
                    Some("wrong") => Auth::Wrong,
                    Some("basic") => Auth::Basic,
                    _ => Auth::Key,
                },
                content_type: case["content_type"].as_str().unwrap_or("application/json").to_string(),
                body: body.into_bytes(),
                status: case["status"].as_u64().unwrap() as u16,
                code: case["code"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// A good request in the cases' terms: one real photo, 256x256.
pub fn good_request() -> serde_json::Value {
    use base64::Engine as _;
    let photo = base64::engine::general_purpose::STANDARD.encode(fixture_bytes("scenes/rocket.jpg"));
    serde_json::json!({"user": "u", "prompt": "x", "size": "256x256",
        "references": [{"upload": {"data": photo, "mime": "image/jpeg"}}]})
}
