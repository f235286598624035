//! The policy's input document, built from what the request asked for,
//! what vision found and what consent established. Derived data only: the
//! prompt reaches it as categories, faces as scores and labels.

use likeness_consent::{FaceLabel, Source, Subject};
use likeness_policy::{
    ConsentFacts, FaceFacts, GalleryMatchFacts, HistoryFacts, ImageFacts, Input, PromptFacts, RequestFacts, Stage,
    SubjectFacts,
};

use crate::{Decision, FaceRecord, GenerationRequest, ImageRecord, RequestConsent};

/// What the HTTP layer knows of a request that the pipeline does not.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The app that sent it.
    pub tenant: String,
    /// The user's recent refusals, from the decision log.
    pub history: HistoryFacts,
    /// A person approved this very request after a `review`: review
    /// actions let it through once (blocks still block).
    pub review_approved: bool,
    /// The configured backend the request goes to; none: the built-in generator.
    pub backend: Option<String>,
    /// What the manifest names as the generator (`comfyui/portrait`,
    /// `openai/gpt-image-1`); none: `builtin/<style>`.
    pub generator: Option<String>,
}

/// A model's f32 score as the f64 a policy compares: the decimal the f32
/// stands for (0.7f32 is 0.7, not 0.699999988), so a score shown as the
/// threshold is at the threshold.
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

pub(crate) fn subject_facts(s: &Subject) -> SubjectFacts {
    SubjectFacts {
        id: s.id.clone(),
        relationship: s.relationship.as_str().to_string(),
        minor: s.minor,
        guardian_consent: s.guardian_consent,
        confirmed: s.confirmed(),
    }
}

fn face_facts(f: &FaceRecord, subjects: &[Subject]) -> FaceFacts {
    let (label, subject) = match &f.label {
        FaceLabel::ConsentingSubject { subject, .. } => {
            ("consenting_subject", subjects.iter().find(|s| &s.id == subject).map(subject_facts))
        }
        FaceLabel::PublicFigure { .. } => ("public_figure", None),
        FaceLabel::Unknown => ("unknown", None),
    };
    FaceFacts {
        bbox: f.bbox.iter().map(|v| widen(*v)).collect(),
        score: widen(f.score),
        age: widen(f.age),
        p_minor: widen(f.p_minor),
        label: label.to_string(),
        subject,
        matches: f
            .matches
            .iter()
            .map(|m| GalleryMatchFacts { id: m.id.clone(), name: m.name.clone(), distance: widen(m.distance) })
            .collect(),
    }
}

pub(crate) fn image_facts(r: &ImageRecord, subjects: &[Subject]) -> ImageFacts {
    ImageFacts {
        name: r.image.clone(),
        faces: r.faces.iter().map(|f| face_facts(f, subjects)).collect(),
        nsfw: widen(r.nsfw),
    }
}

/// The `pre` input: everything but the outputs; `decision` holds the
/// references' records so far.
pub(crate) fn pre_input<R>(
    req: &GenerationRequest<R>,
    decision: &Decision,
    backend: &str,
    categories: Vec<String>,
    consent: &RequestConsent,
    consenting_minors: usize,
    context: &RequestContext,
) -> Input {
    let references: Vec<ImageFacts> = decision.images.iter().map(|r| image_facts(r, &consent.subjects)).collect();
    let style = &decision.style;
    Input {
        stage: Stage::Pre,
        tenant: context.tenant.clone(),
        user: req.user.clone(),
        request: RequestFacts {
            style: style.to_string(),
            n: i64::from(req.count),
            width: i64::from(req.width),
            height: i64::from(req.height),
            backend: backend.to_string(),
            references: references.len() as i64,
            sources: consent
                .references
                .iter()
                .map(|r| match r.source {
                    Source::Upload => "upload".to_string(),
                    Source::Library => "library".to_string(),
                })
                .collect(),
        },
        prompt: PromptFacts { length: req.prompt.chars().count() as i64, categories },
        references,
        outputs: Vec::new(),
        consent: ConsentFacts {
            grant: consent.grant_id.is_some(),
            grant_purpose: if consent.grant_id.is_some() { "generation".into() } else { String::new() },
            subjects: consent.subjects.iter().map(subject_facts).collect(),
            consenting_minors: consenting_minors as i64,
        },
        history: context.history.clone(),
    }
}
