//! `POST /v1/verify`, the public detection API: a fresh output, a stripped
//! copy, an unrelated photo and bad uploads, as a person would send them.

mod support;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use likeness_testkit::FakeVision;
use serde_json::{json, Value};
use support::*;

async fn verify(app: &App, mime: &str, bytes: Vec<u8>) -> (u16, Value) {
    let req = Request::post("/v1/verify").header("content-type", mime).body(Body::from(bytes)).unwrap();
    json(app.send(req).await).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_detection_api_reads_credentials_recovers_them_from_the_watermark_and_says_so() {
    let config = likeness_http::HttpConfig {
        trust_anchors: Some(likeness_testkit::signer().1),
        ..likeness_http::HttpConfig::default()
    };
    let app = App::with(Ok(FakeVision::new()), config, std::sync::Arc::new(likeness_generators::Builtin)).await;
    let (status, body) =
        app.generate(json!({"user": "u", "prompt": "a lake", "size": "512x512", "output_format": "png"})).await;
    assert_eq!(status, 200, "{body}");
    let image = &body["images"][0];
    let output = base64::engine::general_purpose::STANDARD.decode(image["data"].as_str().unwrap()).unwrap();

    // A fresh output: its own credentials, trusted, naming the provider.
    let (status, fresh) = verify(&app, "image/png", output.clone()).await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["source"], "credentials");
    assert_eq!(fresh["credentials"]["state"], "trusted", "{fresh}");
    assert_eq!(fresh["watermark"]["detected"], true);
    let verdict = fresh["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("Made with AI") && verdict.contains("signed by a trusted signer"), "{verdict}");

    // Stripped (decoded and re-encoded, no metadata): recovered through the mark.
    let pixels = likeness_media::decode(&output, None, &Default::default()).unwrap().pixels;
    let stripped = likeness_media::encode(&pixels, likeness_media::OutputFormat::Jpeg { quality: 85 }).unwrap();
    let (status, copy) = verify(&app, "image/jpeg", stripped.clone()).await;
    assert_eq!(status, 200, "{copy}");
    assert_eq!(copy["source"], "watermark", "{copy}");
    assert!(copy["credentials"].is_null());
    assert_eq!(copy["recovered"]["manifest_id"], image["manifest_id"]);
    assert_eq!(copy["recovered"]["state"], "trusted");
    assert_eq!(
        copy["recovered"]["credentials"]["asset"],
        format!("urn:likeness:asset:{}", image["asset_id"].as_str().unwrap())
    );
    assert!(copy["verdict"].as_str().unwrap().contains("recovered from the invisible watermark"), "{copy}");

    // The same as a form upload (the field `file`).
    let (content_type, form) = multipart(&[("note", "x")], &[("file", "copy.jpg", &stripped)]);
    let (status, by_form) = verify(&app, &content_type, form).await;
    assert_eq!(status, 200, "{by_form}");
    assert_eq!(by_form["recovered"]["manifest_id"], image["manifest_id"]);
    let (content_type, form) = multipart(&[("note", "x")], &[]);
    let (status, body) = verify(&app, &content_type, form).await;
    assert_eq!((status, code(&body)), (400, "resolver.invalid_query"), "{body}");

    // An unrelated photo: nothing to say either way.
    let (status, other) = verify(&app, "image/png", likeness_testkit::png(300, 200)).await;
    assert_eq!(status, 200);
    assert_eq!((other["source"].as_str(), other["watermark"]["detected"].as_bool()), (Some("none"), Some(false)));
    assert!(other["verdict"].as_str().unwrap().contains("does not tell"), "{other}");

    // No personal data: no user, no prompt, nowhere in the answers.
    for answer in [&fresh, &copy] {
        let text = answer.to_string();
        assert!(!text.contains("a lake") && !text.contains("\"u\""), "{text}");
    }

    // Bad uploads get the resolver's codes; no API key is needed for any of this.
    let (status, body) = verify(&app, "image/png", b"not an image".to_vec()).await;
    assert_eq!((status, code(&body)), (415, "resolver.unsupported_media_type"), "{body}");
    let (status, body) = verify(&app, "image/png", output[..300].to_vec()).await;
    assert_eq!((status, code(&body)), (400, "resolver.image_corrupt"), "{body}");
    let (status, body) = verify(&app, "text/plain", b"hello".to_vec()).await;
    assert_eq!((status, code(&body)), (415, "resolver.unsupported_media_type"), "{body}");
    let (status, body) = verify(&app, "image/png", Vec::new()).await;
    assert_eq!((status, code(&body)), (400, "resolver.invalid_query"), "{body}");
}
