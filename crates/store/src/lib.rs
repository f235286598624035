//! Storage: SQLite by default (one file in the data dir), PostgreSQL when
//! given a `postgres://` URL. Same schema, same queries (written once, in the
//! SQL both accept), same test suite.
//!
//! What is stored: manifests of signed outputs (for the soft-binding
//! resolver), photo-access grants, subjects and their enrolled face
//! embeddings, consent receipts, the hash-chained decision log, the
//! review queue and feedback on the detection tool's verdicts. Never
//! reference photos, never an image sent to be verified.
//!
//! Nothing here caches: every consent question is asked of the database at
//! the moment it matters, so a revocation through one replica holds on every
//! other at once.

mod audit;
mod confirmation;
mod consent;
mod feedback;
mod reviews;
mod sealed;

pub use audit::{
    checkpoint_message, record_hash, AuditSettings, Break, ChainReport, Checkpoint, CheckpointSigner, DecisionRecord,
    Kind, StoredDecision, GENESIS,
};
pub use confirmation::{Confirmed, Reissued, SubjectAccess, SubjectEvent, SubjectUse};
pub use consent::{ConsentCheck, GenerationRecord, NotRecorded, ReceiptRecord, Revoked};
pub use feedback::{Feedback, FeedbackChoice};
pub use reviews::{Resolution, Resolved, Review, ReviewStatus};
pub use sealed::EmbeddingKey;

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (scheme {0:?}): use a file path, sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is not what this version expects: {0}")]
    Corrupt(String),
    #[error("migration {version} failed: {message}")]
    Migration { version: i64, message: String },
    /// The caller's deadline passed before the database answered.
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A signed output's manifest, as the resolver serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The manifest label, `urn:c2pa:...`.
    pub manifest_id: String,
    /// The asset id (hex) the watermark will carry.
    pub asset_id: String,
    pub tenant: String,
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The manifest store (`application/c2pa`).
    pub manifest_store: Vec<u8>,
    /// The soft bindings (algorithm, value) by which the resolver finds it:
    /// the watermark's payload.
    pub soft_bindings: Vec<SoftBindingRecord>,
    /// The fingerprint of the marked output's coarse structure (the
    /// watermark crate's content check): what a mark recovered from pixels
    /// is checked against, so that a mark carried onto another picture
    /// does not resolve. Kept here, not in the manifest. `None` for assets
    /// signed before it was kept.
    pub fingerprint: Option<FingerprintRecord>,
}

/// A fingerprint of an output: its algorithm's name and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintRecord {
    pub alg: String,
    pub value: Vec<u8>,
}

/// One soft binding of a manifest: the algorithm's name and the value
/// (base64), as in the manifest's `c2pa.soft-binding` assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftBindingRecord {
    pub alg: String,
    pub value: String,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Who signs the decision log's checkpoints; without it none are made.
    audit: Option<std::sync::Arc<AuditSettings>>,
    /// What enrolled embeddings are sealed with; without it they are stored
    /// in clear (tests of other things).
    pub(crate) embedding_key: Option<std::sync::Arc<EmbeddingKey>>,
}

/// Schema versions, applied in order, each once, each a list of statements
/// (PostgreSQL prepares one statement at a time). `{bytes}` is the binary
/// column type of the backend. Booleans are BIGINT 0/1 on both, for one
/// decoding path.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &["CREATE TABLE manifests (
            manifest_id TEXT PRIMARY KEY,
            asset_id TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL,
            request_id TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            manifest_store {bytes} NOT NULL
        )"],
    ),
    (
        2,
        &[
            "CREATE TABLE grants (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                user_id TEXT NOT NULL,
                purpose TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                expires_at_ms BIGINT,
                revoked_at_ms BIGINT
            )",
            "CREATE INDEX grants_by_user ON grants (tenant, user_id, created_at_ms)",
            "CREATE TABLE grant_items (
                grant_id TEXT NOT NULL REFERENCES grants (id),
                kind TEXT NOT NULL,
                item_id TEXT NOT NULL,
                position BIGINT NOT NULL,
                PRIMARY KEY (grant_id, kind, item_id)
            )",
            "CREATE TABLE subjects (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                user_id TEXT NOT NULL,
                name TEXT NOT NULL,
                relationship TEXT NOT NULL,
                minor BIGINT NOT NULL,
                guardian_consent BIGINT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                expires_at_ms BIGINT,
                deleted_at_ms BIGINT
            )",
            "CREATE INDEX subjects_by_user ON subjects (tenant, user_id, created_at_ms)",
            "CREATE TABLE subject_embeddings (
                subject_id TEXT NOT NULL REFERENCES subjects (id),
                position BIGINT NOT NULL,
                vector {bytes} NOT NULL,
                PRIMARY KEY (subject_id, position)
            )",
            "CREATE TABLE consent_receipts (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                request_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                grant_id TEXT,
                created_at_ms BIGINT NOT NULL,
                body TEXT NOT NULL
            )",
        ],
    ),
    (
        3,
        &[
            // Not unique: two assets may share a 64-bit payload (about one
            // pair in 2^32 assets); the resolver then answers both.
            "CREATE TABLE soft_bindings (
                manifest_id TEXT NOT NULL REFERENCES manifests (manifest_id),
                alg TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (alg, value, manifest_id)
            )",
        ],
    ),
    (
        4,
        &[
            // The decision log: one hash chain; `audit_head` is its head,
            // the one row every append locks.
            "CREATE TABLE decisions (
                seq BIGINT PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                tenant TEXT NOT NULL,
                user_id TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                action TEXT NOT NULL,
                reason TEXT,
                body TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )",
            "CREATE INDEX decisions_by_user ON decisions (tenant, user_id, created_at_ms)",
            "CREATE INDEX decisions_by_time ON decisions (created_at_ms)",
            "CREATE TABLE audit_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')",
            "CREATE TABLE audit_checkpoints (
                seq BIGINT PRIMARY KEY,
                hash TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                public_key TEXT NOT NULL,
                signature TEXT NOT NULL
            )",
            "CREATE TABLE reviews (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                user_id TEXT NOT NULL,
                request_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                summary TEXT NOT NULL,
                reviewer TEXT,
                note TEXT,
                resolved_at_ms BIGINT,
                used_at_ms BIGINT,
                used_by TEXT
            )",
            "CREATE INDEX reviews_by_status ON reviews (tenant, status, created_at_ms)",
        ],
    ),
    (
        5,
        &[
            // Consent confirmed by the person shown. Tokens are kept only as
            // SHA-256 (hex): 256-bit random tokens need no slow hash.
            "ALTER TABLE subjects ADD COLUMN confirmed_at_ms BIGINT",
            "ALTER TABLE subjects ADD COLUMN confirmed_by TEXT",
            "ALTER TABLE subjects ADD COLUMN confirmed_with_photo BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE subjects ADD COLUMN ended_by TEXT",
            "ALTER TABLE subjects ADD COLUMN confirmation_sha256 TEXT",
            "ALTER TABLE subjects ADD COLUMN confirmation_expires_at_ms BIGINT",
            "ALTER TABLE subjects ADD COLUMN personal_sha256 TEXT",
            // The user is the person shown: their own word is a confirmation.
            "UPDATE subjects SET confirmed_at_ms = created_at_ms, confirmed_by = 'user' WHERE relationship = 'self'",
            "UPDATE subjects SET ended_by = 'user' WHERE deleted_at_ms IS NOT NULL",
            // Every change to a subject's consent, by whom, when.
            "CREATE TABLE subject_events (
                subject_id TEXT NOT NULL REFERENCES subjects (id),
                seq BIGINT NOT NULL,
                event TEXT NOT NULL,
                actor TEXT NOT NULL,
                at_ms BIGINT NOT NULL,
                PRIMARY KEY (subject_id, seq)
            )",
            "INSERT INTO subject_events (subject_id, seq, event, actor, at_ms)
                SELECT id, 1, 'created', 'user', created_at_ms FROM subjects",
            "INSERT INTO subject_events (subject_id, seq, event, actor, at_ms)
                SELECT id, 2, 'confirmed', 'user', created_at_ms FROM subjects WHERE relationship = 'self'",
            "INSERT INTO subject_events (subject_id, seq, event, actor, at_ms)
                SELECT id, 3, 'deleted', 'user', deleted_at_ms FROM subjects WHERE deleted_at_ms IS NOT NULL",
            // The generations whose references showed a subject: what the
            // person sees of where their likeness was used.
            "CREATE TABLE subject_uses (
                subject_id TEXT NOT NULL REFERENCES subjects (id),
                receipt_id TEXT NOT NULL,
                request_id TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (subject_id, receipt_id)
            )",
            "CREATE INDEX manifests_by_request ON manifests (request_id)",
        ],
    ),
    (
        6,
        &[
            // Feedback on the public detection tool's verdicts: no image,
            // no URL, no address.
            "CREATE TABLE verify_feedback (
                id TEXT PRIMARY KEY,
                verdict_id TEXT NOT NULL,
                choice TEXT NOT NULL,
                comment TEXT NOT NULL,
                received_at_ms BIGINT NOT NULL
            )",
            "CREATE INDEX verify_feedback_by_time ON verify_feedback (received_at_ms)",
        ],
    ),
    (
        7,
        &[
            // One per manifest, in a table of its own: too long for the
            // soft bindings' key (2 KB for a 2048x2048 output), and never
            // looked up by value.
            "CREATE TABLE fingerprints (
                manifest_id TEXT PRIMARY KEY REFERENCES manifests (manifest_id),
                alg TEXT NOT NULL,
                value {bytes} NOT NULL
            )",
        ],
    ),
];

/// Most manifests one soft-binding query answers.
pub const MAX_MATCHES: usize = 100;

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let (backend, url, file) = connect_url(url)?;
        if let Some(file) = &file {
            owner_only(file)?;
        }
        let max = if backend == Backend::Sqlite { 4 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Deleted rows (a subject's name, its embeddings) are
                        // overwritten with zeros, not left in free pages.
                        sqlx::query("PRAGMA secure_delete = ON").execute(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL (kept in the file) lets readers work while a write is in
            // progress; sqlx already sets a busy timeout on every connection.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let store = Store { pool, backend, audit: None, embedding_key: None };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Seals enrolled face embeddings with `key` (ChaCha20-Poly1305).
    pub fn with_embedding_key(mut self, key: EmbeddingKey) -> Store {
        self.embedding_key = Some(std::sync::Arc::new(key));
        self
    }

    /// Signs the decision log's checkpoints with `audit`'s signer.
    pub fn with_audit(mut self, audit: AuditSettings) -> Store {
        self.audit = Some(std::sync::Arc::new(audit));
        self
    }

    /// Applies missing migrations, all in one transaction (DDL is
    /// transactional on both databases, so a crash leaves nothing half
    /// applied). On PostgreSQL a transaction-scoped advisory lock makes
    /// replicas that start together migrate one at a time.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL lock_timeout = '60s'").execute(&mut *tx).await?;
            sqlx::query("SELECT pg_advisory_xact_lock(73190411)").execute(&mut *tx).await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let bytes = if self.backend == Backend::Postgres { "BYTEA" } else { "BLOB" };
        for (version, statements) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let fail = |e: sqlx::Error| StoreError::Migration { version: *version, message: e.to_string() };
            for sql in *statements {
                sqlx::query(&sql.replace("{bytes}", bytes)).execute(&mut *tx).await.map_err(fail)?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)")
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tracing::info!(version, "database migrated");
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Stores a manifest and its soft bindings, all or none.
    pub async fn put_manifest(&self, m: &ManifestRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_manifest(&mut tx, m).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn manifest(&self, manifest_id: &str) -> Result<Option<ManifestRecord>, StoreError> {
        self.manifest_where("manifest_id", manifest_id).await
    }

    /// The ids of the manifests bound to a soft binding, newest first, at
    /// most `limit` (and at most [`MAX_MATCHES`]).
    pub async fn manifests_by_binding(&self, alg: &str, value: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.manifest_id FROM soft_bindings b JOIN manifests m ON m.manifest_id = b.manifest_id
             WHERE b.alg = $1 AND b.value = $2 ORDER BY m.created_at_ms DESC, m.manifest_id LIMIT $3",
        )
        .bind(alg)
        .bind(value)
        .bind(limit.clamp(1, MAX_MATCHES) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn manifest_by_asset(&self, asset_id: &str) -> Result<Option<ManifestRecord>, StoreError> {
        self.manifest_where("asset_id", asset_id).await
    }

    /// The fingerprint kept with a manifest, alone (the resolver's content
    /// check needs nothing else of it).
    pub async fn fingerprint(&self, manifest_id: &str) -> Result<Option<FingerprintRecord>, StoreError> {
        let row = sqlx::query("SELECT alg, value FROM fingerprints WHERE manifest_id = $1")
            .bind(manifest_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(f) => Some(FingerprintRecord { alg: f.try_get(0)?, value: f.try_get(1)? }),
            None => None,
        })
    }

    /// One manifest by a unique column; `column` is a name from this file,
    /// never input.
    async fn manifest_where(&self, column: &'static str, value: &str) -> Result<Option<ManifestRecord>, StoreError> {
        let sql = format!(
            "SELECT manifest_id, asset_id, tenant, request_id, created_at_ms, manifest_store FROM manifests WHERE {column} = $1"
        );
        let Some(row) = sqlx::query(&sql).bind(value).fetch_optional(&self.pool).await? else { return Ok(None) };
        let mut record = manifest_from_row(&row)?;
        let bindings = sqlx::query("SELECT alg, value FROM soft_bindings WHERE manifest_id = $1 ORDER BY alg, value")
            .bind(&record.manifest_id)
            .fetch_all(&self.pool)
            .await?;
        for b in bindings {
            record.soft_bindings.push(SoftBindingRecord { alg: b.try_get(0)?, value: b.try_get(1)? });
        }
        record.fingerprint = self.fingerprint(&record.manifest_id).await?;
        Ok(Some(record))
    }
}

async fn insert_manifest(conn: &mut sqlx::AnyConnection, m: &ManifestRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO manifests (manifest_id, asset_id, tenant, request_id, created_at_ms, manifest_store)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&m.manifest_id)
    .bind(&m.asset_id)
    .bind(&m.tenant)
    .bind(&m.request_id)
    .bind(m.created_at_ms)
    .bind(&m.manifest_store)
    .execute(&mut *conn)
    .await?;
    for b in &m.soft_bindings {
        sqlx::query("INSERT INTO soft_bindings (manifest_id, alg, value) VALUES ($1, $2, $3)")
            .bind(&m.manifest_id)
            .bind(&b.alg)
            .bind(&b.value)
            .execute(&mut *conn)
            .await?;
    }
    if let Some(f) = &m.fingerprint {
        sqlx::query("INSERT INTO fingerprints (manifest_id, alg, value) VALUES ($1, $2, $3)")
            .bind(&m.manifest_id)
            .bind(&f.alg)
            .bind(&f.value)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A SQLite file and its WAL and shared-memory files readable by their
/// owner only: they hold consent records and face embeddings. Created
/// 0600 before SQLite opens it (SQLite gives its WAL the file's mode).
fn owner_only(file: &std::path::Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |e: std::io::Error| {
            StoreError::Database(sqlx::Error::Configuration(format!("{}: {e}", file.display()).into()))
        };
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        for suffix in ["", "-wal", "-shm"] {
            let path = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// The sqlx URL for a database argument: PostgreSQL URLs as given; for
/// SQLite an absolute path, percent-encoded, opened read-write-create, with
/// the file's path.
fn connect_url(arg: &str) -> Result<(Backend, String, Option<std::path::PathBuf>), StoreError> {
    sqlx::any::install_default_drivers();
    if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
        return Ok((Backend::Postgres, arg.to_string(), None));
    }
    let path = match arg.strip_prefix("sqlite://").or_else(|| arg.strip_prefix("sqlite:")) {
        Some(p) if p.contains('?') => return Err(StoreError::UnsupportedUrl("sqlite with options".into())),
        Some(p) => p,
        None if arg.contains("://") => {
            return Err(StoreError::UnsupportedUrl(arg.split("://").next().unwrap_or_default().to_string()))
        }
        None => arg,
    };
    let abs = std::path::absolute(path)
        .map_err(|e| StoreError::Database(sqlx::Error::Configuration(format!("{path}: {e}").into())))?;
    let mut encoded = String::new();
    for ch in abs.to_string_lossy().chars() {
        match ch {
            '%' | '?' | '#' | ' ' | '[' | ']' | '^' | '|' | '<' | '>' | '"' | '`' | '{' | '}' | '\\' => {
                let mut buf = [0u8; 4];
                for b in ch.encode_utf8(&mut buf).bytes() {
                    encoded.push_str(&format!("%{b:02X}"));
                }
            }
            c => encoded.push(c),
        }
    }
    Ok((Backend::Sqlite, format!("sqlite://{encoded}?mode=rwc"), Some(abs)))
}

/// Databases made for one test run and dropped afterwards, even when the
/// test panics.
#[doc(hidden)]
pub mod testing {
    use sqlx::Connection;

    pub struct TempDatabase {
        pub url: String,
        admin_url: String,
        name: String,
    }

    /// The server the tests use: `LIKENESS_TEST_POSTGRES`, or the local
    /// one `make test` starts.
    pub fn admin_url() -> String {
        std::env::var("LIKENESS_TEST_POSTGRES").unwrap_or_else(|_| "postgres://127.0.0.1:5432/test".into())
    }

    impl TempDatabase {
        /// A database of its own on the tests' server ([`admin_url`]);
        /// panics with what to do when there is none.
        pub async fn for_tests() -> TempDatabase {
            let admin = admin_url();
            TempDatabase::create(&admin).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {admin} is needed (make test starts it; set LIKENESS_TEST_POSTGRES to use another): {e}"
                )
            })
        }

        /// The same, from a test that is not async.
        pub fn for_tests_blocking() -> TempDatabase {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(TempDatabase::for_tests())
        }

        /// Creates a database on the server of `admin_url` (a PostgreSQL URL
        /// of a database the user may connect to; the user needs CREATEDB).
        pub async fn create(admin_url: &str) -> Result<TempDatabase, sqlx::Error> {
            sqlx::any::install_default_drivers();
            let name = format!("likeness_test_{:016x}", rand_u64());
            let mut admin = sqlx::AnyConnection::connect(admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
            let (base, query) = match admin_url.split_once('?') {
                Some((b, q)) => (b, format!("?{q}")),
                None => (admin_url, String::new()),
            };
            let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
            Ok(TempDatabase { url: format!("{prefix}/{name}{query}"), admin_url: admin_url.to_string(), name })
        }
    }

    impl Drop for TempDatabase {
        fn drop(&mut self) {
            let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
            // Its own thread and runtime: Drop may run inside another runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    let mut admin = sqlx::AnyConnection::connect(&admin_url).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
                    Ok::<(), sqlx::Error>(())
                })
                .map_err(std::io::Error::other)
            })
            .join();
        }
    }

    /// Everything a PostgreSQL database holds, as text: every row of every
    /// table of the public schema. For tests that look for what must not
    /// be stored (a token in clear, a photo's bytes).
    pub async fn postgres_rows_as_text(url: &str) -> String {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
        let mut text = String::new();
        for t in tables {
            for r in sqlx::query(&format!("SELECT t::text FROM {t} t")).fetch_all(&mut conn).await.unwrap() {
                text.push_str(&r.get::<String, _>(0));
                text.push('\n');
            }
        }
        text
    }

    /// How many rows each table of a generation's record holds (manifests,
    /// soft bindings, fingerprints, consent receipts, decisions), read on a connection of
    /// its own: for tests that check a failed request left nothing behind.
    pub async fn record_counts(url: &str) -> Vec<(&'static str, i64)> {
        use sqlx::Row;
        let (_, url, _) = super::connect_url(url).unwrap();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let mut counts = Vec::new();
        for table in ["manifests", "soft_bindings", "fingerprints", "consent_receipts", "decisions"] {
            let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut conn).await.unwrap();
            counts.push((table, row.get::<i64, _>(0)));
        }
        counts
    }

    /// Another process' write lock on a SQLite file, held until released.
    pub struct SqliteLock(sqlx::AnyConnection);

    impl SqliteLock {
        pub async fn take(url: &str) -> SqliteLock {
            let (_, url, _) = super::connect_url(url).unwrap();
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.unwrap();
            SqliteLock(conn)
        }

        pub async fn release(mut self) {
            sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
            let _ = self.0.close().await;
        }
    }

    fn rand_u64() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        h.finish()
    }
}

fn manifest_from_row(r: &AnyRow) -> Result<ManifestRecord, StoreError> {
    Ok(ManifestRecord {
        manifest_id: r.try_get(0)?,
        asset_id: r.try_get(1)?,
        tenant: r.try_get(2)?,
        request_id: r.try_get(3)?,
        created_at_ms: r.try_get(4)?,
        manifest_store: r.try_get(5)?,
        soft_bindings: Vec::new(),
        fingerprint: None,
    })
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
