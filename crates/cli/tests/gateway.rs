//! End to end through the real binary: generate, then check the outputs with
//! `likeness verify` and with the independent reference reader.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

fn decode_images(resp: &Value) -> Vec<(String, Vec<u8>)> {
    resp["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["mime"].as_str().unwrap().to_string(), B64.decode(i["data"].as_str().unwrap()).unwrap()))
        .collect()
}

#[test]
fn generated_images_are_signed_and_both_readers_agree() {
    let server = Server::start();
    // A cat: every person in the fixtures is in the shipped public-figure gallery.
    let photo = fixture_bytes("scenes/chelsea.png");
    let user = "user-7f3a9c";
    let prompt = "my cat as a watercolour, secret-prompt-marker";
    let (status, resp) = server.generate(&json!({
        "user": user, "prompt": prompt, "references": [upload(&photo, "image/png")],
        "n": 2, "size": "512x640", "seed": 42
    }));
    assert_eq!(status, 200, "{resp}");
    assert!(resp["id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(resp["decision"]["style"], "watercolor");
    let images = decode_images(&resp);
    assert_eq!(images.len(), 2);
    assert_ne!(resp["images"][0]["asset_id"], resp["images"][1]["asset_id"]);

    let (status, png_resp) = server.generate(&json!({
        "user": user, "prompt": "a lake at sunset", "style": "poster", "size": "256x256", "output_format": "png"
    }));
    assert_eq!(status, 200, "{png_resp}");
    let png = decode_images(&png_resp).remove(0);
    assert_eq!(png.0, "image/png");

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (mime, bytes)) in images.iter().chain(std::iter::once(&png)).enumerate() {
        assert!(likeness_media::decode(bytes, None, &Default::default()).is_ok(), "output {i} does not decode");
        // The manifest carries no prompt text and no user id.
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("secret-prompt-marker") && !text.contains(user), "output {i} leaks request text");
        let ext = if mime == "image/png" { "png" } else { "jpg" };
        let path = dir.path().join(format!("out{i}.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    let paths: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let ca = server.ca_pem();
    let ca_str = ca.to_str().unwrap();

    // Trusted with the dev CA, by both.
    let (code, ours) = likeness_verify(
        &[&["--trust", ca_str][..], &paths.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>()].concat(),
    );
    assert_eq!(code, 0, "{ours:?}");
    let theirs = reference_read(&paths, Some(&ca));
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o["state"], "trusted", "{o}");
        assert_eq!(t["state"], "trusted", "{t}");
        assert_eq!(o["failures"], json!([]));
        assert_eq!(t["failures"], json!([]));
        assert_eq!(o["hard_binding_intact"], true);
        assert_eq!(o["signer"], "likeness development signer");
        // The latent disclosure, read back by both: provider, system,
        // time of creation and the asset's identifier.
        let d = &t["disclosure"];
        assert_eq!(d["provider"], "likeness development gateway", "{t}");
        assert_eq!(o["provider"], d["provider"]);
        assert_eq!(d["generator"], format!("likeness {}", env!("CARGO_PKG_VERSION")));
        assert!(d["created"].as_str().is_some_and(|c| c.starts_with("20")), "{t}");
        assert_eq!(o["created"], d["created"]);
        assert_eq!(d["identifier"], d["instance_id"]);
        assert_eq!(o["asset"], d["identifier"]);
    }
    for (o, image) in ours.iter().zip(resp["images"].as_array().unwrap()) {
        let urn = format!("urn:likeness:asset:{}", image["asset_id"].as_str().unwrap());
        assert_eq!(o["asset"], urn.as_str());
    }
    // What the manifest says.
    let first = &ours[0];
    assert_eq!(first["actions"][0]["action"], "c2pa.created");
    assert_eq!(
        first["actions"][0]["digital_source_type"],
        "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
    );
    assert!(first["actions"][0]["software_agent"].as_str().unwrap().starts_with("likeness "));
    // The watermark is declared, beside the soft binding it carries (C2PA 2.2).
    assert_eq!(first["actions"][1]["action"], "c2pa.watermarked");
    // The reference is named by HMAC-SHA256 under a key derived from the
    // operator's watermark key: the operator can recompute it, nobody else can.
    let wm = std::fs::read_to_string(server.data_dir.path().join("keys/watermark.key")).unwrap();
    let mut wm_bytes = [0u8; 32];
    hex::decode_to_slice(wm.trim(), &mut wm_bytes).unwrap();
    let key = likeness_watermark::Key::new(wm_bytes).derive(likeness_pipeline::INGREDIENT_KEY_PURPOSE);
    let keyed = likeness_pipeline::ingredient_hash(&key, &photo);
    assert_eq!(first["ingredients"][0]["hash"], format!("hmac-sha256:{keyed}"));
    let plain = likeness_media::sha256_hex(&photo);
    assert!(files.iter().all(|f| !String::from_utf8_lossy(&std::fs::read(f).unwrap()).contains(&plain)));
    assert_eq!(first["ingredients"][0]["relationship"], "inputTo");
    assert_eq!(first["manifest_id"], resp["images"][0]["manifest_id"]);
    let scene = &ours[2];
    assert_eq!(
        scene["actions"][0]["digital_source_type"],
        "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    );
    assert_eq!(scene["ingredients"], json!([]));

    // Without anchors: valid, and an untrusted signer is the only failure.
    let (code, ours) = likeness_verify(&paths.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>());
    assert_eq!(code, 0);
    for (o, t) in ours.iter().zip(reference_read(&paths, None)) {
        assert_eq!(o["state"], "valid", "{o}");
        assert_eq!(t["state"], "valid", "{t}");
        assert_eq!(
            o["failures"].as_array().unwrap().iter().map(|f| f["code"].clone()).collect::<Vec<_>>(),
            vec![json!("signingCredential.untrusted")]
        );
        assert_eq!(t["failures"], json!(["signingCredential.untrusted"]));
    }

    // One flipped byte of image data: both say invalid, hard binding broken.
    for path in &files {
        let mut bytes = std::fs::read(path).unwrap();
        flip_image_byte(&mut bytes);
        std::fs::write(path, bytes).unwrap();
    }
    let (code, ours) = likeness_verify(
        &[&["--trust", ca_str][..], &paths.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>()].concat(),
    );
    assert_eq!(code, 1);
    for (o, t) in ours.iter().zip(reference_read(&paths, Some(&ca))) {
        assert_eq!(o["state"], "invalid", "{o}");
        assert_eq!(t["state"], "invalid", "{t}");
        assert_eq!(o["hard_binding_intact"], false);
        assert!(t["failures"].as_array().unwrap().contains(&json!("assertion.dataHash.mismatch")), "{t}");
    }
}

/// The same seed paints the same picture; each asset still gets its own
/// watermark (its payload is the asset id), so the pixels differ by two
/// faint marks and nothing else.
#[test]
fn same_seed_same_picture_each_with_its_own_mark() {
    let server = Server::start();
    let body = json!({"user": "u", "prompt": "a forest in winter", "style": "sketch", "size": "256x256", "seed": 7, "output_format": "png"});
    let (_, a) = server.generate(&body);
    let (_, b) = server.generate(&body);
    let pixels = |r: &Value| likeness_media::decode(&decode_images(r)[0].1, None, &Default::default()).unwrap().pixels;
    let (pa, pb) = (pixels(&a), pixels(&b));
    assert_ne!(a["images"][0]["asset_id"], b["images"][0]["asset_id"]);
    let mse = pa.as_raw().iter().zip(pb.as_raw()).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>()
        / pa.as_raw().len() as f64;
    let psnr = 10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10();
    assert!(psnr > 30.0, "the same request and seed should give the same picture (PSNR {psnr:.1} dB)");
    assert!(pa != pb, "two assets, two marks");
}

/// Each case of tests/cases/bad_requests.json gets its status and code
/// from the real binary, and the server stays healthy after all of them.
/// (`crates/http/tests` runs the same cases in process.)
#[test]
fn bad_requests_get_clear_errors() {
    use likeness_testkit::{Auth, BAD_REQUEST_BODY_LIMIT};
    let server = Server::start_with_config(&format!("[limits]\nmax_body_bytes = {BAD_REQUEST_BODY_LIMIT}\n"));
    let client = Server::client();
    let mut failures = Vec::new();
    for case in likeness_testkit::bad_requests() {
        let mut req = client.post(format!("{}{}", server.base, case.path));
        req = match case.auth {
            Auth::None => req,
            Auth::Wrong => req.bearer_auth("lk_wrong_key"),
            Auth::Basic => req.header("authorization", "Basic dXNlcjpwYXNz"),
            Auth::Key => req.bearer_auth(&server.api_key),
        };
        let resp = req.header("content-type", &case.content_type).body(case.body).send().unwrap();
        let status = resp.status().as_u16();
        let got: Value = resp.json().unwrap_or(Value::Null);
        let code = got["error"]["code"].as_str().unwrap_or("<no error code>");
        let message = got["error"]["message"].as_str().unwrap_or("");
        if status != case.status || code != case.code || message.is_empty() {
            failures
                .push(format!("{}: got {status} {code} {message:?}, want {} {}", case.name, case.status, case.code));
        }
        assert!(server.healthy(), "server unhealthy after case {}", case.name);
    }
    assert!(failures.is_empty(), "cases that failed:\n{}", failures.join("\n"));
    // And it still serves a good request.
    let (status, _) = server.generate(&likeness_testkit::good_request());
    assert_eq!(status, 200);
}

#[test]
fn a_public_figure_in_a_reference_is_refused_with_the_decision() {
    let server = Server::start();
    let (status, resp) = server.generate(&json!({
        "user": "u", "prompt": "as a sketch", "size": "256x256",
        "references": [upload(&fixture_bytes("faces/grace_hopper.jpg"), "image/jpeg")]
    }));
    assert_eq!(status, 403, "{resp}");
    assert_eq!(resp["error"]["code"], "vision.public_figure");
    assert!(resp["error"]["message"].as_str().unwrap().contains("Grace Hopper"));
    let decision = &resp["error"]["decision"];
    assert_eq!(decision["action"], "block");
    assert_eq!(decision["images"][0]["image"], "reference 1");
    assert_eq!(decision["images"][0]["faces"][0]["matches"][0]["id"], "grace-hopper");
    assert_eq!(decision["images"].as_array().unwrap().len(), 1, "nothing was generated");
    let tasks: Vec<&str> = decision["models"].as_array().unwrap().iter().map(|m| m["task"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["face_detection", "age", "face_embedding", "nsfw"]);
    assert!(!resp.to_string().contains("embedding\":"), "embeddings never leave the gateway");
}

#[test]
fn faces_carry_through_to_outputs_and_are_checked_there() {
    // With an empty gallery Grace Hopper is a private person; enrolled as a
    // subject and declared, generation goes on, and the output check must
    // see her face in every style's output.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-gallery.json");
    std::fs::write(
        &empty,
        r#"{"format": "likeness.gallery.v1", "model": "dlib_face_recognition_resnet_model_v1", "entries": []}"#,
    )
    .unwrap();
    let server = Server::start_with("", &["--gallery", empty.to_str().unwrap()]);
    let photo = fixture_bytes("faces/grace_hopper.jpg");
    let (status, subject) = server.call(
        "POST",
        "/v1/subjects",
        Some(&json!({"user": "u", "name": "G.", "relationship": "self", "enroll": [upload(&photo, "image/jpeg")]})),
    );
    assert_eq!(status, 201, "{subject}");
    // One subject is one person.
    let other = fixture_bytes("faces/obama.jpg");
    let (status, resp) = server.call(
        "POST",
        "/v1/subjects",
        Some(&json!({"user": "u", "name": "G.", "relationship": "self",
                     "enroll": [upload(&photo, "image/jpeg"), upload(&other, "image/jpeg")]})),
    );
    assert_eq!((status, resp["error"]["code"].as_str()), (422, Some("subject.enroll_different_people")), "{resp}");
    for style in ["watercolor", "sketch", "cartoon", "poster", "vintage", "oil-painting"] {
        let (status, resp) = server.generate(&json!({
            "user": "u", "prompt": "portrait", "style": style, "size": "512x512",
            "references": [upload(&photo, "image/jpeg")], "subjects": [subject["id"]]
        }));
        assert_eq!(status, 200, "{style}: {resp}");
        let d = &resp["decision"];
        assert_eq!(
            d["checks"],
            json!([
                "consent.photos",
                "consent.subjects",
                "vision.references",
                "policy.pre",
                "vision.outputs",
                "policy.post",
                "watermark"
            ])
        );
        assert_eq!(d["images"][0]["faces"][0]["label"], "consenting_subject");
        assert_eq!(d["images"][0]["faces"].as_array().unwrap().len(), 1, "{style}: reference");
        assert_eq!(d["images"][1]["image"], "output 1");
        assert!(!d["images"][1]["faces"].as_array().unwrap().is_empty(), "{style}: no face found in the output");
    }
}

#[test]
fn without_models_the_gateway_is_not_ready_and_refuses_to_generate() {
    let empty = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        "",
        &[
            "--models",
            empty.path().to_str().unwrap(),
            "--gallery",
            fixture("../models/gallery.example.json").to_str().unwrap(),
        ],
    );
    let (status, body) = server.call("GET", "/readyz", None);
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["vision"]["ok"], false);
    assert!(body["checks"]["vision"]["error"].as_str().unwrap().contains("manifest.json"), "{body}");
    let (status, resp) = server.generate(&json!({"user": "u", "prompt": "a lake", "size": "256x256"}));
    assert_eq!((status, resp["error"]["code"].as_str().unwrap()), (503, "vision.unavailable"));
}

/// Every output's manifest is in the database before the answer: on the
/// embedded SQLite file by default, and on PostgreSQL with --database.
#[test]
fn manifests_are_stored_on_sqlite_and_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = likeness_store::testing::TempDatabase::for_tests_blocking();
    let pg_url = db.url.clone();

    for database in [None, Some(pg_url.as_str())] {
        let server = match database {
            None => Server::start(),
            Some(url) => Server::start_with("", &["--database", url]),
        };
        let (status, resp) = server.generate(&json!({"user": "u", "prompt": "a beach", "size": "256x256", "n": 2}));
        assert_eq!(status, 200, "{resp}");
        let url = database
            .map(str::to_string)
            .unwrap_or_else(|| server.data_dir.path().join("likeness.db").display().to_string());
        let store = rt.block_on(likeness_store::Store::open(&url)).unwrap();
        for img in resp["images"].as_array().unwrap() {
            let record = rt.block_on(store.manifest(img["manifest_id"].as_str().unwrap())).unwrap().expect("stored");
            assert_eq!(record.asset_id, img["asset_id"].as_str().unwrap());
            assert_eq!(record.tenant, "dev");
            assert_eq!(record.request_id, resp["id"].as_str().unwrap());
            // The stored manifest validates the image it came with.
            let bytes = B64.decode(img["data"].as_str().unwrap()).unwrap();
            let v = likeness_provenance::Verifier::new(None)
                .unwrap()
                .verify_with_manifest(&record.manifest_store, &bytes)
                .unwrap();
            assert_eq!(v.state, likeness_provenance::TrustState::Valid, "{:?}", v.failures);
        }
        let (_, ready) = server.call("GET", "/readyz", None);
        let expected = if database.is_some() { "postgres" } else { "sqlite" };
        assert_eq!(ready["checks"]["storage"]["backend"], expected);
        rt.block_on(store.close());
    }
}

/// `/metrics` on its own listener for the scraper (no key), with the real
/// models' inference time; on the main listener it needs a key, and the
/// scrape listener serves nothing else.
#[test]
fn metrics_have_their_own_listener_and_count_model_inference() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Server::start_with_config(&format!("[server]\nmetrics_listen = \"127.0.0.1:{port}\"\n"));
    let photo = fixture_bytes("scenes/chelsea.png");
    let (status, resp) = server.generate(&json!({
        "user": "u", "prompt": "my cat", "references": [upload(&photo, "image/png")], "size": "256x256"
    }));
    assert_eq!(status, 200, "{resp}");
    let scrape = Server::client().get(format!("http://127.0.0.1:{port}/metrics")).send().unwrap();
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().unwrap();
    let value = |series: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    for model in ["face_detection", "age", "face_embedding", "nsfw"] {
        let runs = value(&format!("likeness_model_inference_seconds_count{{model=\"{model}\"}}"));
        let seconds = value(&format!("likeness_model_inference_seconds_sum{{model=\"{model}\"}}"));
        // Detection and NSFW ran on the reference and the output; a cat has
        // no face to age or embed, but those models are listed all the same.
        let ran = matches!(model, "face_detection" | "nsfw");
        assert!(if ran { runs >= 2.0 } else { runs == 0.0 }, "{model}: {runs} runs");
        assert!(seconds >= 0.0 && seconds.is_finite(), "{model}: {seconds}");
    }
    assert!(value(r#"likeness_stage_duration_seconds_count{stage="sign"}"#) >= 1.0);
    let (status, _) = server.call_as(None, "GET", "/metrics", None);
    assert_eq!(status, 401);
    let other = Server::client().get(format!("http://127.0.0.1:{port}/readyz")).send().unwrap();
    assert_eq!(other.status(), 404);
}

/// Structured logs: every line is one JSON object, and each line of a
/// request carries the id its error body names.
#[test]
fn json_logs_carry_the_request_id_on_every_line_of_a_request() {
    let server = Server::start_logging("log_format = \"json\"\n", &[], "info");
    let (status, body) = server.generate(&json!({"user": "u", "prompt": "x", "size": "9x9"}));
    assert_eq!(status, 422, "{body}");
    let id = body["error"]["request_id"].as_str().unwrap().to_string();
    let log = std::fs::read_to_string(server.log.path()).unwrap();
    let lines: Vec<Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let mine: Vec<&Value> = lines.iter().filter(|l| l.to_string().contains(&id)).collect();
    // The refusal and the request's last line ("done", with its status).
    assert!(mine.len() >= 2, "{log}");
    for line in &mine {
        assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
    }
    assert!(mine.iter().any(|l| l["fields"]["status"] == 422), "{log}");
}
