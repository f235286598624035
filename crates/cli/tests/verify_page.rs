//! The verify page in a real browser (Debian's Chromium through Playwright,
//! `tests/browser/verify_page.py`): a fresh output, a stripped copy and an
//! unrelated photo, checked for what a person would read.

mod support;

use std::process::Command;

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

#[test]
fn the_verify_page_tells_a_person_what_each_image_is() {
    let server = Server::start();
    let (status, resp) = server.generate(&json!({
        "user": "u", "prompt": "a lake at dawn", "size": "512x512", "output_format": "png"
    }));
    assert_eq!(status, 200, "{resp}");
    let image = &resp["images"][0];
    let output = base64::engine::general_purpose::STANDARD.decode(image["data"].as_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
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
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");
    assert!(html.contains("<label for=\"file\">"), "the file input has a label");

    let out = Command::new(reference_python())
        .arg(workspace_root().join("tests/browser/verify_page.py"))
        .arg(&server.base)
        .args([&fresh, &stripped, &unrelated])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
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
    for v in &seen {
        assert_eq!(v["console_errors"], json!([]), "the page logged errors (a blocked script?): {v}");
    }
}
