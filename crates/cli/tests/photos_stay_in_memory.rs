//! Invariant 3: reference photos never reach disk or logs. After generations
//! with uploads (and refusals), logged at the most verbose level, no file
//! under the data dir and no log line holds any 64-byte run of a photo's
//! bytes, raw or base64.

mod support;

use base64::Engine as _;
use serde_json::json;
use support::*;

/// Every 64-byte window of `needle` (stepping by 16) that occurs in `hay`.
fn shares_a_run(hay: &[u8], needle: &[u8]) -> bool {
    needle.windows(64).step_by(16).any(|w| hay.windows(64).any(|h| h == w))
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
fn uploaded_photos_leave_no_trace_on_disk_or_in_logs() {
    let server = Server::start_logging("", &[], "trace");
    let cat = fixture_bytes("scenes/chelsea.png");
    let person = fixture_bytes("faces/grace_hopper.jpg");
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

    let mut files = Vec::new();
    files_under(server.data_dir.path(), &mut files);
    assert!(!files.is_empty());
    let log = std::fs::read(server.log.path()).unwrap();
    assert!(!log.is_empty(), "the server logged nothing at trace level");
    for photo in [&cat, &person] {
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
}
