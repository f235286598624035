//! The policy and the decision log through the real binary: hot reload of
//! a valid and a broken edit, `audit verify` finding an edited record,
//! two gateways on one PostgreSQL database making one chain, `policy
//! replay` naming exactly the decisions a stricter policy changes, and
//! `policy check|test|explain` on the shipped folder.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn lake(style: &str) -> Value {
    json!({"user": "u-replay", "prompt": "a lake at dawn", "style": style, "size": "256x256"})
}

/// Polls `f` until it is true, for at most 30 s (an edit is looked for
/// every 500 ms; this only bounds a hang).
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

const NO_SKETCHES: &str = r#"
  - id: no-sketches
    description: A stricter candidate.
    stage: pre
    when: request.style == "sketch"
    action: block
    reason: acme.no_sketches
    message: Sketches are not offered.
"#;

#[test]
fn a_valid_edit_goes_live_and_a_broken_one_never_replaces_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(dir.path(), |p| p);
    let server = Server::start_with("", &["--policies", policies.to_str().unwrap()]);
    let (_, before) = server.call("GET", "/v1/policy", None);
    assert_eq!(server.generate(&lake("sketch")).0, 200);

    // A valid edit: live without a restart.
    let default = policies.join("default.yaml");
    let text = std::fs::read_to_string(&default).unwrap();
    std::fs::write(&default, format!("{text}{NO_SKETCHES}")).unwrap();
    assert!(eventually(|| server.call("GET", "/v1/policy", None).1["version"] != before["version"]), "never reloaded");
    let (status, refused) = server.generate(&lake("sketch"));
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("acme.no_sketches")), "{refused}");
    let (_, live) = server.call("GET", "/v1/policy", None);

    // A broken edit: refused, reported, and the last good policy serves on.
    std::fs::write(&default, format!("{text}{NO_SKETCHES}  - id: broken\n    when: refrences.size() > 0\n")).unwrap();
    assert!(eventually(|| !server.call("GET", "/v1/policy", None).1["rejected"].is_null()), "never rejected");
    let (_, policy) = server.call("GET", "/v1/policy", None);
    assert_eq!(policy["version"], live["version"], "the running policy was replaced by a broken one");
    let problems = policy["rejected"]["problems"].to_string();
    assert!(problems.contains("default.yaml"), "{problems}");
    let (_, ready) = server.call("GET", "/readyz", None);
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["checks"]["policy"]["rejected"]["version"], policy["rejected"]["version"]);
    assert_eq!(server.generate(&lake("sketch")).1["error"]["code"], "acme.no_sketches");
    assert_eq!(server.generate(&lake("watercolor")).0, 200);
}

#[test]
fn replay_names_exactly_the_decisions_a_stricter_policy_changes_and_audit_finds_an_edit() {
    let server = Server::start();
    let mut sketches = Vec::new();
    for style in ["watercolor", "sketch", "poster", "sketch"] {
        let (status, body) = server.generate(&lake(style));
        assert_eq!(status, 200, "{body}");
        if style == "sketch" {
            sketches.push(body["id"].as_str().unwrap().to_string());
        }
    }
    let (status, _) = server.generate(&json!({"user": "u-replay", "grant_id": "grt_nope", "prompt": "x"}));
    assert_eq!(status, 403, "a consent refusal: logged, not replayable");
    let d = server.data_dir.path().to_str().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let stricter = policy_dir(dir.path(), |p| format!("{p}{NO_SKETCHES}"));
    let (code, out, err) =
        likeness(&["--data-dir", d, "policy", "replay", "--policies", stricter.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((report["replayed"].as_u64(), report["skipped"].as_u64()), (Some(4), Some(1)), "{report}");
    let mut changed: Vec<&str> =
        report["decisions"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    changed.sort();
    sketches.sort();
    assert_eq!(changed, sketches, "{report}");
    assert_eq!(report["transitions"][0]["from"], "label");
    assert_eq!(report["transitions"][0]["to"], "block");
    let rules = report["rules"].as_array().unwrap();
    let newly: Vec<&str> =
        rules.iter().filter(|r| r["newly_fired"].as_u64() > Some(0)).map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(newly, ["no-sketches"], "{report}");
    // The shipped policy itself changes nothing.
    let shipped = workspace_root().join("policies");
    let (_, out, _) =
        likeness(&["--data-dir", d, "policy", "replay", "--policies", shipped.to_str().unwrap(), "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["changed"], 0);

    // The log verifies; one edited record is found, by number and id.
    let (code, out, _) = likeness(&["--data-dir", d, "audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact, 5 records"), "{out}");
    let (code, out, _) = likeness(&["--data-dir", d, "audit", "show", "--request", &sketches[0]]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    let seq = shown["seq"].as_i64().unwrap();
    let db = server.data_dir.path().join("likeness.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query("UPDATE decisions SET action = 'allow' WHERE seq = $1").bind(seq).execute(&mut c).await.unwrap();
    });
    let (code, out, _) = likeness(&["--data-dir", d, "audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("BROKEN at record {seq} ({})", sketches[0])), "{out}");
    // Export: JSON lines, none with the prompt.
    let (code, out, _) = likeness(&["--data-dir", d, "audit", "export", "--since", "24h"]);
    assert_eq!((code, out.lines().count()), (0, 5));
    assert!(!out.contains("a lake at dawn"));
}

/// Two gateways on one database, sharing the signing key as replicas do,
/// append to one chain that verifies.
#[test]
fn two_gateways_on_postgres_append_to_one_chain() {
    let db = likeness_store::testing::TempDatabase::for_tests_blocking();
    let config = "[audit]\ncheckpoint_every = 3\n";
    let a = Server::start_with(config, &["--database", &db.url]);
    let keys = a.data_dir.path().join("keys");
    let shared = format!(
        "{config}[signing]\nchain = \"{}\"\nkey = \"{}\"\nwatermark_key = \"{}\"\n",
        keys.join("signer-chain.pem").display(),
        keys.join("signer.key").display(),
        keys.join("watermark.key").display()
    );
    let b = Server::start_with(&shared, &["--database", &db.url]);
    std::thread::scope(|s| {
        for server in [&a, &b] {
            s.spawn(move || {
                for i in 0..6 {
                    let body = json!({"user": format!("u{i}"), "prompt": "a beach", "size": "256x256"});
                    assert_eq!(server.generate(&body).0, 200);
                }
            });
        }
    });
    let chain = keys.join("signer-chain.pem");
    let (code, out, err) =
        likeness(&["audit", "verify", "--database", &db.url, "--signer-chain", chain.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact, 12 records, 4 signed checkpoints"), "{out}");
    // Checked against another key, the signatures do not hold.
    let other = tempfile::tempdir().unwrap();
    likeness(&["keys", "init", "--dir", other.path().to_str().unwrap()]);
    let (code, out, _) = likeness(&[
        "audit",
        "verify",
        "--database",
        &db.url,
        "--signer-chain",
        other.path().join("signer-chain.pem").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn check_test_and_explain_on_the_shipped_policy() {
    let shipped = workspace_root().join("policies");
    let p = shipped.to_str().unwrap();
    let (code, out, _) = likeness(&["policy", "check", p]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = likeness(&["policy", "test", p]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let broken = policy_dir(dir.path(), |p| p.replace("f.p_minor >= params.minor_threshold", "f.pminor >= 0.3"));
    let (code, _, err) = likeness(&["policy", "check", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("default.yaml:") && err.contains("Face has no field `pminor`"), "{err}");
    let (code, _, _) = likeness(&["policy", "test", broken.to_str().unwrap()]);
    assert_eq!(code, 1);

    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"stage": "post", "outputs": [{"name": "output 1", "nsfw": 0.71}]}"#).unwrap();
    let (code, out, _) = likeness(&["policy", "explain", input.to_str().unwrap(), "--policies", p]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("fired  nsfw-output") && out.contains("outcome: block (vision.nsfw)"), "{out}");
    assert!(out.contains("-      child-in-output"), "every rule is shown: {out}");
}
