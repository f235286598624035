//! `likeness vision analyze` and `likeness gallery add` through the real binary.

mod support;

use std::process::Command;

use support::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn gallery_add_then_analyze_flags_only_the_same_man() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("g.json");
    let g = gallery.to_str().unwrap();
    let f = |n: &str| fixture(n).to_str().unwrap().to_string();

    let (code, out, err) =
        run(&["gallery", "add", "--name", "Barack Obama", "--id", "obama", "-o", g, &f("faces/obama.jpg")]);
    assert_eq!(code, 0, "{out}{err}");
    // A photo without exactly one face is refused and the file is unchanged.
    let before = std::fs::read(&gallery).unwrap();
    let (code, _, err) =
        run(&["gallery", "add", "--name", "Barack Obama", "--id", "obama", "-o", g, &f("scenes/coffee.png")]);
    assert_eq!(code, 3);
    assert!(err.contains("found 0 faces"), "{err}");
    assert_eq!(std::fs::read(&gallery).unwrap(), before);

    let (code, out, err) = run(&[
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

    // Human output and a missing file (exit 3, the others still analysed).
    let (code, out, _) = run(&["vision", "analyze", "--gallery", g, &f("faces/obama2.jpg"), "/nonexistent.jpg"]);
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
