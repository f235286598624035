//! The verify page in a real browser (Debian's Chromium through Playwright,
//! `tests/browser/verify_page.py`): a fresh output, a stripped copy (picked,
//! and by its web address), and an unrelated photo, checked for what a
//! person would read; then feedback on a verdict, as the operator reads it.

mod support;

use std::process::Command;

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

/// Serves the files of `dir` over plain HTTP on loopback, one request per
/// connection: the "web" the page's URL field reaches (exempted in the
/// gateway's config, being loopback).
fn file_server(dir: std::path::PathBuf) -> u16 {
    use std::io::{BufRead as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let name = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let _ = match std::fs::read(dir.join(&name)).ok().filter(|_| !name.contains('/')) {
                Some(body) => stream
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body)),
                None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    port
}

#[test]
fn the_verify_page_tells_a_person_what_each_image_is() {
    let dir = tempfile::tempdir().unwrap();
    let port = file_server(dir.path().to_path_buf());
    let server = Server::start_with_config(&format!("[verify]\nexempt_origins = [\"127.0.0.1:{port}\"]\n"));
    let (status, resp) = server.generate(&json!({
        "user": "u", "prompt": "a lake at dawn", "size": "512x512", "output_format": "png"
    }));
    assert_eq!(status, 200, "{resp}");
    let image = &resp["images"][0];
    let output = base64::engine::general_purpose::STANDARD.decode(image["data"].as_str().unwrap()).unwrap();
    let fresh = dir.path().join("fresh.png");
    std::fs::write(&fresh, &output).unwrap();
    let pixels = likeness_media::decode(&output, None, &Default::default()).unwrap().pixels;
    let stripped = dir.path().join("stripped.jpg");
    std::fs::write(
        &stripped,
        likeness_media::encode(&pixels, likeness_media::OutputFormat::Jpeg { quality: 85 }).unwrap(),
    )
    .unwrap();
    let unrelated = fixture("scenes/coffee.png");

    // The page stands alone: nothing from another origin, a strict policy.
    let page = Server::client().get(format!("{}/verify", server.base)).send().unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"), "{csp}");
    let html = page.text().unwrap();
    for outside in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(outside), "the page loads nothing from elsewhere ({outside})");
    }
    assert!(html.contains("<label for=\"file\">"), "the file input has a label");

    let out = Command::new(reference_python())
        .arg(workspace_root().join("tests/browser/verify_page.py"))
        .arg(&server.base)
        .args(["--feedback", "I made this myself \u{2014} with a camera"])
        .args([&fresh, &stripped, &unrelated])
        .arg(format!("http://127.0.0.1:{port}/stripped.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();

    let f = &seen[0];
    assert!(text(f, "verdict").starts_with("Made with AI by likeness development gateway"), "{f}");
    assert!(text(f, "verdict").contains("signed by a trusted signer"), "{f}");
    assert_eq!(f["details"]["Provider"], "likeness development gateway");
    assert!(text(&f["details"], "Trust").starts_with("trusted"), "{f}");
    assert_eq!(f["details"]["Watermark"], "found");
    assert!(text(f, "meaning").contains("intact"), "{f}");

    let s = &seen[1];
    assert!(text(s, "verdict").contains("recovered from the invisible watermark"), "{s}");
    assert_eq!(s["details"]["Identifier"], format!("urn:likeness:asset:{}", image["asset_id"].as_str().unwrap()));
    assert!(text(s, "meaning").contains("not that it was not edited"), "{s}");

    let u = &seen[2];
    assert!(text(u, "verdict").contains("does not tell whether it was made with AI"), "{u}");
    assert_eq!(u["details"]["Watermark"], "not found");

    // The stripped copy by its web address: the same as picked.
    let by_url = &seen[3];
    assert_eq!(by_url["verdict"], s["verdict"], "{by_url}");
    assert_eq!(by_url["details"], s["details"], "{by_url}");

    // Feedback on that last verdict: thanked, and there for the operator,
    // without the image or its address.
    let sent = &seen[4];
    assert_eq!(sent["feedback"], "Thank you: your feedback was received.", "{sent}");
    let data_dir = server.data_dir.path().to_str().unwrap().to_string();
    let (code, stdout, stderr) = likeness(&["--data-dir", &data_dir, "feedback"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 1, "{stdout}");
    assert_eq!(
        (listed[0]["choice"].as_str(), listed[0]["comment"].as_str()),
        (Some("incorrect"), Some("I made this myself \u{2014} with a camera"))
    );
    assert!(listed[0]["verdict_id"].as_str().unwrap().starts_with("req_"));
    assert!(!stdout.contains("127.0.0.1") && !stdout.contains("stripped"), "{stdout}");
    assert!(stderr.contains("1 piece of feedback: incorrect 1"), "{stderr}");
    for v in &seen {
        assert_eq!(v["console_errors"], json!([]), "the page logged errors (a blocked script?): {v}");
    }
}
