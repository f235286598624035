//! The gateway's edges in process: authentication, validation, error
//! mapping, consent over time, admission and the resolver's rate limit.
//! No ONNX Runtime, PostgreSQL or Python: see `support`.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use likeness_codes::ErrorCode;
use likeness_generators::Builtin;
use likeness_http::{HttpConfig, ResolverConfig};
use likeness_testkit::{png, Auth, FakeFace, FakeVision, PUBLIC_FIGURE};
use serde_json::{json, Value};
use support::*;

/// The cases the end-to-end test sends to the real binary, here in
/// process; every code answered is one from the registry.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_their_status_and_code() {
    let config = HttpConfig { max_body_bytes: likeness_testkit::BAD_REQUEST_BODY_LIMIT, ..HttpConfig::default() };
    let app = App::with(Ok(FakeVision::new()), config, Arc::new(Builtin)).await;
    let mut failures = Vec::new();
    for case in likeness_testkit::bad_requests() {
        let mut req = Request::post(&case.path).header("content-type", &case.content_type);
        req = match case.auth {
            Auth::Key => req.header("authorization", format!("Bearer {KEY}")),
            Auth::None => req,
            Auth::Wrong => req.header("authorization", "Bearer lk_wrong"),
            Auth::Basic => req.header("authorization", "Basic dXNlcjpwYXNz"),
        };
        let resp = app.send(req.body(Body::from(case.body)).unwrap()).await;
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let (status, body) = json(resp).await;
        let registered = ErrorCode::parse(code(&body)).map(|c| c.status());
        if status != case.status || code(&body) != case.code || registered != Some(status) {
            failures.push(format!("{}: got {status} {body}, want {} {}", case.name, case.status, case.code));
        }
        // Every error names its request, as the response header does.
        if body["error"]["request_id"] != id.as_str() {
            failures.push(format!("{}: error body without its request id {id}: {body}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (status, body) = app.generate(likeness_testkit::good_request()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generation_answers_with_signed_images_a_request_id_and_a_stored_receipt() {
    let app = App::new(FakeVision::new()).await;
    let req = Request::post("/v1/generations")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"user": "u", "prompt": "a lake", "size": "256x256", "n": 2}).to_string()))
        .unwrap();
    let resp = app.send(req).await;
    let header = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let (status, body) = json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], header.as_str());
    assert_eq!(body["images"].as_array().unwrap().len(), 2);
    assert_eq!(body["images"][0]["soft_binding"]["alg"], likeness_watermark::ALG);
    assert_eq!(body["decision"]["action"], "label");
    assert_eq!(body["decision"]["labels"], json!(["ai_generated"]));
    let receipt = body["decision"]["consent"]["id"].as_str().unwrap();
    let (status, stored) = app.call("GET", &format!("/v1/receipts/{receipt}"), None).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["request_id"], body["id"]);
    // The manifests are in the store, and the resolver finds them by binding.
    let value = body["images"][0]["soft_binding"]["value"].as_str().unwrap();
    let uri = format!("/matches/byBinding?alg={}&value={}", likeness_watermark::ALG, value.replace('+', "%2B"));
    let (status, found) = json(app.send(Request::get(uri).body(Body::empty()).unwrap()).await).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["matches"][0]["manifestId"], body["images"][0]["manifest_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_carries_the_decision_and_stores_nothing() {
    let app = App::new(FakeVision::new().shows(40, 30, &[FakeFace::adult(PUBLIC_FIGURE)], 0.0)).await;
    let (status, body) = app
        .generate(json!({"user": "u", "prompt": "x", "size": "256x256", "references": [upload(&png(40, 30))]}))
        .await;
    assert_eq!((status, code(&body)), (403, "vision.public_figure"), "{body}");
    let decision = &body["error"]["decision"];
    assert_eq!(decision["action"], "block");
    assert_eq!(decision["reasons"], json!(["vision.public_figure"]));
    assert_eq!(decision["images"][0]["faces"][0]["label"], "public_figure");
    assert!(decision["consent"].get("id").is_none());
    assert!(!body.to_string().contains("\"embedding\""), "embeddings never leave");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_expires_when_the_clock_says_so() {
    let app = App::new(FakeVision::new()).await;
    let expires = "2026-01-01T00:00:01.500Z"; // START_MS + 1.5 s
    let (status, grant) =
        app.call("POST", "/v1/grants", Some(json!({"user": "u", "photos": ["m1"], "expires_at": expires}))).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["status"], "active");
    let id = grant["id"].as_str().unwrap().to_string();
    let library = json!({"user": "u", "prompt": "x", "size": "256x256", "grant_id": id,
        "references": [{"library": {"media_item_id": "m1", "access_token": "t"}}]});
    // Covered while the grant lasts: consent passes, and the library (not
    // configured here) is the next thing to say no.
    let (status, body) = app.generate(library.clone()).await;
    assert_eq!((status, code(&body)), (422, "photos.not_configured"), "{body}");

    app.clock.advance(1_499);
    assert_eq!(app.call("GET", &format!("/v1/grants/{id}"), None).await.1["status"], "active");
    app.clock.advance(1);
    assert_eq!(app.call("GET", &format!("/v1/grants/{id}"), None).await.1["status"], "expired");
    let (status, body) = app.generate(library).await;
    assert_eq!((status, code(&body)), (403, "consent.grant_expired"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_are_revoked_at_once_and_unknown_ones_are_not_found() {
    let app = App::new(FakeVision::new()).await;
    let (_, grant) = app.call("POST", "/v1/grants", Some(json!({"user": "u", "albums": ["trip"]}))).await;
    let id = grant["id"].as_str().unwrap();
    assert_eq!(app.call("DELETE", &format!("/v1/grants/{id}"), None).await.0, 204);
    assert_eq!(app.call("DELETE", &format!("/v1/grants/{id}"), None).await.0, 204, "twice is not an error");
    let (status, listed) = app.call("GET", "/v1/grants?user=u", None).await;
    assert_eq!((status, &listed["grants"][0]["status"]), (200, &json!("revoked")));
    let (status, body) = app.generate(json!({"user": "u", "prompt": "x", "size": "256x256", "grant_id": id})).await;
    assert_eq!((status, code(&body)), (403, "consent.grant_revoked"));
    let (status, body) = app.call("DELETE", "/v1/grants/grt_nope", None).await;
    assert_eq!((status, code(&body)), (404, "grant.not_found"));
    let (status, body) = app.call("GET", "/v1/grants", None).await;
    assert_eq!((status, code(&body)), (422, "request.invalid"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subject_enrolls_is_recognised_expires_and_is_deleted() {
    let vision = FakeVision::new()
        .shows(50, 50, &[FakeFace::adult(1)], 0.0) // the enrollment photo
        .shows(60, 40, &[FakeFace::adult(1)], 0.0); // a reference showing the same person
    let app = App::new(vision).await;
    let expires = "2026-01-02T00:00:00Z";
    let (status, subject) = app
        .call(
            "POST",
            "/v1/subjects",
            Some(json!({"user": "u", "name": "Sam", "relationship": "friend", "expires_at": expires,
                        "enroll": [upload(&png(50, 50))]})),
        )
        .await;
    assert_eq!(status, 201, "{subject}");
    assert_eq!(subject["enrolled_faces"], 1);
    let id = subject["id"].as_str().unwrap().to_string();
    // A friend confirms with the token the app delivered (crates/http/tests/subjects.rs has the rest).
    let token = json!({"token": subject["confirmation_token"]});
    let (status, body) = app.call_as(None, "POST", &format!("/v1/subjects/{id}/confirm"), Some(token)).await;
    assert_eq!(status, 200, "{body}");
    let request = json!({"user": "u", "prompt": "x", "size": "256x256", "subjects": [id],
        "references": [upload(&png(60, 40))]});
    let (status, body) = app.generate(request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"]["consent"]["subjects"], json!([id]));
    assert_eq!(body["decision"]["images"][0]["faces"][0]["label"], "consenting_subject");
    // Without declaring the subject, the same person is unknown.
    let mut undeclared = request.clone();
    undeclared["subjects"] = json!([]);
    let (status, body) = app.generate(undeclared).await;
    assert_eq!((status, code(&body)), (403, "consent.unknown_person"));
    // Another user cannot rely on it.
    let mut other = request.clone();
    other["user"] = json!("mallory");
    assert_eq!(code(&app.generate(other).await.1), "consent.subject_other_user");

    app.clock.advance(24 * 3600 * 1000);
    let (status, body) = app.generate(request.clone()).await;
    assert_eq!((status, code(&body)), (403, "consent.subject_expired"));
    assert_eq!(app.call("DELETE", &format!("/v1/subjects/{id}"), None).await.0, 204);
    let (_, shown) = app.call("GET", &format!("/v1/subjects/{id}"), None).await;
    assert_eq!(
        (&shown["status"], &shown["name"], &shown["enrolled_faces"]),
        (&json!("deleted"), &json!(""), &json!(0))
    );
    let (status, body) = app.generate(request).await;
    assert_eq!((status, code(&body)), (403, "consent.subject_revoked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_withdrawn_while_a_generation_runs_stops_it() {
    let vision = FakeVision::new().shows(50, 50, &[FakeFace::adult(1)], 0.0);
    let (generator, hold) = HeldGenerator::new();
    let app = Arc::new(App::with(Ok(vision), HttpConfig::default(), generator).await);
    let (_, subject) = app
        .call(
            "POST",
            "/v1/subjects",
            Some(json!({"user": "u", "name": "Sam", "relationship": "self", "enroll": [upload(&png(50, 50))]})),
        )
        .await;
    let id = subject["id"].as_str().unwrap().to_string();
    let running = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move {
            app.generate(json!({"user": "u", "prompt": "x", "size": "256x256", "subjects": [id],
                "references": [upload(&png(50, 50))]}))
                .await
        })
    };
    hold.wait_started().await;
    assert_eq!(app.call("DELETE", &format!("/v1/subjects/{id}"), None).await.0, 204);
    hold.release.send(()).unwrap();
    let (status, body) = running.await.unwrap();
    assert_eq!((status, code(&body)), (403, "consent.subject_revoked"), "{body}");
    assert!(body.get("images").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_refuses_past_the_pending_limit_at_once() {
    let (generator, hold) = HeldGenerator::new();
    let config = HttpConfig { max_concurrent_generations: 1, max_pending_generations: 1, ..HttpConfig::default() };
    let app = Arc::new(App::with(Ok(FakeVision::new()), config, generator).await);
    let body = json!({"user": "u", "prompt": "x", "size": "256x256"});
    let first = {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move { app.generate(body).await })
    };
    hold.wait_started().await;
    let (status, refused) = app.generate(body.clone()).await;
    assert_eq!((status, code(&refused)), (503, "server.overloaded"), "{refused}");
    // Admission comes before the body is read: even a body that would be
    // refused is not read while no place is free; the rest of the API answers.
    let (status, invalid) = app.generate(json!({"user": "u", "prompt": "x", "n": 0})).await;
    assert_eq!((status, code(&invalid)), (503, "server.overloaded"));
    assert_eq!(app.call("GET", "/v1/grants?user=u", None).await.0, 200);
    hold.release.send(()).unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    // The place is free again.
    hold.release.send(()).unwrap();
    assert_eq!(app.generate(body).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_resolver_is_rate_limited_with_retry_after() {
    let resolver =
        ResolverConfig { requests_per_minute: 1, burst: 2, max_concurrent_detections: 1, ..ResolverConfig::default() };
    let app =
        App::with(Ok(FakeVision::new()), HttpConfig { resolver, ..HttpConfig::default() }, Arc::new(Builtin)).await;
    let get = || Request::get("/services/supportedAlgorithms").body(Body::empty()).unwrap();
    for _ in 0..2 {
        let (status, algs) = json(app.send(get()).await).await;
        assert_eq!(status, 200);
        assert_eq!(algs["watermarks"][0]["alg"], likeness_watermark::ALG);
    }
    let resp = app.send(get()).await;
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let (status, body) = json(resp).await;
    assert_eq!((status, code(&body)), (429, "resolver.rate_limited"));
    assert!((1..=60).contains(&retry), "{retry}");
    // The tenant API has no such limit.
    assert_eq!(app.call("GET", "/v1/grants?user=u", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn resolver_queries_are_checked() {
    let app = App::new(FakeVision::new()).await;
    let alg = likeness_watermark::ALG;
    for (uri, status, expect) in [
        (format!("/matches/byBinding?alg={alg}"), 400, "resolver.invalid_query"),
        (format!("/matches/byBinding?alg={alg}&value=AAAA"), 400, "resolver.invalid_query"),
        ("/matches/byBinding?alg=com.example.other&value=AAAAAAAAAAA=".to_string(), 400, "resolver.unsupported_alg"),
        (format!("/matches/byBinding?alg={alg}&value=AAAAAAAAAAA=&maxResults=0"), 400, "resolver.invalid_query"),
        ("/manifests/not-a-urn".to_string(), 400, "resolver.invalid_query"),
        ("/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000".to_string(), 404, "resolver.manifest_not_found"),
    ] {
        let (got, body) = json(app.send(Request::get(&uri).body(Body::empty()).unwrap()).await).await;
        assert_eq!((got, code(&body)), (status, expect), "{uri}: {body}");
    }
    let (status, body) = json(
        app.send(Request::get(format!("/matches/byBinding?alg={alg}&value=AAAAAAAAAAA=")).body(Body::empty()).unwrap())
            .await,
    )
    .await;
    assert_eq!((status, body), (200, json!({"matches": []})));
    let upload = |ct: &str, bytes: Vec<u8>| {
        Request::post("/matches/byContent").header("content-type", ct).body(Body::from(bytes)).unwrap()
    };
    for (req, status, expect) in [
        (upload("text/plain", b"hello".to_vec()), 415, "resolver.unsupported_media_type"),
        (upload("image/png", likeness_media::hostile::forged_png(100_000, 100_000)), 413, "resolver.image_too_large"),
        (upload("image/png", png(40, 30)[..40].to_vec()), 400, "resolver.image_corrupt"),
    ] {
        let (got, body) = json(app.send(req).await).await;
        assert_eq!((got, code(&body)), (status, expect), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_models_the_gateway_is_not_ready_and_refuses() {
    let app = App::with(Err("no ONNX Runtime".into()), HttpConfig::default(), Arc::new(Builtin)).await;
    // Anyone learns whether it is ready, and nothing else.
    let (status, ready) = json(app.send(Request::get("/readyz").body(Body::empty()).unwrap()).await).await;
    assert_eq!((status, ready), (503, json!({"ready": false})));
    // The tenant's key shows why.
    let (status, ready) = app.call("GET", "/readyz", None).await;
    assert_eq!(status, 503);
    assert_eq!((&ready["ready"], &ready["checks"]["vision"]["error"]), (&json!(false), &json!("no ONNX Runtime")));
    let (status, body) = app.generate(json!({"user": "u", "prompt": "x", "size": "256x256"})).await;
    assert_eq!((status, code(&body)), (503, "vision.unavailable"));

    let app = App::new(FakeVision::new()).await;
    let (status, ready) = json(app.send(Request::get("/readyz").body(Body::empty()).unwrap()).await).await;
    assert_eq!((status, ready), (200, json!({"ready": true})), "no signer, models or database details in public");
    let (status, ready) = app.call("GET", "/readyz", None).await;
    assert_eq!((status, &ready["checks"]["storage"]["backend"]), (200, &json!("sqlite")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_is_gone_is_storage_unavailable() {
    let app = App::new(FakeVision::new()).await;
    app.state.store.close().await;
    for (method, path, body) in [
        ("GET", "/v1/grants?user=u", None),
        ("POST", "/v1/grants", Some(json!({"user": "u", "photos": ["p"]}))),
        ("POST", "/v1/generations", Some(json!({"user": "u", "prompt": "x", "grant_id": "g"}))),
        ("GET", "/v1/receipts/rcpt_x", None),
    ] {
        let (status, got) = app.call(method, path, body).await;
        assert_eq!((status, code(&got)), (503, "storage.unavailable"), "{method} {path}");
        assert!(!got.to_string().contains("pool"), "the cause is logged, not sent: {got}");
    }
    let (status, body) = json(
        app.send(
            Request::get("/matches/byBinding?alg=org.likeness.wm.1&value=AAAAAAAAAAA=").body(Body::empty()).unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!((status, code(&body)), (503, "storage.unavailable"));
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_and_methods() {
    let app = App::new(FakeVision::new()).await;
    let (status, body) = app.call("PUT", "/v1/generations", None).await;
    assert_eq!((status, code(&body)), (405, "route.method_not_allowed"));
    let (status, body) = app.call("GET", "/v2/anything", None).await;
    assert_eq!((status, code(&body)), (404, "route.not_found"));
    let (status, body) = app.call("GET", "/v1/receipts/rcpt_missing", None).await;
    assert_eq!((status, code(&body)), (404, "receipt.not_found"));
    let (status, body) = app.call("GET", "/v1/subjects/sub_missing", None).await;
    assert_eq!((status, code(&body)), (404, "subject.not_found"));
    let (status, _) = json(app.send(Request::get("/healthz").body(Body::empty()).unwrap()).await).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_generator_is_a_500_with_nothing_returned() {
    let app =
        App::with(Ok(FakeVision::new()), HttpConfig::default(), Arc::new(likeness_testkit::FailingGenerator)).await;
    let (status, body) = app.generate(json!({"user": "u", "prompt": "x", "size": "256x256"})).await;
    assert_eq!((status, code(&body)), (500, "generator.failed"));
    assert!(body.get("images").is_none());
    let _: Value = body;
}
