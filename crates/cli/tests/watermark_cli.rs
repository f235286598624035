//! `likeness watermark embed|detect` through the real binary.

mod support;

use support::*;

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

/// `--data-dir` is where every subcommand finds the keys, as `serve` does.
#[test]
fn every_subcommand_finds_its_keys_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = likeness(&["--data-dir", d, "keys", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(dir.path().join("keys/watermark.key").is_file() && dir.path().join("keys/signer.key").is_file());
    let key_before = std::fs::read(dir.path().join("keys/signer.key")).unwrap();
    let (code, out, _) = likeness(&["keys", "init", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(std::fs::read(dir.path().join("keys/signer.key")).unwrap(), key_before);

    let marked = dir.path().join("marked.png");
    let marked = marked.to_str().unwrap();
    let original = fixture("scenes/coffee.png");
    let (code, out, err) = likeness(&[
        "watermark",
        "embed",
        "--data-dir",
        d,
        "--payload",
        "0102030405060708",
        original.to_str().unwrap(),
        marked,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = likeness(&["--data-dir", d, "watermark", "detect", "--json", marked]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"payload\":\"0102030405060708\""), "{out}");
    let (_, lines) = likeness_verify(&["--data-dir", d, marked]);
    assert_eq!(lines[0]["watermark"]["payload"], "0102030405060708", "{}", lines[0]);
    // Another data dir has another key (none here): no mark can be read.
    let other = tempfile::tempdir().unwrap();
    let (_, lines) = likeness_verify(&["--data-dir", other.path().to_str().unwrap(), marked]);
    assert_eq!(lines[0]["watermark"], serde_json::Value::Null);
}
