//! `likeness verify` on its own: states, exit codes, directories and globs,
//! and agreement with the reference reader on files likeness did not make.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::json;
use support::*;

/// One signed output of a real gateway, written to `dir/name`.
fn signed_output(server: &Server, dir: &Path, name: &str) -> PathBuf {
    let (status, resp) =
        server.generate(&json!({"user": "u", "prompt": "a beach", "style": "vintage", "size": "256x256"}));
    assert_eq!(status, 200, "{resp}");
    let path = dir.join(name);
    std::fs::write(&path, B64.decode(resp["images"][0]["data"].as_str().unwrap()).unwrap()).unwrap();
    path
}

fn states(lines: &[serde_json::Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let file = Path::new(l["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().to_string();
            (file, l["state"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn exit_codes_and_states() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let trusted = signed_output(&server, dir.path(), "a-trusted.jpg");
    let tampered = signed_output(&server, dir.path(), "b-tampered.jpg");
    let mut bytes = std::fs::read(&tampered).unwrap();
    flip_image_byte(&mut bytes);
    std::fs::write(&tampered, bytes).unwrap();
    let unsigned = dir.path().join("c-unsigned.jpg");
    std::fs::copy(fixture("faces/obama.jpg"), &unsigned).unwrap();
    let ca = server.ca_pem();
    let (ca, t, x, u, d) = (
        ca.to_str().unwrap(),
        trusted.to_str().unwrap(),
        tampered.to_str().unwrap(),
        unsigned.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    );

    let (code, lines) = likeness_verify(&["--trust", ca, t]);
    assert_eq!((code, states(&lines)), (0, vec![("a-trusted.jpg".into(), "trusted".into())]));
    for key in ["file", "state", "signer", "failures"] {
        assert!(lines[0].get(key).is_some(), "--json lacks {key}");
    }
    let (code, _) = likeness_verify(&[t]);
    assert_eq!(code, 0, "valid (untrusted) still exits 0");
    let (code, lines) = likeness_verify(&["--trust", ca, x]);
    assert_eq!((code, lines[0]["state"].as_str().unwrap()), (1, "invalid"));
    let (code, lines) = likeness_verify(&["--trust", ca, u]);
    assert_eq!((code, lines[0]["state"].as_str().unwrap()), (2, "none"));
    let (code, _) = likeness_verify(&["--trust", ca, t, u]);
    assert_eq!(code, 2, "no credentials, none invalid");

    // A directory, walked in order; invalid wins over none.
    let (code, lines) = likeness_verify(&["--trust", ca, d]);
    assert_eq!(code, 1);
    assert_eq!(
        states(&lines),
        vec![
            ("a-trusted.jpg".into(), "trusted".into()),
            ("b-tampered.jpg".into(), "invalid".into()),
            ("c-unsigned.jpg".into(), "none".into())
        ]
    );
    // A symbolic link back to the directory is not followed (no loop), and
    // a tampered file outranks a missing one in the exit code.
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    let (code, lines) = likeness_verify(&["--trust", ca, d]);
    assert_eq!((code, lines.len()), (1, 3));
    let (code, _) = likeness_verify(&["--trust", ca, x, &format!("{d}/missing.jpg")]);
    assert_eq!(code, 1, "invalid outranks an I/O error");

    // A glob.
    let pattern = format!("{d}/a-*.jpg");
    let (code, lines) = likeness_verify(&["--trust", ca, &pattern]);
    assert_eq!((code, lines.len()), (0, 1));

    // Usage and I/O errors: exit 3.
    let (code, _) = likeness_verify(&[&format!("{d}/missing.jpg")]);
    assert_eq!(code, 3);
    let (code, _) = likeness_verify(&["--trust", &format!("{d}/no-such-ca.pem"), t]);
    assert_eq!(code, 3);
    assert_ne!(likeness(&["verify"]).0, 0, "no path is a usage error");

    // A reader that goes away early (`| head -1`) ends the run quietly.
    #[cfg(unix)]
    {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{} verify --trust {ca} {d} {d} {d} | head -c 10 >/dev/null", bin()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }

    // Human output names the state and the signer.
    let (_, text, _) = likeness(&["verify", "--trust", ca, t]);
    assert!(
        text.contains("trusted") && text.contains("likeness development signer") && text.contains("c2pa.created"),
        "{text}"
    );
}

/// Files signed by another implementation (c2pa-python, ES256, its own CA):
/// valid, trusted with its CA, tampered, remote-only and none. Both readers
/// must say the same.
#[test]
fn agrees_with_the_reference_reader_on_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    make_foreign_files(&fixture("faces/grace_hopper.jpg"), dir.path());
    std::fs::copy(fixture("faces/grace_hopper.jpg"), dir.path().join("plain.jpg")).unwrap();
    let names = ["foreign-valid.jpg", "foreign-tampered.jpg", "foreign-remote.jpg", "plain.jpg"];
    let files: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let ca = dir.path().join("foreign-ca.pem");

    for anchors in [None, Some(ca.as_path())] {
        let mut ours_args = vec![];
        if let Some(a) = anchors {
            ours_args.extend(["--trust", a.to_str().unwrap()]);
        }
        ours_args.extend(args.iter().copied());
        let (_, ours) = likeness_verify(&ours_args);
        let theirs = reference_read(&paths, anchors);
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(
                o["state"], t["state"],
                "disagreement on {} (anchors: {anchors:?}): ours {o} theirs {t}",
                o["file"]
            );
            let our_codes: Vec<_> = o["failures"].as_array().unwrap().iter().map(|f| f["code"].clone()).collect();
            let mut our_codes = our_codes;
            our_codes.sort_by_key(|c| c.to_string());
            assert_eq!(json!(our_codes), t["failures"], "failure codes differ on {}", o["file"]);
        }
        let expected = if anchors.is_some() { "trusted" } else { "valid" };
        assert_eq!(
            states(&ours),
            vec![
                ("foreign-valid.jpg".into(), expected.into()),
                ("foreign-tampered.jpg".into(), "invalid".into()),
                ("foreign-remote.jpg".into(), "remote".into()),
                ("plain.jpg".into(), "none".into()),
            ]
        );
        assert_eq!(ours[2]["remote_url"], theirs[2]["remote_url"]);
        assert_eq!(ours[0]["signer"], "Foreign Camera App");
    }
}

/// Whatever a file's maker controls is printed escaped: a name (or a
/// manifest string) with a newline or an escape sequence cannot print a
/// line of its own, such as a fake `trusted` verdict.
#[test]
fn names_and_strings_from_a_file_cannot_fake_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let name = "cat.jpg\nreal.jpg: trusted: signed by a trusted signer, and intact\n\u{1b}[2K\u{202e}gpj.x";
    let path = dir.path().join(name);
    std::fs::copy(fixture("faces/grace_hopper.jpg"), &path).unwrap();
    let (code, stdout, _) = likeness(&["verify", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "the verdict and the watermark line, none injected: {stdout:?}");
    assert!(!stdout.lines().any(|l| l.starts_with("real.jpg")), "{stdout}");
    assert!(
        stdout.contains("\\u{a}real.jpg") && stdout.contains("\\u{1b}") && stdout.contains("\\u{202e}"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'));
}
