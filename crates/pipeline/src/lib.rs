//! One request's flow, from reference photos to signed assets. No HTTP here:
//! the HTTP crate turns wire JSON into a [`GenerationRequest`] and a
//! [`PipelineError`] into a status code (through [`PipelineError::code`]).
//!
//! ```text
//! validate ─► decode references (memory only) ─► vision ─► label faces
//!          ─► policy (pre) ─► generate ─► vision ─► policy (post)
//!          ─► watermark ─► encode ─► read the mark back
//!          ─► sign (with the soft binding) ─► SignedAsset
//! ```
//!
//! Photo-access consent (grants) and the declared subjects are checked
//! before the pipeline, where the records are loaded; it receives them as a
//! [`RequestConsent`]. What the faces, scores and prompt categories allow is
//! the policy's call ([`likeness_policy`]), taken once per request from the
//! [`Policies`] in force, so a reload never mixes two versions in one request.
//!
//! The pipeline can only hand back [`likeness_provenance::SignedAsset`]s, which
//! only the provenance crate can construct: an image that skipped signing
//! cannot be returned, by construction.

mod decision;
mod enroll;
mod error;
mod facts;
mod moderation;
mod request;
pub mod timing;

use std::sync::Arc;

use image::RgbImage;
use likeness_codes::Reason;
use likeness_consent::{FaceLabel, Purpose, SubjectConfirmation};
use likeness_generators::{GenerationJob, Generator, Style};
use likeness_media::{MediaError, OutputFormat};
use likeness_policy::{Evaluation, Input, Policies, Policy, Stage};
use likeness_provenance::{AssetDescription, AssetId, Signer, SoftBinding};
use timing::{Step, StepTimes};

pub use decision::{Check, Decision, FiredRule, GenerationOutcome, ModelRef, PolicyRecord};
pub use error::{EnrollmentProblem, PipelineError};
pub use facts::RequestContext;
pub use likeness_consent::{Receipt, ReferenceConsent, Subject};
pub use likeness_policy::Action;
pub use moderation::{FaceRecord, ImageRecord, Moderation, Thresholds, VisionModels};
pub use request::{fingerprint, GenerationRequest, ReferenceInput, RequestLimits};

/// What a generator made: pixels (the built-in one) or encoded images (a
/// backend, whose answer is untrusted until [`Pipeline::finish`] decoded it).
pub enum Generated {
    Pixels(Vec<RgbImage>),
    Encoded(Vec<Vec<u8>>),
}

/// What a backend is asked to make: the request's generation fields, and
/// the references re-encoded as PNG from their pixels (no metadata of the
/// user's files, such as a location, leaves the gateway).
#[derive(Debug, Clone)]
pub struct Job {
    pub prompt: String,
    pub style: String,
    pub references: Vec<Vec<u8>>,
    pub width: u32,
    pub height: u32,
    pub count: u32,
    pub seed: u64,
}

impl Prepared {
    /// The job for a backend.
    pub fn job(&self) -> Result<Job, PipelineError> {
        let references = self
            .pixels
            .iter()
            .map(|p| likeness_media::encode(p, OutputFormat::Png).map_err(PipelineError::Encode))
            .collect::<Result<_, _>>()?;
        let r = &self.request;
        Ok(Job {
            prompt: r.prompt.clone(),
            style: self.style.to_string(),
            references,
            width: r.width,
            height: r.height,
            count: r.count,
            // No seed asked: a fresh one, or every backend would draw the same
            // picture for the same prompt (and ComfyUI serve it from its cache).
            // 32 bits: what every backend's seed field takes.
            seed: r.seed.unwrap_or_else(|| u64::from(rand::random::<u32>())),
        })
    }

    /// The decision so far (what the `pre` stage found).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
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

/// What the ingredient-hash key is derived for, from the watermark key.
pub const INGREDIENT_KEY_PURPOSE: &str = "ingredient hash";

/// A reference photo's identity in manifests and decisions: HMAC-SHA256 of
/// its bytes under the operator's key (hex). A plain hash would let anyone
/// holding an output test whether a candidate photo was used; this lets
/// only the operator, who holds the key, answer that (for an audit or a
/// dispute).
pub fn ingredient_hash(key: &[u8; 32], bytes: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(bytes);
    hex::encode(mac.finalize().into_bytes())
}

/// Everything needed to serve generation requests; shared by all requests.
pub struct Pipeline {
    generator: Arc<dyn Generator>,
    signer: Arc<Signer>,
    watermark: likeness_watermark::Key,
    /// The key reference photos are hashed under (see [`ingredient_hash`]).
    ingredient_key: [u8; 32],
    moderation: Moderation,
    limits: RequestLimits,
    policies: Arc<Policies>,
    /// How long each step took, for the operator's metrics.
    times: StepTimes,
}

/// Watermark strengths tried in turn until the mark reads back from the
/// encoded output; the first suits nearly every image. The last two are
/// for small images made of a fine halftone (a 256-px poster of two
/// references failed 3 payloads in 4 at 1.4 and none at 2.8), where the
/// texture hides the stronger mark anyway.
const WATERMARK_STRENGTHS: [f32; 4] = [likeness_watermark::INFORMED_STRENGTH, 1.4, 2.0, 2.8];

/// A request whose references passed the `pre` stage of the policy: what
/// generation starts from. Only [`Pipeline::prepare`] makes one, and only
/// [`Pipeline::finish`] turns one into signed assets.
pub struct Prepared {
    request: GenerationRequest<()>,
    style: Style,
    consent: RequestConsent,
    context: RequestContext,
    /// The policy this request is judged by, at both stages.
    policy: Arc<Policy>,
    /// Decoded references, dropped once generation is done.
    pixels: Vec<RgbImage>,
    decision: Decision,
    /// The `pre` input; the `post` one adds the outputs to it.
    input: Input,
}

impl Pipeline {
    pub fn new(
        generator: Arc<dyn Generator>,
        signer: Arc<Signer>,
        watermark: likeness_watermark::Key,
        moderation: Moderation,
        limits: RequestLimits,
        policies: Arc<Policies>,
    ) -> Pipeline {
        let ingredient_key = watermark.derive(INGREDIENT_KEY_PURPOSE);
        Pipeline {
            generator,
            signer,
            watermark,
            ingredient_key,
            moderation,
            limits,
            policies,
            times: StepTimes::default(),
        }
    }

    /// How long each step has taken since start; the HTTP layer adds the
    /// steps it runs itself (a backend's generation, storing the records).
    pub fn step_times(&self) -> &StepTimes {
        &self.times
    }

    /// The policies in force (reloaded by the caller).
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
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

    /// Runs one request to the end with the built-in generator. CPU-bound:
    /// call it off the async workers.
    pub fn run(
        &self,
        req: GenerationRequest,
        consent: RequestConsent,
        context: RequestContext,
    ) -> Result<GenerationOutcome, PipelineError> {
        let mut prepared = self.prepare(req, consent, context)?;
        let outputs = self.generate_builtin(&mut prepared)?;
        self.finish(prepared, Generated::Pixels(outputs))
    }

    /// The outputs, checked, marked and signed: vision on the outputs, the
    /// `post` stage of the policy, the watermark, the manifest. Encoded
    /// outputs (from a backend: untrusted) are decoded with the limits of
    /// references and must be as many and as large as asked. CPU-bound.
    pub fn finish(&self, mut prepared: Prepared, generated: Generated) -> Result<GenerationOutcome, PipelineError> {
        let outputs = match generated {
            Generated::Pixels(p) => p,
            Generated::Encoded(encoded) => self.decode_outputs(&prepared, encoded)?,
        };
        prepared.pixels = Vec::new();
        // Moderating an output and marking it both only read the generated
        // pixels, so they run side by side (vision's models on one core,
        // the mark on the other): the request waits for the longer of the
        // two, not their sum. The marked bytes are dropped unless the
        // `post` stage allows the outputs, and a refusal is reported before
        // a mark that failed.
        let output = prepared.request.output;
        let asset_ids: Vec<AssetId> = outputs.iter().map(|_| AssetId::random()).collect();
        let (checked, marked) = std::thread::scope(|s| {
            let marking = s.spawn(|| {
                outputs
                    .iter()
                    .zip(&asset_ids)
                    .enumerate()
                    .map(|(i, (pixels, id))| self.watermark_and_encode(pixels, &watermark_payload(*id), output, i + 1))
                    .collect::<Result<Vec<_>, _>>()
            });
            let checked = self.check_outputs(&mut prepared, &outputs);
            (checked, marking.join())
        });
        checked?;
        let encoded = marked.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        drop(outputs);
        self.sign(prepared, asset_ids.into_iter().zip(encoded))
    }

    /// A backend's answer as pixels, refused unless it is exactly what was asked.
    fn decode_outputs(&self, prepared: &Prepared, encoded: Vec<Vec<u8>>) -> Result<Vec<RgbImage>, PipelineError> {
        let req = &prepared.request;
        if encoded.len() != req.count as usize {
            return Err(PipelineError::BadOutput(format!("{} images for the {} asked", encoded.len(), req.count)));
        }
        let _decoding = self.times.timer(Step::Decode);
        encoded
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let d = likeness_media::decode(bytes, None, &self.limits.decode)
                    .map_err(|e| PipelineError::BadOutput(format!("image {}: {e}", i + 1)))?;
                if d.pixels.dimensions() != (req.width, req.height) {
                    let (w, h) = d.pixels.dimensions();
                    return Err(PipelineError::BadOutput(format!(
                        "image {} is {w}x{h}, {}x{} was asked",
                        i + 1,
                        req.width,
                        req.height
                    )));
                }
                Ok(d.pixels)
            })
            .collect()
    }

    /// Decodes the references (the encoded bytes are dropped at once), runs
    /// vision on them and the `pre` stage of the policy. CPU-bound.
    pub fn prepare(
        &self,
        req: GenerationRequest,
        consent: RequestConsent,
        context: RequestContext,
    ) -> Result<Prepared, PipelineError> {
        let style = self.validate(&req)?;
        let vision = self.moderation.models()?;
        let policy = self.policies.current();
        let mut hashes = Vec::with_capacity(req.references.len());
        let mut pixels = Vec::with_capacity(req.references.len());
        for (index, r) in req.references.iter().enumerate() {
            let d = self
                .times
                .time(Step::Decode, || likeness_media::decode(&r.bytes, r.declared, &self.limits.decode))
                .map_err(|source| PipelineError::Reference { index: index + 1, source })?;
            hashes.push(ingredient_hash(&self.ingredient_key, &r.bytes));
            pixels.push(d.pixels);
        }
        let request = req.with_references(Vec::new());
        let mut decision = Decision {
            action: Action::Allow,
            reasons: Vec::new(),
            labels: Vec::new(),
            references: hashes,
            style: style.to_string(),
            generator: context.generator.clone().unwrap_or_else(|| format!("{}/{}", self.generator.name(), style)),
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
                confirmations: Vec::new(),
                references: consent.references.clone(),
                purpose: Purpose::Generation,
                processor: context.backend.clone().unwrap_or_else(|| likeness_consent::BUILTIN.to_string()),
            },
            policy: PolicyRecord { version: policy.version().to_string(), rules: Vec::new() },
            inputs: Vec::new(),
        };
        for (i, img) in pixels.iter().enumerate() {
            let a = self.times.time(Step::VisionReferences, || vision.analyze(img))?;
            decision.images.push(self.moderation.record(format!("reference {}", i + 1), &a, &consent.subjects));
        }
        // The subjects the references actually showed: what the request relied on.
        let mut consenting_minors = Vec::new();
        for face in decision.images.iter().flat_map(|r| &r.faces) {
            if let FaceLabel::ConsentingSubject { subject, .. } = &face.label {
                if !decision.consent.subjects.contains(subject) {
                    decision.consent.subjects.push(subject.clone());
                    let confirmed =
                        consent.subjects.iter().find(|s| &s.id == subject).and_then(SubjectConfirmation::of);
                    decision.consent.confirmations.extend(confirmed);
                }
                if consent.subjects.iter().any(|s| &s.id == subject && s.minor && s.guardian_consent)
                    && !consenting_minors.contains(subject)
                {
                    consenting_minors.push(subject.clone());
                }
            }
        }
        let gallery_names: Vec<String> = self.moderation.gallery.entries.iter().map(|e| e.name.clone()).collect();
        let categories = policy.categories().matching(&request.prompt, &gallery_names);
        let backend = context.backend.clone().unwrap_or_else(|| self.generator.name().to_string());
        let input =
            facts::pre_input(&request, &decision, &backend, categories, &consent, consenting_minors.len(), &context);
        decision.checks.push(Check::PolicyPre);
        self.times.time(Step::Policy, || apply(&policy, &input, &mut decision, context.review_approved))?;
        Ok(Prepared { request, style, consent, context, policy, pixels, decision, input })
    }

    /// Has the built-in generator make the outputs. CPU-bound.
    pub fn generate_builtin(&self, checked: &mut Prepared) -> Result<Vec<RgbImage>, PipelineError> {
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
        self.times
            .time(Step::Generate, || self.generator.generate(&job))
            .map_err(|e| PipelineError::Generator(e.to_string()))
    }

    /// Outputs are checked like references: the generator may have carried
    /// a face through, or made something the policy forbids.
    fn check_outputs(&self, checked: &mut Prepared, outputs: &[RgbImage]) -> Result<(), PipelineError> {
        let vision = self.moderation.models()?;
        checked.decision.checks.push(Check::VisionOutputs);
        let mut records = Vec::with_capacity(outputs.len());
        for (i, img) in outputs.iter().enumerate() {
            let a = self.times.time(Step::VisionOutputs, || vision.analyze_output(img))?;
            records.push(self.moderation.record(format!("output {}", i + 1), &a, &checked.consent.subjects));
        }
        let mut input = checked.input.clone();
        input.stage = Stage::Post;
        input.outputs = records.iter().map(|r| facts::image_facts(r, &checked.consent.subjects)).collect();
        checked.decision.images.extend(records);
        checked.decision.checks.push(Check::PolicyPost);
        let review_approved = checked.context.review_approved;
        self.times.time(Step::Policy, || apply(&checked.policy, &input, &mut checked.decision, review_approved))
    }

    /// Signs every marked output with its asset id in the manifest.
    fn sign(
        &self,
        mut checked: Prepared,
        marked: impl Iterator<Item = (AssetId, Marked)>,
    ) -> Result<GenerationOutcome, PipelineError> {
        checked.decision.checks.push(Check::Watermark);
        let output = checked.request.output;
        let mut assets = Vec::new();
        let mut fingerprints = Vec::new();
        for (asset_id, Marked { encoded, fingerprint }) in marked {
            fingerprints.push((asset_id, fingerprint));
            let description = AssetDescription {
                asset_id,
                request_id: checked.request.request_id.clone(),
                generator: checked.decision.generator.clone(),
                ingredient_hashes: checked.decision.references.clone(),
                receipt_id: checked.consent.receipt_id.clone(),
                soft_binding: Some(soft_binding(&watermark_payload(asset_id))),
                policy_version: checked.decision.policy.version.clone(),
                labels: checked.decision.labels.clone(),
            };
            assets.push(self.times.time(Step::Sign, || self.signer.sign(&encoded, output.media_type(), &description))?);
        }
        Ok(GenerationOutcome {
            request_id: checked.request.request_id,
            assets,
            fingerprints,
            decision: checked.decision,
        })
    }

    /// Reads the watermark of an uploaded image (decoded in memory within
    /// the request limits; nothing kept). CPU-bound: call it off the async
    /// workers.
    pub fn read_watermark(&self, bytes: &[u8]) -> Result<Option<WatermarkReading>, MediaError> {
        let decoded = likeness_media::decode(bytes, None, &self.limits.decode)?;
        Ok(likeness_watermark::detect(&decoded.pixels, &self.watermark)
            .map(|detection| WatermarkReading { content: detection.content(&decoded.pixels), detection }))
    }

    /// Marks `pixels` with `payload`, encodes, and decodes the result to
    /// check the mark reads back exactly; retries stronger, then fails
    /// rather than return an image whose mark cannot be found.
    fn watermark_and_encode(
        &self,
        pixels: &RgbImage,
        payload: &[u8; 8],
        output: OutputFormat,
        index: usize,
    ) -> Result<Marked, PipelineError> {
        for strength in WATERMARK_STRENGTHS {
            let mut marked = pixels.clone();
            // Informed: the embedder reads its own result and strengthens the
            // bits this picture works against (halftones, fine patterns).
            self.times.time(Step::Watermark, || {
                likeness_watermark::embed_informed(&mut marked, payload, &self.watermark, strength)
            });
            let encoded = self
                .times
                .time(Step::Encode, || likeness_media::encode(&marked, output))
                .map_err(PipelineError::Encode)?;
            let read_back = self.times.time(Step::Watermark, || {
                likeness_media::decode(&encoded, Some(output.media_type()), &self.limits.decode)
                    .map(|decoded| likeness_watermark::detect(&decoded.pixels, &self.watermark))
            });
            if read_back.map_err(PipelineError::Encode)?.is_some_and(|d| &d.payload == payload) {
                let fingerprint =
                    self.times.time(Step::Watermark, || likeness_watermark::Fingerprint::of(&marked).to_bytes());
                return Ok(Marked { encoded, fingerprint });
            }
        }
        Err(PipelineError::Watermark { index })
    }
}

/// An output marked and encoded, with the fingerprint of its marked pixels.
struct Marked {
    encoded: Vec<u8>,
    fingerprint: Vec<u8>,
}

/// A watermark read from an uploaded image, with what the content check
/// needs of the image (its block means, placed by the mark's geometry; no
/// finer picture).
#[derive(Debug)]
pub struct WatermarkReading {
    pub detection: likeness_watermark::Detection,
    pub content: likeness_watermark::ContentView,
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

/// Evaluates one stage, records it in the decision, and refuses when the
/// policy says block, review (unless a person approved this request), or
/// when a rule could not be evaluated.
fn apply(policy: &Policy, input: &Input, decision: &mut Decision, review_approved: bool) -> Result<(), PipelineError> {
    let evaluation: Evaluation = policy.evaluate(input);
    let outcome = evaluation.outcome();
    decision.inputs.push(input.clone());
    decision.policy.rules.extend(evaluation.fired().map(|r| FiredRule {
        id: r.id.clone(),
        stage: r.stage,
        mode: r.mode,
        action: r.action,
        reason: r.reason.clone(),
    }));
    for l in outcome.labels {
        if !decision.labels.contains(&l) {
            decision.labels.push(l);
        }
    }
    if let Some((rule, message)) = outcome.failed {
        let mut decision = decision.clone();
        decision.consent.id.clear();
        decision.action = Action::Block;
        decision.reasons.push(likeness_codes::ErrorCode::PolicyError.as_str().to_string());
        return Err(PipelineError::PolicyFailed { rule, message, decision: Box::new(decision) });
    }
    let action = match outcome.action {
        Action::Review if review_approved => Action::Allow,
        a => a,
    };
    decision.action = decision.action.max(action);
    if action >= Action::Review {
        let reason = outcome.reason.unwrap_or_default();
        let mut refused = decision.clone();
        // A refused request stores no receipt: do not point at one.
        refused.consent.id.clear();
        refused.reasons.push(reason.clone());
        return Err(PipelineError::Refused {
            reason: Reason::of_rule(&reason),
            message: outcome.message.unwrap_or_else(|| format!("refused by the policy ({reason})")),
            decision: Box::new(refused),
        });
    }
    Ok(())
}
