//! What was decided about a request, and on what grounds. Derived data only:
//! scores, labels, hashes and ids; never pixels, prompts or embeddings.

use likeness_consent::Receipt;
use likeness_policy::{Action, Input, Mode, Stage};
use likeness_provenance::SignedAsset;
use serde::Serialize;

use crate::moderation::ImageRecord;

/// A check a request went through, in the order they ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Check {
    #[serde(rename = "consent.photos")]
    ConsentPhotos,
    #[serde(rename = "consent.subjects")]
    ConsentSubjects,
    #[serde(rename = "vision.references")]
    VisionReferences,
    #[serde(rename = "policy.pre")]
    PolicyPre,
    #[serde(rename = "vision.outputs")]
    VisionOutputs,
    #[serde(rename = "policy.post")]
    PolicyPost,
    #[serde(rename = "watermark")]
    Watermark,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub action: Action,
    /// The reason of the rule that decided a refusal or review.
    pub reasons: Vec<String>,
    /// Labels the policy put on the outputs (e.g. `ai_generated`).
    pub labels: Vec<String>,
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
    /// The policy version and every rule that fired, with its mode.
    pub policy: PolicyRecord,
    /// What the policy was given at each stage: kept in the decision log
    /// (for replay), never sent back.
    #[serde(skip)]
    pub inputs: Vec<Input>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyRecord {
    pub version: String,
    pub rules: Vec<FiredRule>,
}

/// A rule that fired, enforced or in shadow.
#[derive(Debug, Clone, Serialize)]
pub struct FiredRule {
    pub id: String,
    pub stage: Stage,
    pub mode: Mode,
    pub action: Action,
    pub reason: String,
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
    /// Per asset, the fingerprint of its marked pixels
    /// ([`likeness_watermark::Fingerprint`], as bytes): kept beside its
    /// manifest, so that a mark recovered later is checked against the
    /// picture it was made in. Never returned to the client.
    pub fingerprints: Vec<(likeness_provenance::AssetId, Vec<u8>)>,
    pub decision: Decision,
}
