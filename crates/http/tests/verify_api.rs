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

async fn by_content(app: &App, bytes: Vec<u8>) -> (u16, Value) {
    let req = Request::post("/matches/byContent").header("content-type", "image/png").body(Body::from(bytes)).unwrap();
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
    assert_eq!(copy["watermark"]["content"], "matches", "{copy}");
    // The resolver finds it from the image too.
    let (status, found) = by_content(&app, stripped.clone()).await;
    assert_eq!((status, found["matches"][0]["manifestId"].as_str()), (200, image["manifest_id"].as_str()), "{found}");

    // The copy attack: the output's fine detail, mark included, added to
    // another photo. The mark reads as the output's, but the picture is not
    // the output, so nothing is recovered and the resolver finds nothing.
    let photo =
        likeness_media::decode(&likeness_testkit::fixture_bytes("scenes/rocket.jpg"), None, &Default::default())
            .unwrap()
            .pixels;
    let photo = image::imageops::resize(&photo, 512, 512, image::imageops::FilterType::Triangle);
    let forged =
        likeness_media::encode(&likeness_testkit::transplant(&pixels, &photo), likeness_media::OutputFormat::Png)
            .unwrap();
    let (status, moved) = verify(&app, "image/png", forged.clone()).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (moved["watermark"]["detected"].as_bool(), moved["watermark"]["content"].as_str()),
        (Some(true), Some("differs")),
        "{moved}"
    );
    assert_eq!(moved["source"], "none", "{moved}");
    assert!(moved["recovered"].is_null(), "{moved}");
    assert!(moved["verdict"].as_str().unwrap().contains("copied onto another image"), "{moved}");
    let (status, found) = by_content(&app, forged).await;
    assert_eq!((status, found), (200, json!({"matches": []})));

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

/// `n` chunks of 1 MiB with no length announced (sent chunked), so the cut
/// is made while reading, not on `Content-Length`.
struct Endless(usize);

impl http_body::Body for Endless {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(vec![0u8; 1 << 20].into()))))
    }
}

/// A loopback web server for `{"url": ...}`: images by path, redirects of
/// every kind, an error, a huge answer and a slow one.
async fn web_server(files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = std::sync::Arc::new(files);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let files = files.clone();
        async move {
            let path = uri.path();
            let redirect = |to: String| (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
            let r: Response = match path {
                "/hop" => redirect("/hop2".into()),
                "/hop2" => redirect(format!("http://127.0.0.1:{port}/stripped.jpg")),
                "/loop" => redirect("/loop".into()),
                "/to-private" => redirect("https://10.0.0.1/x.jpg".into()),
                "/to-metadata" => redirect("http://169.254.169.254/latest/meta-data/".into()),
                "/to-localhost" => redirect(format!("https://localhost:{port}/stripped.jpg")),
                "/to-http" => redirect("http://example.com/x.jpg".into()),
                "/missing" => StatusCode::NOT_FOUND.into_response(),
                "/huge" => vec![0u8; 26 * 1024 * 1024].into_response(),
                "/huge-streamed" => axum::body::Body::new(Endless(26)).into_response(),
                "/slow" => {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    StatusCode::OK.into_response()
                }
                _ => match files.iter().find(|(p, _)| *p == path) {
                    Some((_, bytes)) => ([(header::CONTENT_TYPE, "image/jpeg")], bytes.clone()).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                },
            };
            r
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn verify_url(app: &App, url: &str) -> (u16, Value) {
    let req = Request::post("/v1/verify")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "url": url }).to_string()))
        .unwrap();
    json(app.send(req).await).await
}

/// A gateway whose URL fetches may reach `exempt` (a loopback server), on
/// `database` (none: its own).
async fn gateway(exempt: Vec<String>, config: likeness_http::HttpConfig, database: Option<String>) -> App {
    let setup = Setup {
        web: likeness_photos::WebConfig { exempt_origins: exempt, timeout: std::time::Duration::from_secs(2) },
        database,
        ..Setup::default()
    };
    let generator = std::sync::Arc::new(likeness_generators::Builtin);
    App::build_with(Ok(FakeVision::new()), config, generator, likeness_testkit::policies(), setup).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_checked_by_url_and_no_url_reaches_a_private_address() {
    let config = likeness_http::HttpConfig {
        trust_anchors: Some(likeness_testkit::signer().1),
        // More requests than one address gets by default: every case below.
        resolver: likeness_http::ResolverConfig { burst: 100, ..Default::default() },
        ..likeness_http::HttpConfig::default()
    };
    // The server's port must be exempt before the gateway is built, and the
    // images exist only after: a first gateway makes them, and the second,
    // on the same database with the same keys, checks them.
    let maker = gateway(Vec::new(), config.clone(), None).await;
    let (status, body) =
        maker.generate(json!({"user": "u", "prompt": "a lake", "size": "512x512", "output_format": "png"})).await;
    assert_eq!(status, 200, "{body}");
    let output = base64::engine::general_purpose::STANDARD.decode(body["images"][0]["data"].as_str().unwrap()).unwrap();
    let pixels = likeness_media::decode(&output, None, &Default::default()).unwrap().pixels;
    let stripped = likeness_media::encode(&pixels, likeness_media::OutputFormat::Jpeg { quality: 85 }).unwrap();
    let port = web_server(vec![("/fresh.png", output), ("/stripped.jpg", stripped)]).await;
    let database = maker.dir.path().join("likeness.db").display().to_string();
    let app = gateway(vec![format!("127.0.0.1:{port}")], config, Some(database)).await;

    // A fresh output by URL: its own credentials, trusted.
    let (status, fresh) = verify_url(&app, &format!("http://127.0.0.1:{port}/fresh.png")).await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(
        (fresh["source"].as_str(), fresh["credentials"]["state"].as_str()),
        (Some("credentials"), Some("trusted"))
    );
    assert!(fresh["verdict_id"].as_str().unwrap().starts_with("req_"), "{fresh}");

    // A stripped copy behind two redirects: recovered through the mark.
    let (status, copy) = verify_url(&app, &format!("http://127.0.0.1:{port}/hop")).await;
    assert_eq!(status, 200, "{copy}");
    assert_eq!((copy["source"].as_str(), copy["recovered"]["state"].as_str()), (Some("watermark"), Some("trusted")));

    // What is refused, and with which code. None of these opens a connection
    // to a private address: literals are checked as written, names after DNS.
    let base = format!("http://127.0.0.1:{port}");
    let cases: &[(&str, u16, &str)] = &[
        ("http://example.com/x.jpg", 422, "verify.url_invalid"),
        ("ftp://example.com/x.jpg", 422, "verify.url_invalid"),
        ("file:///etc/passwd", 422, "verify.url_invalid"),
        ("not a url", 422, "verify.url_invalid"),
        ("https://user:pw@example.com/x.jpg", 422, "verify.url_invalid"),
        ("https://127.0.0.1:1/x.jpg", 422, "verify.url_not_public"),
        ("https://[::1]/x.jpg", 422, "verify.url_not_public"),
        ("https://169.254.169.254/latest/meta-data/", 422, "verify.url_not_public"),
        ("https://[::ffff:169.254.169.254]/", 422, "verify.url_not_public"),
        ("https://0x7f.0.0.1/x.jpg", 422, "verify.url_not_public"),
        ("https://localhost:1/x.jpg", 422, "verify.url_not_public"),
        ("/to-private", 422, "verify.url_not_public"),
        ("/to-metadata", 422, "verify.url_invalid"),
        ("/to-localhost", 422, "verify.url_not_public"),
        ("/to-http", 422, "verify.url_invalid"),
        ("/loop", 502, "verify.url_unavailable"),
        ("/missing", 502, "verify.url_unavailable"),
        ("/slow", 502, "verify.url_unavailable"),
        ("/huge", 413, "resolver.image_too_large"),
        ("/huge-streamed", 413, "resolver.image_too_large"),
    ];
    for (url, want_status, want_code) in cases {
        let url = if url.starts_with('/') { format!("{base}{url}") } else { url.to_string() };
        let (status, body) = verify_url(&app, &url).await;
        assert_eq!((status, code(&body)), (*want_status, *want_code), "{url}: {body}");
    }

    // Malformed requests.
    let send = |body: &'static str| {
        Request::post("/v1/verify").header("content-type", "application/json").body(Body::from(body)).unwrap()
    };
    let (status, body) = json(app.send(send("{\"url\":")).await).await;
    assert_eq!((status, code(&body)), (400, "request.malformed"), "{body}");
    let (status, body) = json(app.send(send("{\"url\": \"https://example.com/\", \"x\": 1}")).await).await;
    assert_eq!((status, code(&body)), (422, "request.invalid"), "{body}");
}

async fn feedback(app: &App, body: Value) -> (u16, Value) {
    let req = Request::post("/v1/verify/feedback")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    json(app.send(req).await).await
}

#[tokio::test(flavor = "multi_thread")]
async fn feedback_on_a_verdict_is_stored_without_the_image_and_rate_limited() {
    let config = likeness_http::HttpConfig {
        resolver: likeness_http::ResolverConfig { requests_per_minute: 1, burst: 6, ..Default::default() },
        ..likeness_http::HttpConfig::default()
    };
    let app = gateway(Vec::new(), config, None).await;
    let (status, answer) = verify(&app, "image/png", likeness_testkit::png(64, 48)).await;
    assert_eq!(status, 200, "{answer}");
    let verdict_id = answer["verdict_id"].as_str().unwrap().to_string();

    let (status, got) = feedback(
        &app,
        json!({"verdict_id": verdict_id, "choice": "incorrect", "comment": "  I made this with an AI app\u{1b}[2J "}),
    )
    .await;
    assert_eq!(status, 201, "{got}");
    assert_eq!((got["verdict_id"].as_str(), got["choice"].as_str()), (Some(verdict_id.as_str()), Some("incorrect")));
    let stored = app.state.store.feedback(0, None, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, got["id"].as_str().unwrap());
    assert_eq!(stored[0].comment, "I made this with an AI app[2J", "control characters dropped");
    assert_eq!(stored[0].received_at_ms, START_MS);

    let long = "x".repeat(1001);
    let cases = [
        (json!({"verdict_id": verdict_id, "choice": "maybe"}), "request.invalid"),
        (json!({"verdict_id": "req_nothex", "choice": "correct"}), "request.invalid"),
        (json!({"verdict_id": verdict_id, "choice": "correct", "comment": long}), "request.invalid"),
        (json!({"verdict_id": verdict_id, "choice": "correct", "image": "AAAA"}), "request.invalid"),
    ];
    for (body, want) in cases {
        let (status, answer) = feedback(&app, body.clone()).await;
        assert_eq!((status, code(&answer)), (422, want), "{body}: {answer}");
    }
    // Only the first was stored; the next one is over the address's rate.
    assert_eq!(app.state.store.feedback(0, None, 10).await.unwrap().len(), 1);
    let (status, answer) = feedback(&app, json!({"verdict_id": verdict_id, "choice": "correct"})).await;
    assert_eq!((status, code(&answer)), (429, "resolver.rate_limited"), "{answer}");
}
