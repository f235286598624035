//! Image helpers shared by the robustness tests and the attack-suite
//! benchmark (which includes this file by path).
#![allow(dead_code)]

use image::{Rgb, RgbImage};
use likeness_media::{DecodeLimits, OutputFormat};

pub fn fixture(name: &str) -> RgbImage {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(name);
    decoded(&std::fs::read(path).unwrap())
}

/// Decoded as the gateway decodes an upload.
fn decoded(bytes: &[u8]) -> RgbImage {
    likeness_media::decode(bytes, None, &DecodeLimits::default()).unwrap().pixels
}

pub fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
    let bytes = likeness_media::encode(img, OutputFormat::Jpeg { quality }).unwrap();
    decoded(&bytes)
}

/// Lossy WebP at `quality` (libwebp's encoder, as platforms and browsers
/// save it).
pub fn webp(img: &RgbImage, quality: f32) -> RgbImage {
    let bytes = webp::Encoder::from_rgb(img.as_raw(), img.width(), img.height()).encode(quality);
    decoded(&bytes)
}

pub fn png(img: &RgbImage) -> RgbImage {
    let bytes = likeness_media::encode(img, OutputFormat::Png).unwrap();
    decoded(&bytes)
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

/// Mean SSIM of the luma over 8×8 windows, step 4 (the usual constants for
/// 8-bit images).
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let luma = |img: &RgbImage| -> Vec<f64> {
        img.pixels().map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).collect()
    };
    let (la, lb, w) = (luma(a), luma(b), a.width() as usize);
    let h = a.height() as usize;
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut sum, mut n) = (0.0, 0usize);
    for y in (0..h.saturating_sub(7)).step_by(4) {
        for x in (0..w.saturating_sub(7)).step_by(4) {
            let (mut ma, mut mb, mut vaa, mut vbb, mut vab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for j in 0..8 {
                for i in 0..8 {
                    let (p, q) = (la[(y + j) * w + x + i], lb[(y + j) * w + x + i]);
                    ma += p;
                    mb += q;
                    vaa += p * p;
                    vbb += q * q;
                    vab += p * q;
                }
            }
            let k = 64.0;
            let (ma, mb) = (ma / k, mb / k);
            let (va, vb, cov) = (vaa / k - ma * ma, vbb / k - mb * mb, vab / k - ma * mb);
            sum += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

/// Rotated by `degrees` about the centre (bilinear), same size, black corners.
pub fn rotate(img: &RgbImage, degrees: f32) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (s, c) = degrees.to_radians().sin_cos();
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let (dx, dy) = (x as f32 - w / 2.0, y as f32 - h / 2.0);
        let (sx, sy) = (c * dx + s * dy + w / 2.0, -s * dx + c * dy + h / 2.0);
        let (x0, y0) = (sx.floor(), sy.floor());
        if x0 < 0.0 || y0 < 0.0 || x0 + 1.0 >= w || y0 + 1.0 >= h {
            return Rgb([0, 0, 0]);
        }
        let (fx, fy) = (sx - x0, sy - y0);
        let p = |xx: f32, yy: f32| *img.get_pixel(xx as u32, yy as u32);
        let (a, b, cc, d) = (p(x0, y0), p(x0 + 1.0, y0), p(x0, y0 + 1.0), p(x0 + 1.0, y0 + 1.0));
        Rgb(std::array::from_fn(|i| {
            let top = f32::from(a[i]) * (1.0 - fx) + f32::from(b[i]) * fx;
            let bottom = f32::from(cc[i]) * (1.0 - fx) + f32::from(d[i]) * fx;
            (top * (1.0 - fy) + bottom * fy).round() as u8
        }))
    })
}

/// Resized by `fx` across and `fy` down (an aspect-ratio change when they differ).
pub fn stretch(img: &RgbImage, fx: f32, fy: f32) -> RgbImage {
    let (w, h) = ((img.width() as f32 * fx).round() as u32, (img.height() as f32 * fy).round() as u32);
    image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle)
}

/// A crop keeping `keep` of the area from the top-left corner (off-centre).
pub fn crop_corner(img: &RgbImage, keep: f32) -> RgbImage {
    let side = keep.sqrt();
    let (w, h) = ((img.width() as f32 * side) as u32, (img.height() as f32 * side) as u32);
    image::imageops::crop_imm(img, 0, 0, w, h).to_image()
}

/// Brightness times `f`, clipped.
pub fn brighten(img: &RgbImage, f: f32) -> RgbImage {
    let mut o = img.clone();
    o.pixels_mut().for_each(|p| p.0 = p.0.map(|v| (f32::from(v) * f).round().min(255.0) as u8));
    o
}

/// A re-share chain: crop to 70% of the area off-centre, shrink to 0.7x,
/// brighten 10%, JPEG 60.
pub fn reshare(img: &RgbImage) -> RgbImage {
    let side = 0.7f32.sqrt();
    let (w, h) = ((img.width() as f32 * side) as u32, (img.height() as f32 * side) as u32);
    let cropped = image::imageops::crop_imm(img, img.width() - w, (img.height() - h) / 3, w, h).to_image();
    jpeg(&brighten(&scale(&cropped, 0.7), 1.1), 60)
}

/// The attack bench's text-like graphic: dark strokes every 7 px on white,
/// in lines every 40 px.
pub fn text_like(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let stroke = (y % 40 < 22) && ((x / 7 + y / 40) % 5 != 0) && ((x % 7) < 3 || (y % 40) % 11 < 2);
        if stroke {
            Rgb([20, 20, 30])
        } else {
            Rgb([250, 250, 245])
        }
    })
}

/// The attack bench's linear gradient: red across (a level every 4 px at
/// 1024 wide), green down.
pub fn linear_gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x / 4) as u8, (y * 255 / (h - 1)) as u8, 120]))
}
