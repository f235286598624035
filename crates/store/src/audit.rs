//! The decision log: one record per generation request, allowed or refused,
//! in one hash chain. Each record holds the previous record's hash, so an
//! edit, a deletion or an insertion breaks the chain at that record; every
//! so often a checkpoint signs the head with the gateway's key, so the
//! chain cannot be rewritten whole without the key either.
//!
//! Appending serialises on the chain's head: `BEGIN IMMEDIATE` on SQLite,
//! the head row locked `FOR UPDATE` on PostgreSQL, so replicas on one
//! database append to one chain without forks. An allowed request's record
//! is appended in the transaction that stores its receipt and manifests.
//!
//! Records hold derived data only: hashes, scores, categories, rule ids;
//! never pixels, prompts or embeddings.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Backend, Store, StoreError};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What kind of event a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A generation request and what was decided.
    Generation,
    /// A person resolved a review.
    ReviewResolution,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Generation => "generation",
            Kind::ReviewResolution => "review_resolution",
        }
    }

    fn parse(s: &str) -> Result<Kind, StoreError> {
        match s {
            "generation" => Ok(Kind::Generation),
            "review_resolution" => Ok(Kind::ReviewResolution),
            other => Err(StoreError::Corrupt(format!("decision of unknown kind {other:?}"))),
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// Unique: the request id, or the review id for its resolution.
    pub id: String,
    pub kind: Kind,
    pub tenant: String,
    /// The app's pseudonymous user id.
    pub user: String,
    pub created_at_ms: i64,
    /// `allow`, `label`, `review` or `block`.
    pub action: String,
    /// The code of a refusal; none when allowed.
    pub reason: Option<String>,
    /// The record itself, as JSON: input documents, policy version, rules
    /// fired, output asset ids, receipt and review ids.
    pub body: String,
}

/// A record as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDecision {
    pub seq: i64,
    pub record: DecisionRecord,
    pub prev_hash: String,
    pub hash: String,
}

/// A signed checkpoint: the chain's head at `seq`, signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub created_at_ms: i64,
    /// Hex of the Ed25519 public key that signed.
    pub public_key: String,
    /// Hex of the signature over [`checkpoint_message`].
    pub signature: String,
}

/// Signs checkpoints with the gateway's key.
pub trait CheckpointSigner: Send + Sync {
    /// Hex of the public key.
    fn public_key(&self) -> String;
    /// Hex of the signature of `message`.
    fn sign(&self, message: &[u8]) -> String;
}

/// How often the head is signed: every `every_records` records, or when
/// the last checkpoint is older than `every_ms`, whichever comes first.
#[derive(Clone)]
pub struct AuditSettings {
    pub signer: Arc<dyn CheckpointSigner>,
    pub every_records: i64,
    pub every_ms: i64,
}

/// What a checkpoint signs.
pub fn checkpoint_message(seq: i64, hash: &str) -> Vec<u8> {
    format!("likeness decision log checkpoint v1\n{seq}\n{hash}\n").into_bytes()
}

/// The hash of a record at `seq` after `prev_hash`: SHA-256 over every
/// field, each prefixed by its length, so no two records hash alike.
pub fn record_hash(seq: i64, prev_hash: &str, r: &DecisionRecord) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"likeness.decision.v1");
    field(&seq.to_be_bytes());
    field(prev_hash.as_bytes());
    field(r.id.as_bytes());
    field(r.kind.as_str().as_bytes());
    field(r.tenant.as_bytes());
    field(r.user.as_bytes());
    field(&r.created_at_ms.to_be_bytes());
    field(r.action.as_bytes());
    field(r.reason.as_deref().unwrap_or("").as_bytes());
    field(r.body.as_bytes());
    hex::encode(h.finalize())
}

const COLUMNS: &str = "seq, id, kind, tenant, user_id, created_at_ms, action, reason, body, prev_hash, hash";

fn from_row(r: &AnyRow) -> Result<StoredDecision, StoreError> {
    let kind: String = r.try_get(2)?;
    Ok(StoredDecision {
        seq: r.try_get(0)?,
        record: DecisionRecord {
            id: r.try_get(1)?,
            kind: Kind::parse(&kind)?,
            tenant: r.try_get(3)?,
            user: r.try_get(4)?,
            created_at_ms: r.try_get(5)?,
            action: r.try_get(6)?,
            reason: r.try_get(7)?,
            body: r.try_get(8)?,
        },
        prev_hash: r.try_get(9)?,
        hash: r.try_get(10)?,
    })
}

/// Appends `r` at the head of the chain, inside `conn`'s transaction (which
/// must already hold the write lock on SQLite), and signs a checkpoint when
/// one is due.
pub(crate) async fn append(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    audit: Option<&AuditSettings>,
    r: &DecisionRecord,
) -> Result<StoredDecision, StoreError> {
    let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
    let head =
        sqlx::query(&format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}")).fetch_one(&mut *conn).await?;
    let (prev_seq, prev_hash): (i64, String) = (head.try_get(0)?, head.try_get(1)?);
    let seq = prev_seq + 1;
    let hash = record_hash(seq, &prev_hash, r);
    sqlx::query(&format!("INSERT INTO decisions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
        .bind(seq)
        .bind(&r.id)
        .bind(r.kind.as_str())
        .bind(&r.tenant)
        .bind(&r.user)
        .bind(r.created_at_ms)
        .bind(&r.action)
        .bind(&r.reason)
        .bind(&r.body)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    if let Some(audit) = audit {
        let last = sqlx::query("SELECT seq, created_at_ms FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        let (last_seq, last_ms) = match last {
            Some(row) => (row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?),
            // No checkpoint yet: count from the start, time from this record.
            None => (0, r.created_at_ms),
        };
        let due =
            seq - last_seq >= audit.every_records.max(1) || r.created_at_ms.saturating_sub(last_ms) >= audit.every_ms;
        if due {
            let signature = audit.signer.sign(&checkpoint_message(seq, &hash));
            sqlx::query(
                "INSERT INTO audit_checkpoints (seq, hash, created_at_ms, public_key, signature) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(seq)
            .bind(&hash)
            .bind(r.created_at_ms)
            .bind(audit.signer.public_key())
            .bind(&signature)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(StoredDecision { seq, record: r.clone(), prev_hash, hash })
}

/// Where a chain stops holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub id: String,
    pub what: String,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub records: i64,
    pub checkpoints: i64,
    /// The first record that does not hold, if any.
    pub broken: Option<Break>,
}

impl Store {
    /// Appends one record on its own (a refusal: nothing else is stored).
    pub async fn append_decision(&self, r: &DecisionRecord) -> Result<StoredDecision, StoreError> {
        let mut tx = self.begin_writing().await?;
        let stored = append(&mut tx, self.backend, self.audit.as_deref(), r).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub async fn decision(&self, id: &str) -> Result<Option<StoredDecision>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM decisions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records after `after_seq` created at or after `since_ms`, in chain
    /// order, at most `limit`: page through with the last seq seen.
    pub async fn decisions_since(
        &self,
        since_ms: i64,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM decisions WHERE seq > $1 AND created_at_ms >= $2 ORDER BY seq LIMIT $3"
        ))
        .bind(after_seq)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// A user's refusals (block or review) since `since_ms`, by reason: the
    /// policy input's history.
    pub async fn refusals_since(
        &self,
        tenant: &str,
        user: &str,
        since_ms: i64,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT reason, COUNT(*) FROM decisions
             WHERE tenant = $1 AND user_id = $2 AND created_at_ms >= $3 AND kind = 'generation'
               AND action IN ('block', 'review') AND reason IS NOT NULL
             GROUP BY reason",
        )
        .bind(tenant)
        .bind(user)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?))).collect()
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, hash, created_at_ms, public_key, signature FROM audit_checkpoints ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: r.try_get(0)?,
                    hash: r.try_get(1)?,
                    created_at_ms: r.try_get(2)?,
                    public_key: r.try_get(3)?,
                    signature: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Walks the whole chain: every record's hash recomputed and linked to
    /// the one before, no seq missing, the head where the last record is,
    /// and every checkpoint's hash that of its record and its signature
    /// good (`signature_ok(public_key, message, signature)`).
    pub async fn verify_chain(
        &self,
        signature_ok: &dyn Fn(&str, &[u8], &str) -> bool,
    ) -> Result<ChainReport, StoreError> {
        let checkpoints = self.checkpoints().await?;
        let mut by_seq: BTreeMap<i64, &Checkpoint> = checkpoints.iter().map(|c| (c.seq, c)).collect();
        let mut report = ChainReport { records: 0, checkpoints: checkpoints.len() as i64, broken: None };
        let (mut prev_seq, mut prev_hash) = (0i64, GENESIS.to_string());
        let mut last_id = String::new();
        loop {
            let page = self.decisions_since(i64::MIN, prev_seq, 1000).await?;
            if page.is_empty() {
                break;
            }
            for d in page {
                let broken = |what: String| Some(Break { seq: d.seq, id: d.record.id.clone(), what });
                let fault = if d.seq != prev_seq + 1 {
                    broken(format!("records {} to {} are missing", prev_seq + 1, d.seq - 1))
                } else if d.prev_hash != prev_hash {
                    broken("its previous hash is not the hash of the record before".into())
                } else if record_hash(d.seq, &d.prev_hash, &d.record) != d.hash {
                    broken("its contents do not match its hash: it was changed".into())
                } else if let Some(cp) = by_seq.remove(&d.seq) {
                    if cp.hash != d.hash {
                        broken("the checkpoint signed another hash here".into())
                    } else if !signature_ok(&cp.public_key, &checkpoint_message(cp.seq, &cp.hash), &cp.signature) {
                        broken(format!("the checkpoint's signature does not verify with key {}", cp.public_key))
                    } else {
                        None
                    }
                } else {
                    None
                };
                if fault.is_some() {
                    report.broken = fault;
                    return Ok(report);
                }
                report.records += 1;
                prev_seq = d.seq;
                prev_hash = d.hash;
                last_id = d.record.id;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        let (head_seq, head_hash): (i64, String) = (head.try_get(0)?, head.try_get(1)?);
        if head_seq != prev_seq || head_hash != prev_hash {
            report.broken = Some(Break {
                seq: prev_seq,
                id: last_id,
                what: format!("the chain's head says record {head_seq}: records after this one were removed"),
            });
        } else if let Some((seq, _)) = by_seq.into_iter().next() {
            report.broken =
                Some(Break { seq, id: String::new(), what: "a checkpoint for a record that is not there".into() });
        }
        Ok(report)
    }
}
