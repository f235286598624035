//! Grants, subjects (with their enrolled embeddings) and consent receipts.
//! Every query is scoped by tenant: one app never sees another's records.

use likeness_consent::{Actor, Confirmation, ConsentError, Grant, Purpose, Relationship, Subject};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{insert_manifest, Backend, ManifestRecord, Store, StoreError};

/// A request's consent receipt as stored: the JSON body is
/// [`likeness_consent::Receipt`], ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRecord {
    pub id: String,
    pub tenant: String,
    pub request_id: String,
    pub user: String,
    pub grant_id: Option<String>,
    pub created_at_ms: i64,
    pub body: String,
}

/// What revoking or deleting found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now,
    /// Already revoked (or deleted) earlier; the first time is kept.
    Already,
    NotFound,
}

/// Everything a generation stores before its images leave, in one transaction.
pub struct GenerationRecord<'a> {
    pub receipt: &'a ReceiptRecord,
    /// The subjects the request declared, re-read and re-checked.
    pub subject_ids: &'a [String],
    /// The subjects its references showed: each gets this generation in
    /// its usage list.
    pub shown_subjects: &'a [String],
    pub manifests: &'a [ManifestRecord],
    /// Its decision log record.
    pub decision: &'a crate::DecisionRecord,
    /// An approved review this request uses up.
    pub review: Option<&'a str>,
}

/// Why a generation was not recorded (and its images are not sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRecorded {
    /// Consent was withdrawn while the request ran.
    Consent(ConsentError),
    /// The approved review it relied on was used by another request meanwhile.
    ReviewSpent,
}

/// Re-checks consent inside the transaction that records a generation, on
/// the grant and subjects as they are at that moment.
pub type ConsentCheck<'a> = &'a (dyn Fn(Option<&Grant>, &[Subject]) -> Result<(), ConsentError> + Send + Sync);

const GRANT_COLUMNS: &str = "id, tenant, user_id, purpose, created_at_ms, expires_at_ms, revoked_at_ms";
pub(crate) const SUBJECT_COLUMNS: &str = "id, tenant, user_id, name, relationship, minor, guardian_consent, \
     created_at_ms, expires_at_ms, deleted_at_ms, ended_by, confirmed_at_ms, confirmed_by, confirmed_with_photo";

impl Store {
    pub async fn put_grant(&self, g: &Grant) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO grants (id, tenant, user_id, purpose, created_at_ms, expires_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&g.id)
        .bind(&g.tenant)
        .bind(&g.user)
        .bind(g.purpose.as_str())
        .bind(g.created_at_ms)
        .bind(g.expires_at_ms)
        .bind(g.revoked_at_ms)
        .execute(&mut *tx)
        .await?;
        for (kind, items) in [("photo", &g.photos), ("album", &g.albums), ("processor", &g.processors)] {
            let mut seen = std::collections::HashSet::new();
            for (position, item) in items.iter().enumerate() {
                if !seen.insert(item) {
                    continue;
                }
                sqlx::query("INSERT INTO grant_items (grant_id, kind, item_id, position) VALUES ($1, $2, $3, $4)")
                    .bind(&g.id)
                    .bind(kind)
                    .bind(item)
                    .bind(position as i64)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn grant(&self, tenant: &str, id: &str) -> Result<Option<Grant>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_grant(&mut conn, tenant, id, "").await
    }

    /// A user's grants, oldest first, revoked and expired ones included.
    pub async fn grants_for_user(&self, tenant: &str, user: &str) -> Result<Vec<Grant>, StoreError> {
        let sql =
            format!("SELECT {GRANT_COLUMNS} FROM grants WHERE tenant = $1 AND user_id = $2 ORDER BY created_at_ms, id");
        let rows = sqlx::query(&sql).bind(tenant).bind(user).fetch_all(&self.pool).await?;
        let mut conn = self.pool.acquire().await?;
        let mut grants = Vec::with_capacity(rows.len());
        for r in &rows {
            grants.push(grant_items(&mut conn, grant_from_row(r)?).await?);
        }
        Ok(grants)
    }

    /// Revokes at once; the first revocation time is kept.
    pub async fn revoke_grant(&self, tenant: &str, id: &str, now_ms: i64) -> Result<Revoked, StoreError> {
        let done =
            sqlx::query("UPDATE grants SET revoked_at_ms = $1 WHERE tenant = $2 AND id = $3 AND revoked_at_ms IS NULL")
                .bind(now_ms)
                .bind(tenant)
                .bind(id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() > 0 {
            return Ok(Revoked::Now);
        }
        Ok(if self.grant(tenant, id).await?.is_some() { Revoked::Already } else { Revoked::NotFound })
    }

    /// Stores a new subject with its embeddings and, unless it is `self`,
    /// the SHA-256 of its confirmation token and when that token expires.
    pub async fn put_subject(&self, s: &Subject, confirmation: Option<(&str, i64)>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let c = s.confirmation;
        sqlx::query(
            "INSERT INTO subjects (id, tenant, user_id, name, relationship, minor, guardian_consent, created_at_ms,
                expires_at_ms, deleted_at_ms, ended_by, confirmed_at_ms, confirmed_by, confirmed_with_photo,
                confirmation_sha256, confirmation_expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&s.id)
        .bind(&s.tenant)
        .bind(&s.user)
        .bind(&s.name)
        .bind(s.relationship.as_str())
        .bind(i64::from(s.minor))
        .bind(i64::from(s.guardian_consent))
        .bind(s.created_at_ms)
        .bind(s.expires_at_ms)
        .bind(s.deleted_at_ms)
        .bind(s.ended_by.map(Actor::as_str))
        .bind(c.map(|c| c.at_ms))
        .bind(c.map(|c| c.by.as_str()))
        .bind(i64::from(c.is_some_and(|c| c.photo)))
        .bind(confirmation.map(|(hash, _)| hash))
        .bind(confirmation.map(|(_, expires)| expires))
        .execute(&mut *tx)
        .await?;
        for (position, e) in s.embeddings.iter().enumerate() {
            let clear: Vec<u8> = e.iter().flat_map(|v| v.to_le_bytes()).collect();
            let sealed = crate::sealed::seal(self.embedding_key.as_deref(), &s.id, position as i64, &clear);
            sqlx::query("INSERT INTO subject_embeddings (subject_id, position, vector) VALUES ($1, $2, $3)")
                .bind(&s.id)
                .bind(position as i64)
                .bind(sealed)
                .execute(&mut *tx)
                .await?;
        }
        crate::confirmation::event(&mut tx, &s.id, "created", Actor::User, s.created_at_ms).await?;
        if let Some(c) = c {
            crate::confirmation::event(&mut tx, &s.id, "confirmed", c.by, c.at_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One subject with its embeddings (none once deleted).
    pub async fn subject(&self, tenant: &str, id: &str) -> Result<Option<Subject>, StoreError> {
        Ok(self.subjects(tenant, &[id.to_string()]).await?.pop())
    }

    /// The subjects among `ids` that exist for this tenant, with embeddings.
    pub async fn subjects(&self, tenant: &str, ids: &[String]) -> Result<Vec<Subject>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_subjects(&mut conn, tenant, ids, "", self.embedding_key.as_deref()).await
    }

    /// A user's subjects, oldest first, deleted ones included (as receipts).
    pub async fn subjects_for_user(&self, tenant: &str, user: &str) -> Result<Vec<Subject>, StoreError> {
        let sql = format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE tenant = $1 AND user_id = $2 ORDER BY created_at_ms, id"
        );
        let rows = sqlx::query(&sql).bind(tenant).bind(user).fetch_all(&self.pool).await?;
        let mut conn = self.pool.acquire().await?;
        let mut subjects = Vec::with_capacity(rows.len());
        for r in &rows {
            subjects.push(subject_embeddings(&mut conn, subject_from_row(r)?, self.embedding_key.as_deref()).await?);
        }
        Ok(subjects)
    }

    /// Deletes the subject's embeddings and name at once, in one transaction;
    /// the row stays (id, user, dates) so receipts that name it still resolve.
    pub async fn delete_subject(&self, tenant: &str, id: &str, now_ms: i64) -> Result<Revoked, StoreError> {
        self.end_subject(Some(tenant), id, Actor::User, now_ms).await
    }

    /// Ends a subject's consent: the user deletes it (scoped to its
    /// tenant), or the person (or guardian) withdraws. Either way the
    /// embeddings and name go at once and any unused confirmation token
    /// stops working; the personal token keeps working, so the person can
    /// still see their record and its usage.
    pub(crate) async fn end_subject(
        &self,
        tenant: Option<&str>,
        id: &str,
        by: Actor,
        now_ms: i64,
    ) -> Result<Revoked, StoreError> {
        let mut tx = self.begin_writing().await?;
        let row = sqlx::query("SELECT deleted_at_ms, tenant FROM subjects WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(Revoked::NotFound) };
        if tenant.is_some_and(|t| t != row.try_get::<String, _>(1).unwrap_or_default()) {
            return Ok(Revoked::NotFound);
        }
        let outcome = if row.try_get::<Option<i64>, _>(0)?.is_some() { Revoked::Already } else { Revoked::Now };
        sqlx::query("DELETE FROM subject_embeddings WHERE subject_id = $1").bind(id).execute(&mut *tx).await?;
        // Only the first deletion sets the time, even when two race.
        let updated = sqlx::query(
            "UPDATE subjects SET deleted_at_ms = $1, ended_by = $2, name = '', confirmation_sha256 = NULL,
                confirmation_expires_at_ms = NULL
             WHERE id = $3 AND deleted_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(by.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let ended = outcome == Revoked::Now && updated.rows_affected() > 0;
        if ended {
            let event = if by == Actor::User { "deleted" } else { "withdrawn" };
            crate::confirmation::event(&mut tx, id, event, by, now_ms).await?;
        }
        tx.commit().await?;
        if ended && self.backend == crate::Backend::Sqlite {
            // The old pages also sit in the WAL until a checkpoint: copy them
            // back (zeroed, with secure_delete) and empty it now.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
                tracing::warn!(error = %e, "could not checkpoint the WAL after a subject was deleted");
            }
        }
        Ok(if ended { Revoked::Now } else { Revoked::Already })
    }

    /// Records a generation: its receipt, every output's manifest and its
    /// decision record, all or none. Inside the same transaction the grant
    /// and subjects it relied on are read again and `check`ed, so consent
    /// withdrawn while the request ran stops it: `Ok(Err(..))`, nothing
    /// stored, no image goes out. On PostgreSQL the rows are read
    /// `FOR SHARE`, so a revocation waits for this transaction rather than
    /// slipping in before its commit. An approved review the request relies
    /// on is used up here, once.
    pub async fn record_generation(
        &self,
        g: &GenerationRecord<'_>,
        check: ConsentCheck<'_>,
    ) -> Result<Result<(), NotRecorded>, StoreError> {
        let receipt = g.receipt;
        let lock = if self.backend == Backend::Postgres { " FOR SHARE" } else { "" };
        let mut tx = self.begin_writing().await?;
        let grant = match &receipt.grant_id {
            Some(id) => load_grant(&mut tx, &receipt.tenant, id, lock).await?,
            None => None,
        };
        if receipt.grant_id.is_some() && grant.is_none() {
            let id = receipt.grant_id.clone().unwrap_or_default();
            return Ok(Err(NotRecorded::Consent(ConsentError::GrantUnknown(id))));
        }
        let subjects =
            load_subjects(&mut tx, &receipt.tenant, g.subject_ids, lock, self.embedding_key.as_deref()).await?;
        if let Err(e) = check(grant.as_ref(), &subjects) {
            return Ok(Err(NotRecorded::Consent(e)));
        }
        if let Some(review) = g.review {
            if !crate::reviews::spend(&mut tx, &receipt.tenant, review, &receipt.request_id, receipt.created_at_ms)
                .await?
            {
                return Ok(Err(NotRecorded::ReviewSpent));
            }
        }
        sqlx::query(
            "INSERT INTO consent_receipts (id, tenant, request_id, user_id, grant_id, created_at_ms, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&receipt.id)
        .bind(&receipt.tenant)
        .bind(&receipt.request_id)
        .bind(&receipt.user)
        .bind(&receipt.grant_id)
        .bind(receipt.created_at_ms)
        .bind(&receipt.body)
        .execute(&mut *tx)
        .await?;
        for m in g.manifests {
            insert_manifest(&mut tx, m).await?;
        }
        for subject in g.shown_subjects {
            sqlx::query(
                "INSERT INTO subject_uses (subject_id, receipt_id, request_id, created_at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(subject)
            .bind(&receipt.id)
            .bind(&receipt.request_id)
            .bind(receipt.created_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        crate::audit::append(&mut tx, self.backend, self.audit.as_deref(), g.decision).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// A transaction that reads then writes. On SQLite it takes the write
    /// lock up front (`BEGIN IMMEDIATE`): a deferred one would fail with
    /// SQLITE_BUSY_SNAPSHOT if another write committed between its read and
    /// its first write, which the busy timeout cannot retry.
    pub(crate) async fn begin_writing(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn receipt(&self, tenant: &str, id: &str) -> Result<Option<ReceiptRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant, request_id, user_id, grant_id, created_at_ms, body FROM consent_receipts
             WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ReceiptRecord {
                id: r.try_get(0)?,
                tenant: r.try_get(1)?,
                request_id: r.try_get(2)?,
                user: r.try_get(3)?,
                grant_id: r.try_get(4)?,
                created_at_ms: r.try_get(5)?,
                body: r.try_get(6)?,
            })
        })
        .transpose()
    }
}

async fn load_grant(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    id: &str,
    lock: &str,
) -> Result<Option<Grant>, StoreError> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE tenant = $1 AND id = $2{lock}");
    let Some(row) = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    Ok(Some(grant_items(conn, grant_from_row(&row)?).await?))
}

async fn grant_items(conn: &mut sqlx::AnyConnection, mut g: Grant) -> Result<Grant, StoreError> {
    let rows = sqlx::query("SELECT kind, item_id FROM grant_items WHERE grant_id = $1 ORDER BY kind, position")
        .bind(&g.id)
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let kind: String = r.try_get(0)?;
        let item: String = r.try_get(1)?;
        match kind.as_str() {
            "album" => g.albums.push(item),
            "processor" => g.processors.push(item),
            _ => g.photos.push(item),
        }
    }
    Ok(g)
}

fn grant_from_row(r: &AnyRow) -> Result<Grant, StoreError> {
    let purpose: String = r.try_get(3)?;
    Ok(Grant {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        user: r.try_get(2)?,
        photos: Vec::new(),
        albums: Vec::new(),
        processors: Vec::new(),
        purpose: Purpose::parse(&purpose)
            .ok_or_else(|| StoreError::Corrupt(format!("grant has unknown purpose {purpose:?}")))?,
        created_at_ms: r.try_get(4)?,
        expires_at_ms: r.try_get(5)?,
        revoked_at_ms: r.try_get(6)?,
    })
}

pub(crate) async fn load_subjects(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    ids: &[String],
    lock: &str,
    key: Option<&crate::EmbeddingKey>,
) -> Result<Vec<Subject>, StoreError> {
    let sql = format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE tenant = $1 AND id = $2{lock}");
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(&mut *conn).await? {
            found.push(subject_embeddings(conn, subject_from_row(&r)?, key).await?);
        }
    }
    Ok(found)
}

pub(crate) async fn subject_embeddings(
    conn: &mut sqlx::AnyConnection,
    mut s: Subject,
    key: Option<&crate::EmbeddingKey>,
) -> Result<Subject, StoreError> {
    let rows = sqlx::query("SELECT position, vector FROM subject_embeddings WHERE subject_id = $1 ORDER BY position")
        .bind(&s.id)
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let bytes = crate::sealed::open(key, &s.id, r.try_get(0)?, &r.try_get::<Vec<u8>, _>(1)?)?;
        if !bytes.len().is_multiple_of(4) {
            return Err(StoreError::Corrupt(format!("subject {}: an embedding of {} bytes", s.id, bytes.len())));
        }
        s.embeddings.push(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    Ok(s)
}

pub(crate) fn subject_from_row(r: &AnyRow) -> Result<Subject, StoreError> {
    let relationship: String = r.try_get(4)?;
    Ok(Subject {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        user: r.try_get(2)?,
        name: r.try_get(3)?,
        relationship: Relationship::parse(&relationship)
            .ok_or_else(|| StoreError::Corrupt(format!("subject has unknown relationship {relationship:?}")))?,
        minor: r.try_get::<i64, _>(5)? != 0,
        guardian_consent: r.try_get::<i64, _>(6)? != 0,
        created_at_ms: r.try_get(7)?,
        expires_at_ms: r.try_get(8)?,
        deleted_at_ms: r.try_get(9)?,
        ended_by: actor(r.try_get(10)?)?,
        confirmation: match (r.try_get::<Option<i64>, _>(11)?, actor(r.try_get(12)?)?) {
            (Some(at_ms), Some(by)) => Some(Confirmation { by, at_ms, photo: r.try_get::<i64, _>(13)? != 0 }),
            _ => None,
        },
        embeddings: Vec::new(),
    })
}

fn actor(v: Option<String>) -> Result<Option<Actor>, StoreError> {
    v.map(|a| Actor::parse(&a).ok_or_else(|| StoreError::Corrupt(format!("subject has unknown actor {a:?}"))))
        .transpose()
}
