//! Invariant 3: reference photos never reach disk, logs or the database.
//! After generations with uploads, library photos and enrollment photos (and
//! refusals), logged at the most verbose level, no file under the data dir
//! (the SQLite database included) and no log line holds any 64-byte run of a
//! photo's bytes, raw or base64, nor the user's access token.

mod support;

use base64::Engine as _;
use serde_json::json;
use support::*;

/// Whether any 64-byte window of `needle` (stepping by 16) occurs in `hay`;
/// one pass over `hay`, so large photos and logs stay cheap.
fn shares_a_run(hay: &[u8], needle: &[u8]) -> bool {
    let wanted: std::collections::HashSet<&[u8]> = needle.windows(64).step_by(16).collect();
    hay.windows(64).any(|h| wanted.contains(h))
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn photos_and_tokens_leave_no_trace_on_disk_or_in_logs() {
    let provider = provider::Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let gallery = gallery_without_obama(dir.path());
    let server =
        Server::start_logging("", &["--gallery", gallery.to_str().unwrap(), "--photo-api", &provider.api()], "trace");
    let cat = fixture_bytes("scenes/chelsea.png");
    let person = fixture_bytes("faces/grace_hopper.jpg");
    let enrolled = fixture_bytes("faces/obama.jpg");
    let from_library = fixture_bytes("faces/obama2.jpg");
    let (status, _) = server
        .generate(&json!({"user": "u", "prompt": "x", "size": "256x256", "references": [upload(&cat, "image/png")]}));
    assert_eq!(status, 200);
    // Refused (public figure) and malformed requests must not leak either.
    let (status, _) = server.generate(
        &json!({"user": "u", "prompt": "x", "size": "256x256", "references": [upload(&person, "image/jpeg")]}),
    );
    assert_eq!(status, 403);
    let mut truncated = person.clone();
    truncated.truncate(person.len() / 2);
    let (status, _) =
        server.generate(&json!({"user": "u", "prompt": "x", "references": [upload(&truncated, "image/jpeg")]}));
    assert_eq!(status, 422);
    // Enrollment photos, and library photos fetched with a bearer token.
    let (status, subject) = server.call(
        "POST",
        "/v1/subjects",
        Some(&json!({"user": "u", "name": "B.", "relationship": "self", "enroll": [upload(&enrolled, "image/jpeg")]})),
    );
    assert_eq!(status, 201, "{subject}");
    let (status, grant) = server.call("POST", "/v1/grants", Some(&json!({"user": "u", "photos": ["barack"]})));
    assert_eq!(status, 201, "{grant}");
    let (status, resp) = server.generate(&json!({"user": "u", "prompt": "x", "size": "256x256",
        "grant_id": grant["id"], "subjects": [subject["id"]], "references": [provider.item("barack", provider::TOKEN)]}));
    assert_eq!(status, 200, "{resp}");
    let (status, _) = server.generate(&json!({"user": "u", "prompt": "x", "size": "256x256",
        "grant_id": grant["id"], "references": [provider.item("barack", provider::TOKEN)]}));
    assert_eq!(status, 403, "unknown person");
    // An image uploaded to the public resolver is read for a mark, never kept.
    let looked_up = fixture_bytes("scenes/coffee.png");
    let resp = Server::client()
        .post(format!("{}/matches/byContent", server.base))
        .header("content-type", "image/png")
        .body(looked_up.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let mut files = Vec::new();
    files_under(server.data_dir.path(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("likeness.db")), "the database is among the files checked");
    let log = std::fs::read(server.log.path()).unwrap();
    assert!(!log.is_empty(), "the server logged nothing at trace level");
    for photo in [&cat, &person, &enrolled, &from_library, &looked_up] {
        let b64 = B64.encode(photo);
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                !shares_a_run(&bytes, photo) && !shares_a_run(&bytes, b64.as_bytes()),
                "{} holds photo bytes",
                f.display()
            );
        }
        assert!(!shares_a_run(&log, photo) && !shares_a_run(&log, b64.as_bytes()), "the log holds photo bytes");
    }
    let token = provider::TOKEN.as_bytes();
    for f in &files {
        assert!(!std::fs::read(f).unwrap().windows(token.len()).any(|w| w == token), "{} holds the token", f.display());
    }
    assert!(!log.windows(token.len()).any(|w| w == token), "the log holds the access token");
}
