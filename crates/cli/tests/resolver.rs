//! Durable credentials, end to end: every output carries the watermark and
//! a `c2pa.soft-binding` assertion; the gateway's public Soft Binding
//! Resolution API finds the manifest again; `likeness verify --resolver`
//! recovers trusted credentials for an image a platform stripped and
//! re-encoded, and nothing for an unrelated photo.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::json;
use support::*;

const ALG: &str = likeness_watermark::ALG;

struct Generated {
    file: PathBuf,
    asset_id: String,
    manifest_id: String,
    binding: String,
}

fn generate(server: &Server, dir: &Path) -> Generated {
    let (status, resp) = server.generate(&json!({
        "user": "u", "prompt": "a harbour at dusk", "style": "watercolor", "size": "1024x768", "output_format": "jpeg"
    }));
    assert_eq!(status, 200, "{resp}");
    let image = &resp["images"][0];
    assert!(resp["decision"]["checks"].as_array().unwrap().contains(&json!("watermark")), "{resp}");
    let file = dir.join("original.jpg");
    std::fs::write(&file, B64.decode(image["data"].as_str().unwrap()).unwrap()).unwrap();
    let asset_id = image["asset_id"].as_str().unwrap().to_string();
    // The soft binding is the asset id's first 8 bytes, base64.
    let binding = B64.encode(&hex_bytes(&asset_id)[..8]);
    assert_eq!(image["soft_binding"], json!({ "alg": ALG, "value": binding }), "{image}");
    Generated { file, asset_id, manifest_id: image["manifest_id"].as_str().unwrap().to_string(), binding }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// What a platform does on upload: halve the image and re-encode it as
/// JPEG 75 (4:2:0), dropping all metadata.
fn strip(file: &Path, out: &Path) {
    let img = image::open(file).unwrap().to_rgb8();
    let small = image::imageops::resize(&img, img.width() / 2, img.height() / 2, image::imageops::FilterType::Triangle);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 75).encode_image(&small).unwrap();
    std::fs::write(out, bytes).unwrap();
}

fn key_file(server: &Server) -> PathBuf {
    server.data_dir.path().join("keys/watermark.key")
}

#[test]
fn stripped_image_recovers_trusted_credentials_through_the_watermark() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = generate(&server, dir.path());
    let stripped = dir.path().join("stripped.jpg");
    strip(&out.file, &stripped);
    let unrelated = dir.path().join("unrelated.jpg");
    std::fs::copy(fixture("scenes/rocket.jpg"), &unrelated).unwrap();
    let (ca, key) = (server.ca_pem(), key_file(&server));
    let (ca, key, original, stripped_s, unrelated_s) = (
        ca.to_str().unwrap(),
        key.to_str().unwrap(),
        out.file.to_str().unwrap(),
        stripped.to_str().unwrap(),
        unrelated.to_str().unwrap(),
    );
    let payload = &out.asset_id[..16];

    // The original: embedded credentials, the mark read locally, no recovery needed.
    let (code, lines) = likeness_verify(&["--trust", ca, "--watermark-key", key, "--resolver", &server.base, original]);
    assert_eq!(code, 0, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["state"], "trusted");
    assert_eq!(l["watermark"]["detected"], true, "{l}");
    assert_eq!(l["watermark"]["payload"], payload);
    assert!(l["recovered"].is_null(), "credentials in the file need no resolver: {l}");
    assert_eq!(l["soft_bindings"], json!([{ "alg": ALG, "value": out.binding }]));

    // Stripped: no credentials in the file; without a resolver that is all.
    let (code, lines) = likeness_verify(&["--trust", ca, "--watermark-key", key, stripped_s]);
    assert_eq!((code, lines[0]["state"].as_str()), (2, Some("none")), "{lines:?}");
    assert_eq!(lines[0]["watermark"]["payload"], payload, "the mark survives: {}", lines[0]);
    assert!(lines[0]["recovered"].is_null());

    // With the key: the payload is read here, and the image still goes to
    // the resolver (by content, so that it checks the picture); the
    // manifest it finds must declare the payload read here.
    let (code, lines) =
        likeness_verify(&["--trust", ca, "--watermark-key", key, "--resolver", &server.base, stripped_s]);
    assert_eq!(code, 0, "{lines:?}");
    let r = &lines[0]["recovered"];
    assert_eq!(r["query"], "byContent", "{r}");
    assert_eq!(r["value"], out.binding);
    assert_eq!(r["manifest_id"], out.manifest_id.as_str());
    assert_eq!(r["hard_binding"], "mismatch");
    assert_eq!(r["soft_binding"], "match");
    assert_eq!(r["state"], "trusted", "{r}");
    assert_eq!(r["likeness"]["asset_id"], out.asset_id.as_str());

    // Without the key (a publisher's machine): the image goes to the
    // resolver, which reads the mark itself.
    let (code, lines) = likeness_verify(&["--trust", ca, "--resolver", &server.base, stripped_s]);
    assert_eq!(code, 0, "{lines:?}");
    let r = &lines[0]["recovered"];
    assert!(lines[0]["watermark"].is_null(), "no key, no local reading");
    assert_eq!((r["query"].as_str(), r["soft_binding"].as_str()), (Some("byContent"), Some("resolver")), "{r}");
    assert_eq!(r["manifest_id"], out.manifest_id.as_str());
    assert_eq!(r["state"], "trusted");
    assert!(r["similarity"].as_u64().unwrap() > 0);

    // Not on a trust list: recovered, but only valid.
    let (code, lines) = likeness_verify(&["--resolver", &server.base, stripped_s]);
    assert_eq!((code, lines[0]["recovered"]["state"].as_str()), (0, Some("valid")), "{lines:?}");

    // An unrelated photo recovers nothing, with either query.
    for args in [
        vec!["--resolver", &server.base, unrelated_s],
        vec!["--watermark-key", key, "--resolver", &server.base, unrelated_s],
    ] {
        let (code, lines) = likeness_verify(&args);
        assert_eq!(code, 2, "{lines:?}");
        let r = &lines[0]["recovered"];
        assert!(r["manifest_id"].is_null() && r["state"].is_null(), "{r}");
        assert!(r["error"].as_str().unwrap().contains("no"), "{r}");
    }

    // The copy attack: the output's fine detail, mark included, added to an
    // unrelated photo. The mark reads here as the output's, but the
    // resolver's content check refuses the picture, so nothing is recovered.
    let marked = image::open(&out.file).unwrap().to_rgb8();
    let photo = image::open(fixture("scenes/rocket.jpg")).unwrap().to_rgb8();
    let photo = image::imageops::resize(&photo, marked.width(), marked.height(), image::imageops::FilterType::Triangle);
    let forged = dir.path().join("forged.png");
    likeness_testkit::transplant(&marked, &photo).save(&forged).unwrap();
    let (code, lines) =
        likeness_verify(&["--trust", ca, "--watermark-key", key, "--resolver", &server.base, forged.to_str().unwrap()]);
    assert_eq!(code, 2, "{lines:?}");
    assert_eq!(lines[0]["watermark"]["payload"], payload, "the mark carries onto the photo: {}", lines[0]);
    let r = &lines[0]["recovered"];
    assert!(r["manifest_id"].is_null() && r["state"].is_null(), "{r}");
    assert!(r["error"].as_str().unwrap().contains("content check"), "{r}");

    // The human report says plainly what happened.
    let text = Command::new(bin())
        .current_dir(workspace_root())
        .args(["verify", "--trust", ca, "--watermark-key", key, "--resolver", &server.base, stripped_s])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    for expected in [
        "no Content Credentials",
        &format!("watermark:     {payload}"),
        "credentials recovered via the watermark",
        "no longer matches these pixels",
        "soft binding:  matches",
        "signer state:  trusted",
        &out.asset_id,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// The C2PA Soft Binding Resolution API, called as any client would: no
/// API key, answers in the OpenAPI shapes, clear errors.
#[test]
fn resolution_api_answers_manifests_and_nothing_else() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = generate(&server, dir.path());
    let client = Server::client();
    let url = |path: &str| format!("{}{path}", server.base);
    let get = |path: &str| {
        let r = client.get(url(path)).send().unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap_or_default())
    };

    let (status, algs) = get("/services/supportedAlgorithms");
    assert_eq!(
        (status, algs),
        (200, json!({ "watermarks": [{ "alg": ALG }, { "alg": "org.likeness.wm.1" }], "fingerprints": [] }))
    );

    let by_binding =
        format!("/matches/byBinding?alg={ALG}&value={}", out.binding.replace('+', "%2B").replace('=', "%3D"));
    let (status, found) = get(&by_binding);
    assert_eq!(status, 200, "{found}");
    // Manifest ids and scores only: no tenant, user, request or asset.
    assert_eq!(found, json!({ "matches": [{ "manifestId": out.manifest_id, "similarityScore": 100 }] }));
    let posted: serde_json::Value = client
        .post(url("/matches/byBinding"))
        .json(&json!({ "alg": ALG, "value": out.binding }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(posted, found);
    assert_eq!(get(&format!("/matches/byBinding?alg={ALG}&value=AAAAAAAAAAA%3D")), (200, json!({ "matches": [] })));

    for (path, code) in [
        (format!("/matches/byBinding?alg=com.example.other&value={}", out.binding), "resolver.unsupported_alg"),
        (format!("/matches/byBinding?alg={ALG}&value=not*base64"), "resolver.invalid_query"),
        (format!("/matches/byBinding?alg={ALG}&value=AAAA"), "resolver.invalid_query"),
        (format!("/matches/byBinding?alg={ALG}"), "resolver.invalid_query"),
        (format!("/matches/byBinding?alg={ALG}&value=AAAAAAAAAAA%3D&maxResults=0"), "resolver.invalid_query"),
        ("/manifests/not-a-urn".to_string(), "resolver.invalid_query"),
    ] {
        let (status, body) = get(&path);
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{path}: {body}");
    }
    let (status, body) = get("/manifests/urn:c2pa:00000000-0000-4000-8000-000000000000");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("resolver.manifest_not_found")));

    // The manifest store, as the C2PA media type.
    let resp = client.get(url(&format!("/manifests/{}", out.manifest_id))).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/c2pa");
    let store = resp.bytes().unwrap();
    assert!(store.len() > 1000 && &store[4..8] == b"jumb", "a JUMBF manifest store");

    // By content: the stripped image is read with the gateway's key.
    let stripped = dir.path().join("stripped.jpg");
    strip(&out.file, &stripped);
    let post_image = |bytes: Vec<u8>, mime: &str| {
        let r = client.post(url("/matches/byContent")).header("content-type", mime).body(bytes).send().unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap_or_default())
    };
    let (status, found) = post_image(std::fs::read(&stripped).unwrap(), "image/jpeg");
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["matches"][0]["manifestId"], out.manifest_id.as_str());
    // Match or no match: never a graded score an attacker could climb.
    assert_eq!(found["matches"][0]["similarityScore"], 100);
    assert_eq!(post_image(fixture_bytes("scenes/rocket.jpg"), "image/jpeg"), (200, json!({ "matches": [] })));
    let truncated = std::fs::read(&stripped).unwrap()[..2000].to_vec();
    for (bytes, mime, status, code) in [
        (truncated, "image/jpeg", 400, "resolver.image_corrupt"),
        (likeness_media::hostile::forged_png(100_000, 100_000), "image/png", 413, "resolver.image_too_large"),
        (b"not an image at all".to_vec(), "image/jpeg", 415, "resolver.unsupported_media_type"),
        (b"hello".to_vec(), "text/plain", 415, "resolver.unsupported_media_type"),
        (Vec::new(), "image/png", 400, "resolver.invalid_query"),
    ] {
        let (s, body) = post_image(bytes, mime);
        assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)), "{mime}: {body}");
    }
}

#[test]
fn the_public_api_is_rate_limited_per_client() {
    let server = Server::start_with_config("[resolver]\nrequests_per_minute = 1\nburst = 3\n");
    let client = Server::client();
    let url = format!("{}/services/supportedAlgorithms", server.base);
    for _ in 0..3 {
        assert_eq!(client.get(&url).send().unwrap().status().as_u16(), 200);
    }
    let refused = client.get(&url).send().unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "resolver.rate_limited");
    // The tenants' API is not counted against it.
    assert!(server.healthy());
    let (status, _) = server.call("GET", "/v1/grants?user=u", None);
    assert_eq!(status, 200);
}

/// A resolver that lies, on loopback: every match names `manifest_id`, with
/// `endpoint` if given; `/manifests/...` serves `store`; `/big` answers
/// more than a match list may be; `/redirect` sends elsewhere.
fn hostile_resolver(manifest_id: String, endpoint: Option<String>, store: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, extra, payload): (&str, String, Vec<u8>) = if path.starts_with("/manifests/") {
                ("200 OK", "Content-Type: application/c2pa\r\n".into(), store.clone())
            } else if path.starts_with("/big/") {
                ("200 OK", String::new(), vec![b' '; 2 * 1024 * 1024])
            } else if path.starts_with("/redirect/") {
                ("302 Found", "Location: https://example.com/matches/byContent\r\n".into(), vec![])
            } else {
                let mut m = json!({ "manifestId": manifest_id, "similarityScore": 100 });
                if let Some(e) = &endpoint {
                    m["endpoint"] = json!(e);
                }
                ("200 OK", String::new(), serde_json::to_vec(&json!({ "matches": [m] })).unwrap())
            };
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                payload.len()
            );
            let _ = out.write_all(&payload);
        }
    });
    base
}

/// `verify --resolver` believes a resolver only as far as it can check: over
/// https (or loopback), no redirects, manifests from the resolver's own
/// origin, bounded answers, and a manifest that declares the watermark the
/// file carries.
#[test]
fn a_lying_resolver_does_not_make_pixels_trusted() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let ours = generate(&server, dir.path());
    let stripped = dir.path().join("stripped.jpg");
    strip(&ours.file, &stripped);
    let stripped_s = stripped.to_str().unwrap();
    let (ca, key) = (server.ca_pem(), key_file(&server));
    let (ca, key) = (ca.to_str().unwrap(), key.to_str().unwrap());
    // Another genuine output's manifest, which a liar offers for our image.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = generate(&server, &other_dir);
    let other_store = Server::client()
        .get(format!("{}/manifests/{}", server.base, other.manifest_id))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();

    // Plain http to another machine is refused before anything is sent.
    let (code, _, stderr) = likeness(&["verify", "--resolver", "http://resolver.example", stripped_s]);
    assert_ne!(code, 0);
    assert!(stderr.contains("https"), "{stderr}");

    // Its own value read here, the other manifest declares another: invalid.
    let liar = hostile_resolver(other.manifest_id.clone(), None, other_store.clone());
    let (_, lines) = likeness_verify(&["--trust", ca, "--watermark-key", key, "--resolver", &liar, stripped_s]);
    let r = &lines[0]["recovered"];
    assert_eq!((r["soft_binding"].as_str(), r["state"].as_str()), (Some("mismatch"), Some("invalid")), "{r}");

    // A manifest on another origin is not fetched.
    let elsewhere = hostile_resolver(other.manifest_id.clone(), Some(server.base.clone()), other_store.clone());
    let (_, lines) = likeness_verify(&["--trust", ca, "--resolver", &elsewhere, stripped_s]);
    let r = &lines[0]["recovered"];
    assert!(r["state"].is_null(), "{r}");
    assert!(r["error"].as_str().unwrap().contains("another origin"), "{r}");

    // Oversized answers and redirects end the query.
    for (path, expect) in [("/big", "over"), ("/redirect", "302")] {
        let base = format!("{liar}{path}");
        let (_, lines) = likeness_verify(&["--trust", ca, "--resolver", &base, stripped_s]);
        let r = &lines[0]["recovered"];
        assert!(r["state"].is_null(), "{path}: {r}");
        assert!(r["error"].as_str().unwrap().contains(expect), "{path}: {r}");
    }
}
