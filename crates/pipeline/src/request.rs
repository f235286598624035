//! What one request asks for, and the bounds it must stay within.

use likeness_codes::ErrorCode;
use likeness_generators::Style;
use likeness_media::{DecodeLimits, MediaType, OutputFormat};

use crate::PipelineError;

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

/// What a request asks for. `R` is how its references are held: the
/// pipeline runs on [`ReferenceInput`]s (bytes in memory); the HTTP layer
/// validates the request while library photos are still to be fetched.
#[derive(Debug)]
pub struct GenerationRequest<R = ReferenceInput> {
    pub request_id: String,
    /// The app's pseudonymous user id. Used for consent; never in a manifest.
    pub user: String,
    pub prompt: String,
    pub style: Option<String>,
    pub references: Vec<R>,
    pub count: u32,
    pub width: u32,
    pub height: u32,
    pub output: OutputFormat,
    pub seed: Option<u64>,
}

impl<R> GenerationRequest<R> {
    /// The same request with its references replaced (e.g. once fetched).
    pub fn with_references<S>(self, references: Vec<S>) -> GenerationRequest<S> {
        GenerationRequest {
            request_id: self.request_id,
            user: self.user,
            prompt: self.prompt,
            style: self.style,
            references,
            count: self.count,
            width: self.width,
            height: self.height,
            output: self.output,
            seed: self.seed,
        }
    }
}

impl RequestLimits {
    /// Checks what can be checked without touching pixels, so a bad request
    /// fails fast and cheaply; returns the style the request resolves to.
    pub fn check<R>(&self, req: &GenerationRequest<R>) -> Result<Style, PipelineError> {
        let invalid = |code, field, message: String| Err(PipelineError::InvalidRequest { code, field, message });
        if req.user.trim().is_empty() || req.user.len() > 256 {
            return invalid(
                ErrorCode::RequestUserInvalid,
                "user",
                "must be a non-empty id of at most 256 bytes".into(),
            );
        }
        if req.prompt.chars().count() > self.max_prompt_chars {
            return invalid(
                ErrorCode::RequestPromptInvalid,
                "prompt",
                format!("at most {} characters", self.max_prompt_chars),
            );
        }
        if req.count == 0 || req.count > self.max_outputs {
            return invalid(ErrorCode::RequestNOutOfRange, "n", format!("must be between 1 and {}", self.max_outputs));
        }
        if [req.width, req.height].iter().any(|&side| side < self.min_side || side > self.max_side) {
            return invalid(
                ErrorCode::RequestSizeOutOfRange,
                "size",
                format!("each side must be between {} and {} pixels", self.min_side, self.max_side),
            );
        }
        if req.references.len() > self.max_references {
            return invalid(
                ErrorCode::RequestTooManyReferences,
                "references",
                format!("at most {} references", self.max_references),
            );
        }
        if req.prompt.trim().is_empty() && req.references.is_empty() {
            return invalid(
                ErrorCode::RequestPromptInvalid,
                "prompt",
                "a prompt or at least one reference is needed".into(),
            );
        }
        Ok(Style::resolve(req.style.as_deref(), &req.prompt)?)
    }
}

/// What makes two requests "the identical request" for a review's
/// approval: the same reference photos (by hash), prompt (by hash), declared
/// subjects, style and size. A hex SHA-256; nothing in it can be read back.
pub fn fingerprint(req: &GenerationRequest, style: Style, subjects: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    subjects.sort_unstable();
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"likeness.request.v1");
    for r in &req.references {
        field(&Sha256::digest(&r.bytes));
    }
    field(b"prompt");
    field(&Sha256::digest(req.prompt.as_bytes()));
    for s in subjects {
        field(s.as_bytes());
    }
    field(style.to_string().as_bytes());
    field(&req.width.to_be_bytes());
    field(&req.height.to_be_bytes());
    hex::encode(h.finalize())
}
