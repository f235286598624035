//! The official openai Python SDK (installed by `make setup-test`) against
//! the real binary: `images.generate` and `images.edit` with one file and a
//! list of files; the images verify as trusted; a refusal arrives as
//! `openai.PermissionDeniedError` with our code.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

#[test]
fn the_official_sdk_works_unchanged_but_for_the_base_url() {
    let server = Server::start();
    let out = tempfile::tempdir().unwrap();
    let script = workspace_root().join("tests/reference/openai_sdk.py");
    let run = Command::new(reference_python())
        .arg(script)
        .arg(&server.base)
        .arg(&server.api_key)
        .arg(out.path())
        .arg(fixture("scenes/chelsea.png"))
        .arg(fixture("scenes/coffee.png"))
        .arg(fixture("faces/grace_hopper.jpg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let lines: Vec<Value> =
        String::from_utf8(run.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by =
        |call: &str| lines.iter().find(|l| l["call"] == call).unwrap_or_else(|| panic!("no {call}: {lines:?}")).clone();

    let mut files = Vec::new();
    for (call, n) in [("generate", 2), ("edit-one", 1), ("edit-list", 1)] {
        let l = by(call);
        assert_eq!((l["output_format"].as_str(), l["size"].as_str()), (Some("png"), Some("256x256")), "{l}");
        let f: Vec<String> = l["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
        assert_eq!(f.len(), n, "{l}");
        files.extend(f);
    }
    let ca = server.ca_pem();
    let mut args = vec!["--trust", ca.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let (code, verified) = likeness_verify(&args);
    assert_eq!(code, 0, "{verified:?}");
    assert!(verified.iter().all(|v| v["state"] == "trusted"), "{verified:?}");

    let refused = by("refused");
    assert_eq!(refused["raised"], "PermissionDeniedError", "{refused}");
    assert_eq!((refused["status"].as_u64(), refused["code"].as_str()), (Some(403), Some("vision.public_figure")));
    let url = by("url");
    assert_eq!(
        (url["raised"].as_str(), url["code"].as_str(), url["param"].as_str()),
        (Some("BadRequestError"), Some("request.response_format_unsupported"), Some("response_format"))
    );
    let wrong = by("wrong-key");
    assert_eq!(
        (wrong["raised"].as_str(), wrong["code"].as_str()),
        (Some("AuthenticationError"), Some("auth.invalid_key"))
    );
}
