//! One request's flow, from reference photos to signed assets. No HTTP here:
//! the HTTP crate turns wire JSON into a [`GenerationRequest`] and a
//! [`PipelineError`] into a status code.
//!
//! ```text
//! validate ─► decode references (memory only) ─► vision ─► label faces
//!          ─► decide (pre: consent for every face) ─► generate ─► vision
//!          ─► decide (post) ─► watermark ─► encode ─► read the mark back
//!          ─► sign (with the soft binding) ─► SignedAsset
//! ```
//!
//! Photo-access consent (grants) and the declared subjects are checked
//! before the pipeline, where the records are loaded; it receives them as a
//! [`RequestConsent`] and decides on the faces it finds.
//!
//! The pipeline can only hand back [`likeness_provenance::SignedAsset`]s, which
//! only the provenance crate can construct: an image that skipped signing
//! cannot be returned, by construction.

mod moderation;

use std::sync::Arc;

use likeness_generators::{GenerationJob, Generator, Style};
use likeness_media::{DecodeLimits, MediaError, MediaType, OutputFormat};
use likeness_provenance::{AssetDescription, AssetId, ProvenanceError, SignedAsset, Signer, SoftBinding};
use serde::Serialize;

pub use likeness_consent::{Receipt, ReferenceConsent, Subject};
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
    pub consent: RequestConsent,
}

/// What the consent checks ahead of the pipeline established.
pub struct RequestConsent {
    /// The id of this request's consent receipt, named in every manifest.
    pub receipt_id: String,
    pub grant_id: Option<String>,
    /// How each reference was allowed, in request order.
    pub references: Vec<ReferenceConsent>,
    /// The declared subjects, already checked usable by this user, with
    /// their enrolled embeddings.
    pub subjects: Vec<Subject>,
}

impl std::fmt::Debug for RequestConsent {
    // Ids only: no names, no embeddings in any debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestConsent")
            .field("receipt_id", &self.receipt_id)
            .field("grant_id", &self.grant_id)
            .field("subjects", &self.subjects.iter().map(|s| &s.id).collect::<Vec<_>>())
            .finish()
    }
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
    /// The consent receipt: grant, subjects relied on, how each reference
    /// was allowed. Ids only.
    pub consent: Receipt,
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
    /// The invisible watermark could not be read back from an output: it
    /// is not returned unmarked.
    #[error("the watermark could not be read back from output {index}")]
    Watermark { index: usize },
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
    /// An enrollment photo cannot enroll a subject.
    #[error("enrollment photo {index}: {problem}")]
    Enrollment { index: usize, problem: EnrollmentProblem },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnrollmentProblem {
    #[error("no face found; use a clear photo of the subject alone")]
    NoFace,
    #[error("{0} faces found; enrollment needs a photo of the subject alone")]
    SeveralFaces(usize),
    #[error("the face matches a public figure in the gallery ({0}); public figures cannot be enrolled")]
    PublicFigure(String),
    #[error("the face looks like a minor's (P(age < 18) = {0:.2}); enroll with minor: true and a guardian's consent")]
    PossibleMinor(f32),
    #[error("the face is not the person of enrollment photo 1 (distance {0:.2}); enroll one person per subject")]
    DifferentPerson(f32),
}

/// Everything needed to serve generation requests; shared by all requests.
pub struct Pipeline {
    generator: Arc<dyn Generator>,
    signer: Arc<Signer>,
    watermark: likeness_watermark::Key,
    moderation: Moderation,
    limits: RequestLimits,
}

/// Watermark strengths tried in turn until the mark reads back from the
/// encoded output; the first suits nearly every image.
const WATERMARK_STRENGTHS: [f32; 2] = [likeness_watermark::INFORMED_STRENGTH, 1.4];

impl Pipeline {
    pub fn new(
        generator: Arc<dyn Generator>,
        signer: Arc<Signer>,
        watermark: likeness_watermark::Key,
        moderation: Moderation,
        limits: RequestLimits,
    ) -> Pipeline {
        Pipeline { generator, signer, watermark, moderation, limits }
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
            checks: vec!["consent.photos", "consent.subjects", "vision.references"],
            models: vision
                .models()
                .iter()
                .map(|m| ModelRef { task: m.task.clone(), sha256: m.sha256.clone() })
                .collect(),
            images: Vec::new(),
            consent: Receipt {
                id: req.consent.receipt_id.clone(),
                grant: req.consent.grant_id.clone(),
                subjects: Vec::new(),
                references: req.consent.references.clone(),
                purpose: likeness_consent::Purpose::Generation,
            },
        };

        let subjects = &req.consent.subjects;
        let verdict = |r: &ImageRecord| self.moderation.reference_verdict(r, subjects);
        if let Some((code, message)) =
            self.check_images(vision, &mut decision, "reference", &decoded, subjects, verdict)?
        {
            return Err(refuse(decision, code, message));
        }
        // The subjects the references actually showed: what the request relied on.
        let mut consenting_minors: Vec<String> = Vec::new();
        for face in decision.images.iter().flat_map(|r| &r.faces) {
            if let likeness_consent::FaceLabel::ConsentingSubject { subject, .. } = &face.label {
                if !decision.consent.subjects.contains(subject) {
                    decision.consent.subjects.push(subject.clone());
                }
                if subjects.iter().any(|s| &s.id == subject && s.minor && s.guardian_consent)
                    && !consenting_minors.contains(subject)
                {
                    consenting_minors.push(subject.clone());
                }
            }
        }

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
        let verdict = |r: &ImageRecord| self.moderation.output_verdict(r, consenting_minors.len());
        if let Some((code, message)) = self.check_images(vision, &mut decision, "output", &images, subjects, verdict)? {
            return Err(refuse(decision, code, message));
        }

        decision.checks.push("watermark");
        let output = req.output;
        let mut assets = Vec::with_capacity(images.len());
        for (i, pixels) in images.into_iter().enumerate() {
            let asset_id = AssetId::random();
            let payload = watermark_payload(asset_id);
            let encoded = self.watermark_and_encode(pixels, &payload, output, i + 1)?;
            let description = AssetDescription {
                asset_id,
                request_id: req.request_id.clone(),
                generator: generator.clone(),
                ingredient_hashes: reference_hashes.clone(),
                receipt_id: req.consent.receipt_id.clone(),
                soft_binding: Some(soft_binding(&payload)),
            };
            assets.push(self.signer.sign(&encoded, output.media_type(), &description)?);
        }
        Ok(GenerationOutcome { request_id: req.request_id, assets, decision })
    }

    /// Reads the watermark of an uploaded image (decoded in memory within
    /// the request limits; nothing kept). CPU-bound: call it off the async
    /// workers.
    pub fn read_watermark(&self, bytes: &[u8]) -> Result<Option<likeness_watermark::Detection>, MediaError> {
        let decoded = likeness_media::decode(bytes, None, &self.limits.decode)?;
        Ok(likeness_watermark::detect(&decoded.pixels, &self.watermark))
    }

    /// Marks `pixels` with `payload`, encodes, and decodes the result to
    /// check the mark reads back exactly; retries stronger, then fails
    /// rather than return an image whose mark cannot be found.
    fn watermark_and_encode(
        &self,
        pixels: image::RgbImage,
        payload: &[u8; 8],
        output: OutputFormat,
        index: usize,
    ) -> Result<Vec<u8>, PipelineError> {
        for strength in WATERMARK_STRENGTHS {
            let mut marked = pixels.clone();
            // Informed: the embedder reads its own result and strengthens the
            // bits this picture works against (halftones, fine patterns).
            likeness_watermark::embed_informed(&mut marked, payload, &self.watermark, strength);
            let encoded = likeness_media::encode(&marked, output).map_err(PipelineError::Encode)?;
            let decoded = likeness_media::decode(&encoded, Some(output.media_type()), &self.limits.decode)
                .map_err(PipelineError::Encode)?;
            if likeness_watermark::detect(&decoded.pixels, &self.watermark).is_some_and(|d| &d.payload == payload) {
                return Ok(encoded);
            }
        }
        Err(PipelineError::Watermark { index })
    }

    /// Analyses each image (`reference 1`, `output 2`...), records its scores
    /// and face labels in the decision, and stops at the first image
    /// `verdict` refuses, returning why.
    fn check_images(
        &self,
        vision: &likeness_vision::Vision,
        decision: &mut Decision,
        kind: &str,
        images: &[image::RgbImage],
        subjects: &[Subject],
        verdict: impl Fn(&ImageRecord) -> Option<(&'static str, String)>,
    ) -> Result<Option<(&'static str, String)>, PipelineError> {
        for (i, img) in images.iter().enumerate() {
            let record = self.moderation.record(format!("{kind} {}", i + 1), &vision.analyze(img)?, subjects);
            let refusal = verdict(&record);
            decision.images.push(record);
            if refusal.is_some() {
                return Ok(refusal);
            }
        }
        Ok(None)
    }

    /// Checks enrollment photos and returns one face embedding per photo:
    /// exactly one face each, not a public figure, and not a likely minor
    /// unless the subject is declared a minor (whose guardian consented;
    /// the consent crate checks that). CPU-bound: call it off the async workers.
    pub fn enroll(&self, photos: Vec<ReferenceInput>, minor: bool) -> Result<Vec<Vec<f32>>, PipelineError> {
        let vision = self.moderation.vision.as_ref().map_err(|e| PipelineError::VisionUnavailable(e.clone()))?;
        let mut embeddings: Vec<Vec<f32>> = Vec::with_capacity(photos.len());
        for (i, photo) in photos.into_iter().enumerate() {
            let index = i + 1;
            let problem = |problem| PipelineError::Enrollment { index, problem };
            let decoded = likeness_media::decode(&photo.bytes, photo.declared, &self.limits.decode)
                .map_err(|source| PipelineError::Reference { index, source })?;
            drop(photo);
            let analysis = vision.analyze(&decoded.pixels)?;
            let face = match analysis.faces.as_slice() {
                [] => return Err(problem(EnrollmentProblem::NoFace)),
                [one] => one,
                many => return Err(problem(EnrollmentProblem::SeveralFaces(many.len()))),
            };
            let t = &self.moderation.thresholds;
            if let Some(m) = self.moderation.gallery.matches(&face.embedding, t.match_distance).first() {
                return Err(problem(EnrollmentProblem::PublicFigure(m.name.clone())));
            }
            if face.p_minor >= t.minor && !minor {
                return Err(problem(EnrollmentProblem::PossibleMinor(face.p_minor)));
            }
            // One subject, one person: every photo must match the first.
            if let Some(first) = embeddings.first() {
                let d = face.embedding.distance_to(first);
                if d >= t.match_distance {
                    return Err(problem(EnrollmentProblem::DifferentPerson(d)));
                }
            }
            embeddings.push(face.embedding.0.to_vec());
        }
        Ok(embeddings)
    }
}

/// The watermark carries the asset id's first 8 bytes: enough to look the
/// asset up (a collision needs about 2^32 assets).
pub fn watermark_payload(asset: AssetId) -> [u8; 8] {
    let mut payload = [0u8; 8];
    payload.copy_from_slice(&asset.0[..8]);
    payload
}

/// The soft binding for a watermark payload, as the manifest and the
/// resolver carry it.
pub fn soft_binding(payload: &[u8; 8]) -> SoftBinding {
    use base64::Engine as _;
    SoftBinding {
        alg: likeness_watermark::ALG.to_string(),
        value: base64::engine::general_purpose::STANDARD.encode(payload),
    }
}

fn refuse(mut decision: Decision, code: &'static str, message: String) -> PipelineError {
    // A refused request stores no receipt: do not point at one.
    decision.consent.id.clear();
    decision.action = "block";
    decision.reasons.push(code.to_string());
    PipelineError::Refused { code, message, decision: Box::new(decision) }
}
