//! Loading, checking and evaluating policies, on the shipped default and on
//! the broken kinds of `cases/broken.json`.

use std::collections::BTreeSet;

use likeness_policy::*;
use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped `policies/` folder, as the gateway reads it.
fn shipped() -> Vec<SourceFile> {
    let dir = root().join("policies");
    let mut files = Vec::new();
    for sub in ["", "categories", "tenants", "tests"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().is_file() && (name.ends_with(".yaml") || name.ends_with(".txt")) {
                let path = if sub.is_empty() { name } else { format!("{sub}/{name}") };
                files.push(SourceFile { path, text: std::fs::read_to_string(e.path()).unwrap() });
            }
        }
    }
    files
}

fn files(v: &Value) -> Vec<SourceFile> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(p, t)| SourceFile { path: p.clone(), text: t.as_str().unwrap().into() })
        .collect()
}

#[test]
fn the_shipped_policy_loads_and_passes_its_golden_cases() {
    let files = shipped();
    let policy = Policy::load(&files, &LoadOptions::default()).unwrap_or_else(|p| panic!("{p:#?}"));
    let results = run_golden(&policy, &files).unwrap();
    assert!(results.len() >= 25, "{} golden cases", results.len());
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn broken_policies_are_refused_with_file_line_and_rule() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("crates/policy/tests/cases/broken.json")).unwrap())
            .unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let problems = Policy::load(&files(&case["files"]), &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{name}: loaded"));
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for want in case["errors"].as_array().unwrap() {
            let want = want.as_str().unwrap();
            assert!(text.iter().any(|t| t.contains(want)), "{name}: no problem mentions {want:?}: {text:#?}");
        }
        if let Some(rule) = case["rule"].as_str() {
            let p = problems
                .iter()
                .find(|p| p.rule.as_deref() == Some(rule))
                .unwrap_or_else(|| panic!("{name}: {text:#?}"));
            assert!(p.line.is_some(), "{name}: no line in {p}");
        }
    }
}

const ONE_RULE: &str = "version: 1\nparams: { t: 0.5 }\nrules:\n";

fn policy(rules: &str) -> Policy {
    let files = vec![SourceFile { path: "p.yaml".into(), text: format!("{ONE_RULE}{rules}") }];
    Policy::load(&files, &LoadOptions::default()).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn nsfw(value: f64) -> Input {
    Input {
        references: vec![ImageFacts { name: "reference 1".into(), nsfw: value, ..Default::default() }],
        ..Default::default()
    }
}

#[test]
fn a_shadow_rule_that_blocks_everything_blocks_nothing_but_is_recorded() {
    let p =
        policy("  - { id: all, stage: pre, when: 'true', action: block, reason: x.all, message: no, mode: shadow }\n");
    let e = p.evaluate(&Input::default());
    assert_eq!(e.outcome().action, Action::Allow);
    let fired: Vec<_> = e.fired().map(|r| (r.id.as_str(), r.mode)).collect();
    assert_eq!(fired, [("all", Mode::Shadow)]);
}

#[test]
fn a_rule_that_fails_at_evaluation_fails_closed() {
    // A map lookup of a key that is not there: an error at run time, not at load.
    let p = policy(
        "  - { id: lookup, stage: pre, when: 'history.refusals_24h[\"vision.nsfw\"] > 2', action: review, reason: x.y, message: m }\n",
    );
    let outcome = p.evaluate(&Input::default()).outcome();
    let (rule, error) = outcome.failed.expect("the error is the outcome");
    assert_eq!(rule, "lookup");
    assert!(error.contains("vision.nsfw"), "{error}");
    // The same rule in shadow is recorded, not enforced.
    let p = policy(
        "  - { id: lookup, stage: pre, when: 'history.refusals_24h[\"vision.nsfw\"] > 2', action: review, reason: x.y, message: m, mode: shadow }\n",
    );
    let e = p.evaluate(&Input::default());
    assert!(e.outcome().failed.is_none());
    assert!(e.results[0].error.is_some());
}

#[test]
fn the_most_severe_enforced_action_wins_and_image_rules_name_the_image() {
    let p = policy(concat!(
        "  - { id: label, stage: pre, when: 'true', action: label, labels: [l1], reason: x.label, message: m }\n",
        "  - { id: nsfw, stage: pre, scope: image, when: image.nsfw >= params.t, action: block, reason: x.nsfw, message: '{{ image.name }} at {{ image.nsfw }}' }\n",
        "  - { id: review, stage: pre, when: 'true', action: review, reason: x.review, message: m }\n",
    ));
    let e = p.evaluate(&nsfw(0.75));
    let o = e.outcome();
    assert_eq!((o.action, o.reason.as_deref()), (Action::Block, Some("x.nsfw")));
    assert_eq!(o.message.as_deref(), Some("reference 1 at 0.75"));
    assert_eq!(o.labels, ["l1"]);
    assert_eq!(e.results[1].image.as_deref(), Some("reference 1"));
    let o = p.evaluate(&nsfw(0.25)).outcome();
    assert_eq!((o.action, o.reason.as_deref()), (Action::Review, Some("x.review")));
}

#[test]
fn tenant_overlays_add_and_raise_rules_and_lower_them_only_when_allowed() {
    let base = SourceFile {
        path: "p.yaml".into(),
        text: format!("{ONE_RULE}  - {{ id: nsfw, stage: pre, scope: image, when: image.nsfw >= params.t, action: review, reason: x.nsfw, message: m }}\n"),
    };
    let raise = SourceFile {
        path: "tenants/strict.yaml".into(),
        text: concat!(
            "rules:\n",
            "  - { id: nsfw, stage: pre, scope: image, when: image.nsfw >= params.t, action: block, reason: x.nsfw, message: m }\n",
            "  - { id: extra, stage: pre, when: request.n > 2, action: block, reason: x.many, message: m }\n",
        )
        .into(),
    };
    let lower = SourceFile {
        path: "tenants/lenient.yaml".into(),
        text: "params: { t: 0.9 }\nrules:\n  - { id: nsfw, stage: pre, scope: image, when: image.nsfw >= params.t, action: label, labels: [x], reason: x.nsfw, message: m }\n".into(),
    };
    let files = vec![base.clone(), raise.clone(), lower.clone()];
    assert!(Policy::load(&files, &LoadOptions::default()).is_err(), "lenient may not lower without the operator");
    let options = LoadOptions { tenants_may_lower: BTreeSet::from(["lenient".to_string()]) };
    let p = Policy::load(&files, &options).unwrap();
    let action = |tenant: &str, input: &Input| {
        let mut input = input.clone();
        input.tenant = tenant.into();
        p.evaluate(&input).outcome().action
    };
    assert_eq!(action("other", &nsfw(0.6)), Action::Review);
    assert_eq!(action("strict", &nsfw(0.6)), Action::Block);
    assert_eq!(action("lenient", &nsfw(0.6)), Action::Allow, "its own threshold");
    assert_eq!(action("lenient", &nsfw(0.95)), Action::Label);
    let many = Input { request: RequestFacts { n: 3, ..Default::default() }, ..Default::default() };
    assert_eq!((action("strict", &many), action("other", &many)), (Action::Block, Action::Allow));
}

#[test]
fn the_version_is_a_hash_of_the_policy_files_only() {
    let files = shipped();
    let a = Policy::load(&files, &LoadOptions::default()).unwrap();
    let mut without_tests: Vec<SourceFile> = files.iter().filter(|f| !f.path.starts_with("tests/")).cloned().collect();
    let b = Policy::load(&without_tests, &LoadOptions::default()).unwrap();
    assert_eq!(a.version(), b.version(), "golden cases are not part of the policy");
    without_tests.iter_mut().find(|f| f.path == "default.yaml").unwrap().text.push_str("\n# a comment\n");
    let c = Policy::load(&without_tests, &LoadOptions::default()).unwrap();
    assert_ne!(a.version(), c.version());
    assert_eq!(a.version().len(), 64);
}

#[test]
fn schema_md_is_generated_from_the_schema() {
    let on_disk = std::fs::read_to_string(root().join("policies/SCHEMA.md")).unwrap_or_default();
    assert!(
        on_disk == schema().markdown(),
        "policies/SCHEMA.md is out of date: run `likeness policy schema > policies/SCHEMA.md`"
    );
}

/// Every field of the input document is in the schema with its type, and
/// every field of the schema is in the document.
#[test]
fn the_schema_describes_the_input_document_exactly() {
    let face = FaceFacts {
        subject: Some(SubjectFacts::default()),
        matches: vec![GalleryMatchFacts::default()],
        ..Default::default()
    };
    let image = ImageFacts { name: "reference 1".into(), faces: vec![face], nsfw: 0.5 };
    let mut input = Input { references: vec![image.clone()], outputs: vec![image], ..Default::default() };
    input.request.sources = vec!["upload".into()];
    input.prompt.categories = vec!["sexual".into()];
    input.consent.subjects = vec![SubjectFacts::default()];
    input.history.refusals_24h.insert("x.y".into(), 1);
    let doc = serde_json::to_value(&input).unwrap();
    let s = schema();
    let mut vars: BTreeSet<&str> =
        s.variables.iter().map(|v| v.name).filter(|n| *n != "params" && *n != "image").collect();
    for (k, v) in doc.as_object().unwrap() {
        assert!(vars.remove(k.as_str()), "input field {k} is not a schema variable");
        let ty = &s.variables.iter().find(|f| f.name == k).unwrap().ty;
        agrees(k, ty, v);
    }
    assert!(vars.is_empty(), "schema variables not in the input: {vars:?}");
}

fn agrees(path: &str, ty: &Type, v: &Value) {
    match (ty, v) {
        (Type::Bool, Value::Bool(_)) | (Type::String, Value::String(_)) | (Type::Dyn, _) => {}
        (Type::Int, Value::Number(n)) => assert!(n.is_i64(), "{path}: int"),
        (Type::Double, Value::Number(n)) => assert!(n.is_f64(), "{path}: double"),
        (Type::Nullable(t), v) => agrees(path, t, v),
        (Type::List(t), Value::Array(items)) => {
            assert!(!items.is_empty(), "{path}: fill the list to check its items");
            items.iter().for_each(|i| agrees(&format!("{path}[]"), t, i));
        }
        (Type::Map(t), Value::Object(m)) => m.iter().for_each(|(k, i)| agrees(&format!("{path}.{k}"), t, i)),
        (Type::Object(name), Value::Object(m)) => {
            let object = schema().object(name).unwrap();
            let mut fields: BTreeSet<&str> = object.fields.iter().map(|f| f.name).collect();
            for (k, i) in m {
                assert!(fields.remove(k.as_str()), "{path}.{k} is not in the schema's {name}");
                agrees(&format!("{path}.{k}"), &object.fields.iter().find(|f| f.name == k).unwrap().ty, i);
            }
            assert!(fields.is_empty(), "{path}: schema fields of {name} not in the input: {fields:?}");
        }
        (t, v) => panic!("{path}: the schema says {t}, the input has {v}"),
    }
}

#[test]
fn refusal_reasons_of_the_shipped_policy_are_registered_codes() {
    // A block or review reason reaches clients as an error code: the
    // registry (and so the README's table) must know it.
    let text = std::fs::read_to_string(root().join("policies/default.yaml")).unwrap();
    let mut reasons = Vec::new();
    let mut action = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("action:") {
            action = a.trim().to_string();
        }
        if let Some(r) = line.strip_prefix("reason:") {
            reasons.push((action.clone(), r.trim().to_string()));
        }
    }
    assert!(reasons.len() >= 10);
    for (action, reason) in reasons {
        if action == "block" || action == "review" {
            let code = likeness_codes::ErrorCode::parse(&reason);
            assert_eq!(code.map(|c| c.status()), Some(403), "{reason} ({action}) is not a registered 403 code");
        }
    }
}
