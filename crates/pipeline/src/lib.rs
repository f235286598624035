//! One request's flow, from reference photos to signed assets. No HTTP here:
//! the HTTP crate turns wire JSON into a [`GenerationRequest`] and a
//! [`PipelineError`] into a status code.
//!
//! ```text
//! validate ─► decode references (memory only) ─► vision ─► decide (pre)
//!          ─► generate ─► vision ─► decide (post) ─► encode ─► sign ─► SignedAsset
//! ```
//!
//! The pipeline can only hand back [`likeness_provenance::SignedAsset`]s, which
//! only the provenance crate can construct: an image that skipped signing
//! cannot be returned, by construction.

mod moderation;

use std::sync::Arc;

use likeness_generators::{GenerationJob, Generator, Style};
use likeness_media::{DecodeLimits, MediaError, MediaType, OutputFormat};
use likeness_provenance::{AssetDescription, AssetId, ProvenanceError, SignedAsset, Signer};
use serde::Serialize;

pub use moderation::{FaceRecord, ImageRecord, Moderation, Thresholds};

/// Bounds on what one request may ask for.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub max_references: usize,
    pub max_outputs: u32,
    pub min_side: u32,
    pub max_side: u32,
    pub max_prompt_chars: usize,
    pub decode: DecodeLimits,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_references: 4,
            max_outputs: 4,
            min_side: 256,
            max_side: 2048,
            max_prompt_chars: 4000,
            decode: DecodeLimits::default(),
        }
    }
}

/// A reference photo as received: bytes in memory, never persisted.
pub struct ReferenceInput {
    pub bytes: Vec<u8>,
    pub declared: Option<MediaType>,
}

impl std::fmt::Debug for ReferenceInput {
    // Photos never reach a log, not even through a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReferenceInput({} bytes)", self.bytes.len())
    }
}

#[derive(Debug)]
pub struct GenerationRequest {
    pub request_id: String,
    /// The app's pseudonymous user id. Used for consent; never in a manifest.
    pub user: String,
    pub prompt: String,
    pub style: Option<String>,
    pub references: Vec<ReferenceInput>,
    pub count: u32,
    pub width: u32,
    pub height: u32,
    pub output: OutputFormat,
    pub seed: Option<u64>,
}

/// What was decided about a request, and on what grounds. Derived data only.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// `allow`, `label`, `review` or `block`.
    pub action: &'static str,
    pub reasons: Vec<String>,
    /// The references by SHA-256, in request order.
    pub references: Vec<String>,
    pub style: String,
    pub generator: String,
    /// Which checks ran, in order. Consent and policy checks join this list
    /// as they are added.
    pub checks: Vec<&'static str>,
    /// Models that produced the scores: task and SHA-256.
    pub models: Vec<ModelRef>,
    /// Scores per reference and per output; no pixels, no embeddings.
    pub images: Vec<ImageRecord>,
}

impl Decision {
    fn empty() -> Decision {
        Decision {
            action: "allow",
            reasons: vec![],
            references: vec![],
            style: String::new(),
            generator: String::new(),
            checks: vec![],
            models: vec![],
            images: vec![],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRef {
    pub task: String,
    pub sha256: String,
}

pub struct GenerationOutcome {
    pub request_id: String,
    pub assets: Vec<SignedAsset>,
    pub decision: Decision,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{field}: {message}")]
    InvalidRequest { field: &'static str, message: String },
    #[error(transparent)]
    UnknownStyle(#[from] likeness_generators::UnknownStyle),
    /// `index` counts from 1, as in decisions.
    #[error("reference {index}: {source}")]
    Reference { index: usize, source: MediaError },
    #[error("the generator failed: {0}")]
    Generator(String),
    #[error("could not encode the output: {0}")]
    Encode(MediaError),
    #[error("signing failed: {0}")]
    Signing(#[from] ProvenanceError),
    /// A rule refused the request; the decision says why.
    #[error("{message}")]
    Refused { code: &'static str, message: String, decision: Box<Decision> },
    /// The vision models are not loaded: nothing can be checked, so nothing runs.
    #[error("the vision models are not available: {0}")]
    VisionUnavailable(String),
    #[error("vision failed: {0}")]
    Vision(#[from] likeness_vision::VisionError),
}

/// Everything needed to serve generation requests; shared by all requests.
pub struct Pipeline {
    generator: Arc<dyn Generator>,
    signer: Arc<Signer>,
    moderation: Moderation,
    limits: RequestLimits,
}

impl Pipeline {
    pub fn new(
        generator: Arc<dyn Generator>,
        signer: Arc<Signer>,
        moderation: Moderation,
        limits: RequestLimits,
    ) -> Pipeline {
        Pipeline { generator, signer, moderation, limits }
    }

    pub fn moderation(&self) -> &Moderation {
        &self.moderation
    }

    pub fn limits(&self) -> &RequestLimits {
        &self.limits
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Checks what can be checked without touching pixels, so a bad request
    /// fails fast and cheaply. The HTTP layer calls it before queueing;
    /// `run` calls it again, so no caller can skip it.
    pub fn validate(&self, req: &GenerationRequest) -> Result<Style, PipelineError> {
        let l = &self.limits;
        let invalid = |field, message: String| Err(PipelineError::InvalidRequest { field, message });
        if req.user.trim().is_empty() || req.user.len() > 256 {
            return invalid("user", "must be a non-empty id of at most 256 bytes".into());
        }
        if req.prompt.chars().count() > l.max_prompt_chars {
            return invalid("prompt", format!("at most {} characters", l.max_prompt_chars));
        }
        if req.count == 0 || req.count > l.max_outputs {
            return invalid("n", format!("must be between 1 and {}", l.max_outputs));
        }
        for (field, side) in [("size", req.width), ("size", req.height)] {
            if side < l.min_side || side > l.max_side {
                return invalid(field, format!("each side must be between {} and {} pixels", l.min_side, l.max_side));
            }
        }
        if req.references.len() > l.max_references {
            return invalid("references", format!("at most {} references", l.max_references));
        }
        if req.prompt.trim().is_empty() && req.references.is_empty() {
            return invalid("prompt", "a prompt or at least one reference is needed".into());
        }
        Ok(Style::resolve(req.style.as_deref(), &req.prompt)?)
    }

    /// Runs one request to the end. CPU-bound: call it off the async workers.
    pub fn run(&self, req: GenerationRequest) -> Result<GenerationOutcome, PipelineError> {
        let style = self.validate(&req)?;
        let vision = self.moderation.vision.as_ref().map_err(|e| PipelineError::VisionUnavailable(e.clone()))?;
        let mut reference_hashes = Vec::with_capacity(req.references.len());
        let mut decoded = Vec::with_capacity(req.references.len());
        for (index, r) in req.references.iter().enumerate() {
            let d = likeness_media::decode(&r.bytes, r.declared, &self.limits.decode)
                .map_err(|source| PipelineError::Reference { index: index + 1, source })?;
            reference_hashes.push(likeness_media::sha256_hex(&r.bytes));
            decoded.push(d.pixels);
        }
        // The encoded photos are no longer needed: drop them as early as possible.
        drop(req.references);
        let generator = format!("{}/{}", self.generator.name(), style);
        let mut decision = Decision {
            action: "allow",
            reasons: Vec::new(),
            references: reference_hashes.clone(),
            style: style.to_string(),
            generator: generator.clone(),
            checks: vec!["vision.references"],
            models: vision
                .models()
                .iter()
                .map(|m| ModelRef { task: m.task.clone(), sha256: m.sha256.clone() })
                .collect(),
            images: Vec::new(),
        };

        self.check_images(vision, &mut decision, "reference", &decoded)?;

        let job = GenerationJob {
            prompt: &req.prompt,
            style,
            references: &decoded,
            width: req.width,
            height: req.height,
            count: req.count,
            seed: req.seed.unwrap_or(0),
        };
        let images = self.generator.generate(&job).map_err(|e| PipelineError::Generator(e.to_string()))?;
        drop(decoded);

        // Outputs are checked like references: the generator may have carried
        // a face through, or made something the rule forbids.
        decision.checks.push("vision.outputs");
        self.check_images(vision, &mut decision, "output", &images)?;

        let output = req.output;
        let mut assets = Vec::with_capacity(images.len());
        for pixels in images {
            let encoded = likeness_media::encode(&pixels, output).map_err(PipelineError::Encode)?;
            let description = AssetDescription {
                asset_id: AssetId::random(),
                request_id: req.request_id.clone(),
                generator: generator.clone(),
                ingredient_hashes: reference_hashes.clone(),
            };
            assets.push(self.signer.sign(&encoded, output.media_type(), &description)?);
        }
        Ok(GenerationOutcome { request_id: req.request_id, assets, decision })
    }

    /// Analyses each image, records its scores in the decision, and refuses
    /// at the first image the rule refuses.
    fn check_images(
        &self,
        vision: &likeness_vision::Vision,
        decision: &mut Decision,
        kind: &str,
        images: &[image::RgbImage],
    ) -> Result<(), PipelineError> {
        for (i, img) in images.iter().enumerate() {
            let record = self.moderation.record(format!("{kind} {}", i + 1), &vision.analyze(img)?);
            let verdict = self.moderation.verdict(&record);
            decision.images.push(record);
            if let Some((code, message)) = verdict {
                return Err(refuse(std::mem::replace(decision, Decision::empty()), code, message));
            }
        }
        Ok(())
    }
}

fn refuse(mut decision: Decision, code: &'static str, message: String) -> PipelineError {
    decision.action = "block";
    decision.reasons.push(code.to_string());
    PipelineError::Refused { code, message, decision: Box::new(decision) }
}
