//! Feedback on the public detection tool's verdicts, as people send it
//! from the verify page or the API: which verdict (its id), a choice and a
//! short comment. Never the image, its URL or who sent it. Kept for the
//! retention the operator sets, then deleted.

use sqlx::Row;

use crate::{Store, StoreError};

/// What a person thought of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackChoice {
    /// The verdict is right.
    Correct,
    /// The verdict is wrong (made with AI but said not to be, or the other way).
    Incorrect,
    /// The verdict could not be understood.
    Unclear,
}

impl FeedbackChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackChoice::Correct => "correct",
            FeedbackChoice::Incorrect => "incorrect",
            FeedbackChoice::Unclear => "unclear",
        }
    }

    pub const ALL: [FeedbackChoice; 3] = [FeedbackChoice::Correct, FeedbackChoice::Incorrect, FeedbackChoice::Unclear];

    pub fn parse(s: &str) -> Option<FeedbackChoice> {
        Some(match s {
            "correct" => FeedbackChoice::Correct,
            "incorrect" => FeedbackChoice::Incorrect,
            "unclear" => FeedbackChoice::Unclear,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub id: String,
    /// The verdict's id: the request id of the `POST /v1/verify` it is about.
    pub verdict_id: String,
    pub choice: FeedbackChoice,
    pub comment: String,
    pub received_at_ms: i64,
}

impl Store {
    /// Stores one piece of feedback, and deletes what is older than
    /// `keep_since_ms` (indexed, so it costs little on every insert).
    pub async fn put_feedback(&self, f: &Feedback, keep_since_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM verify_feedback WHERE received_at_ms < $1")
            .bind(keep_since_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO verify_feedback (id, verdict_id, choice, comment, received_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&f.id)
        .bind(&f.verdict_id)
        .bind(f.choice.as_str())
        .bind(&f.comment)
        .bind(f.received_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Feedback after a point, oldest first, at most `limit`: received at or
    /// after `since_ms`, and when `after` (the last one of the previous page)
    /// is given, after it in (time, id) order.
    pub async fn feedback(
        &self,
        since_ms: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<Feedback>, StoreError> {
        let (at, id) = after.unwrap_or((i64::MIN, ""));
        let rows = sqlx::query(
            "SELECT id, verdict_id, choice, comment, received_at_ms FROM verify_feedback
             WHERE received_at_ms >= $1 AND (received_at_ms > $2 OR (received_at_ms = $2 AND id > $3))
             ORDER BY received_at_ms, id LIMIT $4",
        )
        .bind(since_ms)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let choice: String = r.try_get(2)?;
                Ok(Feedback {
                    id: r.try_get(0)?,
                    verdict_id: r.try_get(1)?,
                    choice: FeedbackChoice::parse(&choice)
                        .ok_or_else(|| StoreError::Corrupt(format!("feedback with unknown choice {choice:?}")))?,
                    comment: r.try_get(3)?,
                    received_at_ms: r.try_get(4)?,
                })
            })
            .collect()
    }
}
