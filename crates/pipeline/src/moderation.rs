//! Vision checks on references and outputs, and the default rules that
//! decide on them until the policy engine exists. References: every face
//! must be a consenting subject (likely minors only with a guardian's
//! consent), never a public figure. Outputs: no public figure, no likely
//! minor the references did not justify. Both: nothing NSFW. Thresholds come
//! from config.

use std::sync::Arc;

use likeness_consent::{label_face, public_figure_refusal, reference_faces_rule, FaceFacts, FaceLabel, Subject};
use likeness_vision::{Gallery, GalleryMatch, ImageAnalysis, Vision};
use serde::Serialize;

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
    pub vision: Result<Arc<Vision>, String>,
    pub gallery: Arc<Gallery>,
    pub thresholds: Thresholds,
}

/// One face as the decision records it: scores and who it is, no pixels,
/// no embedding.
#[derive(Debug, Clone, Serialize)]
pub struct FaceRecord {
    #[serde(rename = "box")]
    pub bbox: [f64; 4],
    pub score: f64,
    pub age: f64,
    pub p_minor: f64,
    /// Unrounded, for the rules: rounding must not move a face across a threshold.
    #[serde(skip)]
    pub p_minor_raw: f32,
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
    pub nsfw: f64,
}

impl Moderation {
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
                let mut label = label_face(&facts, subjects, self.thresholds.match_distance);
                if let FaceLabel::ConsentingSubject { distance, .. } | FaceLabel::PublicFigure { distance, .. } =
                    &mut label
                {
                    *distance = round3(*distance) as f32;
                }
                FaceRecord {
                    bbox: f.bbox.map(|v| f64::from(v).round()),
                    score: round3(f.score),
                    age: f64::from(f.age).round(),
                    p_minor: round3(f.p_minor),
                    p_minor_raw: f.p_minor,
                    matches,
                    label,
                }
            })
            .collect();
        ImageRecord { image, faces, nsfw: round3(a.nsfw) }
    }

    /// The rule for references: consent for every face (see
    /// [`likeness_consent::reference_faces_rule`]), then NSFW.
    pub fn reference_verdict(&self, r: &ImageRecord, subjects: &[Subject]) -> Option<(&'static str, String)> {
        let faces: Vec<(FaceLabel, f32)> = r.faces.iter().map(|f| (f.label.clone(), f.p_minor_raw)).collect();
        if let Some(refusal) = reference_faces_rule(&r.image, &faces, subjects, self.thresholds.minor) {
            return Some((refusal.code, refusal.message));
        }
        self.nsfw_verdict(r)
    }

    /// The rule for outputs: no public figure; no more likely minors than
    /// the references showed consenting minor subjects with a guardian's
    /// consent (`consenting_minors`; a stylised face may no longer match its
    /// enrolled embedding, so the count is what carries over); nothing NSFW.
    /// Unknown adults are allowed: generators invent people.
    pub fn output_verdict(&self, r: &ImageRecord, consenting_minors: usize) -> Option<(&'static str, String)> {
        let t = &self.thresholds;
        for (i, f) in r.faces.iter().enumerate() {
            if let Some(m) = f.matches.first() {
                let refusal = public_figure_refusal(&r.image, i + 1, &m.name, m.distance);
                return Some((refusal.code, refusal.message));
            }
        }
        let mut minors = 0;
        for (i, f) in r.faces.iter().enumerate() {
            if f.p_minor_raw < t.minor {
                continue;
            }
            minors += 1;
            if minors > consenting_minors {
                return Some((
                    "vision.minor",
                    format!("{} shows a possible minor (face {}, P(age < 18) = {:.2})", r.image, i + 1, f.p_minor),
                ));
            }
        }
        self.nsfw_verdict(r)
    }

    fn nsfw_verdict(&self, r: &ImageRecord) -> Option<(&'static str, String)> {
        if r.nsfw >= f64::from(self.thresholds.nsfw) {
            return Some(("vision.nsfw", format!("{} is likely not safe for work (score {:.2})", r.image, r.nsfw)));
        }
        None
    }
}

/// Three decimals, in f64 so the JSON shows 0.867 and not 0.8669999837875366.
fn round3(v: f32) -> f64 {
    (f64::from(v) * 1000.0).round() / 1000.0
}
