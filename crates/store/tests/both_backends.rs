//! The same cases on SQLite and on PostgreSQL. PostgreSQL comes from
//! LIKENESS_TEST_POSTGRES (default postgres://127.0.0.1:5432/test); each run
//! works in a database of its own, dropped at the end.

use likeness_store::{Backend, ManifestRecord, Store};

fn record(n: u8) -> ManifestRecord {
    ManifestRecord {
        manifest_id: format!("urn:c2pa:00000000-0000-4000-8000-00000000000{n}"),
        asset_id: format!("{n:032x}"),
        tenant: "dev".into(),
        request_id: format!("req_{n}"),
        created_at_ms: 1_700_000_000_000 + i64::from(n),
        manifest_store: vec![0, 1, 2, 255, n],
    }
}

async fn cases(store: &Store) {
    store.ping().await.unwrap();
    let a = record(1);
    store.put_manifest(&a).await.unwrap();
    assert_eq!(store.manifest(&a.manifest_id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.manifest_by_asset(&a.asset_id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.manifest("urn:c2pa:missing").await.unwrap(), None);
    // A manifest id or an asset id is never stored twice.
    assert!(store.put_manifest(&a).await.is_err());
    let mut same_asset = record(2);
    same_asset.asset_id = a.asset_id.clone();
    assert!(store.put_manifest(&same_asset).await.is_err());
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("likeness.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    cases(&store).await;
    drop(store);
    // Reopening keeps the data and does not re-run migrations.
    let store = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    assert!(store.manifest(&record(1).manifest_id).await.unwrap().is_some());
}

#[tokio::test]
async fn postgres() {
    let admin_url = std::env::var("LIKENESS_TEST_POSTGRES").unwrap_or_else(|_| "postgres://127.0.0.1:5432/test".into());
    let name = format!("likeness_test_{:016x}", rand::random::<u64>());
    let admin = Store::open(&admin_url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {admin_url} is needed (make test starts it; set LIKENESS_TEST_POSTGRES to use another): {e}"
        )
    });
    admin.execute_admin(&format!("CREATE DATABASE {name}")).await.unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{name}");
    let result = {
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        cases(&store).await;
        let again = Store::open(&url).await.unwrap();
        let found = again.manifest(&record(1).manifest_id).await.unwrap().is_some();
        store.close().await;
        again.close().await;
        found
    };
    admin.execute_admin(&format!("DROP DATABASE {name}")).await.unwrap();
    assert!(result);
}
