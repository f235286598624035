//! `likeness vision analyze` and `likeness gallery add` through the real binary.

mod support;

use std::process::Command;

use support::*;

#[test]
fn gallery_add_then_analyze_flags_only_the_same_man() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("g.json");
    let g = gallery.to_str().unwrap();
    let f = |n: &str| fixture(n).to_str().unwrap().to_string();

    let (code, out, err) =
        likeness(&["gallery", "add", "--name", "Barack Obama", "--id", "obama", "-o", g, &f("faces/obama.jpg")]);
    assert_eq!(code, 0, "{out}{err}");
    // A photo without exactly one face is refused and the file is unchanged.
    let before = std::fs::read(&gallery).unwrap();
    let (code, _, err) =
        likeness(&["gallery", "add", "--name", "Barack Obama", "--id", "obama", "-o", g, &f("scenes/coffee.png")]);
    assert_eq!(code, 3);
    assert!(err.contains("found 0 faces"), "{err}");
    assert_eq!(std::fs::read(&gallery).unwrap(), before);

    let (code, out, err) = likeness(&[
        "vision",
        "analyze",
        "--json",
        "--gallery",
        g,
        &f("faces/obama2.jpg"),
        &f("faces/grace_hopper.jpg"),
        &f("faces/astronaut.png"),
        &f("scenes/rocket.jpg"),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    for l in &lines {
        for key in ["file", "faces", "nsfw"] {
            assert!(l.get(key).is_some(), "missing {key}: {l}");
        }
        for face in l["faces"].as_array().unwrap() {
            for key in ["box", "score", "age", "p_minor", "matches"] {
                assert!(face.get(key).is_some(), "face lacks {key}: {face}");
            }
            assert!(face.get("embedding").is_none(), "embeddings are never printed");
        }
    }
    let matches = |i: usize| lines[i]["faces"][0]["matches"].as_array().unwrap().len();
    assert_eq!(matches(0), 1, "Obama's second photo: {}", lines[0]);
    assert_eq!(lines[0]["faces"][0]["matches"][0]["id"], "obama");
    assert_eq!((matches(1), matches(2)), (0, 0));
    assert_eq!(lines[3]["faces"], serde_json::json!([]));

    // Without --gallery, the shipped example gallery, as `serve` uses.
    let (code, out, err) = likeness(&["vision", "analyze", "--json", &f("faces/grace_hopper.jpg")]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["faces"][0]["matches"][0]["id"], "grace-hopper", "{line}");

    // Not a regular file: refused without reading it.
    let (code, out, _) = likeness(&["vision", "analyze", "--json", "/dev/zero"]);
    assert_eq!(code, 3);
    assert!(out.contains("not a regular file"), "{out}");

    // Human output and a missing file (exit 3, the others still analysed).
    let (code, out, _) = likeness(&["vision", "analyze", "--gallery", g, &f("faces/obama2.jpg"), "/nonexistent.jpg"]);
    assert_eq!(code, 3);
    assert!(
        out.contains("1 face(s)") && out.contains("matches Barack Obama") && out.contains("/nonexistent.jpg: error"),
        "{out}"
    );
}

#[test]
fn the_shipped_example_gallery_knows_the_three_portraits() {
    let gallery = workspace_root().join("models/gallery.example.json");
    let g = likeness_vision::Gallery::load(&gallery).unwrap();
    let ids: Vec<&str> = g.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["obama", "grace-hopper", "eileen-collins"]);
    assert!(g.entries.iter().all(|e| e.embeddings.iter().all(|v| v.source.contains("public domain"))));
}

#[test]
fn without_onnx_runtime_the_error_says_how_to_get_it() {
    // Run from a directory with no .cache/ above it and a bad ORT_DYLIB_PATH.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["vision", "analyze", "--models"])
        .arg(workspace_root().join("models"))
        .arg(fixture("scenes/coffee.png"))
        .env("ORT_DYLIB_PATH", dir.path().join("missing/libonnxruntime.so.1.31.1"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("ONNX Runtime 1.31.1 was not found")
            && err.contains("make setup")
            && err.contains("ORT_DYLIB_PATH"),
        "{err}"
    );

    // A configured path that does not exist is an error too, not a fallback.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[vision]\nonnxruntime = \"/nonexistent/libonnxruntime.so.1.31.1\"\n").unwrap();
    let server = Server::start_with(&std::fs::read_to_string(&config).unwrap(), &[]);
    let (_, body) = server.call("GET", "/readyz", None);
    assert_eq!(body["ready"], false);
    assert!(body["checks"]["vision"]["error"].as_str().unwrap().contains("not at the configured path"), "{body}");
}
