//! The attack suite: marks every image, attacks it, detects, and prints per
//! attack the mean bit accuracy and the exact-recovery rate; then PSNR,
//! false detections on unmarked images, and timings. Never asserts.
//!
//! Images: the project's public-domain fixtures plus synthetic ones (flat,
//! gradients, a text-like graphic, noise), 451 to 2048 px, square and not.
//! Not in the suite: WebP quality 75 (the `image` crate encodes WebP
//! losslessly only).

use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use image::{Rgb, RgbImage};
use likeness_watermark::{detect, embed_informed, read_unchecked, Key};
use rand::{Rng, SeedableRng};

fn images() -> Vec<(String, RgbImage)> {
    let mut v: Vec<(String, RgbImage)> = [
        "scenes/chelsea.png",
        "scenes/coffee.png",
        "scenes/rocket.jpg",
        "faces/grace_hopper.jpg",
        "faces/obama.jpg",
        "faces/obama2.jpg",
        "faces/astronaut.png",
    ]
    .iter()
    .map(|n| (n.to_string(), fixture(n)))
    .collect();
    let up = |img: &RgbImage, f: u32| {
        image::imageops::resize(img, img.width() * f, img.height() * f, image::imageops::FilterType::CatmullRom)
    };
    v.push(("coffee x2 (1200x800)".into(), up(&fixture("scenes/coffee.png"), 2)));
    v.push(("astronaut x4 (2048)".into(), up(&fixture("faces/astronaut.png"), 4)));
    v.push(("flat grey 512".into(), RgbImage::from_pixel(512, 512, Rgb([128, 128, 128]))));
    v.push(("flat dark 800x600".into(), RgbImage::from_pixel(800, 600, Rgb([30, 40, 50]))));
    v.push((
        "gradient 1024x640".into(),
        RgbImage::from_fn(1024, 640, |x, y| Rgb([(x / 4) as u8, (y * 255 / 639) as u8, 120])),
    ));
    v.push((
        "radial gradient 768".into(),
        RgbImage::from_fn(768, 768, |x, y| {
            let d = (((x as f32 - 384.0).powi(2) + (y as f32 - 384.0).powi(2)).sqrt() / 543.0 * 255.0) as u8;
            Rgb([d, 255 - d, 128])
        }),
    ));
    // A text-like graphic: dark strokes on white.
    v.push((
        "text-like 1000x700".into(),
        RgbImage::from_fn(1000, 700, |x, y| {
            let stroke = (y % 40 < 22) && ((x / 7 + y / 40) % 5 != 0) && ((x % 7) < 3 || (y % 40) % 11 < 2);
            if stroke {
                Rgb([20, 20, 30])
            } else {
                Rgb([250, 250, 245])
            }
        }),
    ));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    v.push(("noise 640".into(), RgbImage::from_fn(640, 640, |_, _| Rgb([rng.gen(), rng.gen(), rng.gen()]))));
    v
}

fn map(img: &RgbImage, f: impl Fn(f32) -> f32) -> RgbImage {
    let mut o = img.clone();
    o.pixels_mut().for_each(|p| p.0 = p.0.map(|v| f(f32::from(v)).round().clamp(0.0, 255.0) as u8));
    o
}

fn noise(img: &RgbImage, sigma: f32) -> RgbImage {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut o = img.clone();
    for v in o.iter_mut() {
        // Box-Muller.
        let (u1, u2): (f32, f32) = (rng.gen_range(1e-7..1.0), rng.gen());
        let n = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos() * sigma;
        *v = (f32::from(*v) + n).round().clamp(0.0, 255.0) as u8;
    }
    o
}

type Attack = (&'static str, Box<dyn Fn(&RgbImage) -> RgbImage>);

fn main() {
    let key = Key::new(*b"likeness watermark bench key 001");
    let attacks: Vec<Attack> = vec![
        ("none", Box::new(|i: &RgbImage| i.clone())),
        ("JPEG 90", Box::new(|i: &RgbImage| jpeg(i, 90))),
        ("JPEG 75", Box::new(|i: &RgbImage| jpeg(i, 75))),
        ("JPEG 50", Box::new(|i: &RgbImage| jpeg(i, 50))),
        (
            "resize 0.5x and back",
            Box::new(|i: &RgbImage| {
                image::imageops::resize(&scale(i, 0.5), i.width(), i.height(), image::imageops::FilterType::Triangle)
            }),
        ),
        ("resize 0.5x", Box::new(|i: &RgbImage| scale(i, 0.5))),
        ("crop keeping 80%", Box::new(|i: &RgbImage| crop_area(i, 0.8, 0, 0))),
        ("crop keeping 50%", Box::new(|i: &RgbImage| crop_area(i, 0.5, 0, 0))),
        ("brightness +20%", Box::new(|i: &RgbImage| map(i, |v| v * 1.2))),
        ("contrast 0.8", Box::new(|i: &RgbImage| map(i, |v| (v - 128.0) * 0.8 + 128.0))),
        ("Gaussian noise sigma 5", Box::new(|i: &RgbImage| noise(i, 5.0))),
        ("blur radius 1", Box::new(|i: &RgbImage| image::imageops::blur(i, 1.0))),
        ("rotation 2 degrees", Box::new(|i: &RgbImage| rotate(i, 2.0))),
        ("PNG re-save", Box::new(png)),
        ("resize 0.75x then JPEG 80", Box::new(|i: &RgbImage| jpeg(&scale(i, 0.75), 80))),
        // What a platform does to an upload; the end-to-end test's "strip".
        ("resize 0.5x then JPEG 75", Box::new(|i: &RgbImage| jpeg(&scale(i, 0.5), 75))),
    ];
    let imgs = images();
    let mut marked = Vec::new();
    let mut psnrs = Vec::new();
    let mut ssims = Vec::new();
    let mut embed_ms_per_mp = Vec::new();
    for (i, (name, img)) in imgs.iter().enumerate() {
        let mut m = img.clone();
        let payload = (i as u64 * 0x9e37_79b9_7f4a_7c15).to_be_bytes();
        let t = Instant::now();
        embed_informed(&mut m, &payload, &key, likeness_watermark::INFORMED_STRENGTH);
        embed_ms_per_mp.push(t.elapsed().as_secs_f64() * 1000.0 / (f64::from(img.width() * img.height()) / 1e6));
        psnrs.push((name.clone(), psnr(img, &m)));
        ssims.push(ssim(img, &m));
        marked.push((payload, m));
    }
    println!("{} images, 64-bit payloads\n", imgs.len());
    println!("{:<28} {:>14} {:>16}", "attack", "bit accuracy", "exact recovery");
    let mut detect_ms_per_mp = Vec::new();
    for (name, attack) in &attacks {
        let (mut bits_ok, mut exact) = (0usize, 0usize);
        for (payload, m) in &marked {
            let a = attack(m);
            let t = Instant::now();
            let found = detect(&a, &key);
            if *name == "none" {
                detect_ms_per_mp.push(t.elapsed().as_secs_f64() * 1000.0 / (f64::from(a.width() * a.height()) / 1e6));
            }
            if found.as_ref().is_some_and(|d| &d.payload == payload) {
                exact += 1;
            } else if *name == "none" {
                let index = marked.iter().position(|(p, _)| p == payload).unwrap_or(0);
                println!("  (not recovered unattacked: {})", imgs[index].0);
            }
            if found.as_ref().is_some_and(|d| &d.payload == payload) {
                bits_ok += 64;
            } else {
                let best = read_unchecked(&a, &key)
                    .iter()
                    .map(|p| p.iter().zip(payload).map(|(x, y)| 8 - (x ^ y).count_ones() as usize).sum::<usize>())
                    .max()
                    .unwrap_or(32);
                bits_ok += best;
            }
        }
        let n = marked.len();
        println!(
            "{name:<28} {:>13.1}% {:>10}/{n} ({:.0}%)",
            100.0 * bits_ok as f64 / (64 * n) as f64,
            exact,
            100.0 * exact as f64 / n as f64
        );
    }
    let mean_psnr = psnrs.iter().map(|p| p.1).sum::<f64>() / psnrs.len() as f64;
    let worst = psnrs.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    println!("\nPSNR: mean {mean_psnr:.1} dB, worst {:.1} dB ({})", worst.1, worst.0);
    let under: Vec<String> = psnrs.iter().filter(|p| p.1 < 38.0).map(|(n, p)| format!("{n} {p:.1} dB")).collect();
    println!("under 38 dB: {}", if under.is_empty() { "none".to_string() } else { under.join(", ") });
    let worst_ssim = ssims.iter().copied().fold(1.0f64, f64::min);
    println!("SSIM (luma): mean {:.4}, worst {worst_ssim:.4}", ssims.iter().sum::<f64>() / ssims.len() as f64);

    let mut unmarked_ms_per_mp = Vec::new();
    let (tried, false_hits) = false_positive_run(&imgs, &key, &mut unmarked_ms_per_mp);
    println!("false detections on unmarked images: {false_hits} of {tried}");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "embed: median {:.1} ms per megapixel; detect (unattacked): median {:.1} ms per megapixel (one core)",
        median(&mut embed_ms_per_mp),
        median(&mut detect_ms_per_mp)
    );
    println!(
        "detect (unmarked, every hypothesis tried): median {:.1} ms per megapixel",
        median(&mut unmarked_ms_per_mp)
    );
}

/// Unmarked images: LIKENESS_WM_UNMARKED of them (5,000 by default), made
/// from the suite's images: the originals, random crops (10% to 100% of the
/// area), rescalings (0.3x to 1.5x), JPEG at random qualities, PNG, and flat
/// and gradient images in random colours. Two threads.
fn false_positive_run(imgs: &[(String, RgbImage)], key: &Key, ms_per_mp: &mut Vec<f64>) -> (usize, usize) {
    let total: usize = std::env::var("LIKENESS_WM_UNMARKED").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let variant = |i: usize| -> RgbImage {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + i as u64);
        if i % 10 == 9 {
            let (w, h) = (rng.gen_range(256..1400), rng.gen_range(256..1400));
            let (a, b): ([u8; 3], [u8; 3]) = (rng.gen(), rng.gen());
            return match i % 3 {
                0 => RgbImage::from_pixel(w, h, Rgb(a)),
                _ => RgbImage::from_fn(w, h, |x, y| {
                    let t = (x + y) as f32 / (w + h) as f32;
                    Rgb(std::array::from_fn(|c| (f32::from(a[c]) * (1.0 - t) + f32::from(b[c]) * t) as u8))
                }),
            };
        }
        let base = &imgs[i % imgs.len()].1;
        let keep = rng.gen_range(0.1f32..=1.0);
        let side = keep.sqrt();
        let (w, h) = ((base.width() as f32 * side) as u32, (base.height() as f32 * side) as u32);
        let (x, y) = (rng.gen_range(0..=base.width() - w), rng.gen_range(0..=base.height() - h));
        let mut v = image::imageops::crop_imm(base, x, y, w.max(1), h.max(1)).to_image();
        if rng.gen_bool(0.5) {
            v = scale(&v, rng.gen_range(0.3f32..1.5));
        }
        match rng.gen_range(0..3) {
            0 => jpeg(&v, rng.gen_range(40..=95)),
            1 => png(&v),
            _ => v,
        }
    };
    let results: Vec<(usize, usize, Vec<f64>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|t| {
                scope.spawn(move || {
                    let (mut tried, mut hits, mut times) = (0, 0, Vec::new());
                    for i in (t..total).step_by(2) {
                        let img = variant(i);
                        if img.width() < 16 || img.height() < 16 {
                            continue;
                        }
                        let start = Instant::now();
                        let found = detect(&img, key);
                        let mp = f64::from(img.width() * img.height()) / 1e6;
                        times.push(start.elapsed().as_secs_f64() * 1000.0 / mp);
                        tried += 1;
                        if let Some(d) = found {
                            hits += 1;
                            println!("  false detection: unmarked variant {i} gave {:02x?}", d.payload);
                        }
                    }
                    (tried, hits, times)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut tried = 0;
    let mut hits = 0;
    for (t, h, times) in results {
        tried += t;
        hits += h;
        ms_per_mp.extend(times);
    }
    (tried, hits)
}
