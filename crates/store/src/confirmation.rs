//! Consent confirmed by the person shown: the confirmation and personal
//! tokens (kept only as SHA-256), the person's withdrawal, the history of
//! every change to a subject's consent, and where their likeness was used.
//! Subject ids are unique across tenants, so the person's endpoints, which
//! carry no API key, find a subject by id alone.

use likeness_consent::{Actor, Confirmation, Subject};
use sqlx::Row;

use crate::consent::{subject_embeddings, subject_from_row, SUBJECT_COLUMNS};
use crate::{Revoked, Store, StoreError};

/// What the public endpoints check a token against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectAccess {
    pub tenant: String,
    /// Hex SHA-256 of the unused confirmation token, if one is outstanding.
    pub confirmation_sha256: Option<String>,
    pub confirmation_expires_at_ms: Option<i64>,
    /// Hex SHA-256 of the personal token, once confirmed.
    pub personal_sha256: Option<String>,
}

/// What confirming found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    Now,
    /// The token was used, replaced or ended (deletion, expiry) between the
    /// check and the write: nothing changed.
    Stale,
}

/// What issuing a new confirmation token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissued {
    Now,
    /// Confirmed, deleted or withdrawn: there is nothing left to confirm.
    Ended,
    NotFound,
}

/// One change to a subject's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectEvent {
    /// `created`, `confirmation_issued`, `confirmed`, `deleted`, `withdrawn`.
    pub event: String,
    pub by: Actor,
    pub at_ms: i64,
}

/// One generation whose references showed the subject: ids and a time,
/// never images or prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectUse {
    pub request_id: String,
    pub receipt_id: String,
    pub created_at_ms: i64,
    /// (asset id, manifest id) of each output.
    pub outputs: Vec<(String, String)>,
}

impl Store {
    /// The token hashes of a subject, found by id alone.
    pub async fn subject_access(&self, id: &str) -> Result<Option<SubjectAccess>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant, confirmation_sha256, confirmation_expires_at_ms, personal_sha256 FROM subjects WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SubjectAccess {
                tenant: r.try_get(0)?,
                confirmation_sha256: r.try_get(1)?,
                confirmation_expires_at_ms: r.try_get(2)?,
                personal_sha256: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Confirms a pending subject if `token_sha256` is still its outstanding,
    /// unexpired token: the token is used up and the personal token's hash
    /// stored, in one conditional write, so two confirmations racing with
    /// the same token cannot both succeed.
    pub async fn confirm_subject(
        &self,
        id: &str,
        token_sha256: &str,
        confirmation: Confirmation,
        personal_sha256: &str,
    ) -> Result<Confirmed, StoreError> {
        let mut tx = self.begin_writing().await?;
        let done = sqlx::query(
            "UPDATE subjects SET confirmed_at_ms = $1, confirmed_by = $2, confirmed_with_photo = $3,
                personal_sha256 = $4, confirmation_sha256 = NULL, confirmation_expires_at_ms = NULL
             WHERE id = $5 AND confirmation_sha256 = $6 AND confirmation_expires_at_ms > $1
                AND deleted_at_ms IS NULL AND confirmed_at_ms IS NULL",
        )
        .bind(confirmation.at_ms)
        .bind(confirmation.by.as_str())
        .bind(i64::from(confirmation.photo))
        .bind(personal_sha256)
        .bind(id)
        .bind(token_sha256)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Confirmed::Stale);
        }
        event(&mut tx, id, "confirmed", confirmation.by, confirmation.at_ms).await?;
        tx.commit().await?;
        Ok(Confirmed::Now)
    }

    /// Replaces a pending subject's confirmation token (the old one stops
    /// working): the app's way to send a new link after one expired or got lost.
    pub async fn reissue_confirmation(
        &self,
        tenant: &str,
        id: &str,
        token_sha256: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<Reissued, StoreError> {
        let mut tx = self.begin_writing().await?;
        let done = sqlx::query(
            "UPDATE subjects SET confirmation_sha256 = $1, confirmation_expires_at_ms = $2
             WHERE tenant = $3 AND id = $4 AND deleted_at_ms IS NULL AND confirmed_at_ms IS NULL",
        )
        .bind(token_sha256)
        .bind(expires_at_ms)
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 FROM subjects WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Ok(if exists { Reissued::Ended } else { Reissued::NotFound });
        }
        event(&mut tx, id, "confirmation_issued", Actor::User, now_ms).await?;
        tx.commit().await?;
        Ok(Reissued::Now)
    }

    /// The person (or guardian) withdraws: as a deletion by the user, the
    /// embeddings and name go at once.
    pub async fn withdraw_subject(&self, id: &str, by: Actor, now_ms: i64) -> Result<Revoked, StoreError> {
        self.end_subject(None, id, by, now_ms).await
    }

    /// A subject found by id alone, with its embeddings: for the person,
    /// whose token was checked against this id.
    pub async fn subject_by_id(&self, id: &str) -> Result<Option<Subject>, StoreError> {
        let sql = format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE id = $1");
        let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut conn = self.pool.acquire().await?;
        Ok(Some(subject_embeddings(&mut conn, subject_from_row(&row)?, self.embedding_key.as_deref()).await?))
    }

    /// Whether the configured embedding key opens the stored embeddings:
    /// one sealed row is tried, so a replica started with another key
    /// stops at once instead of failing on every request with a subject.
    pub async fn check_embedding_key(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT e.subject_id, e.position, e.vector FROM subject_embeddings e ORDER BY e.subject_id, e.position LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let (subject, position, stored): (String, i64, Vec<u8>) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        crate::sealed::open(self.embedding_key.as_deref(), &subject, position, &stored).map(|_| ())
    }

    /// Every change to the subject's consent, oldest first.
    pub async fn subject_events(&self, id: &str) -> Result<Vec<SubjectEvent>, StoreError> {
        let rows = sqlx::query("SELECT event, actor, at_ms FROM subject_events WHERE subject_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let actor: String = r.try_get(1)?;
                Ok(SubjectEvent {
                    event: r.try_get(0)?,
                    by: Actor::parse(&actor)
                        .ok_or_else(|| StoreError::Corrupt(format!("subject event by unknown actor {actor:?}")))?,
                    at_ms: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// The generations whose references showed the subject, newest first,
    /// at most `limit`, with their outputs' asset and manifest ids.
    pub async fn subject_usage(&self, id: &str, limit: usize) -> Result<Vec<SubjectUse>, StoreError> {
        // One query: the newest uses, each with its outputs (manifests of
        // the subject's own tenant; request ids are unique, this only keeps
        // the join honest). A use whose outputs are gone still shows.
        let rows = sqlx::query(
            "SELECT u.receipt_id, u.request_id, u.created_at_ms, m.asset_id, m.manifest_id
             FROM (SELECT receipt_id, request_id, created_at_ms FROM subject_uses WHERE subject_id = $1
                   ORDER BY created_at_ms DESC, receipt_id DESC LIMIT $2) u
             JOIN subjects s ON s.id = $1
             LEFT JOIN manifests m ON m.request_id = u.request_id AND m.tenant = s.tenant
             ORDER BY u.created_at_ms DESC, u.receipt_id DESC, m.created_at_ms, m.asset_id",
        )
        .bind(id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<SubjectUse> = Vec::new();
        for r in &rows {
            let receipt_id: String = r.try_get(0)?;
            if out.last().is_none_or(|u| u.receipt_id != receipt_id) {
                out.push(SubjectUse {
                    receipt_id,
                    request_id: r.try_get(1)?,
                    created_at_ms: r.try_get(2)?,
                    outputs: Vec::new(),
                });
            }
            let output: (Option<String>, Option<String>) = (r.try_get(3)?, r.try_get(4)?);
            if let (Some(asset), Some(manifest), Some(u)) = (output.0, output.1, out.last_mut()) {
                u.outputs.push((asset, manifest));
            }
        }
        Ok(out)
    }
}

/// Appends one change to a subject's history, inside the caller's transaction.
pub(crate) async fn event(
    conn: &mut sqlx::AnyConnection,
    subject: &str,
    event: &str,
    by: Actor,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO subject_events (subject_id, seq, event, actor, at_ms)
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM subject_events WHERE subject_id = $1",
    )
    .bind(subject)
    .bind(event)
    .bind(by.as_str())
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
