//! Vision checks on references and outputs, and the default rules that
//! decide on them until the policy engine exists. References: every face
//! must be a consenting subject (likely minors only with a guardian's
//! consent), never a public figure. Outputs: no public figure, no likely
//! minor the references did not justify. Both: nothing NSFW. Thresholds come
//! from config.

use std::sync::Arc;

use image::RgbImage;
use likeness_codes::ErrorCode;
use likeness_consent::{
    label_face, public_figure_refusal, reference_faces_rule, three_decimals, FaceFacts, FaceLabel, Refusal, Subject,
};
use likeness_vision::{Gallery, GalleryMatch, ImageAnalysis, ModelInfo, VisionError};
use serde::Serialize;

/// The vision models as the pipeline uses them: scores for one image, and
/// which models produced them. `likeness_vision::Vision` (ONNX Runtime) is
/// the real one; tests of the request path may stand in their own.
pub trait VisionModels: Send + Sync {
    fn analyze(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError>;
    fn models(&self) -> &[ModelInfo];
}

impl VisionModels for likeness_vision::Vision {
    fn analyze(&self, img: &RgbImage) -> Result<ImageAnalysis, VisionError> {
        likeness_vision::Vision::analyze(self, img)
    }

    fn models(&self) -> &[ModelInfo] {
        likeness_vision::Vision::models(self)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Embedding distance under which a face matches a gallery entry.
    pub match_distance: f32,
    /// P(age < 18) at or above which a face counts as a possible minor. Low
    /// on purpose: the age model was not validated on real children.
    pub minor: f32,
    /// NSFW score at or above which an image is refused.
    pub nsfw: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { match_distance: 0.55, minor: 0.3, nsfw: 0.7 }
    }
}

/// The vision models and what the rule compares them with. When the models
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

/// A rule's refusal of one image: the code and what to tell the user.
pub type Verdict = Option<Refusal>;

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

    /// The rule for references: consent for every face (see
    /// [`likeness_consent::reference_faces_rule`]), then NSFW.
    pub fn reference_verdict(&self, r: &ImageRecord, subjects: &[Subject]) -> Verdict {
        let faces: Vec<(FaceLabel, f32)> = r.faces.iter().map(|f| (f.label.clone(), f.p_minor)).collect();
        reference_faces_rule(&r.image, &faces, subjects, self.thresholds.minor).or_else(|| self.nsfw_verdict(r))
    }

    /// The rule for outputs: no public figure; no more likely minors than
    /// the references showed consenting minor subjects with a guardian's
    /// consent (`consenting_minors`; a stylised face may no longer match its
    /// enrolled embedding, so the count is what carries over); nothing NSFW.
    /// Unknown adults are allowed: generators invent people.
    pub fn output_verdict(&self, r: &ImageRecord, consenting_minors: usize) -> Verdict {
        for (i, f) in r.faces.iter().enumerate() {
            if let Some(m) = f.matches.first() {
                return Some(public_figure_refusal(&r.image, i + 1, &m.name, m.distance));
            }
        }
        let mut likely_minors = r.faces.iter().enumerate().filter(|(_, f)| f.p_minor >= self.thresholds.minor);
        if let Some((i, f)) = likely_minors.nth(consenting_minors) {
            return Some(Refusal {
                code: ErrorCode::VisionMinor,
                message: format!("{} shows a possible minor (face {}, P(age < 18) = {:.2})", r.image, i + 1, f.p_minor),
            });
        }
        self.nsfw_verdict(r)
    }

    fn nsfw_verdict(&self, r: &ImageRecord) -> Verdict {
        (r.nsfw >= self.thresholds.nsfw).then(|| Refusal {
            code: ErrorCode::VisionNsfw,
            message: format!("{} is likely not safe for work (score {:.2})", r.image, r.nsfw),
        })
    }
}
