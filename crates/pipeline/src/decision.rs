//! What was decided about a request, and on what grounds. Derived data only:
//! scores, labels, hashes and ids; never pixels, prompts or embeddings.

use likeness_consent::Receipt;
use likeness_provenance::SignedAsset;
use serde::Serialize;

use crate::moderation::ImageRecord;

/// The ladder of outcomes, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Label,
    Review,
    Block,
}

/// A check a request went through, in the order they ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Check {
    #[serde(rename = "consent.photos")]
    ConsentPhotos,
    #[serde(rename = "consent.subjects")]
    ConsentSubjects,
    #[serde(rename = "vision.references")]
    VisionReferences,
    #[serde(rename = "vision.outputs")]
    VisionOutputs,
    #[serde(rename = "watermark")]
    Watermark,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub action: Action,
    pub reasons: Vec<String>,
    /// The references by SHA-256, in request order.
    pub references: Vec<String>,
    pub style: String,
    pub generator: String,
    pub checks: Vec<Check>,
    /// Models that produced the scores: task and SHA-256.
    pub models: Vec<ModelRef>,
    /// Scores per reference and per output; no pixels, no embeddings.
    pub images: Vec<ImageRecord>,
    /// The consent receipt: grant, subjects relied on, how each reference
    /// was allowed. Ids only.
    pub consent: Receipt,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRef {
    pub task: String,
    pub sha256: String,
}

/// A request that went through: signed assets and the decision behind them.
pub struct GenerationOutcome {
    pub request_id: String,
    pub assets: Vec<SignedAsset>,
    pub decision: Decision,
}
