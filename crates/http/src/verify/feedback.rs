//! `POST /v1/verify/feedback`: what a person thinks of a verdict, because
//! the AI-disclosure laws ask detection tools to collect it. Public and
//! rate-limited with the detection API; stored without the image, its URL
//! or the sender's address, and deleted after `feedback_retention`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use likeness_codes::ErrorCode;
use likeness_store::{Feedback, FeedbackChoice};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// The longest comment kept, in characters.
pub(crate) const MAX_COMMENT_CHARS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    /// The `verdict_id` of the answer this is about.
    verdict_id: String,
    choice: String,
    #[serde(default)]
    comment: String,
}

#[derive(Serialize)]
pub(crate) struct FeedbackReceived {
    id: String,
    verdict_id: String,
    choice: &'static str,
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<(StatusCode, Json<FeedbackReceived>), ApiError> {
    let body: FeedbackRequest = crate::body::read_small_json(&state, req).await?;
    let invalid = |m: String| ApiError::new(ErrorCode::RequestInvalid, m);
    if !is_verdict_id(&body.verdict_id) {
        return Err(invalid("verdict_id is the `verdict_id` of a verify answer (req_ and 32 hex digits)".into()));
    }
    let choice = FeedbackChoice::parse(&body.choice).ok_or_else(|| {
        let known: Vec<&str> = FeedbackChoice::ALL.iter().map(|c| c.as_str()).collect();
        invalid(format!("choice is one of {}", known.join(", ")))
    })?;
    let comment = clean(&body.comment);
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(invalid(format!("the comment is at most {MAX_COMMENT_CHARS} characters")));
    }
    let now_ms = state.clock.now_ms();
    let feedback = Feedback {
        id: format!("fb_{}", uuid::Uuid::now_v7().simple()),
        verdict_id: body.verdict_id,
        choice,
        comment,
        received_at_ms: now_ms,
    };
    let keep_since_ms = now_ms.saturating_sub(state.config.feedback_retention.as_millis() as i64);
    state.store.put_feedback(&feedback, keep_since_ms).await?;
    tracing::info!(feedback = %feedback.id, verdict = %feedback.verdict_id, choice = choice.as_str(), "feedback");
    Ok((
        StatusCode::CREATED,
        Json(FeedbackReceived { id: feedback.id, verdict_id: feedback.verdict_id, choice: choice.as_str() }),
    ))
}

/// A request id as [`crate::request_id`] makes them.
fn is_verdict_id(id: &str) -> bool {
    id.strip_prefix("req_").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The comment as kept: trimmed, line breaks and tabs kept, every other
/// control or bidirectional-override character dropped (it is shown to the
/// operator in a terminal).
fn clean(comment: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
    comment.trim().chars().filter(|&c| c == '\n' || c == '\t' || !(c.is_control() || bidi(c))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_ids_are_request_ids() {
        assert!(is_verdict_id("req_0193f1a2b3c47d8e9f00112233445566"));
        for bad in [
            "",
            "req_",
            "req_0193f1a2b3c47d8e9f0011223344556",
            "fb_0193f1a2b3c47d8e9f00112233445566",
            "req_zz93f1a2b3c47d8e9f00112233445566",
        ] {
            assert!(!is_verdict_id(bad), "{bad}");
        }
    }

    #[test]
    fn comments_lose_control_characters_only() {
        assert_eq!(clean("  fine\n\tthanks \u{1b}[31mred\u{202e}txt\u{0}  "), "fine\n\tthanks [31mredtxt");
        assert_eq!(clean("été 😀"), "été 😀");
    }
}
