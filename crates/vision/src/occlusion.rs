//! Whether a face's eyes can be seen. A bar, a sticker or dark glasses over
//! them leave a flat patch where eyes have edges (iris, lids, lashes, brows).
//! A face enrolled that way could not be told from a public figure's: a
//! black bar over the eyes took a gallery match from 0.40 to 0.60.

use image::RgbImage;

use crate::align;

/// Side of the aligned chip the eyes are looked at in (the age model's
/// template: eyes 26 px apart).
const CHIP: u32 = 64;
/// Half the width and height of the window around each eye, in chip pixels.
const HALF: (i32, i32) = (7, 4);
/// A luma step (0 to 255) under which a pixel counts as flat.
const FLAT: i32 = 10;

/// The share of flat pixels around the two eyes, 0 (eyes plainly visible)
/// to 1 (a uniform patch over both).
pub fn eyes_covered(img: &RgbImage, landmarks: &[[f32; 2]; 5]) -> f32 {
    let chip = align::chip(img, landmarks, &align::AGE_TEMPLATE, CHIP);
    let luma = |x: i32, y: i32| -> i32 {
        let p = chip.get_pixel(x.clamp(0, CHIP as i32 - 1) as u32, y.clamp(0, CHIP as i32 - 1) as u32).0;
        (299 * i32::from(p[0]) + 587 * i32::from(p[1]) + 114 * i32::from(p[2])) / 1000
    };
    let (mut flat, mut all) = (0u32, 0u32);
    for eye in &align::AGE_TEMPLATE[..2] {
        let (cx, cy) = (eye[0].round() as i32, eye[1].round() as i32);
        for y in cy - HALF.1..=cy + HALF.1 {
            for x in cx - HALF.0..=cx + HALF.0 {
                let here = luma(x, y);
                let step = (luma(x + 1, y) - here).abs().max((luma(x, y + 1) - here).abs());
                flat += u32::from(step < FLAT);
                all += 1;
            }
        }
    }
    flat as f32 / all as f32
}
