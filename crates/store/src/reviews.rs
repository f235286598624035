//! The human review queue: requests a policy rule sent to review, resolved
//! by a person; an approval lets the identical request through once.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStatus {
    Pending,
    Approved,
    Denied,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewStatus> {
        Some(match s {
            "pending" => ReviewStatus::Pending,
            "approved" => ReviewStatus::Approved,
            "denied" => ReviewStatus::Denied,
            _ => return None,
        })
    }
}

/// A review: what a person sees to decide (scores, rules, reference
/// hashes as JSON in `summary`; never pixels, never the prompt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: String,
    pub tenant: String,
    pub user: String,
    /// The request that was sent to review.
    pub request_id: String,
    /// What makes a resubmission "the identical request".
    pub fingerprint: String,
    pub status: ReviewStatus,
    pub created_at_ms: i64,
    pub summary: String,
    pub reviewer: Option<String>,
    pub note: Option<String>,
    pub resolved_at_ms: Option<i64>,
    pub used_at_ms: Option<i64>,
    /// The request that used the approval.
    pub used_by: Option<String>,
}

const COLUMNS: &str = "id, tenant, user_id, request_id, fingerprint, status, created_at_ms, summary, reviewer, note, \
                       resolved_at_ms, used_at_ms, used_by";

fn from_row(r: &AnyRow) -> Result<Review, StoreError> {
    let status: String = r.try_get(5)?;
    Ok(Review {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        user: r.try_get(2)?,
        request_id: r.try_get(3)?,
        fingerprint: r.try_get(4)?,
        status: ReviewStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("review with unknown status {status:?}")))?,
        created_at_ms: r.try_get(6)?,
        summary: r.try_get(7)?,
        reviewer: r.try_get(8)?,
        note: r.try_get(9)?,
        resolved_at_ms: r.try_get(10)?,
        used_at_ms: r.try_get(11)?,
        used_by: r.try_get(12)?,
    })
}

/// A person's word on a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub approve: bool,
    pub reviewer: String,
    pub note: String,
    pub at_ms: i64,
}

/// What resolving found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Now(Review),
    /// Resolved before; the first resolution stands.
    Already(Review),
    NotFound,
}

impl Store {
    pub async fn put_review(&self, r: &Review) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO reviews ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&r.id)
        .bind(&r.tenant)
        .bind(&r.user)
        .bind(&r.request_id)
        .bind(&r.fingerprint)
        .bind(r.status.as_str())
        .bind(r.created_at_ms)
        .bind(&r.summary)
        .bind(&r.reviewer)
        .bind(&r.note)
        .bind(r.resolved_at_ms)
        .bind(r.used_at_ms)
        .bind(&r.used_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn review(&self, tenant: &str, id: &str) -> Result<Option<Review>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM reviews WHERE tenant = $1 AND id = $2"))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// A tenant's reviews in a status, oldest first, at most `limit`.
    pub async fn reviews(&self, tenant: &str, status: ReviewStatus, limit: i64) -> Result<Vec<Review>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM reviews WHERE tenant = $1 AND status = $2 ORDER BY created_at_ms, id LIMIT $3"
        ))
        .bind(tenant)
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Resolves a pending review, and appends the resolution to the
    /// decision log in the same transaction.
    pub async fn resolve_review(
        &self,
        tenant: &str,
        id: &str,
        resolution: &Resolution,
        log: &crate::DecisionRecord,
    ) -> Result<Resolved, StoreError> {
        let mut tx = self.begin_writing().await?;
        let status = if resolution.approve { ReviewStatus::Approved } else { ReviewStatus::Denied };
        let done = sqlx::query(
            "UPDATE reviews SET status = $1, reviewer = $2, note = $3, resolved_at_ms = $4
             WHERE tenant = $5 AND id = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(&resolution.reviewer)
        .bind(&resolution.note)
        .bind(resolution.at_ms)
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM reviews WHERE tenant = $1 AND id = $2"))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(review) = row.as_ref().map(from_row).transpose()? else { return Ok(Resolved::NotFound) };
        if done.rows_affected() == 0 {
            return Ok(Resolved::Already(review));
        }
        crate::audit::append(&mut tx, self.backend, self.audit.as_deref(), log).await?;
        tx.commit().await?;
        Ok(Resolved::Now(review))
    }
}

/// Marks an approved review used by `request_id`, inside the transaction
/// that records the generation; false when it was used meanwhile.
pub(crate) async fn spend(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    id: &str,
    request_id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE reviews SET used_at_ms = $1, used_by = $2
         WHERE tenant = $3 AND id = $4 AND status = 'approved' AND used_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(request_id)
    .bind(tenant)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
