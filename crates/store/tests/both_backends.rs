//! The same cases on SQLite and on PostgreSQL. PostgreSQL comes from
//! LIKENESS_TEST_POSTGRES (default postgres://127.0.0.1:5432/test); each run
//! works in a database of its own, dropped at the end.

use likeness_consent::{Actor, Confirmation, ConfirmationRule, ConsentError, Grant, Purpose, Relationship, Subject};
use likeness_store::{
    Backend, Confirmed, DecisionRecord, Feedback, FeedbackChoice, FingerprintRecord, GenerationRecord, Kind,
    ManifestRecord, NotRecorded, ReceiptRecord, Reissued, Revoked, SoftBindingRecord, Store,
};

fn manifest(n: u8) -> ManifestRecord {
    ManifestRecord {
        manifest_id: format!("urn:c2pa:00000000-0000-4000-8000-00000000000{n}"),
        asset_id: format!("{n:032x}"),
        tenant: "dev".into(),
        request_id: format!("req_{n}"),
        created_at_ms: 1_700_000_000_000 + i64::from(n),
        manifest_store: vec![0, 1, 2, 255, n],
        soft_bindings: vec![SoftBindingRecord { alg: "org.likeness.wm.1".into(), value: format!("AAAAAAAAAA{n}=") }],
        // Odd ones with a fingerprint (bytes, any of them), even ones
        // without, as assets signed before fingerprints were kept.
        fingerprint: (n % 2 == 1)
            .then(|| FingerprintRecord { alg: "org.likeness.fp.1".into(), value: vec![1, 0, 255, 3, n] }),
    }
}

async fn cases(store: &Store, url: &str) {
    store.ping().await.unwrap();
    let a = manifest(1);
    store.put_manifest(&a).await.unwrap();
    assert_eq!(store.manifest(&a.manifest_id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.manifest_by_asset(&a.asset_id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.manifest("urn:c2pa:missing").await.unwrap(), None);
    // A manifest id or an asset id is never stored twice.
    assert!(store.put_manifest(&a).await.is_err());
    let mut same_asset = manifest(2);
    same_asset.asset_id = a.asset_id.clone();
    assert!(store.put_manifest(&same_asset).await.is_err());
    soft_binding_cases(store, &a).await;
    consent_cases(store).await;
    confirmation_cases(store).await;
    a_revocation_waits_for_a_recording_in_progress(store, url).await;
    feedback_cases(store).await;
}

/// Feedback on verdicts: stored, listed oldest first from a time, and
/// deleted once older than the retention.
async fn feedback_cases(store: &Store) {
    let piece = |n: i64, choice| Feedback {
        id: format!("fb_{n}"),
        verdict_id: format!("req_{n}"),
        choice,
        comment: format!("comment {n}: \u{e9}t\u{e9} \u{1f600}"),
        received_at_ms: 1_000 * n,
    };
    for (n, choice) in [(1, FeedbackChoice::Correct), (2, FeedbackChoice::Incorrect), (3, FeedbackChoice::Unclear)] {
        store.put_feedback(&piece(n, choice), 0).await.unwrap();
    }
    let all = store.feedback(0, None, 10).await.unwrap();
    assert_eq!(
        all,
        [piece(1, FeedbackChoice::Correct), piece(2, FeedbackChoice::Incorrect), piece(3, FeedbackChoice::Unclear)]
    );
    assert_eq!(store.feedback(2_000, None, 10).await.unwrap().len(), 2);
    assert_eq!(store.feedback(0, None, 1).await.unwrap(), [all[0].clone()]);
    // Pages go on after the last one seen, even at the same time.
    let mut same_time = piece(5, FeedbackChoice::Unclear);
    same_time.received_at_ms = all[1].received_at_ms;
    store.put_feedback(&same_time, 0).await.unwrap();
    let next = store.feedback(0, Some((all[1].received_at_ms, &all[1].id)), 10).await.unwrap();
    let ids: Vec<&str> = next.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["fb_5", "fb_3"]);
    // Storing with a retention boundary deletes what is older.
    store.put_feedback(&piece(4, FeedbackChoice::Correct), 2_500).await.unwrap();
    let kept: Vec<String> = store.feedback(0, None, 10).await.unwrap().into_iter().map(|f| f.id).collect();
    assert_eq!(kept, ["fb_3", "fb_4"]);
    // An id is never stored twice.
    assert!(store.put_feedback(&piece(4, FeedbackChoice::Correct), 0).await.is_err());
}

/// The resolver's lookups: by (alg, value), newest first, bounded; a
/// failed store leaves no binding behind.
async fn soft_binding_cases(store: &Store, a: &ManifestRecord) {
    let b = &a.soft_bindings[0];
    assert_eq!(store.manifests_by_binding(&b.alg, &b.value, 10).await.unwrap(), std::slice::from_ref(&a.manifest_id));
    assert!(store.manifests_by_binding("other.alg", &b.value, 10).await.unwrap().is_empty());
    assert!(store.manifests_by_binding(&b.alg, "AAAAAAAAAAA=", 10).await.unwrap().is_empty());
    // Two assets sharing a payload: both answer, newest first; the limit holds.
    let mut twin = manifest(20);
    twin.soft_bindings = a.soft_bindings.clone();
    store.put_manifest(&twin).await.unwrap();
    // Without a fingerprint (an asset signed before they were kept), it
    // comes back without one.
    assert_eq!(twin.fingerprint, None);
    assert_eq!(store.manifest(&twin.manifest_id).await.unwrap(), Some(twin.clone()));
    assert_eq!(store.fingerprint(&twin.manifest_id).await.unwrap(), None);
    assert_eq!(store.fingerprint(&a.manifest_id).await.unwrap(), a.fingerprint);
    assert_eq!(
        store.manifests_by_binding(&b.alg, &b.value, 10).await.unwrap(),
        [twin.manifest_id.clone(), a.manifest_id.clone()]
    );
    assert_eq!(store.manifests_by_binding(&b.alg, &b.value, 1).await.unwrap(), std::slice::from_ref(&twin.manifest_id));
    // A duplicate manifest id fails whole: its new binding is not kept.
    let mut dup = twin.clone();
    dup.asset_id = format!("{:032x}", 99);
    dup.soft_bindings = vec![SoftBindingRecord { alg: b.alg.clone(), value: "ZHVwbGljYXQ=".into() }];
    assert!(store.put_manifest(&dup).await.is_err());
    assert!(store.manifests_by_binding(&b.alg, "ZHVwbGljYXQ=", 10).await.unwrap().is_empty());
}

fn grant(id: &str, tenant: &str, user: &str) -> Grant {
    Grant {
        id: id.into(),
        tenant: tenant.into(),
        user: user.into(),
        photos: vec!["p1".into(), "p2".into()],
        albums: vec!["trip".into()],
        processors: vec!["studio".into()],
        purpose: Purpose::Generation,
        created_at_ms: 1_000,
        expires_at_ms: Some(9_000_000_000_000),
        revoked_at_ms: None,
    }
}

fn subject(id: &str, user: &str) -> Subject {
    Subject {
        id: id.into(),
        tenant: "dev".into(),
        user: user.into(),
        name: "Ada Lovelace-Byron \u{e9}".into(),
        relationship: Relationship::Family,
        minor: true,
        guardian_consent: true,
        created_at_ms: 2_000,
        expires_at_ms: None,
        deleted_at_ms: None,
        ended_by: None,
        confirmation: None,
        embeddings: vec![vec![0.5, -1.25, f32::MIN_POSITIVE], vec![3.0, 0.0, -0.0]],
    }
}

fn receipt(id: &str, grant: Option<&str>) -> ReceiptRecord {
    ReceiptRecord {
        id: id.into(),
        tenant: "dev".into(),
        request_id: format!("req_{id}"),
        user: "alice".into(),
        grant_id: grant.map(String::from),
        created_at_ms: 3_000,
        body: r#"{"id":"x"}"#.into(),
    }
}

fn decision(receipt: &ReceiptRecord) -> DecisionRecord {
    DecisionRecord {
        id: receipt.request_id.clone(),
        kind: Kind::Generation,
        tenant: receipt.tenant.clone(),
        user: receipt.user.clone(),
        created_at_ms: receipt.created_at_ms,
        action: "label".into(),
        reason: None,
        body: r#"{"policy":"x"}"#.into(),
    }
}

/// Records a generation with its decision record, no review.
async fn record(
    store: &Store,
    receipt: &ReceiptRecord,
    subjects: &[String],
    manifests: &[ManifestRecord],
    check: likeness_store::ConsentCheck<'_>,
) -> Result<Result<(), NotRecorded>, likeness_store::StoreError> {
    let d = decision(receipt);
    let g = GenerationRecord {
        receipt,
        subject_ids: subjects,
        shown_subjects: subjects,
        manifests,
        decision: &d,
        review: None,
    };
    store.record_generation(&g, check).await
}

async fn consent_cases(store: &Store) {
    // Grants: stored whole, scoped by tenant, listed per user.
    let g = grant("g1", "dev", "alice");
    store.put_grant(&g).await.unwrap();
    store.put_grant(&grant("g2", "dev", "alice")).await.unwrap();
    store.put_grant(&grant("g3", "other-app", "alice")).await.unwrap();
    assert_eq!(store.grant("dev", "g1").await.unwrap(), Some(g.clone()));
    assert_eq!(store.grant("other-app", "g1").await.unwrap(), None, "another tenant's grant is invisible");
    let ids: Vec<String> = store.grants_for_user("dev", "alice").await.unwrap().into_iter().map(|g| g.id).collect();
    assert_eq!(ids, ["g1", "g2"]);
    assert!(store.grants_for_user("dev", "bob").await.unwrap().is_empty());

    // Revocation: at once, first time kept, unknown ids said so.
    assert_eq!(store.revoke_grant("dev", "g2", 5_000).await.unwrap(), Revoked::Now);
    assert_eq!(store.revoke_grant("dev", "g2", 6_000).await.unwrap(), Revoked::Already);
    assert_eq!(store.revoke_grant("other-app", "g1", 6_000).await.unwrap(), Revoked::NotFound);
    assert_eq!(store.grant("dev", "g2").await.unwrap().unwrap().revoked_at_ms, Some(5_000));

    // Subjects: embeddings round-trip bit for bit; deletion drops them and the name.
    let s = subject("s1", "alice");
    store.put_subject(&s, None).await.unwrap();
    store.put_subject(&subject("s2", "alice"), None).await.unwrap();
    assert_eq!(store.subject("dev", "s1").await.unwrap(), Some(s.clone()));
    assert_eq!(store.subject("other-app", "s1").await.unwrap(), None);
    let found = store.subjects("dev", &["s2".into(), "nobody".into(), "s1".into()]).await.unwrap();
    assert_eq!(found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s2", "s1"]);
    assert_eq!(store.delete_subject("dev", "s2", 7_000).await.unwrap(), Revoked::Now);
    assert_eq!(store.delete_subject("dev", "s2", 8_000).await.unwrap(), Revoked::Already);
    assert_eq!(store.delete_subject("dev", "nobody", 8_000).await.unwrap(), Revoked::NotFound);
    let gone = store.subject("dev", "s2").await.unwrap().unwrap();
    assert!(gone.embeddings.is_empty() && gone.name.is_empty() && gone.deleted_at_ms == Some(7_000));
    assert_eq!(store.subjects_for_user("dev", "alice").await.unwrap().len(), 2);

    // Recording a generation re-checks consent in the same transaction.
    let ok = |g: Option<&Grant>, s: &[Subject]| -> Result<(), ConsentError> {
        let g = g.unwrap();
        if g.revoked_at_ms.is_some() {
            return Err(ConsentError::GrantRevoked(g.id.clone()));
        }
        if let Some(s) = s.iter().find(|s| s.deleted_at_ms.is_some()) {
            return Err(ConsentError::SubjectRevoked(s.id.clone()));
        }
        Ok(())
    };
    let m = manifest(7);
    let r = receipt("r1", Some("g1"));
    record(store, &r, &["s1".into()], std::slice::from_ref(&m), &ok).await.unwrap().unwrap();
    assert_eq!(store.receipt("dev", "r1").await.unwrap(), Some(r));
    assert_eq!(store.receipt("other-app", "r1").await.unwrap(), None);
    assert!(store.manifest(&m.manifest_id).await.unwrap().is_some());
    for (grant, subjects, expect) in [
        ("g2", vec!["s1".to_string()], ConsentError::GrantRevoked("g2".into())),
        ("g1", vec!["s2".to_string()], ConsentError::SubjectRevoked("s2".into())),
        ("g404", vec![], ConsentError::GrantUnknown("g404".into())),
    ] {
        let m = manifest(8);
        let refused =
            record(store, &receipt("r2", Some(grant)), &subjects, std::slice::from_ref(&m), &ok).await.unwrap();
        assert_eq!(refused, Err(NotRecorded::Consent(expect)));
        assert_eq!(store.manifest(&m.manifest_id).await.unwrap(), None, "nothing stored when consent is gone");
        assert_eq!(store.receipt("dev", "r2").await.unwrap(), None);
    }
}

/// Confirmation by the person: a token works once, before it expires, for
/// its own subject only; withdrawal ends consent and drops the embeddings;
/// every change is in the history; usage lists the generations that
/// showed the subject.
async fn confirmation_cases(store: &Store) {
    let pending = |id: &str| Subject { id: id.into(), minor: false, guardian_consent: false, ..subject(id, "alice") };
    store.put_subject(&pending("c1"), Some(("hash-1", 10_000))).await.unwrap();
    store.put_subject(&pending("c2"), Some(("hash-2", 10_000))).await.unwrap();
    let access = store.subject_access("c1").await.unwrap().unwrap();
    assert_eq!(
        (access.tenant.as_str(), access.confirmation_sha256.as_deref(), access.personal_sha256.as_deref()),
        ("dev", Some("hash-1"), None)
    );
    assert_eq!(store.subject_access("nobody").await.unwrap(), None);
    let person = |at_ms| Confirmation { by: Actor::Person, at_ms, photo: true };
    // Another subject's token, an expired one: nothing changes.
    assert_eq!(store.confirm_subject("c1", "hash-2", person(5_000), "p-1").await.unwrap(), Confirmed::Stale);
    assert_eq!(store.confirm_subject("c1", "hash-1", person(10_000), "p-1").await.unwrap(), Confirmed::Stale);
    assert_eq!(store.confirm_subject("c1", "hash-1", person(5_000), "p-1").await.unwrap(), Confirmed::Now);
    // Used once.
    assert_eq!(store.confirm_subject("c1", "hash-1", person(5_001), "p-2").await.unwrap(), Confirmed::Stale);
    let c1 = store.subject("dev", "c1").await.unwrap().unwrap();
    assert_eq!(c1.confirmation, Some(person(5_000)));
    let access = store.subject_access("c1").await.unwrap().unwrap();
    assert_eq!((access.confirmation_sha256, access.personal_sha256.as_deref()), (None, Some("p-1")));

    // A new token replaces the old; none for a confirmed or unknown subject.
    assert_eq!(store.reissue_confirmation("dev", "c2", "hash-3", 20_000, 6_000).await.unwrap(), Reissued::Now);
    assert_eq!(store.confirm_subject("c2", "hash-2", person(6_500), "p-x").await.unwrap(), Confirmed::Stale);
    assert_eq!(store.reissue_confirmation("dev", "c1", "hash-4", 20_000, 6_000).await.unwrap(), Reissued::Ended);
    assert_eq!(store.reissue_confirmation("other-app", "c2", "h", 20_000, 6_000).await.unwrap(), Reissued::NotFound);

    // Usage: the generations whose references showed the subject, with outputs.
    let allowed = |_: Option<&Grant>, _: &[Subject]| Ok(());
    let mut m = manifest(11);
    m.request_id = "req_r-c1".into();
    record(store, &receipt("r-c1", None), &["c1".into()], std::slice::from_ref(&m), &allowed).await.unwrap().unwrap();
    let uses = store.subject_usage("c1", 10).await.unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!((uses[0].request_id.as_str(), uses[0].receipt_id.as_str()), ("req_r-c1", "r-c1"));
    assert_eq!(uses[0].outputs, [(m.asset_id.clone(), m.manifest_id.clone())]);
    assert!(store.subject_usage("c2", 10).await.unwrap().is_empty(), "another subject's usage is its own");

    // Withdrawal by the person: embeddings gone, consent refused, the token dead.
    assert_eq!(store.withdraw_subject("c1", Actor::Person, 7_000).await.unwrap(), Revoked::Now);
    assert_eq!(store.withdraw_subject("c1", Actor::Person, 8_000).await.unwrap(), Revoked::Already);
    let c1 = store.subject("dev", "c1").await.unwrap().unwrap();
    assert!(c1.withdrawn() && c1.embeddings.is_empty() && c1.name.is_empty());
    assert_eq!(
        likeness_consent::check_subjects(&["c1".into()], &[c1], "alice", 7_500, ConfirmationRule::Optional),
        Err(ConsentError::SubjectWithdrawn("c1".into()))
    );
    assert_eq!(store.confirm_subject("c2", "hash-3", person(7_000), "p-3").await.unwrap(), Confirmed::Now);
    assert_eq!(store.delete_subject("dev", "c2", 7_100).await.unwrap(), Revoked::Now);
    assert!(!store.subject("dev", "c2").await.unwrap().unwrap().withdrawn(), "deleted by the user, not withdrawn");
    let history = |id: &'static str| async move {
        let events = store.subject_events(id).await.unwrap();
        events.into_iter().map(|e| format!("{}:{}:{}", e.event, e.by.as_str(), e.at_ms)).collect::<Vec<_>>()
    };
    assert_eq!(history("c1").await, ["created:user:2000", "confirmed:person:5000", "withdrawn:person:7000"]);
    assert_eq!(
        history("c2").await,
        ["created:user:2000", "confirmation_issued:user:6000", "confirmed:person:7000", "deleted:user:7100"]
    );
    // A self subject is the user's own word, confirmed at creation.
    let me = Subject {
        relationship: Relationship::Myself,
        confirmation: Subject::initial_confirmation(Relationship::Myself, 2_000),
        ..pending("c3")
    };
    store.put_subject(&me, None).await.unwrap();
    assert_eq!(store.subject("dev", "c3").await.unwrap(), Some(me));
    assert_eq!(history("c3").await, ["created:user:2000", "confirmed:user:2000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("likeness.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    cases(&store, path.to_str().unwrap()).await;
    drop(store);
    // Reopening keeps the data and does not re-run migrations.
    let store = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    store.ping().await.unwrap();
    assert!(store.manifest(&manifest(1).manifest_id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let db = likeness_store::testing::TempDatabase::for_tests().await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    cases(&store, &db.url).await;
    // Two stores opening at once (two replicas) migrate once, without error.
    let (a, b) = tokio::join!(Store::open(&db.url), Store::open(&db.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.manifest(&manifest(1).manifest_id).await.unwrap().is_some());
    for s in [store, a, b] {
        s.close().await;
    }
}

/// A revocation that arrives while a generation is being recorded either
/// lands before the re-check (and stops the recording) or waits until the
/// recording committed: it never slips in between check and commit.
///
/// The check stops at a barrier. While it is held, another connection tries
/// to write the grant without waiting, and must find it locked: that is what
/// makes the revocation wait, and the test fails if the recording does not
/// hold the lock (no `BEGIN IMMEDIATE` on SQLite, no `FOR SHARE` on
/// PostgreSQL). Then the revocation is sent and the check let go.
async fn a_revocation_waits_for_a_recording_in_progress(store: &Store, url: &str) {
    store.put_grant(&grant("g-race", "dev", "alice")).await.unwrap();
    let (in_check, checking) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let check = move |g: Option<&Grant>, _: &[Subject]| -> Result<(), ConsentError> {
        let g = g.unwrap();
        if g.revoked_at_ms.is_some() {
            return Err(ConsentError::GrantRevoked(g.id.clone()));
        }
        // Consent holds now; wait here while the test tries to slip in.
        in_check.send(()).unwrap();
        released.lock().unwrap().recv().unwrap();
        Ok(())
    };
    let m = manifest(9);
    let recording = {
        let (store, m) = (store.clone(), m.clone());
        tokio::spawn(async move { record(&store, &receipt("r-race", Some("g-race")), &[], &[m], &check).await })
    };
    tokio::task::spawn_blocking(move || checking.recv().unwrap()).await.unwrap();
    assert_grant_locked(store.backend(), url, "g-race");
    let revocation = {
        let store = store.clone();
        tokio::spawn(async move { store.revoke_grant("dev", "g-race", 10_000).await })
    };
    // While the check holds, the revocation waits. (Comparing completion
    // times after the fact cannot tell: both answers arrive together when
    // the recording commits, and the tasks may be polled in either order.)
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!revocation.is_finished(), "the revocation completed while a recording was checking the grant");
    release.send(()).unwrap();
    let recorded = recording.await.unwrap();
    let revoked = revocation.await.unwrap();
    assert_eq!(recorded.unwrap(), Ok(()));
    assert_eq!(revoked.unwrap(), Revoked::Now);
    assert!(store.manifest(&m.manifest_id).await.unwrap().is_some());
    // And the next recording sees the revocation.
    let revoked_only = |g: Option<&Grant>, _: &[Subject]| match g {
        Some(g) if g.revoked_at_ms.is_some() => Err(ConsentError::GrantRevoked(g.id.clone())),
        _ => Ok(()),
    };
    let next = record(store, &receipt("r-race-2", Some("g-race")), &[], &[manifest(10)], &revoked_only).await;
    assert_eq!(next.unwrap(), Err(NotRecorded::Consent(ConsentError::GrantRevoked("g-race".into()))));
}

/// From a connection of its own, tries to take the grant for writing
/// without waiting, and asserts it cannot. On a thread and runtime of its
/// own: the check it probes holds one of the test runtime's workers.
fn assert_grant_locked(backend: Backend, url: &str, grant: &str) {
    let (url, grant) = (url.to_string(), grant.to_string());
    let text = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(try_to_write_grant(backend, &url, &grant))
    })
    .join()
    .unwrap()
    .expect("the grant could be written while a recording was checking it: a revocation could slip in");
    assert!(text.contains("lock"), "not a lock conflict: {text}");
}

/// The error that writing the grant without waiting met, if any.
async fn try_to_write_grant(backend: Backend, url: &str, grant: &str) -> Option<String> {
    use sqlx::Connection as _;
    let err = match backend {
        Backend::Sqlite => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(url).busy_timeout(std::time::Duration::ZERO);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.err()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT id FROM grants WHERE id = $1 FOR UPDATE NOWAIT")
                .bind(grant)
                .fetch_optional(&mut *tx)
                .await
                .err()
        }
    };
    err.map(|e| e.to_string())
}

#[tokio::test]
async fn manifests_of_one_request_are_stored_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("x.db").to_str().unwrap()).await.unwrap();
    store.put_manifest(&manifest(1)).await.unwrap();
    let allowed = |_: Option<&Grant>, _: &[Subject]| Ok(());
    // The second clashes with the stored one: neither of the pair is kept,
    // nor the receipt.
    assert!(record(&store, &receipt("r-a", None), &[], &[manifest(2), manifest(1)], &allowed).await.is_err());
    assert_eq!(store.manifest(&manifest(2).manifest_id).await.unwrap(), None);
    assert_eq!(store.receipt("dev", "r-a").await.unwrap(), None);
    record(&store, &receipt("r-b", None), &[], &[manifest(2), manifest(3)], &allowed).await.unwrap().unwrap();
    assert!(store.decision("req_r-a").await.unwrap().is_none(), "a failed recording logs no decision");
    assert!(store.decision("req_r-b").await.unwrap().is_some());
    assert!(store.manifest(&manifest(3).manifest_id).await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_paths_with_awkward_characters_and_bad_urls() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("my data %20 #1");
    std::fs::create_dir_all(&odd).unwrap();
    let path = odd.join("likeness.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    store.put_manifest(&manifest(1)).await.unwrap();
    assert!(path.is_file(), "the file is created at exactly that path");
    let err = Store::open("mysql://user:secret@host/db").await.err().unwrap().to_string();
    assert!(err.contains("mysql") && !err.contains("secret"), "{err}");
}

/// What a deleted subject leaves in the SQLite files: nothing. The files are
/// the owner's only; embeddings are sealed at rest, and deletion zeroes the
/// rows (secure_delete) and empties the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private_and_deleted_subjects_leave_no_trace() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("likeness.db");
    let store = Store::open(path.to_str().unwrap())
        .await
        .unwrap()
        .with_embedding_key(likeness_store::EmbeddingKey::new(&[9; 32]));
    let name = "Zebulon Quaxley-Marchetti";
    let embedding: Vec<f32> = (0..128).map(|i| i as f32 * 0.0078125 + 0.25).collect();
    let clear: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
    let s = Subject { name: name.into(), embeddings: vec![embedding.clone()], ..subject("s-trace", "alice") };
    store.put_subject(&s, None).await.unwrap();
    assert_eq!(store.subject("dev", "s-trace").await.unwrap().unwrap().embeddings, [embedding]);
    let files = || -> Vec<u8> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("likeness.db"))
            .flat_map(|e| std::fs::read(e.path()).unwrap())
            .collect()
    };
    let holds = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let before = files();
    assert!(holds(&before, name.as_bytes()), "the name is stored while the subject lives");
    assert!(!holds(&before, &clear[..64]), "an embedding in clear");
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?} is {mode:o}", e.file_name());
    }
    // Another key cannot read them.
    let other = Store::open(path.to_str().unwrap())
        .await
        .unwrap()
        .with_embedding_key(likeness_store::EmbeddingKey::new(&[1; 32]));
    let err = other.subject("dev", "s-trace").await.unwrap_err().to_string();
    assert!(err.contains("does not open with the configured key"), "{err}");
    other.close().await;

    let sealed: Vec<u8> = {
        use sqlx::{Connection as _, Row as _};
        let mut conn = sqlx::SqliteConnection::connect(path.to_str().unwrap()).await.unwrap();
        let row = sqlx::query("SELECT vector FROM subject_embeddings WHERE subject_id = 's-trace'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        row.get(0)
    };
    assert!(sealed.starts_with(b"LKE1") && holds(&before, &sealed[16..48]));

    assert_eq!(store.delete_subject("dev", "s-trace", 9_000).await.unwrap(), Revoked::Now);
    let after = files();
    assert!(!holds(&after, name.as_bytes()), "the deleted name is still in the files");
    assert!(!holds(&after, &sealed[16..48]), "the deleted embedding is still in the files");
}
