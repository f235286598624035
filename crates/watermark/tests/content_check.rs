//! The content check: a recovered mark is confirmed against the marked
//! output's fingerprint after the edits people make, and refused on
//! another picture its mark was copied onto (the transplant).

mod common;

use common::*;
use image::RgbImage;
use likeness_watermark::{detect, embed_informed, ContentVerdict, Fingerprint, Key, INFORMED_STRENGTH};

const PAYLOAD: [u8; 8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];

fn key() -> Key {
    Key::new(*b"likeness content check test key!")
}

type Edit = (&'static str, fn(&RgbImage) -> RgbImage);

/// Edits after which the picture must still be confirmed as the output.
const EDITS: [Edit; 12] = [
    ("none", |i| i.clone()),
    ("JPEG 50", |i| jpeg(i, 50)),
    ("resize 0.5x", |i| scale(i, 0.5)),
    ("crop keeping 50%", |i| crop_area(i, 0.5, 3, 1)),
    ("crop keeping 25%, corner", |i| crop_corner(i, 0.25)),
    ("mirror horizontal", |i| image::imageops::flip_horizontal(i)),
    ("rotation 90", |i| image::imageops::rotate90(i)),
    ("rotation 5 degrees", |i| rotate(i, 5.0)),
    ("aspect 1.25 down", |i| stretch(i, 1.0, 1.25)),
    ("brightness +20%", |i| brighten(i, 1.2)),
    ("resize 2x", |i| scale(i, 2.0)),
    ("crop, shrink, brighten, JPEG 60", reshare),
];

fn outputs() -> Vec<(&'static str, RgbImage)> {
    let up = |img: RgbImage| image::imageops::resize(&img, 1024, 768, image::imageops::FilterType::CatmullRom);
    vec![
        ("chelsea", fixture("scenes/chelsea.png")),
        ("coffee, 1024x768", up(fixture("scenes/coffee.png"))),
        ("astronaut", fixture("faces/astronaut.png")),
    ]
}

#[test]
fn an_edited_output_is_confirmed() {
    let (mut failures, mut recovered) = (Vec::new(), 0);
    for (name, original) in outputs() {
        let mut marked = original.clone();
        embed_informed(&mut marked, &PAYLOAD, &key(), INFORMED_STRENGTH);
        let fingerprint = Fingerprint::from_bytes(&Fingerprint::of(&marked).to_bytes()).unwrap();
        for (edit, f) in EDITS {
            let received = f(&marked);
            // Whether the mark survives is the robustness test's and the
            // attack bench's business; here, what follows when it does.
            let Some(found) = detect(&received, &key()).filter(|d| d.payload == PAYLOAD) else { continue };
            recovered += 1;
            let check = found.content(&received).check(&fingerprint);
            if check.verdict != ContentVerdict::Matches {
                failures.push(format!("{name} / {edit}: {check:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "not confirmed:\n{}", failures.join("\n"));
    assert!(recovered >= 30, "the mark was recovered in only {recovered} of 36 cases");
}

/// The copy attack: one output's fine detail (the luma minus its 3x3
/// mean, which carries the mark) added to another photo of the same size.
fn transplant(source: &RgbImage, target: &RgbImage) -> RgbImage {
    let (w, h) = (source.width().min(target.width()), source.height().min(target.height()));
    let luma = |img: &RgbImage, x: u32, y: u32| {
        let p = img.get_pixel(x, y);
        0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
    };
    let mut out = image::imageops::crop_imm(target, 0, 0, w, h).to_image();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut around = 0.0;
            for j in y - 1..=y + 1 {
                for i in x - 1..=x + 1 {
                    around += luma(source, i, j);
                }
            }
            let detail = luma(source, x, y) - around / 9.0;
            let p = out.get_pixel_mut(x, y);
            p.0 = p.0.map(|v| (f32::from(v) + detail).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

#[test]
fn a_mark_carried_onto_another_picture_is_refused() {
    let pictures = [
        fixture("scenes/chelsea.png"),
        fixture("scenes/coffee.png"),
        fixture("faces/grace_hopper.jpg"),
        fixture("faces/astronaut.png"),
    ];
    let mut carried = 0;
    for (s, source) in pictures.iter().enumerate() {
        let mut marked = source.clone();
        embed_informed(&mut marked, &PAYLOAD, &key(), INFORMED_STRENGTH);
        let fingerprint = Fingerprint::of(&marked);
        for (t, target) in pictures.iter().enumerate().filter(|(t, _)| *t != s) {
            let forged = transplant(&marked, target);
            // The copy attack works on the mark: it reads as the source's...
            let Some(found) = detect(&forged, &key()).filter(|d| d.payload == PAYLOAD) else { continue };
            carried += 1;
            // ...but not on the picture.
            let check = found.content(&forged).check(&fingerprint);
            assert_eq!(check.verdict, ContentVerdict::Differs, "source {s} onto target {t}: {check:?}");
        }
    }
    // The attack must have worked on the mark for the test to say anything.
    assert!(carried >= 6, "the mark was carried in only {carried} of 12 transplants");
}

#[test]
fn a_mark_carried_between_two_pictures_that_brighten_alike_is_not_confirmed() {
    // Two different pictures whose coarse structure is the same plain
    // ramp, left to right: their block changes agree by chance alone.
    let mut rng = 7u32;
    let mut grain = move || {
        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (rng >> 16) % 9
    };
    let source = RgbImage::from_fn(512, 512, |x, _| {
        let v = (20 + x * 200 / 511 + grain()) as u8;
        image::Rgb([v, v, v.saturating_add(30)])
    });
    let target = RgbImage::from_fn(512, 512, |x, y| {
        let v = (((x as f32 / 511.0).sqrt() * 220.0) as u32 + 10 + (y % 3)) as u8;
        image::Rgb([v.saturating_add(20), v, v / 2])
    });
    let mut marked = source.clone();
    embed_informed(&mut marked, &PAYLOAD, &key(), INFORMED_STRENGTH);
    let forged = transplant(&marked, &target);
    let found = detect(&forged, &key()).filter(|d| d.payload == PAYLOAD).expect("the mark is carried");
    let check = found.content(&forged).check(&Fingerprint::of(&marked));
    assert_ne!(check.verdict, ContentVerdict::Matches, "{check:?}");
    // The output itself, edited, is not refused either.
    let edited = jpeg(&scale(&marked, 0.5), 75);
    let found = detect(&edited, &key()).filter(|d| d.payload == PAYLOAD).expect("the mark survives");
    assert_ne!(found.content(&edited).check(&Fingerprint::of(&marked)).verdict, ContentVerdict::Differs);
}
