//! Vision on references and outputs: scores per image and a label per face
//! (consenting subject, public figure, unknown). Scores, not verdicts: the
//! policy decides what they allow.

use std::sync::Arc;

use image::RgbImage;
use likeness_consent::{label_face, three_decimals, FaceFacts, FaceLabel, Subject};
use likeness_vision::{Gallery, GalleryMatch, ImageAnalysis, ModelInfo, VisionError};
use serde::Serialize;

/// The vision models as the pipeline uses them: scores for one image, and
/// which models produced them. `likeness_vision::Vision` (ONNX Runtime) is
/// the real one; tests of the request path may stand in their own.
pub trait VisionModels: Send + Sync {
    /// What a user sent: faces searched at every quarter turn.
    fn analyze(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError>;
    /// A generated output: searched turned where the upright search is unsure.
    fn analyze_output(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError> {
        self.analyze(img)
    }
    fn models(&self) -> &[ModelInfo];
    /// Each model's runs and time in them so far, for the metrics.
    fn inference_times(&self) -> Vec<likeness_vision::InferenceTime> {
        Vec::new()
    }
}

impl VisionModels for likeness_vision::Vision {
    fn analyze(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError> {
        likeness_vision::Vision::analyze(self, img)
    }

    fn analyze_output(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError> {
        likeness_vision::Vision::analyze_output(self, img)
    }

    fn models(&self) -> &[ModelInfo] {
        likeness_vision::Vision::models(self)
    }

    fn inference_times(&self) -> Vec<likeness_vision::InferenceTime> {
        likeness_vision::Vision::inference_times(self)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Embedding distance under which a face matches a gallery entry or an
    /// enrolled subject.
    pub match_distance: f32,
    /// P(age < 18) at or above which an enrollment photo counts as a
    /// possible minor's. (Generation uses the policy's own parameter.)
    pub minor: f32,
    /// Share of the eyes hidden at or above which an enrollment or
    /// confirmation photo is refused: a face enrolled behind a bar could
    /// be a public figure's that the gallery no longer recognises. Seen:
    /// clear faces 0.06 to 0.31 (a 0.1x thumbnail), a black bar 1.0.
    pub eyes_covered: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { match_distance: 0.55, minor: 0.3, eyes_covered: 0.6 }
    }
}

/// The vision models and what faces are compared with. When the models
/// could not be loaded, every request is refused (fail closed).
pub struct Moderation {
    pub vision: Result<Arc<dyn VisionModels>, String>,
    pub gallery: Arc<Gallery>,
    pub thresholds: Thresholds,
}

/// One face as the decision records it: scores and who it is, no pixels,
/// no embedding. Scores are whole here and rounded only when serialised.
#[derive(Debug, Clone, Serialize)]
pub struct FaceRecord {
    #[serde(rename = "box", serialize_with = "whole_pixels")]
    pub bbox: [f32; 4],
    #[serde(serialize_with = "three_decimals")]
    pub score: f32,
    #[serde(serialize_with = "whole_years")]
    pub age: f32,
    #[serde(serialize_with = "three_decimals")]
    pub p_minor: f32,
    pub matches: Vec<GalleryMatch>,
    /// `consenting_subject` (with `subject`), `public_figure` (with `name`)
    /// or `unknown`.
    #[serde(flatten)]
    pub label: FaceLabel,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageRecord {
    /// `reference 1`, `output 2`...
    pub image: String,
    pub faces: Vec<FaceRecord>,
    #[serde(serialize_with = "three_decimals")]
    pub nsfw: f32,
}

fn whole_pixels<S: serde::Serializer>(b: &[f32; 4], s: S) -> Result<S::Ok, S::Error> {
    b.map(|v| f64::from(v).round()).serialize(s)
}

fn whole_years<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from(*v).round())
}

impl Moderation {
    /// The loaded models, or why there are none.
    pub fn models(&self) -> Result<&dyn VisionModels, crate::PipelineError> {
        self.vision.as_deref().map_err(|e| crate::PipelineError::VisionUnavailable(e.clone()))
    }

    /// Scores one analysed image and labels its faces against the gallery
    /// and the request's declared subjects.
    pub fn record(&self, image: String, a: &ImageAnalysis, subjects: &[Subject]) -> ImageRecord {
        let faces = a
            .faces
            .iter()
            .map(|f| {
                let matches = self.gallery.matches(&f.embedding, self.thresholds.match_distance);
                let facts = FaceFacts {
                    embedding: &f.embedding.0,
                    p_minor: f.p_minor,
                    public_figure: matches.first().map(|m| (m.name.clone(), m.distance)),
                };
                FaceRecord {
                    bbox: f.bbox,
                    score: f.score,
                    age: f.age,
                    p_minor: f.p_minor,
                    label: label_face(&facts, subjects, self.thresholds.match_distance),
                    matches,
                }
            })
            .collect();
        ImageRecord { image, faces, nsfw: a.nsfw }
    }
}
