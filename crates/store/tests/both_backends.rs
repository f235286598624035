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
    store.ping().await.unwrap();
    assert!(store.manifest(&record(1).manifest_id).await.unwrap().is_some());
}

#[tokio::test]
async fn postgres() {
    let admin_url = std::env::var("LIKENESS_TEST_POSTGRES").unwrap_or_else(|_| "postgres://127.0.0.1:5432/test".into());
    let db = likeness_store::testing::TempDatabase::create(&admin_url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {admin_url} is needed (make test starts it; set LIKENESS_TEST_POSTGRES to use another): {e}"
        )
    });
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    cases(&store).await;
    // Two stores opening at once (two replicas) migrate once, without error.
    let (a, b) = tokio::join!(Store::open(&db.url), Store::open(&db.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.manifest(&record(1).manifest_id).await.unwrap().is_some());
    for s in [store, a, b] {
        s.close().await;
    }
}

#[tokio::test]
async fn manifests_of_one_request_are_stored_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("x.db").to_str().unwrap()).await.unwrap();
    store.put_manifest(&record(1)).await.unwrap();
    // The second clashes with the stored one: neither of the pair is kept.
    assert!(store.put_manifests(&[record(2), record(1)]).await.is_err());
    assert_eq!(store.manifest(&record(2).manifest_id).await.unwrap(), None);
    store.put_manifests(&[record(2), record(3)]).await.unwrap();
    assert!(store.manifest(&record(3).manifest_id).await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_paths_with_awkward_characters_and_bad_urls() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("my data %20 #1");
    std::fs::create_dir_all(&odd).unwrap();
    let path = odd.join("likeness.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    store.put_manifest(&record(1)).await.unwrap();
    assert!(path.is_file(), "the file is created at exactly that path");
    let err = Store::open("mysql://user:secret@host/db").await.err().unwrap().to_string();
    assert!(err.contains("mysql") && !err.contains("secret"), "{err}");
}
