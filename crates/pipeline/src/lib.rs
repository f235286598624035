//! One request's flow, from reference photos to signed assets. No HTTP here:
//! the HTTP crate turns wire JSON into a [`GenerationRequest`] and a
//! [`PipelineError`] into a status code (through [`PipelineError::code`]).
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

mod decision;
mod enroll;
mod error;
mod moderation;
mod request;

use std::sync::Arc;

use image::RgbImage;
use likeness_consent::{FaceLabel, Purpose, Refusal};
use likeness_generators::{GenerationJob, Generator, Style};
use likeness_media::{MediaError, OutputFormat};
use likeness_provenance::{AssetDescription, AssetId, Signer, SoftBinding};

pub use decision::{Action, Check, Decision, GenerationOutcome, ModelRef};
pub use error::{EnrollmentProblem, PipelineError};
pub use likeness_consent::{Receipt, ReferenceConsent, Subject};
pub use moderation::{FaceRecord, ImageRecord, Moderation, Thresholds, Verdict, VisionModels};
pub use request::{GenerationRequest, ReferenceInput, RequestLimits};

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

/// A request whose references passed the checks, ready to generate from.
struct CheckedReferences {
    request: GenerationRequest<()>,
    style: Style,
    consent: RequestConsent,
    /// Decoded references, dropped once generation is done.
    pixels: Vec<RgbImage>,
    decision: Decision,
    /// Consenting minor subjects the references showed (with a guardian's
    /// consent): as many likely minors may appear in the outputs.
    consenting_minors: usize,
}

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
    pub fn validate<R>(&self, req: &GenerationRequest<R>) -> Result<Style, PipelineError> {
        self.limits.check(req)
    }

    /// Runs one request to the end. CPU-bound: call it off the async workers.
    pub fn run(&self, req: GenerationRequest, consent: RequestConsent) -> Result<GenerationOutcome, PipelineError> {
        let mut checked = self.check_references(req, consent)?;
        let outputs = self.generate(&mut checked)?;
        self.check_outputs(&mut checked, &outputs)?;
        self.mark_and_sign(checked, outputs)
    }

    /// Decodes the references (the encoded bytes are dropped at once), runs
    /// vision on them and applies the reference rule.
    fn check_references(
        &self,
        req: GenerationRequest,
        consent: RequestConsent,
    ) -> Result<CheckedReferences, PipelineError> {
        let style = self.validate(&req)?;
        let vision = self.moderation.models()?;
        let mut hashes = Vec::with_capacity(req.references.len());
        let mut pixels = Vec::with_capacity(req.references.len());
        for (index, r) in req.references.iter().enumerate() {
            let d = likeness_media::decode(&r.bytes, r.declared, &self.limits.decode)
                .map_err(|source| PipelineError::Reference { index: index + 1, source })?;
            hashes.push(likeness_media::sha256_hex(&r.bytes));
            pixels.push(d.pixels);
        }
        let request = req.with_references(Vec::new());
        let mut decision = Decision {
            action: Action::Allow,
            reasons: Vec::new(),
            references: hashes,
            style: style.to_string(),
            generator: format!("{}/{}", self.generator.name(), style),
            checks: vec![Check::ConsentPhotos, Check::ConsentSubjects, Check::VisionReferences],
            models: vision
                .models()
                .iter()
                .map(|m| ModelRef { task: m.task.clone(), sha256: m.sha256.clone() })
                .collect(),
            images: Vec::new(),
            consent: Receipt {
                id: consent.receipt_id.clone(),
                grant: consent.grant_id.clone(),
                subjects: Vec::new(),
                references: consent.references.clone(),
                purpose: Purpose::Generation,
            },
        };
        let subjects = &consent.subjects;
        check_images(&self.moderation, vision, &mut decision, "reference", &pixels, subjects, |r| {
            self.moderation.reference_verdict(r, subjects)
        })?;
        // The subjects the references actually showed: what the request relied on.
        let mut consenting_minors = Vec::new();
        for face in decision.images.iter().flat_map(|r| &r.faces) {
            if let FaceLabel::ConsentingSubject { subject, .. } = &face.label {
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
        let consenting_minors = consenting_minors.len();
        Ok(CheckedReferences { request, style, consent, pixels, decision, consenting_minors })
    }

    /// Has the generator make the outputs, then drops the decoded references.
    fn generate(&self, checked: &mut CheckedReferences) -> Result<Vec<RgbImage>, PipelineError> {
        let req = &checked.request;
        let job = GenerationJob {
            prompt: &req.prompt,
            style: checked.style,
            references: &checked.pixels,
            width: req.width,
            height: req.height,
            count: req.count,
            seed: req.seed.unwrap_or(0),
        };
        let outputs = self.generator.generate(&job).map_err(|e| PipelineError::Generator(e.to_string()))?;
        checked.pixels = Vec::new();
        Ok(outputs)
    }

    /// Outputs are checked like references: the generator may have carried
    /// a face through, or made something the rule forbids.
    fn check_outputs(&self, checked: &mut CheckedReferences, outputs: &[RgbImage]) -> Result<(), PipelineError> {
        let vision = self.moderation.models()?;
        checked.decision.checks.push(Check::VisionOutputs);
        let minors = checked.consenting_minors;
        let subjects = &checked.consent.subjects;
        check_images(&self.moderation, vision, &mut checked.decision, "output", outputs, subjects, |r| {
            self.moderation.output_verdict(r, minors)
        })
    }

    /// Marks every output with its asset id, encodes it, reads the mark back
    /// and signs it.
    fn mark_and_sign(
        &self,
        mut checked: CheckedReferences,
        outputs: Vec<RgbImage>,
    ) -> Result<GenerationOutcome, PipelineError> {
        checked.decision.checks.push(Check::Watermark);
        let output = checked.request.output;
        let mut assets = Vec::with_capacity(outputs.len());
        for (i, pixels) in outputs.into_iter().enumerate() {
            let asset_id = AssetId::random();
            let payload = watermark_payload(asset_id);
            let encoded = self.watermark_and_encode(pixels, &payload, output, i + 1)?;
            let description = AssetDescription {
                asset_id,
                request_id: checked.request.request_id.clone(),
                generator: checked.decision.generator.clone(),
                ingredient_hashes: checked.decision.references.clone(),
                receipt_id: checked.consent.receipt_id.clone(),
                soft_binding: Some(soft_binding(&payload)),
            };
            assets.push(self.signer.sign(&encoded, output.media_type(), &description)?);
        }
        Ok(GenerationOutcome { request_id: checked.request.request_id, assets, decision: checked.decision })
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
        pixels: RgbImage,
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
}

/// Analyses each image (`reference 1`, `output 2`...), records its scores
/// and face labels in the decision, and refuses at the first image `verdict`
/// refuses, with the decision so far.
fn check_images(
    moderation: &Moderation,
    vision: &dyn VisionModels,
    decision: &mut Decision,
    kind: &str,
    images: &[RgbImage],
    subjects: &[Subject],
    verdict: impl Fn(&ImageRecord) -> Verdict,
) -> Result<(), PipelineError> {
    for (i, img) in images.iter().enumerate() {
        let record = moderation.record(format!("{kind} {}", i + 1), &vision.analyze(img)?, subjects);
        let refusal = verdict(&record);
        decision.images.push(record);
        if let Some(refusal) = refusal {
            return Err(refuse(decision.clone(), refusal));
        }
    }
    Ok(())
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

fn refuse(mut decision: Decision, refusal: Refusal) -> PipelineError {
    // A refused request stores no receipt: do not point at one.
    decision.consent.id.clear();
    decision.action = Action::Block;
    decision.reasons.push(refusal.code.as_str().to_string());
    PipelineError::Refused { code: refusal.code, message: refusal.message, decision: Box::new(decision) }
}
