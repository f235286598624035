//! The decision log and the review queue, on SQLite and on PostgreSQL: the
//! chain verifies, an edit or a removal is found at the record it touched,
//! checkpoints are signed, two stores appending at once make one chain,
//! and an approved review is spent once.

use std::sync::Arc;

use likeness_store::*;
use sha2::{Digest, Sha256};

/// A stand-in signer for the store's own tests (the gateway signs with
/// Ed25519; `likeness audit verify` checks that end to end): the
/// "signature" is SHA-256 of the key and the message.
struct TestSigner;

impl CheckpointSigner for TestSigner {
    fn public_key(&self) -> String {
        "test-key".into()
    }
    fn sign(&self, message: &[u8]) -> String {
        hex::encode(Sha256::new().chain_update(b"test-key").chain_update(message).finalize())
    }
}

fn signature_ok(key: &str, message: &[u8], signature: &str) -> bool {
    key == "test-key" && TestSigner.sign(message) == signature
}

fn settings() -> AuditSettings {
    AuditSettings { signer: Arc::new(TestSigner), every_records: 3, every_ms: i64::MAX }
}

fn refusal(id: &str, user: &str, reason: &str, at: i64) -> DecisionRecord {
    DecisionRecord {
        id: id.into(),
        kind: Kind::Generation,
        tenant: "dev".into(),
        user: user.into(),
        created_at_ms: at,
        action: "block".into(),
        reason: Some(reason.into()),
        body: format!(r#"{{"request":"{id}"}}"#),
    }
}

async fn exec(url: &str, backend: Backend, sql: &str) {
    use sqlx::Connection as _;
    match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(url);
            let mut c = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
}

async fn cases(url: &str) {
    let store = Store::open(url).await.unwrap().with_audit(settings());
    let backend = store.backend();
    let empty = store.verify_chain(&signature_ok).await.unwrap();
    assert_eq!((empty.records, empty.broken), (0, None));
    for (i, reason) in
        ["vision.public_figure", "vision.public_figure", "vision.nsfw", "consent.unknown_person"].iter().enumerate()
    {
        store.append_decision(&refusal(&format!("req_{i}"), "alice", reason, 10_000 + i as i64)).await.unwrap();
    }
    store.append_decision(&refusal("req_old", "alice", "vision.nsfw", 10)).await.unwrap();
    store.append_decision(&refusal("req_bob", "bob", "vision.nsfw", 10_000)).await.unwrap();
    let report = store.verify_chain(&signature_ok).await.unwrap();
    assert_eq!((report.records, report.checkpoints, report.broken), (6, 2, None));
    // The policy's history: alice's refusals since 5 s, by reason.
    let history = store.refusals_since("dev", "alice", 5_000).await.unwrap();
    assert_eq!(history.get("vision.public_figure"), Some(&2));
    assert_eq!(history.get("vision.nsfw"), Some(&1), "the old one is outside the window");
    assert_eq!(store.refusals_since("other", "alice", 0).await.unwrap().len(), 0);
    // Pages in chain order.
    let page = store.decisions_since(0, 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(store.decision("req_bob").await.unwrap().unwrap().seq, 6);
    // A record id is unique.
    assert!(store.append_decision(&refusal("req_bob", "bob", "x.y", 1)).await.is_err());

    review_cases(&store).await;

    // One edited record: the chain breaks exactly there.
    exec(url, backend, "UPDATE decisions SET body = '{\"request\":\"forged\"}' WHERE seq = 3").await;
    let broken = store.verify_chain(&signature_ok).await.unwrap().broken.expect("the edit is found");
    assert_eq!((broken.seq, broken.id.as_str()), (3, "req_2"));
    assert!(broken.what.contains("changed"), "{}", broken.what);
    exec(url, backend, "UPDATE decisions SET body = '{\"request\":\"req_2\"}' WHERE seq = 3").await;
    assert_eq!(store.verify_chain(&signature_ok).await.unwrap().broken, None);
    // A forged checkpoint signature.
    exec(url, backend, "UPDATE audit_checkpoints SET signature = 'ff' WHERE seq = 3").await;
    let broken = store.verify_chain(&signature_ok).await.unwrap().broken.expect("the bad signature is found");
    assert_eq!(broken.seq, 3);
    // The last record removed: the head no longer matches.
    let last = store.decisions_since(0, 0, 1000).await.unwrap().last().unwrap().clone();
    exec(url, backend, &format!("DELETE FROM decisions WHERE seq = {}", last.seq)).await;
    exec(url, backend, "UPDATE audit_checkpoints SET signature = 'x' WHERE seq = 3").await;
    let broken = store.verify_chain(&|_, _, _| true).await.unwrap().broken.expect("the removal is found");
    assert!(broken.what.contains("removed"), "{}", broken.what);
    store.close().await;
}

async fn review_cases(store: &Store) {
    let review = Review {
        id: "rev_1".into(),
        tenant: "dev".into(),
        user: "alice".into(),
        request_id: "req_r".into(),
        fingerprint: "f1".into(),
        status: ReviewStatus::Pending,
        created_at_ms: 20_000,
        summary: "{}".into(),
        reviewer: None,
        note: None,
        resolved_at_ms: None,
        used_at_ms: None,
        used_by: None,
    };
    store.put_review(&review).await.unwrap();
    assert_eq!(store.reviews("dev", ReviewStatus::Pending, 10).await.unwrap(), std::slice::from_ref(&review));
    assert_eq!(store.reviews("other", ReviewStatus::Pending, 10).await.unwrap(), []);
    let log = DecisionRecord {
        id: "rev_1:approve".into(),
        kind: Kind::ReviewResolution,
        action: "allow".into(),
        reason: None,
        ..refusal("x", "alice", "x.y", 21_000)
    };
    let word = |approve: bool, reviewer: &str, at_ms: i64| Resolution {
        approve,
        reviewer: reviewer.into(),
        note: String::new(),
        at_ms,
    };
    let Resolved::Now(done) = store.resolve_review("dev", "rev_1", &word(true, "ana", 21_000), &log).await.unwrap()
    else {
        panic!("not resolved")
    };
    assert_eq!((done.status, done.reviewer.as_deref()), (ReviewStatus::Approved, Some("ana")));
    assert!(matches!(
        store.resolve_review("dev", "rev_1", &word(false, "bo", 22_000), &log).await.unwrap(),
        Resolved::Already(r) if r.status == ReviewStatus::Approved
    ));
    assert_eq!(store.resolve_review("other", "rev_1", &word(true, "x", 1), &log).await.unwrap(), Resolved::NotFound);
    assert_eq!(store.decision("rev_1:approve").await.unwrap().unwrap().record.kind, Kind::ReviewResolution);
    // Spent once, by the recording of the request that uses it.
    let allowed = |_: Option<&likeness_consent::Grant>, _: &[likeness_consent::Subject]| Ok(());
    let spend = |n: u8| {
        let receipt = ReceiptRecord {
            id: format!("rcpt_{n}"),
            tenant: "dev".into(),
            request_id: format!("req_spend_{n}"),
            user: "alice".into(),
            grant_id: None,
            created_at_ms: 23_000,
            body: "{}".into(),
        };
        let decision = DecisionRecord {
            id: receipt.request_id.clone(),
            action: "allow".into(),
            reason: None,
            ..refusal("x", "alice", "x", 23_000)
        };
        (receipt, decision)
    };
    let (r1, d1) = spend(1);
    let g = GenerationRecord {
        receipt: &r1,
        subject_ids: &[],
        shown_subjects: &[],
        manifests: &[],
        decision: &d1,
        review: Some("rev_1"),
    };
    assert_eq!(store.record_generation(&g, &allowed).await.unwrap(), Ok(()));
    let (r2, d2) = spend(2);
    let g = GenerationRecord {
        receipt: &r2,
        subject_ids: &[],
        shown_subjects: &[],
        manifests: &[],
        decision: &d2,
        review: Some("rev_1"),
    };
    assert_eq!(store.record_generation(&g, &allowed).await.unwrap(), Err(NotRecorded::ReviewSpent));
    assert!(store.decision("req_spend_2").await.unwrap().is_none());
    let used = store.review("dev", "rev_1").await.unwrap().unwrap();
    assert_eq!(used.used_by.as_deref(), Some("req_spend_1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    cases(dir.path().join("log.db").to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let db = likeness_store::testing::TempDatabase::for_tests().await;
    cases(&db.url).await;
}

/// Two stores (two replicas' pools) appending at once make one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_append_to_one_chain() {
    let db = likeness_store::testing::TempDatabase::for_tests().await;
    let a = Store::open(&db.url).await.unwrap().with_audit(settings());
    let b = Store::open(&db.url).await.unwrap().with_audit(settings());
    let mut tasks = Vec::new();
    for (name, store) in [("a", a.clone()), ("b", b.clone())] {
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                store.append_decision(&refusal(&format!("req_{name}_{i}"), name, "x.y", i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = a.verify_chain(&signature_ok).await.unwrap();
    assert_eq!((report.records, report.broken), (80, None));
    let seqs: Vec<i64> = a.decisions_since(i64::MIN, 0, 1000).await.unwrap().iter().map(|d| d.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
    for s in [a, b] {
        s.close().await;
    }
}
