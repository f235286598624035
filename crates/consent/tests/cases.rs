//! Data-driven consent cases: `tests/cases/*.json` hold the inputs and the
//! expected answers; this file only runs them.

use likeness_consent::*;
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn grant_cases() {
    let file = load("grants.json");
    let g = &file["grant"];
    for case in file["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let grant = Grant {
            id: g["id"].as_str().unwrap().into(),
            tenant: "t".into(),
            user: g["user"].as_str().unwrap().into(),
            photos: strings(&g["photos"]),
            albums: strings(&g["albums"]),
            processors: g["processors"].as_array().map(|_| strings(&g["processors"])).unwrap_or_default(),
            purpose: Purpose::parse(g["purpose"].as_str().unwrap()).unwrap(),
            created_at_ms: g["created_at_ms"].as_i64().unwrap(),
            expires_at_ms: g["expires_at_ms"].as_i64(),
            revoked_at_ms: case["revoked_at_ms"].as_i64(),
        };
        let refs: Vec<ReferenceSource> = case["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| match r.as_str() {
                Some("upload") => ReferenceSource::Upload,
                _ => ReferenceSource::Library {
                    media_item_id: r["library"].as_str().unwrap().into(),
                    album_id: r["album"].as_str().map(String::from),
                },
            })
            .collect();
        let grant = if case["no_grant"] == true { None } else { Some(&grant) };
        let processor = case["processor"].as_str().unwrap_or(BUILTIN);
        let got =
            check_references(grant, case["user"].as_str().unwrap(), case["now"].as_i64().unwrap(), &refs, processor);
        match (&case["expect"], &case["error"]) {
            (Value::Array(expect), _) => {
                let got = got.unwrap_or_else(|e| panic!("{name}: refused: {e}"));
                let how: Vec<Value> = got
                    .iter()
                    .map(|c| match c.covered_by {
                        Some(coverage) => serde_json::to_value(coverage).unwrap(),
                        None => serde_json::to_value(c.source).unwrap(),
                    })
                    .collect();
                assert_eq!(&how, expect, "{name}");
                assert!(got.iter().enumerate().all(|(i, c)| c.reference == i + 1), "{name}");
            }
            (_, Value::String(error)) => {
                let e = got.err().unwrap_or_else(|| panic!("{name}: allowed"));
                assert_eq!(e.code().as_str(), error, "{name}: {e}");
                if let Some(m) = case["mentions"].as_str() {
                    assert!(e.to_string().contains(m), "{name}: {e}");
                }
            }
            _ => panic!("{name}: a case needs expect or error"),
        }
    }
}

#[test]
fn face_cases() {
    let file = load("faces.json");
    let subjects: Vec<Subject> = file["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Subject {
            id: s["id"].as_str().unwrap().into(),
            tenant: "t".into(),
            user: "alice".into(),
            name: "n".into(),
            relationship: Relationship::Family,
            minor: s["minor"].as_bool().unwrap(),
            guardian_consent: s["guardian_consent"].as_bool().unwrap(),
            created_at_ms: 0,
            expires_at_ms: None,
            deleted_at_ms: None,
            ended_by: None,
            confirmation: None,
            embeddings: serde_json::from_value(s["embeddings"].clone()).unwrap(),
        })
        .collect();
    for case in file["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let declared: Vec<Subject> = match case.get("declared") {
            Some(ids) => subjects.iter().filter(|s| strings(ids).contains(&s.id)).cloned().collect(),
            None => subjects.clone(),
        };
        let mut faces = Vec::new();
        for f in case["faces"].as_array().unwrap() {
            let embedding: Vec<f32> = serde_json::from_value(f["embedding"].clone()).unwrap();
            let public_figure =
                f.get("public_figure").map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap() as f32));
            let p_minor = f["p_minor"].as_f64().unwrap() as f32;
            let facts = FaceFacts { embedding: &embedding, p_minor, public_figure };
            faces.push((label_face(&facts, &declared, 0.55), p_minor));
        }
        let labels: Vec<String> = faces
            .iter()
            .map(|(l, _)| match l {
                FaceLabel::ConsentingSubject { subject, .. } => format!("consenting_subject:{subject}"),
                FaceLabel::PublicFigure { .. } => "public_figure".into(),
                FaceLabel::Unknown => "unknown".into(),
            })
            .collect();
        assert_eq!(labels, strings(&case["labels"]), "{name}");
    }
}

#[test]
fn new_records_are_validated() {
    let grant = Grant {
        id: "g".into(),
        tenant: "t".into(),
        user: "alice".into(),
        photos: vec!["p".into()],
        albums: vec![],
        processors: vec![],
        purpose: Purpose::Generation,
        created_at_ms: 0,
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    assert!(validate_grant(&grant, 10).is_ok());
    let bad = |g: Grant| validate_grant(&g, 10).unwrap_err().field;
    assert_eq!(bad(Grant { photos: vec![], ..grant.clone() }), "photos");
    assert_eq!(bad(Grant { photos: vec!["".into()], ..grant.clone() }), "photos");
    assert_eq!(bad(Grant { albums: vec!["a\nb".into()], ..grant.clone() }), "albums");
    assert_eq!(bad(Grant { user: " ".into(), ..grant.clone() }), "user");
    assert_eq!(bad(Grant { expires_at_ms: Some(10), ..grant.clone() }), "expires_at");
    assert_eq!(bad(Grant { photos: vec!["p".into(); MAX_GRANT_ITEMS + 1], ..grant.clone() }), "photos");

    let subject = Subject {
        id: "s".into(),
        tenant: "t".into(),
        user: "alice".into(),
        name: "Sam".into(),
        relationship: Relationship::Myself,
        minor: false,
        guardian_consent: false,
        created_at_ms: 0,
        expires_at_ms: None,
        deleted_at_ms: None,
        ended_by: None,
        confirmation: None,
        embeddings: vec![],
    };
    assert!(validate_subject(&subject, 10).is_ok());
    let bad = |s: Subject| validate_subject(&s, 10).unwrap_err().field;
    assert_eq!(bad(Subject { minor: true, ..subject.clone() }), "guardian_consent");
    assert_eq!(bad(Subject { name: "".into(), ..subject.clone() }), "name");
    assert_eq!(bad(Subject { expires_at_ms: Some(5), ..subject.clone() }), "expires_at");
    assert!(validate_subject(&Subject { minor: true, guardian_consent: true, ..subject.clone() }, 10).is_ok());
}

#[test]
fn declared_subjects_are_checked() {
    let confirmed = Some(Confirmation { by: Actor::Person, at_ms: 1, photo: false });
    let s = |id: &str, user: &str, expires: Option<i64>, deleted: Option<(i64, Actor)>| Subject {
        id: id.into(),
        tenant: "t".into(),
        user: user.into(),
        name: "n".into(),
        relationship: Relationship::Friend,
        minor: false,
        guardian_consent: false,
        created_at_ms: 0,
        expires_at_ms: expires,
        deleted_at_ms: deleted.map(|d| d.0),
        ended_by: deleted.map(|d| d.1),
        confirmation: confirmed,
        embeddings: vec![],
    };
    let found = vec![
        s("ok", "alice", None, None),
        s("old", "alice", Some(5), None),
        s("gone", "alice", None, Some((3, Actor::User))),
        s("left", "alice", Some(5), Some((3, Actor::Person))),
        s("kid-left", "alice", None, Some((3, Actor::Guardian))),
        s("bobs", "bob", None, None),
        Subject { confirmation: None, ..s("pending", "alice", None, None) },
        Subject {
            relationship: Relationship::Myself,
            confirmation: Subject::initial_confirmation(Relationship::Myself, 0),
            ..s("me", "alice", None, None)
        },
    ];
    let check = |ids: &[&str], rule| {
        check_subjects(&ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(), &found, "alice", 10, rule)
    };
    use ConfirmationRule::{Optional, Required};
    for rule in [Required, Optional] {
        assert_eq!(check(&["ok", "me"], rule), Ok(()));
        assert_eq!(check(&[], rule), Ok(()));
        assert_eq!(check(&["ok", "nobody"], rule), Err(ConsentError::SubjectUnknown("nobody".into())));
        assert_eq!(check(&["old"], rule), Err(ConsentError::SubjectExpired("old".into())));
        assert_eq!(check(&["gone"], rule), Err(ConsentError::SubjectRevoked("gone".into())));
        // The person's withdrawal is named as such, before any other reason.
        assert_eq!(check(&["left"], rule), Err(ConsentError::SubjectWithdrawn("left".into())));
        assert_eq!(check(&["kid-left"], rule), Err(ConsentError::SubjectWithdrawn("kid-left".into())));
        assert_eq!(check(&["bobs"], rule), Err(ConsentError::SubjectOtherUser("bobs".into())));
    }
    assert_eq!(check(&["pending"], Required), Err(ConsentError::SubjectUnconfirmed("pending".into())));
    assert_eq!(check(&["pending"], Optional), Ok(()));
    assert_eq!(
        ConsentError::SubjectUnconfirmed("x".into()).code().as_str(),
        "consent.subject_unconfirmed",
        "the stable code"
    );
    assert_eq!(ConsentError::SubjectWithdrawn("x".into()).code().as_str(), "consent.subject_withdrawn");
}

#[test]
fn a_receipt_says_who_confirmed_and_when() {
    let mut subject = Subject {
        id: "sub_1".into(),
        tenant: "t".into(),
        user: "alice".into(),
        name: "Sam".into(),
        relationship: Relationship::Family,
        minor: true,
        guardian_consent: true,
        created_at_ms: 0,
        expires_at_ms: None,
        deleted_at_ms: None,
        ended_by: None,
        confirmation: None,
        embeddings: vec![],
    };
    assert_eq!(SubjectConfirmation::of(&subject), None);
    subject.confirmation = Some(Confirmation { by: Actor::Guardian, at_ms: 1_795_000_000_000, photo: true });
    assert_eq!(
        serde_json::to_value(SubjectConfirmation::of(&subject).unwrap()).unwrap(),
        serde_json::json!({
            "subject": "sub_1", "confirmed_by": "guardian", "confirmed_at": "2026-11-18T11:06:40Z", "with_photo": true
        })
    );
}
