//! The models on real photos (fixtures/). Needs ONNX Runtime: `make setup`.

use std::path::PathBuf;
use std::sync::OnceLock;

use likeness_vision::{Embedding, Gallery, ImageAnalysis, Vision, VisionConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vision() -> &'static Vision {
    static V: OnceLock<Vision> = OnceLock::new();
    V.get_or_init(|| {
        Vision::load(&VisionConfig { models_dir: root().join("models"), ..VisionConfig::default() })
            .unwrap_or_else(|e| panic!("vision did not load ({e}); run `make setup`"))
    })
}

fn analyze(name: &str) -> ImageAnalysis {
    let bytes = std::fs::read(root().join("fixtures").join(name)).unwrap();
    let img = likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels;
    vision().analyze(&img).unwrap()
}

/// The embedding of the largest face (obama2.jpg also shows part of a second one).
fn largest_face(a: &ImageAnalysis) -> Embedding {
    a.faces.iter().max_by(|x, y| (x.bbox[2] * x.bbox[3]).total_cmp(&(y.bbox[2] * y.bbox[3]))).unwrap().embedding.clone()
}

#[test]
fn one_face_in_each_portrait_with_a_plausible_box() {
    for name in ["faces/astronaut.png", "faces/grace_hopper.jpg", "faces/obama.jpg"] {
        let a = analyze(name);
        assert_eq!(a.faces.len(), 1, "{name}: {:?}", a.faces.iter().map(|f| (f.bbox, f.score)).collect::<Vec<_>>());
        let f = &a.faces[0];
        let [x, y, w, h] = f.bbox;
        let (iw, ih) = (a.width as f32, a.height as f32);
        // A portrait's face: 8..60% of the width, in the upper two thirds, landmarks inside the box.
        assert!(w > 0.08 * iw && w < 0.6 * iw && h > 0.08 * ih && y + h / 2.0 < 0.67 * ih, "{name}: box {:?}", f.bbox);
        assert!(f.score > 0.5);
        // Eyes in plain view: enrollment (which refuses 0.6 and over) takes them.
        assert!(f.eyes_covered < 0.35, "{name}: eyes covered {}", f.eyes_covered);
        for [lx, ly] in f.landmarks {
            assert!(lx >= x && lx <= x + w && ly >= y && ly <= y + h, "{name}: landmark outside the box");
        }
        let [le, re] = [f.landmarks[0], f.landmarks[1]];
        assert!(le[0] < re[0], "{name}: left eye should be left of the right eye");
    }
}

#[test]
fn no_face_in_scenes_without_people() {
    for name in ["scenes/coffee.png", "scenes/rocket.jpg", "scenes/chelsea.png"] {
        let a = analyze(name);
        assert!(a.faces.is_empty(), "{name}: {} faces", a.faces.len());
        assert!(a.nsfw < 0.2, "{name}: nsfw {}", a.nsfw);
    }
}

#[test]
fn same_man_within_threshold_different_people_beyond() {
    let obama = analyze("faces/obama.jpg");
    let obama2 = analyze("faces/obama2.jpg");
    let hopper = analyze("faces/grace_hopper.jpg");
    let collins = analyze("faces/astronaut.png");
    let same = largest_face(&obama).distance_to(&largest_face(&obama2).0);
    assert!(same < 0.5, "same man: {same}");
    for (a, b, what) in
        [(&obama, &hopper, "obama-hopper"), (&obama, &collins, "obama-collins"), (&hopper, &collins, "hopper-collins")]
    {
        let d = largest_face(a).distance_to(&largest_face(b).0);
        assert!(d > 0.6, "{what}: {d}");
    }
}

/// Turning a photo does not hide who it shows: upside down (the evasion
/// that let a public figure enroll as a private person), on its side, or
/// mirrored, the face is found and matches the same man's other photo.
#[test]
fn a_turned_photo_still_shows_the_same_man() {
    let bytes = std::fs::read(root().join("fixtures/faces/obama.jpg")).unwrap();
    let img = likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels;
    let other = largest_face(&analyze("faces/obama2.jpg"));
    let hopper = largest_face(&analyze("faces/grace_hopper.jpg"));
    for (what, turned) in [
        ("upside down", image::imageops::rotate180(&img)),
        ("a quarter turn", image::imageops::rotate90(&img)),
        ("three quarters", image::imageops::rotate270(&img)),
        ("upside down and mirrored", image::imageops::flip_vertical(&img)),
    ] {
        let a = vision().analyze(&turned).unwrap();
        assert_eq!(a.faces.len(), 1, "{what}: {:?}", a.faces.iter().map(|f| (f.bbox, f.score)).collect::<Vec<_>>());
        // Within the match distance (0.55); upside down and mirrored comes
        // closest to it (0.51), faces not being symmetric.
        let d = a.faces[0].embedding.distance_to(&other.0);
        assert!(d < 0.55, "{what}: distance {d} to his other photo");
        assert!(a.faces[0].embedding.distance_to(&hopper.0) > 0.6, "{what}");
        let [x, y, w, h] = a.faces[0].bbox;
        assert!(x >= 0.0 && y >= 0.0 && x + w <= a.width as f32 && y + h <= a.height as f32, "{what}: box");
    }
    // An output is searched turned only where the upright search is unsure;
    // upside down, the face is found weakly, so it is.
    let a = vision().analyze_output(&image::imageops::rotate180(&img)).unwrap();
    assert_eq!(a.faces.len(), 1);
    let d = a.faces[0].embedding.distance_to(&other.0);
    assert!(d < 0.55, "an output upside down: distance {d} to his other photo");
    // Upright and clear, one search is enough, and finds the same.
    let upright = vision().analyze_output(&img).unwrap();
    assert_eq!(upright.faces.len(), 1);
    assert!(upright.faces[0].score >= likeness_vision::SURE, "{}", upright.faces[0].score);
}

#[test]
fn adults_are_not_likely_minors() {
    for name in ["faces/astronaut.png", "faces/grace_hopper.jpg", "faces/obama.jpg"] {
        let f = &analyze(name).faces[0];
        assert!(f.p_minor < 0.05, "{name}: p_minor {} (age {})", f.p_minor, f.age);
        assert!(f.age > 20.0, "{name}: age {}", f.age);
    }
}

#[test]
fn a_gallery_of_obama_flags_his_other_photo_only() {
    let mut g = Gallery::default();
    let obama = analyze("faces/obama.jpg");
    g.add("obama", "Barack Obama", &obama.faces[0].embedding, "fixtures/faces/obama.jpg").unwrap();
    assert_eq!(g.matches(&largest_face(&analyze("faces/obama2.jpg")), 0.55).len(), 1);
    for name in ["faces/grace_hopper.jpg", "faces/astronaut.png"] {
        assert!(g.matches(&largest_face(&analyze(name)), 0.55).is_empty(), "{name} matched Obama");
    }
}

#[test]
fn rgba_png_and_grayscale_jpeg_work() {
    let bytes = std::fs::read(root().join("fixtures/faces/grace_hopper.jpg")).unwrap();
    let img = likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels;
    let gray = image::DynamicImage::ImageRgb8(img.clone()).to_luma8();
    let mut gray_jpeg = Vec::new();
    gray.write_to(&mut std::io::Cursor::new(&mut gray_jpeg), image::ImageFormat::Jpeg).unwrap();
    let rgba = image::DynamicImage::ImageRgb8(img).to_rgba8();
    let mut rgba_png = Vec::new();
    rgba.write_to(&mut std::io::Cursor::new(&mut rgba_png), image::ImageFormat::Png).unwrap();
    for (what, bytes) in [("grayscale jpeg", gray_jpeg), ("rgba png", rgba_png)] {
        let img = likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels;
        assert_eq!(vision().analyze(&img).unwrap().faces.len(), 1, "{what}");
    }
}

#[test]
fn a_model_file_with_one_changed_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("models")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let victim = dir.path().join("age-v1.onnx");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    let err =
        Vision::load(&VisionConfig { models_dir: dir.path().to_path_buf(), ..VisionConfig::default() }).err().unwrap();
    let text = err.to_string();
    assert!(text.contains("age-v1.onnx") && text.contains("altered"), "{text}");
    std::fs::remove_file(dir.path().join("open_nsfw.onnx")).unwrap();
    let mut bytes = std::fs::read(root().join("models/age-v1.onnx")).unwrap();
    std::fs::write(&victim, std::mem::take(&mut bytes)).unwrap();
    let err =
        Vision::load(&VisionConfig { models_dir: dir.path().to_path_buf(), ..VisionConfig::default() }).err().unwrap();
    assert!(err.to_string().contains("open_nsfw.onnx") && err.to_string().contains("missing"), "{err}");
}

/// Without configuration, the models folder is the working directory's or
/// the binary's, never a parent's.
#[test]
fn the_default_models_folder_is_never_a_parents() {
    // Tests run in the crate's folder; the repository's models/ is two up.
    let found = likeness_vision::default_models_dir();
    assert!(!found.join("manifest.json").is_file() || found.starts_with(std::env::current_dir().unwrap()), "{found:?}");
    assert_ne!(found, root().join("models").canonicalize().unwrap());
}

/// A manifest entry that names a file outside the models folder is refused
/// before anything is read.
#[test]
fn a_manifest_cannot_send_the_loader_outside_the_models_folder() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("models/manifest.json")).unwrap()).unwrap();
    for file in ["../age-v1.onnx", "/etc/hostname", "sub/age-v1.onnx"] {
        let dir = tempfile::tempdir().unwrap();
        let mut m = manifest.clone();
        m["models"][0]["file"] = serde_json::json!(file);
        std::fs::write(dir.path().join("manifest.json"), m.to_string()).unwrap();
        let err = Vision::load(&VisionConfig { models_dir: dir.path().to_path_buf(), ..VisionConfig::default() })
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a plain file name"), "{file}: {err}");
    }
}

#[test]
fn an_image_with_more_faces_than_are_checked_is_refused_whole() {
    // A 10x10 mosaic of one portrait: 100 faces, more than MAX_FACES.
    let bytes = std::fs::read(root().join("fixtures/faces/grace_hopper.jpg")).unwrap();
    let tile = likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels;
    let tile = image::imageops::resize(&tile, 160, 188, image::imageops::FilterType::Triangle);
    let mut mosaic = image::RgbImage::new(1600, 1880);
    for i in 0..10 {
        for j in 0..10 {
            image::imageops::replace(&mut mosaic, &tile, i * 160, j * 188);
        }
    }
    match vision().analyze(&mosaic) {
        Err(likeness_vision::VisionError::TooManyFaces { found, max }) => assert!(found > max, "{found} > {max}"),
        other => panic!("expected TooManyFaces, got {:?}", other.map(|a| a.faces.len())),
    }
}

/// A generated output is checked for faces too, at a lower resolution than
/// what users send: a face 40 px wide in a 1024x1024 output (here Obama's,
/// scaled down and pasted into a scene) must still be found, where it is.
#[test]
fn a_face_40_px_wide_in_a_1024_output_is_found() {
    let read = |name: &str| {
        let bytes = std::fs::read(root().join("fixtures").join(name)).unwrap();
        likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels
    };
    let portrait = read("faces/obama.jpg");
    let face = vision().analyze(&portrait).unwrap().faces[0].bbox;
    for width in [40.0f32, 48.0] {
        let scale = width / face[2];
        let (w, h) =
            ((portrait.width() as f32 * scale).round() as u32, (portrait.height() as f32 * scale).round() as u32);
        let small = image::imageops::resize(&portrait, w, h, image::imageops::FilterType::Triangle);
        let mut output =
            image::imageops::resize(&read("scenes/coffee.png"), 1024, 1024, image::imageops::FilterType::Triangle);
        let (ox, oy) = (700i64, 260i64);
        image::imageops::overlay(&mut output, &small, ox, oy);
        let found = vision().analyze_output(&output).unwrap();
        let expected = [ox as f32 + face[0] * scale, oy as f32 + face[1] * scale];
        let near: Vec<_> = found
            .faces
            .iter()
            .filter(|f| (f.bbox[0] - expected[0]).abs() < 12.0 && (f.bbox[1] - expected[1]).abs() < 12.0)
            .collect();
        assert_eq!(
            near.len(),
            1,
            "{width} px: {:?}",
            found.faces.iter().map(|f| (f.bbox, f.score)).collect::<Vec<_>>()
        );
        assert!((near[0].bbox[2] - width).abs() < 0.35 * width, "{width} px: box {:?}", near[0].bbox);
    }
}
