//! Vision checks on references and outputs, and the interim rule that
//! decides on them until the policy engine exists: refuse a likely minor, a
//! public-figure match, or a high NSFW score. Thresholds come from config.

use std::sync::Arc;

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

/// One face as the decision records it: scores only, no pixels, no embedding.
#[derive(Debug, Clone, Serialize)]
pub struct FaceRecord {
    #[serde(rename = "box")]
    pub bbox: [f64; 4],
    pub score: f64,
    pub age: f64,
    pub p_minor: f64,
    pub matches: Vec<GalleryMatch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageRecord {
    /// `reference 1`, `output 2`...
    pub image: String,
    pub faces: Vec<FaceRecord>,
    pub nsfw: f64,
}

impl Moderation {
    pub fn record(&self, image: String, a: &ImageAnalysis) -> ImageRecord {
        let faces = a
            .faces
            .iter()
            .map(|f| FaceRecord {
                bbox: f.bbox.map(|v| f64::from(v).round()),
                score: round3(f.score),
                age: f64::from(f.age).round(),
                p_minor: round3(f.p_minor),
                matches: self.gallery.matches(&f.embedding, self.thresholds.match_distance),
            })
            .collect();
        ImageRecord { image, faces, nsfw: round3(a.nsfw) }
    }

    /// The first reason to refuse this image, as (code, message).
    pub fn verdict(&self, r: &ImageRecord) -> Option<(&'static str, String)> {
        let t = &self.thresholds;
        for (i, f) in r.faces.iter().enumerate() {
            if let Some(m) = f.matches.first() {
                return Some((
                    "vision.public_figure",
                    format!(
                        "{} shows a face (face {}) that matches a public figure in the gallery: {} (distance {:.2})",
                        r.image,
                        i + 1,
                        m.name,
                        m.distance
                    ),
                ));
            }
        }
        for (i, f) in r.faces.iter().enumerate() {
            if f.p_minor >= f64::from(t.minor) {
                return Some((
                    "vision.minor",
                    format!("{} shows a possible minor (face {}, P(age < 18) = {:.2})", r.image, i + 1, f.p_minor),
                ));
            }
        }
        if r.nsfw >= f64::from(t.nsfw) {
            return Some(("vision.nsfw", format!("{} is likely not safe for work (score {:.2})", r.image, r.nsfw)));
        }
        None
    }
}

/// Three decimals, in f64 so the JSON shows 0.867 and not 0.8669999837875366.
fn round3(v: f32) -> f64 {
    (f64::from(v) * 1000.0).round() / 1000.0
}
