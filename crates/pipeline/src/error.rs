//! Why a request did not go through, with the stable code each case maps to.

use likeness_codes::{ErrorCode, Reason};
use likeness_media::MediaError;
use likeness_policy::Action;
use likeness_provenance::ProvenanceError;

use crate::Decision;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{field}: {message}")]
    InvalidRequest { code: ErrorCode, field: &'static str, message: String },
    #[error(transparent)]
    UnknownStyle(#[from] likeness_generators::UnknownStyle),
    /// `index` counts from 1, as in decisions.
    #[error("reference {index}: {source}")]
    Reference { index: usize, source: MediaError },
    #[error("the generator failed: {0}")]
    Generator(String),
    /// A backend's answer is not what was asked: too many or too few
    /// images, the wrong size, or not an image within the limits.
    #[error("the generator's answer was refused: {0}")]
    BadOutput(String),
    #[error("could not encode the output: {0}")]
    Encode(MediaError),
    /// The invisible watermark could not be read back from an output: it
    /// is not returned unmarked.
    #[error("the watermark could not be read back from output {index}")]
    Watermark { index: usize },
    #[error("signing failed: {0}")]
    Signing(#[from] ProvenanceError),
    /// A policy rule blocked the request or sent it to review; the decision
    /// says which (its action) and on what grounds.
    #[error("{message}")]
    Refused { reason: Reason, message: String, decision: Box<Decision> },
    /// A policy rule could not be evaluated: the request is refused, never
    /// let through unchecked.
    #[error("policy rule {rule} could not be evaluated: {message}")]
    PolicyFailed { rule: String, message: String, decision: Box<Decision> },
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
    #[error(
        "the eyes are hidden ({0:.2} of them covered); use a photo with nothing over the eyes and no dark glasses"
    )]
    EyesCovered(f32),
}

impl PipelineError {
    /// The code a client sees: a registered one, or a policy rule's reason.
    pub fn code(&self) -> Reason {
        match self {
            PipelineError::Refused { decision, .. } if decision.action == Action::Review => {
                ErrorCode::PolicyReviewRequired.into()
            }
            PipelineError::Refused { reason, .. } => reason.clone(),
            other => other.error_code().into(),
        }
    }

    fn error_code(&self) -> ErrorCode {
        match self {
            PipelineError::InvalidRequest { code, .. } => *code,
            // Answered by `code` from the decision; here for completeness.
            PipelineError::Refused { .. } => ErrorCode::PolicyReviewRequired,
            PipelineError::PolicyFailed { .. } => ErrorCode::PolicyError,
            PipelineError::UnknownStyle(_) => ErrorCode::RequestUnknownStyle,
            PipelineError::Reference { source, .. } => source.code(),
            PipelineError::Generator(_) => ErrorCode::GeneratorFailed,
            PipelineError::BadOutput(_) => ErrorCode::GeneratorBadResponse,
            PipelineError::Encode(_) => ErrorCode::OutputEncodeFailed,
            PipelineError::Watermark { .. } => ErrorCode::WatermarkFailed,
            PipelineError::Signing(_) => ErrorCode::ProvenanceSigningFailed,
            PipelineError::VisionUnavailable(_) => ErrorCode::VisionUnavailable,
            PipelineError::Vision(likeness_vision::VisionError::TooManyFaces { .. }) => ErrorCode::VisionTooManyFaces,
            PipelineError::Vision(_) => ErrorCode::VisionFailed,
            PipelineError::Enrollment { problem, .. } => match problem {
                EnrollmentProblem::NoFace => ErrorCode::SubjectEnrollNoFace,
                EnrollmentProblem::SeveralFaces(_) => ErrorCode::SubjectEnrollSeveralFaces,
                EnrollmentProblem::PublicFigure(_) => ErrorCode::SubjectEnrollPublicFigure,
                EnrollmentProblem::PossibleMinor(_) => ErrorCode::SubjectEnrollPossibleMinor,
                EnrollmentProblem::DifferentPerson(_) => ErrorCode::SubjectEnrollDifferentPeople,
                EnrollmentProblem::EyesCovered(_) => ErrorCode::SubjectEnrollEyesCovered,
            },
        }
    }

    /// The decision behind a refusal, if this is one.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            PipelineError::Refused { decision, .. } | PipelineError::PolicyFailed { decision, .. } => Some(decision),
            _ => None,
        }
    }
}
