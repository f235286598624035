//! Vision on ONNX Runtime: faces (CenterFace), their age and a 128-d
//! embedding (dlib models, on chips aligned by five landmarks), and an NSFW
//! score (open_nsfw) for the whole image. Scores, not verdicts: the caller's
//! rules decide.
//!
//! Models are loaded once, each checked against `models/manifest.json`
//! (SHA-256, tensor names and shapes); a missing or altered file is refused
//! with an error naming it. Inference is CPU-bound and blocking: call it off
//! the async workers.

mod align;
mod detect;
mod gallery;
mod occlusion;
mod pool;
mod runtime;

use std::path::{Path, PathBuf};

use image::RgbImage;
use ort::value::TensorRef;
use serde::Serialize;

pub use align::{chip as aligned_chip, AGE_TEMPLATE, EMBEDDING_TEMPLATE};
pub use detect::Detection;
pub use gallery::{Gallery, GalleryEmbedding, GalleryEntry, GalleryMatch};
pub use runtime::{locate_onnxruntime, ORT_VERSION};

pub const EMBEDDING_DIM: usize = 128;
/// The example public-figure gallery shipped beside the models.
pub const EXAMPLE_GALLERY: &str = "gallery.example.json";
const AGE_MEAN: [f32; 3] = [122.782, 117.001, 104.298];
const NSFW_MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

#[derive(Debug, Clone, thiserror::Error)]
pub enum VisionError {
    #[error("{0}")]
    Runtime(String),
    #[error("model file {file} is missing: {reason}")]
    ModelMissing { file: String, reason: String },
    #[error("model file {file} was altered: sha256 {actual}, the manifest says {expected}")]
    ModelAltered { file: String, expected: String, actual: String },
    #[error("model file {file} does not match the manifest: {detail}")]
    ModelMismatch { file: String, detail: String },
    #[error("{model} failed: {message}")]
    Inference { model: &'static str, message: String },
    #[error("gallery: {0}")]
    Gallery(String),
    /// More faces than the models are run on; refused rather than checked in part.
    #[error("the image shows {found} faces; at most {max} are checked per image")]
    TooManyFaces { found: usize, max: usize },
}

/// Where faces are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Upright and at the three other quarter turns, always. Four detector
    /// runs: for what users send, where a turned photo was an evasion.
    EveryTurn,
    /// Upright, and turned too when the upright search is unsure: a
    /// candidate scored between [`UNSURE_FLOOR`] and [`SURE`] (a face
    /// upside down is found weakly), or a face whose landmarks do not have
    /// a face's proportions (the int8 detector finds an upside-down face
    /// with a sure score and squeezed landmarks). For generated outputs, where four
    /// runs on every image would cost more than the check is worth; a turned
    /// face the upright search misses entirely is not looked for.
    TurnsWhenUnsure,
}

/// The lowest upright candidate score that makes a search unsure.
pub const UNSURE_FLOOR: f32 = 0.3;
/// The upright score above which a face needs no turned search.
pub const SURE: f32 = 0.8;

/// The longest side faces are searched at, upright, in what users send.
/// Images are scaled down to it, never up.
pub const DETECT_SIDE: u32 = 640;
/// The same in generated outputs, at 56% of the cost of 640. A face 40 px
/// wide in a 1024x1024 output is found at 384 (int8 and float models) and
/// was missed at 288 (float; a test holds it); 480 keeps a margin for faces
/// a style makes harder to see.
pub const OUTPUT_DETECT_SIDE: u32 = 480;
/// The same for the turned searches, which are there for faces turned to
/// hide from the upright search: a person turns the whole photo, not a
/// small face in it. The turned fixture is still matched at 320 (int8 and
/// float) and was lost at 224 (float); 384 keeps a margin at a third of the
/// cost of 640.
pub const TURNED_DETECT_SIDE: u32 = 384;

/// Faces checked per image. An image with more is refused as a whole: a
/// partial check could miss the one face that matters.
pub const MAX_FACES: usize = 64;
/// Faces per batch through the age and embedding models, bounding memory.
const BATCH: usize = 16;

#[derive(Debug, Clone)]
pub struct VisionConfig {
    pub models_dir: PathBuf,
    /// Path of `libonnxruntime.so.1.31.1`; see [`locate_onnxruntime`].
    pub onnxruntime: Option<PathBuf>,
    /// Sessions per model (requests analysed at once).
    pub sessions: usize,
    /// Minimum CenterFace score for a face.
    pub detection_threshold: f32,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig { models_dir: PathBuf::from("models"), onnxruntime: None, sessions: 2, detection_threshold: 0.5 }
    }
}

/// A face embedding. Biometric data: never printed, never serialised by
/// this crate, kept only in memory unless a subject consented to enrolment.
#[derive(Clone, PartialEq)]
pub struct Embedding(pub [f32; EMBEDDING_DIM]);

impl Embedding {
    pub fn distance_to(&self, other: &[f32]) -> f32 {
        self.0.iter().zip(other).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt()
    }
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedding(..)")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Face {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
    /// Expected age in years.
    pub age: f32,
    /// P(age < 18) under the age model.
    pub p_minor: f32,
    /// How much of the eyes is hidden (a bar, dark glasses): 0 to 1.
    pub eyes_covered: f32,
    #[serde(skip)]
    pub embedding: Embedding,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageAnalysis {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<Face>,
    /// open_nsfw's probability that the image is not safe for work.
    pub nsfw: f32,
}

/// A loaded model, as reported in decisions and `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub task: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub source: String,
}

/// One model's use so far: what the metrics report as inference time.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceTime {
    pub task: &'static str,
    pub runs: u64,
    pub seconds: f64,
}

/// The four models, ready to run.
pub struct Vision {
    detector: pool::Pool,
    age: pool::Pool,
    embedder: pool::Pool,
    nsfw: pool::Pool,
    models: Vec<ModelInfo>,
    detection_threshold: f32,
}

impl Vision {
    pub fn load(config: &VisionConfig) -> Result<Vision, VisionError> {
        let env = runtime::environment(config.onnxruntime.as_deref())?;
        let manifest = runtime::Manifest::load(&config.models_dir)?;
        let mut models = Vec::new();
        let mut pool_for = |task: &str| -> Result<pool::Pool, VisionError> {
            let entry = manifest.entry(task)?;
            let bytes = runtime::read_checked(&config.models_dir, entry)?;
            let sessions = (0..config.sessions.max(1))
                .map(|_| runtime::load_session(&env, &config.models_dir, entry, &bytes, 1))
                .collect::<Result<Vec<_>, _>>()?;
            models.push(ModelInfo {
                task: entry.task.clone(),
                file: entry.file.clone(),
                sha256: entry.sha256.clone(),
                licence: entry.licence.clone(),
                source: entry.source.clone(),
            });
            Ok(pool::Pool::new(sessions))
        };
        let detector = pool_for("face_detection")?;
        let age = pool_for("age")?;
        let embedder = pool_for("face_embedding")?;
        let nsfw = pool_for("nsfw")?;
        Ok(Vision { detector, age, embedder, nsfw, models, detection_threshold: config.detection_threshold })
    }

    pub fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    /// Each model's runs and time spent in them since it was loaded.
    pub fn inference_times(&self) -> Vec<InferenceTime> {
        [
            ("face_detection", &self.detector),
            ("age", &self.age),
            ("face_embedding", &self.embedder),
            ("nsfw", &self.nsfw),
        ]
        .into_iter()
        .map(|(task, pool)| {
            let (runs, seconds) = pool.usage();
            InferenceTime { task, runs, seconds }
        })
        .collect()
    }

    /// Faces with age and embedding, and the NSFW score, for one image,
    /// its faces searched at every quarter turn ([`Vision::detect`]): for
    /// what a user sends (references, enrollment and confirmation photos).
    pub fn analyze(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError> {
        self.analyze_with(img, Search::EveryTurn)
    }

    /// The same for a generated output, searched turned only where the
    /// upright search is unsure ([`Search::TurnsWhenUnsure`]).
    pub fn analyze_output(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError> {
        self.analyze_with(img, Search::TurnsWhenUnsure)
    }

    fn analyze_with(&self, img: &RgbImage, search: Search) -> Result<ImageAnalysis, VisionError> {
        // The NSFW model and the face models share nothing: on a second core
        // the NSFW score costs the request no time. (Under full load the
        // cores are busy either way; the work is the same.)
        let (faces, nsfw) = std::thread::scope(|s| {
            let nsfw = s.spawn(|| self.nsfw(img));
            let faces = self.faces(img, search);
            (
                faces,
                nsfw.join()
                    .unwrap_or_else(|_| Err(VisionError::Inference { model: "nsfw", message: "panicked".into() })),
            )
        });
        let faces = faces?;
        let nsfw = nsfw?;
        finite("nsfw", [nsfw])?;
        Ok(ImageAnalysis { width: img.width(), height: img.height(), faces, nsfw })
    }

    /// The faces, each with its age, embedding and eye cover.
    fn faces(&self, img: &RgbImage, search: Search) -> Result<Vec<Face>, VisionError> {
        let detections = self.detect_with(img, search)?;
        if detections.len() > MAX_FACES {
            return Err(VisionError::TooManyFaces { found: detections.len(), max: MAX_FACES });
        }
        let ages = self.ages(img, &detections)?;
        let embeddings = self.embeddings(img, &detections)?;
        Ok(detections
            .into_iter()
            .zip(ages)
            .zip(embeddings)
            .map(|((d, (age, p_minor)), embedding)| Face {
                eyes_covered: occlusion::eyes_covered(img, &d.landmarks),
                bbox: d.bbox,
                score: d.score,
                landmarks: d.landmarks,
                age,
                p_minor,
                embedding,
            })
            .collect())
    }

    /// Faces in any of the four quarter turns. The detector and its
    /// landmarks expect upright faces: a face turned upside down is found
    /// weakly, with landmarks that align a chip no embedding matches, which
    /// let a public figure's photo pass as a private person's. So every
    /// image is also searched turned by 90, 180 and 270 degrees, the boxes
    /// and landmarks mapped back, and where turns find the same face the
    /// best-scoring one wins (its landmarks then align the chip upright).
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        self.detect_with(img, Search::EveryTurn)
    }

    pub fn detect_with(&self, img: &RgbImage, search: Search) -> Result<Vec<Detection>, VisionError> {
        let threshold = self.detection_threshold;
        let side = match search {
            Search::EveryTurn => DETECT_SIDE,
            Search::TurnsWhenUnsure => OUTPUT_DETECT_SIDE,
        };
        let upright = self.detect_upright(img, threshold.min(UNSURE_FLOOR), side)?;
        let turn = match search {
            Search::EveryTurn => true,
            // Unsure: a weak candidate, or a face whose landmarks have no
            // face's proportions (a face turned, found with squeezed eyes).
            Search::TurnsWhenUnsure => upright.iter().any(|d| d.score < SURE || !detect::plausible(d)),
        };
        let mut all = upright;
        if turn {
            // Shrunk once, then turned: turning the full image three times
            // and shrinking each copy cost more than the three searches.
            let small = detect::within(img, TURNED_DETECT_SIDE);
            let small = small.as_ref().unwrap_or(img);
            let (w, h) = (small.width() as f32, small.height() as f32);
            let (sx, sy) = (img.width() as f32 / w, img.height() as f32 / h);
            for turn in [detect::Turn::Quarter, detect::Turn::Half, detect::Turn::ThreeQuarters] {
                let turned = turn.apply(small);
                all.extend(
                    self.detect_upright(&turned, threshold, TURNED_DETECT_SIDE)?
                        .into_iter()
                        .map(|d| turn.back(d, w, h).scaled(sx, sy)),
                );
            }
        }
        let (width, height) = (img.width(), img.height());
        Ok(detect::merge_turns(all, 0.3)
            .into_iter()
            .filter(|d| d.score >= threshold)
            .filter_map(|d| detect::clip(d, width, height))
            .collect())
    }

    /// Faces as the detector sees them, upright only, scoring at least
    /// `threshold`, the image scaled down to at most `side` pixels a side.
    fn detect_upright(&self, img: &RgbImage, threshold: f32, side: u32) -> Result<Vec<Detection>, VisionError> {
        let (data, h, w, scale) = detect::prepare(img, side);
        let err = |e: ort::Error| VisionError::Inference { model: "face detection", message: e.to_string() };
        let maps = self.detector.with(|s| -> Result<Vec<Vec<f32>>, VisionError> {
            let input = TensorRef::from_array_view(([1usize, 3, h, w], data.as_slice())).map_err(err)?;
            let out = s.run(ort::inputs![input]).map_err(err)?;
            (0..4).map(|i| Ok(out[i].try_extract_tensor::<f32>().map_err(err)?.1.to_vec())).collect()
        })?;
        let dets = detect::decode(&maps[0], &maps[1], &maps[2], &maps[3], (h / 4, w / 4), threshold, scale);
        Ok(dets.into_iter().filter_map(|d| detect::clip(d, img.width(), img.height())).collect())
    }

    /// (expected age, P(age < 18)) per face.
    pub fn ages(&self, img: &RgbImage, faces: &[Detection]) -> Result<Vec<(f32, f32)>, VisionError> {
        let probs = run_chips(&self.age, "age", img, faces, &align::AGE_TEMPLATE, 64, 81)?;
        Ok(probs
            .chunks(81)
            .map(|p| {
                let expected = p.iter().enumerate().map(|(k, pk)| pk * if k == 0 { 0.25 } else { k as f32 }).sum();
                let minor = p[..18].iter().sum::<f32>().clamp(0.0, 1.0);
                (expected, minor)
            })
            .collect())
    }

    /// One embedding per face.
    pub fn embeddings(&self, img: &RgbImage, faces: &[Detection]) -> Result<Vec<Embedding>, VisionError> {
        let flat =
            run_chips(&self.embedder, "face embedding", img, faces, &align::EMBEDDING_TEMPLATE, 150, EMBEDDING_DIM)?;
        Ok(flat.chunks(EMBEDDING_DIM).map(|c| Embedding(c.try_into().expect("chunks of EMBEDDING_DIM"))).collect())
    }

    pub fn nsfw(&self, img: &RgbImage) -> Result<f32, VisionError> {
        // The reference pre-processing: 256x256, a JPEG round trip, centre crop 224.
        let small = detect::shrink(img, 256, 256);
        let jpeg = likeness_media::encode(&small, likeness_media::OutputFormat::Jpeg { quality: 75 })
            .map_err(|e| VisionError::Inference { model: "nsfw", message: e.to_string() })?;
        let small = likeness_media::decode(&jpeg, None, &likeness_media::DecodeLimits::default())
            .map_err(|e| VisionError::Inference { model: "nsfw", message: e.to_string() })?
            .pixels;
        let mut data = Vec::with_capacity(224 * 224 * 3);
        for y in 16..240 {
            for x in 16..240 {
                let p = small.get_pixel(x, y);
                data.extend([
                    f32::from(p[2]) - NSFW_MEAN_BGR[0],
                    f32::from(p[1]) - NSFW_MEAN_BGR[1],
                    f32::from(p[0]) - NSFW_MEAN_BGR[2],
                ]);
            }
        }
        let err = |e: ort::Error| VisionError::Inference { model: "nsfw", message: e.to_string() };
        self.nsfw.with(|s| {
            let input = TensorRef::from_array_view(([1usize, 224, 224, 3], data.as_slice())).map_err(err)?;
            let out = s.run(ort::inputs![input]).map_err(err)?;
            let (_, probs) = out[0].try_extract_tensor::<f32>().map_err(err)?;
            Ok(probs[1])
        })
    }
}

/// Runs aligned chips of the faces through a dlib model in batches and
/// returns `per_face` finite values for every face, in order.
fn run_chips(
    pool: &pool::Pool,
    model: &'static str,
    img: &RgbImage,
    faces: &[Detection],
    template: &[[f32; 2]; 5],
    size: u32,
    per_face: usize,
) -> Result<Vec<f32>, VisionError> {
    let err = |e: ort::Error| VisionError::Inference { model, message: e.to_string() };
    let mut all = Vec::with_capacity(faces.len() * per_face);
    for batch in faces.chunks(BATCH) {
        let data = chips_nchw(img, batch, template, size);
        let s = size as usize;
        let values = pool.with(|session| -> Result<Vec<f32>, VisionError> {
            let input = TensorRef::from_array_view(([batch.len(), 3, s, s], data.as_slice())).map_err(err)?;
            let out = session.run(ort::inputs![input]).map_err(err)?;
            Ok(out[0].try_extract_tensor::<f32>().map_err(err)?.1.to_vec())
        })?;
        if values.len() != batch.len() * per_face {
            return Err(VisionError::Inference {
                model,
                message: format!("{} values for {} faces, expected {per_face} each", values.len(), batch.len()),
            });
        }
        all.extend(values);
    }
    finite(model, all.iter().copied())?;
    Ok(all)
}

/// A NaN or infinite score would compare false against every threshold and
/// pass the checks: refuse it as a model failure instead.
fn finite(model: &'static str, values: impl IntoIterator<Item = f32>) -> Result<(), VisionError> {
    match values.into_iter().find(|v| !v.is_finite()) {
        Some(v) => Err(VisionError::Inference { model, message: format!("the model returned {v}") }),
        None => Ok(()),
    }
}

/// Aligned chips of the faces, normalised for the dlib models, in one NCHW batch.
fn chips_nchw(img: &RgbImage, faces: &[Detection], template: &[[f32; 2]; 5], size: u32) -> Vec<f32> {
    let plane = (size * size) as usize;
    let mut data = vec![0.0f32; faces.len() * 3 * plane];
    for (n, face) in faces.iter().enumerate() {
        let chip = align::chip(img, &face.landmarks, template, size);
        let base = n * 3 * plane;
        for (i, p) in chip.pixels().enumerate() {
            for c in 0..3 {
                data[base + c * plane + i] = (f32::from(p[c]) - AGE_MEAN[c]) / 256.0;
            }
        }
    }
    data
}

/// The models directory when none is configured: `models/` in the working
/// directory, else beside the binary. Never a parent directory's: a folder
/// planted there would decide what the checks see.
pub fn default_models_dir() -> PathBuf {
    let beside_binary = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("models")));
    std::env::current_dir()
        .ok()
        .map(|d| d.join("models"))
        .into_iter()
        .chain(beside_binary)
        .find(|m| m.join("manifest.json").is_file())
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// Convenience for tools: the default config with a models directory.
pub fn config_for(models_dir: &Path) -> VisionConfig {
    VisionConfig { models_dir: models_dir.to_path_buf(), ..VisionConfig::default() }
}
