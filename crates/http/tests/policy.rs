//! The policy at the HTTP edge, in process: the review queue end to end,
//! the decision log behind every decision, history that escalates, the
//! policy's own endpoints, and rules that fail or only watch.

mod support;

use std::sync::Arc;

use likeness_generators::Builtin;
use likeness_http::HttpConfig;
use likeness_testkit::{png, FakeFace, FakeVision, PUBLIC_FIGURE};
use serde_json::{json, Value};
use support::*;

const REVIEW_BIG: &str =
    "  - { id: big, stage: pre, when: request.n > 1, action: review, reason: acme.big, message: Big requests are reviewed. }\n";

async fn app(rules: &str) -> App {
    App::with_policies(Ok(FakeVision::new()), HttpConfig::default(), Arc::new(Builtin), policy_of(rules)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_review_is_opened_resolved_once_and_lets_the_same_request_through_once() {
    let app = app(REVIEW_BIG).await;
    let request = json!({"user": "u", "prompt": "a lake", "size": "256x256", "n": 2, "seed": 1});
    let (status, refused) = app.generate(request.clone()).await;
    assert_eq!((status, code(&refused)), (403, "policy.review_required"), "{refused}");
    assert_eq!(refused["error"]["message"], "Big requests are reviewed.");
    assert_eq!(refused["error"]["decision"]["reasons"], json!(["acme.big"]));
    let review = refused["error"]["review_id"].as_str().unwrap().to_string();

    let (_, pending) = app.call("GET", "/v1/reviews?status=pending", None).await;
    assert_eq!(pending["reviews"][0]["id"], review.as_str());
    assert_eq!(pending["reviews"][0]["summary"]["rules"][0]["id"], "big");
    // Before approval, the id does not help.
    let mut with_review = request.clone();
    with_review["review_id"] = json!(review);
    let (status, body) = app.generate(with_review.clone()).await;
    assert_eq!((status, code(&body)), (403, "review.not_approved"));

    let resolve = |resolution: &str| json!({"resolution": resolution, "reviewer": "ana", "note": "a lake is fine"});
    let (status, resolved) = app.call("POST", &format!("/v1/reviews/{review}"), Some(resolve("approve"))).await;
    assert_eq!((status, &resolved["status"]), (200, &json!("approved")), "{resolved}");
    let (status, again) = app.call("POST", &format!("/v1/reviews/{review}"), Some(resolve("deny"))).await;
    assert_eq!((status, code(&again)), (409, "review.already_resolved"));

    // Another request cannot ride on the approval.
    let mut other = with_review.clone();
    other["prompt"] = json!("a forest");
    let (status, body) = app.generate(other).await;
    assert_eq!((status, code(&body)), (409, "review.mismatch"), "{body}");
    // The same request goes through, once; the review rule is still recorded.
    let (status, done) = app.generate(with_review.clone()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["images"].as_array().unwrap().len(), 2);
    assert_eq!(done["decision"]["policy"]["rules"][0]["id"], "big");
    let (status, body) = app.generate(with_review).await;
    assert_eq!((status, code(&body)), (409, "review.spent"));
    let (status, body) = app.call("GET", "/v1/reviews/rev_nope", None).await;
    assert_eq!((status, code(&body)), (404, "review.not_found"));

    // The request, the review's resolution and the approved request are in the log.
    let log = &app.state.store;
    let reviewed = pending["reviews"][0]["request_id"].as_str().unwrap();
    let first = log.decision(reviewed).await.unwrap().expect("the reviewed request is logged");
    assert_eq!((first.record.action.as_str(), first.record.reason.as_deref()), ("review", Some("acme.big")));
    let resolution = log.decision(&format!("{review}:resolution")).await.unwrap().expect("the resolution is logged");
    assert_eq!(resolution.record.action, "allow");
    let approved = log.decision(done["id"].as_str().unwrap()).await.unwrap().expect("logged");
    let body: Value = serde_json::from_str(&approved.record.body).unwrap();
    assert_eq!(body["review"], review.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_review_stays_refused() {
    let app = app(REVIEW_BIG).await;
    let request = json!({"user": "u", "prompt": "a lake", "size": "256x256", "n": 2});
    let (_, refused) = app.generate(request.clone()).await;
    let review = refused["error"]["review_id"].as_str().unwrap().to_string();
    let (status, _) =
        app.call("POST", &format!("/v1/reviews/{review}"), Some(json!({"resolution": "deny", "reviewer": "bo"}))).await;
    assert_eq!(status, 200);
    let mut again = request;
    again["review_id"] = json!(review);
    let (status, body) = app.generate(again).await;
    assert_eq!((status, code(&body)), (403, "review.not_approved"));
    let (_, denied) = app.call("GET", "/v1/reviews?status=denied", None).await;
    assert_eq!(denied["reviews"][0]["reviewer"], "bo");
}

/// Every decided request is in one verified chain whose checkpoints the
/// gateway's key signed; records hold no prompt.
#[tokio::test(flavor = "multi_thread")]
async fn every_decision_is_logged_in_a_chain_that_verifies() {
    let vision = FakeVision::new().shows(40, 30, &[FakeFace::adult(PUBLIC_FIGURE)], 0.0);
    let app = App::new(vision).await;
    let secret = "a secret prompt, never logged";
    let good = json!({"user": "u", "prompt": secret, "size": "256x256"});
    let figure = json!({"user": "u", "prompt": secret, "size": "256x256", "references": [upload(&png(40, 30))]});
    let revoked = json!({"user": "u", "prompt": secret, "grant_id": "grt_nope"});
    let mut ids = Vec::new();
    for body in [good.clone(), figure, revoked, good] {
        let req = axum::http::Request::post("/v1/generations")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let resp = app.send(req).await;
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    let store = &app.state.store;
    let mut seen = Vec::new();
    for id in &ids {
        let d = store.decision(id).await.unwrap().unwrap_or_else(|| panic!("{id} not logged"));
        assert!(!d.record.body.contains("secret prompt"), "{}", d.record.body);
        seen.push((d.record.action, d.record.reason));
    }
    assert_eq!(
        seen,
        [
            ("label".to_string(), None),
            ("block".to_string(), Some("vision.public_figure".to_string())),
            ("block".to_string(), Some("consent.grant_unknown".to_string())),
            ("label".to_string(), None),
        ]
    );
    let verify = |key: &str, message: &[u8], signature: &str| {
        let (Ok(key), Ok(sig)) = (hex::decode(key), hex::decode(signature)) else { return false };
        let (Ok(key), Ok(sig)) = (key.try_into(), sig.try_into()) else { return false };
        likeness_provenance::verify_message(&key, message, &sig)
    };
    let report = store.verify_chain(&verify).await.unwrap();
    assert_eq!((report.records, report.broken), (4, None));
    // The allowed one names its receipt, assets and the input documents.
    let first: Value = serde_json::from_str(&store.decision(&ids[0]).await.unwrap().unwrap().record.body).unwrap();
    assert_eq!(first["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(first["assets"].as_array().unwrap().len(), 1);
    assert!(first["receipt"].as_str().unwrap().starts_with("rcpt_"));
}

/// The shipped policy escalates: after three refusals for a public figure
/// in a day, the user's next request goes to review.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_attempts_at_a_public_figure_go_to_review() {
    let vision = FakeVision::new().shows(40, 30, &[FakeFace::adult(PUBLIC_FIGURE)], 0.0);
    let app = App::new(vision).await;
    let figure = json!({"user": "mallory", "prompt": "x", "size": "256x256", "references": [upload(&png(40, 30))]});
    for _ in 0..3 {
        assert_eq!(code(&app.generate(figure.clone()).await.1), "vision.public_figure");
    }
    let (status, body) = app.generate(json!({"user": "mallory", "prompt": "a lake", "size": "256x256"})).await;
    assert_eq!((status, code(&body)), (403, "policy.review_required"), "{body}");
    assert_eq!(body["error"]["decision"]["reasons"], json!(["policy.repeated_attempts"]));
    // Someone else is not affected, and a day later neither is mallory.
    assert_eq!(app.generate(json!({"user": "alice", "prompt": "a lake", "size": "256x256"})).await.0, 200);
    app.clock.advance(24 * 3600 * 1000 + 1);
    assert_eq!(app.generate(json!({"user": "mallory", "prompt": "a lake", "size": "256x256"})).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_endpoints_show_the_version_and_dry_run_an_input() {
    let app = App::new(FakeVision::new()).await;
    let (status, policy) = app.call("GET", "/v1/policy", None).await;
    assert_eq!(status, 200);
    assert_eq!(policy["version"].as_str().unwrap().len(), 64);
    assert!(policy["rules"].as_array().unwrap().contains(&json!("public-figure-in-reference")));
    assert_eq!(policy["rejected"], Value::Null);
    let input = json!({"stage": "post", "outputs": [{"name": "output 1", "nsfw": 0.8}], "tenant": "someone-else"});
    let (status, dry) = app.call("POST", "/v1/policy/evaluate", Some(input)).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!((&dry["action"], &dry["reason"]), (&json!("block"), &json!("vision.nsfw")));
    let fired: Vec<&str> = dry["evaluation"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["fired"] == true)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(fired, ["nsfw-output", "ai-generated"]);
    let (status, body) = app.call("POST", "/v1/policy/evaluate", Some(json!({"stage": "during"}))).await;
    assert_eq!((status, code(&body)), (422, "request.invalid"));
    let (_, ready) = app.call("GET", "/readyz", None).await;
    assert_eq!(ready["checks"]["policy"]["version"], policy["version"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_that_fails_refuses_and_a_shadow_rule_only_watches() {
    let failing = app("  - { id: broken, stage: pre, when: 'history.refusals_24h[\"none\"] > 0', action: block, reason: x.y, message: m }\n").await;
    let (status, body) = failing.generate(json!({"user": "u", "prompt": "a lake", "size": "256x256"})).await;
    assert_eq!((status, code(&body)), (500, "policy.error"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("broken"));

    let watching =
        app("  - { id: all, stage: pre, when: 'true', action: block, reason: x.all, message: m, mode: shadow }\n")
            .await;
    let (status, body) = watching.generate(json!({"user": "u", "prompt": "a lake", "size": "256x256"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"]["policy"]["rules"],
        json!([{"id": "all", "stage": "pre", "mode": "shadow", "action": "block", "reason": "x.all"}])
    );
}
