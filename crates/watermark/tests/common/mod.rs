//! Image helpers shared by the robustness tests and the attack-suite
//! benchmark (which includes this file by path).
#![allow(dead_code)]

use image::RgbImage;
use likeness_media::{DecodeLimits, OutputFormat};

pub fn fixture(name: &str) -> RgbImage {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(name);
    likeness_media::decode(&std::fs::read(path).unwrap(), None, &DecodeLimits::default()).unwrap().pixels
}

pub fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
    let bytes = likeness_media::encode(img, OutputFormat::Jpeg { quality }).unwrap();
    likeness_media::decode(&bytes, None, &DecodeLimits::default()).unwrap().pixels
}

pub fn png(img: &RgbImage) -> RgbImage {
    let bytes = likeness_media::encode(img, OutputFormat::Png).unwrap();
    likeness_media::decode(&bytes, None, &DecodeLimits::default()).unwrap().pixels
}

/// Resized by `f` with a triangle filter, as most image tools do.
pub fn scale(img: &RgbImage, f: f32) -> RgbImage {
    let (w, h) = ((img.width() as f32 * f).round() as u32, (img.height() as f32 * f).round() as u32);
    image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle)
}

/// A crop keeping `keep` of the area, near the centre, moved by (dx, dy).
pub fn crop_area(img: &RgbImage, keep: f32, dx: u32, dy: u32) -> RgbImage {
    let side = keep.sqrt();
    let (w, h) = ((img.width() as f32 * side) as u32, (img.height() as f32 * side) as u32);
    image::imageops::crop_imm(img, (img.width() - w) / 2 + dx, (img.height() - h) / 2 + dy, w, h).to_image()
}

pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let mse: f64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}
