//! The pipeline on its own, without ONNX Runtime: the fake vision models of
//! `likeness-testkit` report faces by image size, and everything else is
//! real (the built-in generator, the watermark, C2PA signing).

use std::sync::Arc;

use likeness_codes::ErrorCode;
use likeness_consent::{Relationship, Subject};
use likeness_generators::Builtin;
use likeness_media::{MediaType, OutputFormat};
use likeness_pipeline::{Action, GenerationRequest, PipelineError, ReferenceInput, RequestConsent, RequestContext};
use likeness_testkit::{person, pipeline, png, FailingGenerator, FakeFace, FakeVision};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn request(references: Vec<ReferenceInput>) -> GenerationRequest {
    GenerationRequest {
        request_id: "req_test".into(),
        user: "u".into(),
        prompt: "a lake".into(),
        style: None,
        references,
        count: 1,
        width: 256,
        height: 256,
        output: OutputFormat::Jpeg { quality: 90 },
        seed: Some(1),
    }
}

fn consent(subjects: Vec<Subject>) -> RequestConsent {
    RequestConsent { receipt_id: "rcpt_test".into(), grant_id: None, references: vec![], subjects }
}

fn upload(bytes: Vec<u8>) -> ReferenceInput {
    ReferenceInput { bytes, declared: Some(MediaType::Png) }
}

fn subject(id: &str, person_n: usize, minor: bool) -> Subject {
    Subject {
        id: id.into(),
        tenant: "t".into(),
        user: "u".into(),
        name: "n".into(),
        relationship: Relationship::Friend,
        minor,
        guardian_consent: minor,
        created_at_ms: 0,
        expires_at_ms: None,
        deleted_at_ms: None,
        ended_by: None,
        confirmation: None,
        embeddings: vec![person(person_n).to_vec()],
    }
}

fn faces(v: &Value) -> Vec<FakeFace> {
    v.as_array()
        .map(|faces| {
            faces
                .iter()
                .map(|f| FakeFace {
                    person: f["person"].as_u64().unwrap() as usize,
                    p_minor: f["p_minor"].as_f64().unwrap_or(0.01) as f32,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn moderation_cases() {
    let file = load("moderation.json");
    for case in file["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // Each reference has a size of its own; outputs are 256x256.
        let mut vision = FakeVision::new();
        let mut references = Vec::new();
        for (i, r) in case["references"].as_array().unwrap().iter().enumerate() {
            let (w, h) = (40 + i as u32, 32);
            vision = vision.shows(w, h, &faces(&r["faces"]), r["nsfw"].as_f64().unwrap_or(0.0) as f32);
            references.push(upload(png(w, h)));
        }
        let out = &case["outputs"];
        vision = vision.shows(256, 256, &faces(&out["faces"]), out["nsfw"].as_f64().unwrap_or(0.0) as f32);
        let subjects: Vec<Subject> = case["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| subject(s["id"].as_str().unwrap(), s["person"].as_u64().unwrap() as usize, s["minor"] == true))
            .collect();
        let result = pipeline(Ok(vision), Arc::new(Builtin)).run(
            request(references),
            consent(subjects),
            RequestContext::default(),
        );
        let (decision, images) = match (case["expect"].as_str().unwrap(), result) {
            ("allow", Ok(outcome)) => {
                // The default policy labels everything that goes out.
                assert_eq!(outcome.decision.action, Action::Label, "{name}");
                assert_eq!(outcome.decision.labels, ["ai_generated"], "{name}");
                assert_eq!(outcome.assets.len(), 1, "{name}");
                let d = serde_json::to_value(&outcome.decision).unwrap();
                assert_eq!(d["consent"]["id"], "rcpt_test", "{name}");
                (d, outcome.decision.images.len())
            }
            (code, Err(PipelineError::Refused { reason, decision, .. })) => {
                assert_eq!(reason.as_str(), code, "{name}");
                assert_eq!(decision.action, Action::Block, "{name}");
                assert_eq!(decision.reasons, [code], "{name}");
                let d = serde_json::to_value(&*decision).unwrap();
                assert!(d["consent"].get("id").is_none(), "{name}: a refusal names no receipt");
                (d, decision.images.len())
            }
            (expect, other) => panic!("{name}: expected {expect}, got {:?}", other.map(|o| o.decision)),
        };
        if let Some(n) = case["images"].as_u64() {
            assert_eq!(images as u64, n, "{name}: images checked");
        }
        if let Some(nsfw) = case.get("serialised_nsfw") {
            assert_eq!(&decision["images"][0]["nsfw"], nsfw, "{name}: scores are rounded when serialised");
        }
        if let Some(subjects) = case.get("receipt_subjects") {
            assert_eq!(&decision["consent"]["subjects"], subjects, "{name}");
        }
    }
}

#[test]
fn request_limits() {
    let p = pipeline(Ok(FakeVision::new()), Arc::new(Builtin));
    for case in load("limits.json")["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut req = request(vec![]);
        if let Some(u) = case["user"].as_str() {
            req.user = u.into();
        }
        if let Some(n) = case["user_len"].as_u64() {
            req.user = "u".repeat(n as usize);
        }
        if let Some(p) = case["prompt"].as_str() {
            req.prompt = p.into();
        }
        if let Some(n) = case["prompt_len"].as_u64() {
            req.prompt = "é".repeat(n as usize);
        }
        req.count = case["n"].as_u64().map_or(req.count, |n| n as u32);
        req.width = case["width"].as_u64().map_or(req.width, |n| n as u32);
        req.height = case["height"].as_u64().map_or(req.height, |n| n as u32);
        req.style = case["style"].as_str().map(String::from);
        let references = case["references"].as_u64().unwrap_or(0) as usize;
        let req = req.with_references(vec![(); references]);
        match (case["expect"].as_str().unwrap(), p.validate(&req)) {
            ("ok", Ok(style)) => {
                if let Some(s) = case["style_is"].as_str() {
                    assert_eq!(style.to_string(), s, "{name}");
                }
            }
            (code, Err(e)) => assert_eq!(e.code().as_str(), code, "{name}: {e}"),
            (expect, Ok(_)) => panic!("{name}: expected {expect}, it passed"),
        }
    }
}

#[test]
fn outputs_are_marked_with_their_asset_id_and_signed() {
    let p = pipeline(Ok(FakeVision::new()), Arc::new(Builtin));
    let mut req = request(vec![upload(png(64, 48))]);
    req.count = 2;
    let outcome = p.run(req, consent(vec![]), RequestContext::default()).unwrap();
    assert_eq!(outcome.assets.len(), 2);
    let (_, _) = likeness_testkit::signer();
    let verifier = likeness_provenance::Verifier::new(None).unwrap();
    let key = likeness_watermark::Key::new(likeness_testkit::WATERMARK_KEY);
    for asset in &outcome.assets {
        let v = verifier.verify_bytes(asset.bytes()).unwrap();
        assert_eq!(v.state, likeness_provenance::TrustState::Valid, "{:?}", v.failures);
        assert_eq!(
            v.soft_bindings,
            [likeness_pipeline::soft_binding(&likeness_pipeline::watermark_payload(asset.asset_id()))]
        );
        let pixels = likeness_media::decode(asset.bytes(), None, &Default::default()).unwrap().pixels;
        let mark = likeness_watermark::detect(&pixels, &key).expect("the mark reads back");
        assert_eq!(mark.payload, likeness_pipeline::watermark_payload(asset.asset_id()));
    }
    let d = serde_json::to_value(&outcome.decision).unwrap();
    assert_eq!(
        d["checks"],
        serde_json::json!([
            "consent.photos",
            "consent.subjects",
            "vision.references",
            "policy.pre",
            "vision.outputs",
            "policy.post",
            "watermark"
        ])
    );
    assert_eq!(d["action"], "label");
    assert_eq!(d["policy"]["rules"][0]["id"], "ai-generated");
    assert_eq!(d["policy"]["version"].as_str().unwrap().len(), 64);
    // The manifest names the policy version and the labels, nothing personal.
    let v = verifier.verify_bytes(outcome.assets[0].bytes()).unwrap();
    let request = v.likeness.expect("the likeness assertion");
    assert_eq!(request["policy"], d["policy"]["version"]);
    assert_eq!(request["labels"], serde_json::json!(["ai_generated"]));
    // References are named by a keyed hash: the operator can tell which
    // photo it was, a holder of the output cannot test a candidate.
    let key =
        likeness_watermark::Key::new(likeness_testkit::WATERMARK_KEY).derive(likeness_pipeline::INGREDIENT_KEY_PURPOSE);
    assert_eq!(d["references"][0], likeness_pipeline::ingredient_hash(&key, &png(64, 48)));
    assert_ne!(d["references"][0], likeness_media::sha256_hex(&png(64, 48)));
}

#[test]
fn without_models_nothing_runs() {
    let p = pipeline(Err("ONNX Runtime was not found".into()), Arc::new(Builtin));
    let err = p.run(request(vec![]), consent(vec![]), RequestContext::default()).err().unwrap();
    assert_eq!(err.code(), ErrorCode::VisionUnavailable);
    assert!(err.to_string().contains("ONNX Runtime was not found"), "{err}");
    let err = p.enroll(vec![upload(png(50, 50))], false).err().unwrap();
    assert_eq!(err.code(), ErrorCode::VisionUnavailable);
}

#[test]
fn a_failing_generator_is_a_generator_error() {
    let p = pipeline(Ok(FakeVision::new()), Arc::new(FailingGenerator));
    let err = p.run(request(vec![]), consent(vec![]), RequestContext::default()).err().unwrap();
    assert_eq!(err.code(), ErrorCode::GeneratorFailed);
}

#[test]
fn references_that_cannot_be_read_name_the_reference() {
    let p = pipeline(Ok(FakeVision::new()), Arc::new(Builtin));
    let good = png(40, 30);
    for (bytes, declared, code) in [
        (good[..good.len() / 2].to_vec(), Some(MediaType::Png), ErrorCode::ReferenceCorrupt),
        (good.clone(), Some(MediaType::Jpeg), ErrorCode::ReferenceMimeMismatch),
        (b"not an image at all".to_vec(), None, ErrorCode::ReferenceUnsupportedFormat),
        (likeness_media::hostile::forged_png(100_000, 100_000), None, ErrorCode::ReferenceTooManyPixels),
    ] {
        let refs = vec![upload(good.clone()), ReferenceInput { bytes, declared }];
        let err = p.run(request(refs), consent(vec![]), RequestContext::default()).err().unwrap();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().starts_with("reference 2:"), "{err}");
    }
}

#[test]
fn enrollment_takes_one_face_of_one_person_per_photo() {
    let vision = FakeVision::new()
        .shows(50, 50, &[FakeFace::adult(1)], 0.0)
        .shows(51, 50, &[FakeFace::adult(1)], 0.0)
        .shows(52, 50, &[], 0.0)
        .shows(53, 50, &[FakeFace::adult(1), FakeFace::adult(2)], 0.0)
        .shows(54, 50, &[FakeFace::adult(likeness_testkit::PUBLIC_FIGURE)], 0.0)
        .shows(55, 50, &[FakeFace { person: 3, p_minor: 0.9 }], 0.0)
        .shows(56, 50, &[FakeFace::adult(2)], 0.0);
    let p = pipeline(Ok(vision), Arc::new(Builtin));
    let enroll = |sizes: &[u32], minor: bool| p.enroll(sizes.iter().map(|&w| upload(png(w, 50))).collect(), minor);
    let embeddings = enroll(&[50, 51], false).unwrap();
    assert_eq!(embeddings, [person(1).to_vec(), person(1).to_vec()]);
    assert_eq!(enroll(&[55], true).unwrap().len(), 1, "a declared minor may enroll");
    for (sizes, code) in [
        (&[52][..], ErrorCode::SubjectEnrollNoFace),
        (&[53], ErrorCode::SubjectEnrollSeveralFaces),
        (&[54], ErrorCode::SubjectEnrollPublicFigure),
        (&[55], ErrorCode::SubjectEnrollPossibleMinor),
        (&[50, 56], ErrorCode::SubjectEnrollDifferentPeople),
    ] {
        let err = enroll(sizes, false).err().unwrap();
        assert_eq!(err.code(), code, "{err}");
    }
    let err = enroll(&[50, 56], false).err().unwrap();
    assert!(err.to_string().starts_with("enrollment photo 2:"), "{err}");
}

#[test]
fn debug_prints_never_show_photos_or_names() {
    let r = upload(vec![0xAB; 1000]);
    assert_eq!(format!("{r:?}"), "ReferenceInput(1000 bytes)");
    let mut s = subject("sub_x", 1, false);
    s.name = "Secret Name".into();
    let c = consent(vec![s]);
    let printed = format!("{c:?}");
    assert!(printed.contains("sub_x") && !printed.contains("Secret Name") && !printed.contains("1.0"), "{printed}");
}

/// Scores are compared whole and rounded only when serialised: 0.6996 is
/// shown as 0.7 but is under the 0.7 threshold, so it passes; 0.7 does not.
#[test]
fn the_nsfw_threshold_is_checked_on_the_unrounded_score() {
    let run = |nsfw: f32| {
        let vision = FakeVision::new().shows(40, 30, &[], nsfw);
        pipeline(Ok(vision), Arc::new(Builtin)).run(
            request(vec![upload(png(40, 30))]),
            consent(vec![]),
            RequestContext::default(),
        )
    };
    let allowed = run(0.6996).unwrap();
    assert_eq!(serde_json::to_value(&allowed.decision).unwrap()["images"][0]["nsfw"], 0.7);
    let refused = run(0.7).err().unwrap();
    assert_eq!(refused.code(), ErrorCode::VisionNsfw);
    assert_eq!(refused.decision().unwrap().images[0].nsfw, 0.7);
}

#[test]
fn actions_are_a_ladder_and_serialise_as_words() {
    assert!(Action::Allow < Action::Label && Action::Label < Action::Review && Action::Review < Action::Block);
    let words: Vec<Value> = [Action::Allow, Action::Label, Action::Review, Action::Block]
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    assert_eq!(words, ["allow", "label", "review", "block"]);
}

#[test]
fn the_decision_names_the_models_and_labels_every_face() {
    let vision = FakeVision::new().shows(40, 30, &[FakeFace::adult(1)], 0.0).shows(
        256,
        256,
        &[FakeFace::adult(1), FakeFace::adult(9)],
        0.0,
    );
    let outcome = pipeline(Ok(vision), Arc::new(Builtin))
        .run(request(vec![upload(png(40, 30))]), consent(vec![subject("sub_a", 1, false)]), RequestContext::default())
        .unwrap();
    let d = serde_json::to_value(&outcome.decision).unwrap();
    let tasks: Vec<&str> = d["models"].as_array().unwrap().iter().map(|m| m["task"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["face_detection", "age", "face_embedding", "nsfw"]);
    let labels: Vec<&str> =
        d["images"][1]["faces"].as_array().unwrap().iter().map(|f| f["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["consenting_subject", "unknown"], "outputs are labelled against the declared subjects too");
    assert_eq!(d["images"][0]["faces"][0]["subject"], "sub_a");
    assert_eq!(d["images"][0]["faces"][0]["distance"], 0.0);
    assert_eq!(d["generator"], "builtin/watercolor");
}

fn policy_of(rules: &str) -> Arc<likeness_policy::Policies> {
    let files = vec![likeness_policy::SourceFile {
        path: "p.yaml".into(),
        text: format!("version: 1\nparams: {{ t: 0.5 }}\nrules:\n{rules}"),
    }];
    let policy = likeness_policy::Policy::load(&files, &Default::default()).unwrap();
    Arc::new(likeness_policy::Policies::new(policy, 0))
}

#[test]
fn review_refuses_until_a_person_approved_this_request() {
    let policies = policy_of(
        "  - { id: big, stage: pre, when: request.n > 1, action: review, reason: x.big, message: Big requests are reviewed. }\n",
    );
    let p = likeness_testkit::pipeline_with(Ok(FakeVision::new()), Arc::new(Builtin), policies);
    let mut req = request(vec![]);
    req.count = 2;
    let err = p.run(req, consent(vec![]), RequestContext::default()).err().unwrap();
    assert_eq!(err.code(), ErrorCode::PolicyReviewRequired);
    let decision = err.decision().unwrap();
    assert_eq!((decision.action, decision.reasons.as_slice()), (Action::Review, &["x.big".to_string()][..]));
    assert_eq!(err.to_string(), "Big requests are reviewed.");
    let mut req = request(vec![]);
    req.count = 2;
    let approved = RequestContext { review_approved: true, ..Default::default() };
    let outcome = p.run(req, consent(vec![]), approved).unwrap();
    assert_eq!(outcome.assets.len(), 2);
    assert_eq!(outcome.decision.policy.rules[0].id, "big", "the review rule is still recorded");
}

#[test]
fn a_rule_that_cannot_be_evaluated_refuses_the_request() {
    let policies = policy_of(
        "  - { id: broken, stage: pre, when: 'history.refusals_24h[\"x.y\"] > 0', action: block, reason: x.y, message: m }\n",
    );
    let p = likeness_testkit::pipeline_with(Ok(FakeVision::new()), Arc::new(Builtin), policies);
    let err = p.run(request(vec![]), consent(vec![]), RequestContext::default()).err().unwrap();
    assert_eq!(err.code(), ErrorCode::PolicyError);
    assert!(err.to_string().contains("policy rule broken could not be evaluated"), "{err}");
    assert_eq!(err.decision().unwrap().action, Action::Block);
}

#[test]
fn a_policy_reason_of_its_own_reaches_the_client_as_the_code() {
    let policies = policy_of(
        "  - { id: square, stage: pre, when: request.width == request.height, action: block, reason: acme.no_squares, message: No squares. }\n",
    );
    let p = likeness_testkit::pipeline_with(Ok(FakeVision::new()), Arc::new(Builtin), policies);
    let err = p.run(request(vec![]), consent(vec![]), RequestContext::default()).err().unwrap();
    assert_eq!(err.code().as_str(), "acme.no_squares");
    assert_eq!(err.code().status(), 403);
}

#[test]
fn the_input_names_the_tenant_history_and_prompt_categories_never_the_prompt() {
    // The categories come from the policy folder: take the shipped ones.
    let mut all = likeness_testkit::shipped_policy();
    all.retain(|f| f.path.starts_with("categories/"));
    all.push(likeness_policy::SourceFile {
        path: "p.yaml".into(),
        text: format!(
            "version: 1\nrules:\n{}",
            "  - { id: seen, stage: pre, when: 'tenant == \"acme\" && \"sexual\" in prompt.categories && history.refusals_24h_total == 2', action: label, labels: [l], reason: x.seen, message: m }\n"
        ),
    });
    let policy = likeness_policy::Policy::load(&all, &Default::default()).unwrap();
    let p = likeness_testkit::pipeline_with(
        Ok(FakeVision::new()),
        Arc::new(Builtin),
        Arc::new(likeness_policy::Policies::new(policy, 0)),
    );
    let mut req = request(vec![]);
    req.prompt = "a s.e.x-y poster, secret words".into();
    let context = RequestContext {
        tenant: "acme".into(),
        history: likeness_policy::HistoryFacts { refusals_24h_total: 2, ..Default::default() },
        ..Default::default()
    };
    let outcome = p.run(req, consent(vec![]), context).unwrap();
    assert_eq!(outcome.decision.labels, ["l"]);
    let logged = serde_json::to_string(&outcome.decision.inputs).unwrap();
    assert!(logged.contains("\"sexual\"") && !logged.contains("secret words"), "{logged}");
    assert_eq!(outcome.decision.inputs.len(), 2, "pre and post");
}
