//! `likeness watermark embed|detect` through the real binary.

mod support;

use std::process::Command;

use support::*;

fn likeness(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn embed_then_detect_with_json_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (code, out, _) = likeness(&["keys", "init", "--dir", keys.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let key = keys.join("watermark.key");
    let key = key.to_str().unwrap();
    let original = fixture("scenes/coffee.png");
    let marked = dir.path().join("marked.jpg");
    let marked_png = dir.path().join("marked.png");
    for out in [&marked, &marked_png] {
        let (code, stdout, stderr) = likeness(&[
            "watermark",
            "embed",
            "--payload",
            "94b8f01fee5ddea4",
            "--key-file",
            key,
            original.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    let (code, stdout, _) = likeness(&[
        "watermark",
        "detect",
        "--json",
        "--key-file",
        key,
        marked.to_str().unwrap(),
        marked_png.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}");
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!((v["detected"].as_bool(), v["payload"].as_str()), (Some(true), Some("94b8f01fee5ddea4")), "{v}");
        assert!(v["score"].as_f64().unwrap() > 0.0);
    }
    // An unmarked file: detected false, exit 2.
    let (code, stdout, _) = likeness(&[
        "watermark",
        "detect",
        "--json",
        "--key-file",
        key,
        marked.to_str().unwrap(),
        original.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stdout}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((last["detected"].as_bool(), last["payload"].is_null()), (Some(false), true));
    // Usage errors: exit 3 with a reason.
    let (code, _, stderr) =
        likeness(&["watermark", "embed", "--payload", "xyz", "--key-file", key, original.to_str().unwrap(), "o.png"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("16 hex digits"), "{stderr}");
    let (code, _, stderr) =
        likeness(&["watermark", "detect", "--key-file", "/nonexistent/wm.key", marked.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(stderr.contains("likeness keys init"), "{stderr}");
    let (code, _, stderr) = likeness(&[
        "watermark",
        "embed",
        "--payload",
        "94b8f01fee5ddea4",
        "--key-file",
        key,
        original.to_str().unwrap(),
        "out.gif",
    ]);
    assert_eq!(code, 3);
    assert!(stderr.contains(".jpg, .jpeg or .png"), "{stderr}");
}
