//! Storage: SQLite by default (one file in the data dir), PostgreSQL when
//! given a `postgres://` URL. Same schema, same queries (written once, in the
//! SQL both accept), same test suite.
//!
//! What is stored: manifests of signed outputs (for the soft-binding
//! resolver). Later: consent receipts, enrolled embeddings, the audit log.
//! Never reference photos.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use a file path, sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration {version} failed: {message}")]
    Migration { version: i64, message: String },
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
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Schema versions, applied in order, each once. `{bytes}` is the binary
/// column type of the backend.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE manifests (
        manifest_id TEXT PRIMARY KEY,
        asset_id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        request_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        manifest_store {bytes} NOT NULL
    )",
)];

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if !url.contains("://") {
            (Backend::Sqlite, format!("sqlite://{url}?mode=rwc"))
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let max = if backend == Backend::Sqlite { 4 } else { 8 };
        let pool = AnyPoolOptions::new().max_connections(max).connect(&url).await?;
        if backend == Backend::Sqlite {
            // WAL lets readers work while a write is in progress.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
            sqlx::query("PRAGMA busy_timeout = 5000").execute(&pool).await?;
        }
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies missing migrations. On PostgreSQL an advisory lock makes
    /// replicas that start together migrate one at a time.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(73190411)").execute(&mut *conn).await?;
        }
        let result = async {
            sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)")
                .execute(&mut *conn)
                .await?;
            let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<_, _>>()?;
            let bytes = if self.backend == Backend::Postgres { "BYTEA" } else { "BLOB" };
            for (version, sql) in MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                let sql = sql.replace("{bytes}", bytes);
                let fail = |e: sqlx::Error| StoreError::Migration { version: *version, message: e.to_string() };
                sqlx::query(&sql).execute(&mut *conn).await.map_err(fail)?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await
                    .map_err(fail)?;
                tracing::info!(version, "database migrated");
            }
            Ok::<(), StoreError>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(73190411)").execute(&mut *conn).await?;
        }
        result
    }

    /// Runs one administrative statement (tests create and drop databases).
    #[doc(hidden)]
    pub async fn execute_admin(&self, sql: &str) -> Result<(), StoreError> {
        sqlx::query(sql).execute(&self.pool).await?;
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

    pub async fn put_manifest(&self, m: &ManifestRecord) -> Result<(), StoreError> {
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn manifest(&self, manifest_id: &str) -> Result<Option<ManifestRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT manifest_id, asset_id, tenant, request_id, created_at_ms, manifest_store FROM manifests WHERE manifest_id = $1",
        )
        .bind(manifest_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| manifest_from_row(&r)).transpose()
    }

    pub async fn manifest_by_asset(&self, asset_id: &str) -> Result<Option<ManifestRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT manifest_id, asset_id, tenant, request_id, created_at_ms, manifest_store FROM manifests WHERE asset_id = $1",
        )
        .bind(asset_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| manifest_from_row(&r)).transpose()
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
    })
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
