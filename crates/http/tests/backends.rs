//! Generations through configured backends (loopback fakes of each
//! protocol), and the OpenAI-compatible front door, in process.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use likeness_backends::{Auth, BackendConfig, Kind};
use likeness_testkit::backends::{Behaviour, FakeBackend};
use likeness_testkit::{png, FakeFace, FakeVision, PUBLIC_FIGURE};
use serde_json::{json, Value};
use support::*;

fn generic(fake: &FakeBackend) -> BackendConfig {
    let mut c = BackendConfig::new("studio", Kind::Generic, &fake.base);
    c.model = Some("house-style".into());
    c.backoff = Duration::from_millis(5);
    c.timeout = Duration::from_millis(800);
    c
}

fn openai(fake: &FakeBackend) -> BackendConfig {
    let mut c = BackendConfig::new("cloud", Kind::OpenAi, &fake.base);
    c.model = Some("gpt-image-1".into());
    c.auth = Auth::Bearer("sk-test".into());
    c
}

fn lake(extra: Value) -> Value {
    let mut body = json!({"user": "u", "prompt": "a lake", "size": "256x256"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generation_through_a_backend_is_checked_marked_signed_and_names_it() {
    let fake = FakeBackend::generic();
    let app = App::with_backends(FakeVision::new(), vec![generic(&fake)], None).await;
    let (status, body) = app.generate(lake(json!({"backend": "studio", "references": [upload(&png(40, 30))]}))).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["decision"];
    assert_eq!(d["generator"], "generic/house-style");
    assert_eq!(d["consent"]["processor"], "studio");
    assert_eq!(d["images"][1]["image"], "output 1", "the backend's output went through vision");
    // The reference went out as a PNG re-encoded from its pixels.
    let sent = fake.seen().last_json["references"][0]["data"].as_str().unwrap().to_string();
    let sent = base64::engine::general_purpose::STANDARD.decode(sent).unwrap();
    assert!(sent.starts_with(b"\x89PNG"));
    // The manifest names the backend as the generator.
    let bytes = base64::engine::general_purpose::STANDARD.decode(body["images"][0]["data"].as_str().unwrap()).unwrap();
    let v = likeness_provenance::Verifier::new(None).unwrap().verify_bytes(&bytes).unwrap();
    assert_eq!(v.likeness.unwrap()["generator"], "generic/house-style");

    // Without `backend`: the built-in generator (no default for this tenant).
    let (_, body) = app.generate(lake(json!({}))).await;
    assert_eq!(body["decision"]["generator"], "builtin/watercolor");
    let (status, body) = app.generate(lake(json!({"backend": "nope"}))).await;
    assert_eq!((status, code(&body)), (422, "generator.unknown"));
    assert!(body["error"]["message"].as_str().unwrap().contains("builtin, studio"), "{body}");
    // Readiness lists the backends and their circuit breakers.
    let (status, ready) = app.call("GET", "/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["checks"]["generator"]["backends"],
        json!([{"name": "studio", "type": "generic", "generator": "generic/house-style", "breaker": "closed"}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_default_backend_is_used_when_the_request_names_none() {
    let fake = FakeBackend::generic();
    let app = App::with_backends(FakeVision::new(), vec![generic(&fake)], Some("studio")).await;
    let (_, body) = app.generate(lake(json!({}))).await;
    assert_eq!(body["decision"]["generator"], "generic/house-style");
    let (_, body) = app.generate(lake(json!({"backend": "builtin"}))).await;
    assert_eq!(body["decision"]["generator"], "builtin/watercolor");
}

/// What a backend returns is untrusted: wrong answers are refused, never
/// passed on, and failures are clear.
#[tokio::test(flavor = "multi_thread")]
async fn bad_answers_and_failing_backends_are_refused_clearly() {
    let fake = FakeBackend::generic();
    let app = App::with_backends(FakeVision::new(), vec![generic(&fake)], Some("studio")).await;
    for (behaviour, status, want, mentions) in [
        (Behaviour::Bomb, 502, "generator.bad_response", "100000x100000"),
        (Behaviour::WrongSize, 502, "generator.bad_response", "128x128, 256x256 was asked"),
        (Behaviour::WrongCount, 502, "generator.bad_response", "2 images for the 1 asked"),
        (Behaviour::Garbage, 502, "generator.bad_response", "studio"),
        (Behaviour::Slow(Duration::from_secs(5)), 504, "generator.timeout", "studio"),
        (Behaviour::Down, 503, "generator.unavailable", "studio"),
    ] {
        fake.behave(behaviour.clone());
        let (got, body) = app.generate(lake(json!({}))).await;
        assert_eq!((got, code(&body)), (status, want), "{behaviour:?}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(mentions), "{behaviour:?}: {body}");
        assert!(body.get("images").is_none());
    }
    // The operator sees each failure counted against the backend.
    let metrics = scrape(&app).await;
    for (code, n) in [("generator.bad_response", 4), ("generator.timeout", 1), ("generator.unavailable", 1)] {
        let line = format!("likeness_backend_errors_total{{backend=\"studio\",code=\"{code}\"}} {n}");
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_names_the_backends_its_photos_may_go_to() {
    let fake = FakeBackend::generic();
    let mut other = generic(&fake);
    other.name = "cloud".into();
    let app = App::with_backends(FakeVision::new(), vec![generic(&fake), other], None).await;
    let (_, grant) =
        app.call("POST", "/v1/grants", Some(json!({"user": "u", "photos": ["m1"], "processors": ["studio"]}))).await;
    assert_eq!(grant["processors"], json!(["studio"]));
    let id = grant["id"].as_str().unwrap();
    let library = |backend: &str| {
        lake(json!({"backend": backend, "grant_id": id,
                    "references": [{"library": {"media_item_id": "m1", "access_token": "t"}}]}))
    };
    let (status, body) = app.generate(library("cloud")).await;
    assert_eq!((status, code(&body)), (403, "consent.processor_not_allowed"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("backend cloud"));
    // A backend that is not configured cannot be named.
    let (status, body) =
        app.call("POST", "/v1/grants", Some(json!({"user": "u", "photos": ["m1"], "processors": ["studoi"]}))).await;
    assert_eq!((status, code(&body)), (422, "request.invalid"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("builtin, cloud, studio"), "{body}");
    // Allowed: consent passes, and the (unconfigured) library is next to answer.
    for backend in ["studio", "builtin"] {
        let (status, body) = app.generate(library(backend)).await;
        assert_eq!((status, code(&body)), (422, "photos.not_configured"), "{backend}: {body}");
    }
}

async fn openai_call(
    app: &App,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> axum::http::Response<Body> {
    let mut req =
        Request::post(path).header("content-type", content_type).header("authorization", format!("Bearer {KEY}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::from(body)).unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_door_answers_in_openais_shape() {
    let fake = FakeBackend::openai("sk-test");
    let app = App::with_backends(FakeVision::new(), vec![openai(&fake)], None).await;
    let body = json!({"model": "gpt-image-1", "prompt": "a lake", "size": "256x256", "n": 2, "quality": "high"});
    let resp = openai_call(
        &app,
        "/v1/images/generations",
        "application/json",
        body.to_string().into_bytes(),
        &[("x-likeness-user", "u")],
    )
    .await;
    let request_id = resp.headers()["x-likeness-request-id"].to_str().unwrap().to_string();
    let receipt = resp.headers()["x-likeness-receipt"].to_str().unwrap().to_string();
    let (status, answer) = json(resp).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["created"].as_u64().unwrap() > 0);
    assert_eq!((answer["output_format"].as_str(), answer["size"].as_str()), (Some("png"), Some("256x256")));
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert!(request_id.starts_with("req_") && receipt.starts_with("rcpt_"));
    // `model` found the backend that serves it; quality went along.
    assert_eq!(fake.seen().last_json["quality"], "high");
    let (status, stored) = app.call("GET", &format!("/v1/receipts/{receipt}"), None).await;
    assert_eq!((status, &stored["processor"]), (200, &json!("cloud")));

    // `model: builtin` is the built-in generator; OpenAI's other fields are
    // understood (`output_compression` is the JPEG quality).
    let mut sizes = Vec::new();
    for compression in [20, 95] {
        let body = json!({"model": "builtin", "prompt": "a lake", "size": "256x256", "user": "u",
                          "output_format": "jpeg", "output_compression": compression, "moderation": "low"});
        let (status, answer) = json(
            openai_call(&app, "/v1/images/generations", "application/json", body.to_string().into_bytes(), &[]).await,
        )
        .await;
        assert_eq!((status, answer["output_format"].as_str()), (200, Some("jpeg")), "{answer}");
        sizes.push(answer["data"][0]["b64_json"].as_str().unwrap().len());
    }
    assert!(sizes[0] < sizes[1], "quality 20 makes a smaller file than 95: {sizes:?}");

    // Errors in OpenAI's shape, with our code, and no retry advised.
    for (body, status, want, param) in [
        (json!({"prompt": "x"}), 422, "request.user_invalid", json!("user")),
        (
            json!({"prompt": "x", "user": "u", "response_format": "url"}),
            400,
            "request.response_format_unsupported",
            json!("response_format"),
        ),
        (
            json!({"prompt": "x", "user": "u", "output_format": "webp"}),
            422,
            "request.output_format_unknown",
            json!("output_format"),
        ),
        (json!({"prompt": "x", "user": "u", "model": "dall-e-3"}), 422, "generator.unknown", json!("model")),
        (json!({"prompt": "x", "user": "u", "size": "big"}), 422, "request.size_invalid", json!("size")),
        (json!({"prompt": "x", "user": "u", "stream": true}), 422, "request.invalid", Value::Null),
        (json!({"prompt": "x", "user": "u", "output_compression": 101}), 422, "request.invalid", Value::Null),
        (json!({"prompt": "x", "user": "u", "colour": "red"}), 422, "request.invalid", Value::Null),
    ] {
        let resp =
            openai_call(&app, "/v1/images/generations", "application/json", body.to_string().into_bytes(), &[]).await;
        assert_eq!(resp.headers()["x-should-retry"], "false");
        let (got, e) = json(resp).await;
        assert_eq!((got, e["error"]["code"].as_str().unwrap()), (status, want), "{body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], param, "{e}");
        assert!(e["error"]["message"].is_string());
    }
    let resp = app
        .send(
            Request::post("/v1/images/generations")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    let (status, e) = json(resp).await;
    assert_eq!(
        (status, &e["error"]["type"], &e["error"]["code"]),
        (401, &json!("authentication_error"), &json!("auth.missing"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_door_edits_one_or_several_images_and_refuses_in_openais_shape() {
    let vision = FakeVision::new().shows(50, 50, &[FakeFace::adult(PUBLIC_FIGURE)], 0.0);
    let app = App::with_backends(vision, vec![], None).await;
    let (a, b) = (png(40, 30), png(44, 30));
    for files in [vec![("image", "a.png", &a[..])], vec![("image[]", "a.png", &a[..]), ("image[]", "upload", &b[..])]] {
        let (ct, body) = multipart(&[("prompt", "as a sketch"), ("size", "256x256"), ("model", "builtin")], &files);
        let (status, answer) =
            json(openai_call(&app, "/v1/images/edits", &ct, body, &[("x-likeness-user", "u")]).await).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"].as_array().unwrap().len(), 1);
    }
    let figure = png(50, 50);
    let (ct, body) = multipart(&[("prompt", "as a sketch"), ("size", "256x256")], &[("image", "f.png", &figure[..])]);
    let (status, e) = json(openai_call(&app, "/v1/images/edits", &ct, body, &[("x-likeness-user", "u")]).await).await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(
        (&e["error"]["code"], &e["error"]["type"]),
        (&json!("vision.public_figure"), &json!("permission_error"))
    );
    assert_eq!(e["error"]["param"], Value::Null);
    let (ct, body) = multipart(&[("prompt", "x")], &[]);
    let (status, e) = json(openai_call(&app, "/v1/images/edits", &ct, body, &[("x-likeness-user", "u")]).await).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("request.invalid")), "{e}");
    let (ct, body) = multipart(&[("prompt", "x"), ("mask", "m")], &[("image", "a.png", &a[..])]);
    let (status, e) = json(openai_call(&app, "/v1/images/edits", &ct, body, &[("x-likeness-user", "u")]).await).await;
    assert_eq!(status, 422, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("mask"));
    // Not a form: the body's type is wrong (415), as JSON's routes answer.
    for content_type in ["application/json", "multipart/form-data"] {
        let body = br#"{"prompt": "x"}"#.to_vec();
        let (status, e) =
            json(openai_call(&app, "/v1/images/edits", content_type, body, &[("x-likeness-user", "u")]).await).await;
        assert_eq!((status, e["error"]["code"].as_str()), (415, Some("request.unsupported_media_type")), "{e}");
    }
}
