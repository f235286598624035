//! Consent end to end, through the real binary, a real photo provider on
//! loopback, on SQLite and on PostgreSQL: grants cover (or do not), expire,
//! are revoked between two requests; subjects enroll, are declared, matched,
//! deleted; records survive a restart; two gateways on one PostgreSQL
//! database act as one.
//!
//! The shipped gallery holds every person in the fixtures, so these tests
//! use a gallery without Barack Obama: his two photos play a private person
//! who enrolls (obama.jpg) and is then recognised (obama2.jpg). Grace Hopper
//! stays a public figure; rocket/coffee/cat show no one.

mod support;

use serde_json::{json, Value};
use support::provider::{Provider, TOKEN};
use support::*;

const USER: &str = "alice-7c1e";

fn start(provider: &Provider, gallery: &std::path::Path, database: Option<&str>, config: &str) -> Server {
    let api = provider.api();
    let mut args = vec!["--gallery", gallery.to_str().unwrap(), "--photo-api", &api];
    if let Some(db) = database {
        args.extend(["--database", db]);
    }
    // Every log line, so the test can look for what must never be in one.
    Server::start_logging(config, &args, "debug")
}

/// The person shown confirms with the token the app delivered: (status, answer).
fn confirm(server: &Server, subject: &str, body: Value) -> (u16, Value) {
    server.call_as(None, "POST", &format!("/v1/subjects/{subject}/confirm"), Some(&body))
}

fn generate(server: &Server, extra: Value) -> (u16, Value) {
    let mut body = json!({ "user": USER, "prompt": "as a watercolour", "size": "256x256" });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    server.generate(&body)
}

fn code(resp: &Value) -> &str {
    resp["error"]["code"].as_str().unwrap_or("")
}

fn create_grant(server: &Server, body: Value) -> String {
    let (status, g) = server.call("POST", "/v1/grants", Some(&body));
    assert_eq!(status, 201, "{g}");
    assert_eq!(g["status"], "active");
    g["id"].as_str().unwrap().to_string()
}

fn enroll(server: &Server, body: Value) -> (u16, Value) {
    server.call("POST", "/v1/subjects", Some(&body))
}

/// The consent cases, against a gateway on `database` (None: SQLite).
fn consent_suite(database: Option<&str>) {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    // Eileen Collins (astronaut.png) plays a stranger to the private Obama.
    let gallery = gallery_without(dir.path(), &["obama", "eileen-collins"]);
    let server = start(&provider, &gallery, database, "");

    // A grant for two photos and an album.
    let grant = create_grant(
        &server,
        json!({ "user": USER, "photos": ["cat", "barack", "missing"], "albums": ["trip"], "purpose": "generation" }),
    );
    let (status, listed) = server.call("GET", &format!("/v1/grants?user={USER}"), None);
    assert_eq!(status, 200);
    assert_eq!(listed["grants"].as_array().unwrap().len(), 1);
    assert_eq!(listed["grants"][0]["photos"], json!(["cat", "barack", "missing"]));

    // Covered: the photo is fetched with the user's token, and the receipt
    // records the grant; the manifest names the receipt.
    let (status, resp) = generate(&server, json!({ "grant_id": grant, "references": [provider.item("cat", TOKEN)] }));
    assert_eq!(status, 200, "{resp}");
    let consent = &resp["decision"]["consent"];
    assert_eq!(consent["grant"], grant.as_str());
    assert_eq!(
        consent["references"],
        json!([{ "reference": 1, "source": "library", "media_item_id": "cat", "covered_by": "photo" }])
    );
    let receipt = consent["id"].as_str().unwrap();
    let image = base64_image(&resp);
    assert!(find(&image, receipt.as_bytes()), "the manifest carries the receipt id");
    let (status, stored) = server.call("GET", &format!("/v1/receipts/{receipt}"), None);
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["grant"], grant.as_str());
    assert_eq!(stored["request_id"], resp["id"]);

    // From a granted album.
    let mut from_album = provider.item("coffee", TOKEN);
    from_album["library"]["album_id"] = json!("trip");
    let (status, resp) = generate(&server, json!({ "grant_id": grant, "references": [from_album] }));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["decision"]["consent"]["references"][0]["covered_by"], "album");

    // An album the provider does not list the photo in.
    let mut not_in_album = provider.item("rocket", TOKEN);
    not_in_album["library"]["album_id"] = json!("trip");
    let (status, resp) = generate(&server, json!({ "grant_id": grant, "references": [not_in_album] }));
    assert_eq!((status, code(&resp)), (403, "consent.photo_not_granted"), "{resp}");
    // A granted id cannot carry another photo's base_url.
    let mut swapped = provider.item("cat", TOKEN);
    swapped["library"]["base_url"] = provider.item("rocket", TOKEN)["library"]["base_url"].clone();
    let (status, resp) = generate(&server, json!({ "grant_id": grant, "references": [swapped] }));
    assert_eq!((status, code(&resp)), (422, "photos.base_url_mismatch"), "{resp}");

    // Outside the grant, or without one: refused before anything is fetched.
    let fetched = provider.served();
    let (status, resp) = generate(
        &server,
        json!({ "grant_id": grant, "references": [provider.item("cat", TOKEN), provider.item("rocket", TOKEN)] }),
    );
    assert_eq!((status, code(&resp)), (403, "consent.photo_not_granted"), "{resp}");
    assert!(resp["error"]["message"].as_str().unwrap().contains("reference 2 (media item \"rocket\")"), "{resp}");
    let (status, resp) = generate(&server, json!({ "references": [provider.item("cat", TOKEN)] }));
    assert_eq!((status, code(&resp)), (403, "consent.photo_not_granted"), "{resp}");
    let (status, resp) =
        generate(&server, json!({ "grant_id": "grt_nope", "references": [provider.item("cat", TOKEN)] }));
    assert_eq!((status, code(&resp)), (403, "consent.grant_unknown"), "{resp}");
    let (status, resp) = server.generate(
        &json!({ "user": "mallory", "prompt": "x", "grant_id": grant, "references": [provider.item("cat", TOKEN)] }),
    );
    assert_eq!((status, code(&resp)), (403, "consent.grant_other_user"), "{resp}");
    assert_eq!(provider.served(), fetched, "nothing was fetched for refused requests");

    // The provider's answers become clear errors.
    let (status, resp) =
        generate(&server, json!({ "grant_id": grant, "references": [provider.item("cat", "ya29.wrong")] }));
    assert_eq!((status, code(&resp)), (403, "photos.unauthorized"), "{resp}");
    let (status, resp) =
        generate(&server, json!({ "grant_id": grant, "references": [provider.item("missing", TOKEN)] }));
    assert_eq!((status, code(&resp)), (404, "photos.not_found"), "{resp}");

    // Likeness: enrollment keeps embeddings only, one face per photo.
    let barack = fixture_bytes("faces/obama.jpg");
    let (status, subject) = enroll(
        &server,
        json!({ "user": USER, "name": "B.", "relationship": "friend", "enroll": [upload(&barack, "image/jpeg")] }),
    );
    assert_eq!(status, 201, "{subject}");
    assert_eq!(subject["enrolled_faces"], 1);
    assert!(subject.get("embeddings").is_none());
    let subject_id = subject["id"].as_str().unwrap().to_string();
    for (photo, mime, expect) in [
        ("scenes/chelsea.png", "image/png", "subject.enroll_no_face"),
        ("faces/grace_hopper.jpg", "image/jpeg", "subject.enroll_public_figure"),
    ] {
        let (status, resp) = enroll(
            &server,
            json!({ "user": USER, "name": "x", "relationship": "other", "enroll": [upload(&fixture_bytes(photo), mime)] }),
        );
        assert_eq!((status, code(&resp)), (422, expect), "{photo}: {resp}");
    }
    // Turned upside down, a public figure is still one: enrollment refuses
    // it, and so does a generation with it as a reference.
    let upside_down = {
        let img = image::load_from_memory(&fixture_bytes("faces/grace_hopper.jpg")).unwrap().to_rgb8();
        let mut png = Vec::new();
        image::imageops::rotate180(&img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        upload(&png, "image/png")
    };
    let (status, resp) =
        enroll(&server, json!({ "user": USER, "name": "Not Grace", "relationship": "other", "enroll": [upside_down] }));
    assert_eq!((status, code(&resp)), (422, "subject.enroll_public_figure"), "{resp}");
    let (status, resp) = generate(&server, json!({ "references": [upside_down] }));
    assert_eq!((status, code(&resp)), (403, "vision.public_figure"), "{resp}");
    // With a black bar over her eyes the gallery is no longer sure (0.60),
    // so enrollment refuses any face whose eyes are hidden, and as a
    // reference the face is nobody's who consented.
    let barred = {
        let mut img = image::load_from_memory(&fixture_bytes("faces/grace_hopper.jpg")).unwrap().to_rgb8();
        let vision = likeness_vision::Vision::load(&likeness_vision::config_for(&workspace_root().join("models")))
            .expect("vision loads (make setup)");
        let face = vision.detect(&img).unwrap().remove(0);
        let [l, r] = [face.landmarks[0], face.landmarks[1]];
        let d = r[0] - l[0];
        for (x, y, p) in img.enumerate_pixels_mut() {
            let (x, y) = (x as f32, y as f32);
            if x > l[0] - d / 2.0 && x < r[0] + d / 2.0 && (y - (l[1] + r[1]) / 2.0).abs() < d / 3.0 {
                *p = image::Rgb([0, 0, 0]);
            }
        }
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        upload(&png, "image/png")
    };
    let (status, resp) =
        enroll(&server, json!({ "user": USER, "name": "Not Grace", "relationship": "other", "enroll": [barred] }));
    assert_eq!((status, code(&resp)), (422, "subject.enroll_eyes_covered"), "{resp}");
    // (Another user: this one's refusals so far would send a next one to review.)
    let (status, resp) = generate(&server, json!({ "user": "eve", "references": [barred] }));
    assert!(
        status == 403 && ["vision.public_figure", "consent.unknown_person"].contains(&code(&resp)),
        "{status} {resp}"
    );
    let (status, resp) =
        enroll(&server, json!({ "user": USER, "name": "kid", "relationship": "family", "minor": true }));
    assert_eq!((status, code(&resp)), (422, "request.invalid"), "a minor needs guardian consent: {resp}");
    let (status, bobs) = enroll(&server, json!({ "user": "bob", "name": "Bob", "relationship": "self" }));
    assert_eq!(status, 201, "{bobs}");

    // A friend consents once they confirm, with the token the app delivered
    // and, here, a photo of themselves matched by the real face model.
    let barack_ref = provider.item("barack", TOKEN);
    let (status, resp) =
        generate(&server, json!({ "grant_id": grant, "subjects": [subject_id], "references": [barack_ref] }));
    assert_eq!((status, code(&resp)), (403, "consent.subject_unconfirmed"), "{resp}");
    let token = subject["confirmation_token"].as_str().unwrap().to_string();
    let stranger = upload(&fixture_bytes("faces/astronaut.png"), "image/png");
    let (status, resp) = confirm(&server, &subject_id, json!({ "token": token, "photo": stranger }));
    assert_eq!((status, code(&resp)), (403, "subject.confirm_photo_mismatch"), "{resp}");
    let selfie = upload(&fixture_bytes("faces/obama2.jpg"), "image/jpeg");
    let (status, confirmed) = confirm(&server, &subject_id, json!({ "token": token, "photo": selfie }));
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["confirmation"]["with_photo"], true);
    let personal = confirmed["personal_token"].as_str().unwrap().to_string();
    let (status, resp) = confirm(&server, &subject_id, json!({ "token": token }));
    assert_eq!((status, code(&resp)), (401, "subject.token_invalid"), "used once: {resp}");

    // Declared and matched: allowed, labelled, relied on.
    let (status, resp) =
        generate(&server, json!({ "grant_id": grant, "subjects": [subject_id], "references": [barack_ref] }));
    assert_eq!(status, 200, "{resp}");
    let face = &resp["decision"]["images"][0]["faces"][0];
    assert_eq!(
        (face["label"].as_str(), face["subject"].as_str()),
        (Some("consenting_subject"), Some(subject_id.as_str())),
        "{face}"
    );
    assert_eq!(resp["decision"]["consent"]["subjects"], json!([subject_id]));
    assert_eq!(resp["decision"]["consent"]["confirmations"][0]["confirmed_by"], "person");
    // The person sees where their likeness was used, without the app.
    let (status, usage) = server.call_as(Some(&personal), "GET", &format!("/v1/subjects/{subject_id}/usage"), None);
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["uses"].as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(usage["uses"][0]["request_id"], resp["id"]);
    assert_eq!(usage["uses"][0]["outputs"][0]["manifest_id"], resp["images"][0]["manifest_id"]);

    // Undeclared: an unknown person, named by reference.
    let (status, resp) = generate(&server, json!({ "grant_id": grant, "references": [barack_ref] }));
    assert_eq!((status, code(&resp)), (403, "consent.unknown_person"), "{resp}");
    assert!(resp["error"]["message"].as_str().unwrap().starts_with("reference 1"), "{resp}");
    assert_eq!(resp["error"]["decision"]["images"][0]["faces"][0]["label"], "unknown");
    // A public figure stays refused, uploads included.
    let grace = upload(&fixture_bytes("faces/grace_hopper.jpg"), "image/jpeg");
    let (status, resp) = generate(&server, json!({ "subjects": [subject_id], "references": [grace] }));
    assert_eq!((status, code(&resp)), (403, "vision.public_figure"), "{resp}");
    // Someone else's subject, or an unknown one.
    let (status, resp) = generate(&server, json!({ "subjects": [bobs["id"]], "prompt": "a lake" }));
    assert_eq!((status, code(&resp)), (403, "consent.subject_other_user"), "{resp}");
    let (status, resp) = generate(&server, json!({ "subjects": ["sub_nope"], "prompt": "a lake" }));
    assert_eq!((status, code(&resp)), (403, "consent.subject_unknown"), "{resp}");

    // Tokens never in a log line or in the database in clear.
    let log = std::fs::read_to_string(server.log.path()).unwrap();
    assert!(log.contains("subject confirmed"), "the log was captured");
    let stored = match database {
        Some(url) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(likeness_store::testing::postgres_rows_as_text(url)).into_bytes()
        }
        None => std::fs::read_dir(server.data_dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("likeness.db"))
            .flat_map(|e| std::fs::read(e.path()).unwrap())
            .collect(),
    };
    if database.is_none() {
        // The data dir and the database are their owner's only.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(server.data_dir.path()), 0o700);
        assert_eq!(mode(&server.data_dir.path().join("likeness.db")), 0o600);
        assert_eq!(mode(&server.data_dir.path().join("keys/embedding.key")), 0o600);
    }
    for t in [&token, &personal] {
        assert!(!log.contains(t.as_str()), "a token in the log");
        assert!(!stored.windows(t.len()).any(|w| w == t.as_bytes()), "a token in clear in the database");
    }

    // Records survive a restart.
    let server = server.restart();
    let (_, listed) = server.call("GET", &format!("/v1/grants?user={USER}"), None);
    assert_eq!(listed["grants"][0]["id"], grant.as_str());
    let (_, subjects) = server.call("GET", &format!("/v1/subjects?user={USER}"), None);
    assert_eq!(subjects["subjects"][0]["id"], subject_id.as_str());
    assert_eq!(subjects["subjects"][0]["enrolled_faces"], 1);

    // Deleting the subject drops the embeddings at once; declaring it is refused.
    assert_eq!(server.call("DELETE", &format!("/v1/subjects/{subject_id}"), None).0, 204);
    let (_, seen) = server.call_as(Some(&personal), "GET", &format!("/v1/subjects/{subject_id}"), None);
    assert_eq!(seen["status"], "deleted", "the person sees the app deleted it: {seen}");
    let (_, gone) = server.call("GET", &format!("/v1/subjects/{subject_id}"), None);
    assert_eq!(
        (gone["status"].as_str(), gone["enrolled_faces"].as_u64(), gone["name"].as_str()),
        (Some("deleted"), Some(0), Some(""))
    );
    let (status, resp) =
        generate(&server, json!({ "grant_id": grant, "subjects": [subject_id], "references": [barack_ref] }));
    assert_eq!((status, code(&resp)), (403, "consent.subject_revoked"), "{resp}");
    assert_eq!(server.call("DELETE", "/v1/subjects/sub_nope", None).0, 404);

    // Revoked between two requests.
    let (status, resp) = generate(&server, json!({ "grant_id": grant, "references": [provider.item("cat", TOKEN)] }));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(server.call("DELETE", &format!("/v1/grants/{grant}"), None).0, 204);
    let (status, resp) = generate(&server, json!({ "grant_id": grant, "references": [provider.item("cat", TOKEN)] }));
    assert_eq!((status, code(&resp)), (403, "consent.grant_revoked"), "{resp}");
    let (_, g) = server.call("GET", &format!("/v1/grants/{grant}"), None);
    assert_eq!(g["status"], "revoked");
    assert_eq!(server.call("DELETE", &format!("/v1/grants/{grant}"), None).0, 204, "revoking twice is fine");
    assert_eq!(server.call("DELETE", "/v1/grants/grt_nope", None).0, 404);

    // Expiry is judged by the clock: `crates/http/tests` moves an injected
    // one past a grant's and a subject's expiry, without sleeping.

    // Bad records are refused with the field named.
    for (body, field) in [
        (json!({ "user": USER }), "photos"),
        (json!({ "user": USER, "photos": ["a"], "expires_at": "2001-01-01T00:00:00Z" }), "expires_at"),
        (json!({ "user": USER, "photos": ["a"], "expires_at": "tomorrow" }), "expires_at"),
        (json!({ "user": USER, "photos": ["a"], "purpose": "training" }), "purpose"),
    ] {
        let (status, resp) = server.call("POST", "/v1/grants", Some(&body));
        assert_eq!((status, code(&resp)), (422, "request.invalid"), "{body}: {resp}");
        assert!(resp["error"]["message"].as_str().unwrap().contains(field), "{resp}");
    }
}

fn base64_image(resp: &Value) -> Vec<u8> {
    use base64::Engine as _;
    B64.decode(resp["images"][0]["data"].as_str().unwrap()).unwrap()
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn consent_on_sqlite() {
    consent_suite(None);
}

#[test]
fn consent_on_postgres() {
    let db = likeness_store::testing::TempDatabase::for_tests_blocking();
    consent_suite(Some(&db.url));
}

/// Two gateways on one database: what one revokes, the other refuses on
/// its very next request.
#[test]
fn two_replicas_on_postgres_act_as_one() {
    let db = likeness_store::testing::TempDatabase::for_tests_blocking();
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let gallery = gallery_without_obama(dir.path());
    // Replicas share the key their subjects' embeddings are sealed with.
    let key = dir.path().join("embedding.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = format!("embedding_key = {:?}\n", key.display().to_string());
    let a = start(&provider, &gallery, Some(&db.url), &config);
    let b = start(&provider, &gallery, Some(&db.url), &config);

    let grant = create_grant(&a, json!({ "user": USER, "photos": ["cat", "barack"] }));
    let barack = fixture_bytes("faces/obama.jpg");
    let (status, subject) = enroll(
        &a,
        json!({ "user": USER, "name": "B.", "relationship": "self", "enroll": [upload(&barack, "image/jpeg")] }),
    );
    assert_eq!(status, 201, "{subject}");
    let subject = subject["id"].as_str().unwrap().to_string();

    let (status, resp) = generate(&b, json!({ "grant_id": grant, "references": [provider.item("cat", TOKEN)] }));
    assert_eq!(status, 200, "B sees A's grant: {resp}");
    let (status, resp) = generate(
        &b,
        json!({ "grant_id": grant, "subjects": [subject], "references": [provider.item("barack", TOKEN)] }),
    );
    assert_eq!(status, 200, "B sees A's subject: {resp}");

    assert_eq!(a.call("DELETE", &format!("/v1/grants/{grant}"), None).0, 204);
    let (status, resp) = generate(&b, json!({ "grant_id": grant, "references": [provider.item("cat", TOKEN)] }));
    assert_eq!((status, code(&resp)), (403, "consent.grant_revoked"), "{resp}");

    assert_eq!(b.call("DELETE", &format!("/v1/subjects/{subject}"), None).0, 204);
    let upload_ref = upload(&fixture_bytes("faces/obama2.jpg"), "image/jpeg");
    let (status, resp) = generate(&a, json!({ "subjects": [subject], "references": [upload_ref] }));
    assert_eq!((status, code(&resp)), (403, "consent.subject_revoked"), "{resp}");
}

/// Likely minors need a subject enrolled as a minor with a guardian's
/// consent. No openly licensed child photo exists here, so the minor
/// threshold (of enrollment and of the policy) is set so low that every
/// face counts as a likely minor.
#[test]
fn likely_minors_need_a_guardians_consent() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let gallery = gallery_without_obama(dir.path());
    // Enrollment reads [vision] minor_threshold; generations, the policy's.
    let policies = policy_dir(dir.path(), |p| p.replace("minor_threshold: 0.3", "minor_threshold: 0.000000001"));
    let api = provider.api();
    let args = ["--gallery", gallery.to_str().unwrap(), "--photo-api", &api, "--policies", policies.to_str().unwrap()];
    let server = Server::start_with("[vision]\nminor_threshold = 1e-9\n", &args);
    let photo = fixture_bytes("faces/obama.jpg");
    let reference = upload(&fixture_bytes("faces/obama2.jpg"), "image/jpeg");

    let (status, resp) = enroll(
        &server,
        json!({ "user": USER, "name": "K.", "relationship": "family", "enroll": [upload(&photo, "image/jpeg")] }),
    );
    assert_eq!((status, code(&resp)), (422, "subject.enroll_possible_minor"), "{resp}");

    let (status, kid) = enroll(
        &server,
        json!({ "user": USER, "name": "K.", "relationship": "family", "minor": true, "guardian_consent": true,
                "enroll": [upload(&photo, "image/jpeg")] }),
    );
    assert_eq!(status, 201, "{kid}");
    let guardian = json!({ "token": kid["confirmation_token"], "as": "guardian" });
    let (status, resp) = confirm(&server, kid["id"].as_str().unwrap(), guardian);
    assert_eq!((status, &resp["confirmation"]["confirmed_by"]), (200, &json!("guardian")), "{resp}");
    let (status, resp) = generate(&server, json!({ "subjects": [kid["id"]], "references": [reference] }));
    assert_eq!(status, 200, "a consenting minor with a guardian's consent: {resp}");

    let (status, resp) = generate(&server, json!({ "references": [reference] }));
    assert_eq!((status, code(&resp)), (403, "consent.minor_without_guardian"), "{resp}");
}
