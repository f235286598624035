//! The attack suite: marks every image, attacks it, detects, and prints per
//! attack the mean bit accuracy and the exact-recovery rate; then PSNR,
//! the flat and gradient images under a few edits with many payloads, the
//! copy and removal experiment, false detections on unmarked images, and
//! timings. Never asserts.
//!
//! Images: the project's public-domain fixtures plus synthetic ones (flat,
//! gradients, a text-like graphic, noise), 451 to 2048 px, square and not.
//! Lossy WebP is encoded with libwebp (the `webp` crate; the `image`
//! crate encodes WebP losslessly only) and decoded as the gateway decodes.

use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use image::{Rgb, RgbImage};
use likeness_watermark::{
    detect, embed_informed, read_unchecked, sync_variant, ContentVerdict, Fingerprint, Key, SYNC_VARIANTS,
};
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
    v.push(("gradient 1024x640".into(), linear_gradient(1024, 640)));
    v.push((
        "radial gradient 768".into(),
        RgbImage::from_fn(768, 768, |x, y| {
            let d = (((x as f32 - 384.0).powi(2) + (y as f32 - 384.0).powi(2)).sqrt() / 543.0 * 255.0) as u8;
            Rgb([d, 255 - d, 128])
        }),
    ));
    // A text-like graphic: dark strokes on white.
    v.push(("text-like 1000x700".into(), text_like(1000, 700)));
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
        ("brightness +20%", Box::new(|i: &RgbImage| brighten(i, 1.2))),
        ("contrast 0.8", Box::new(|i: &RgbImage| map(i, |v| (v - 128.0) * 0.8 + 128.0))),
        ("Gaussian noise sigma 5", Box::new(|i: &RgbImage| noise(i, 5.0))),
        ("blur radius 1", Box::new(|i: &RgbImage| image::imageops::blur(i, 1.0))),
        ("rotation 2 degrees", Box::new(|i: &RgbImage| rotate(i, 2.0))),
        ("PNG re-save", Box::new(png)),
        ("resize 0.75x then JPEG 80", Box::new(|i: &RgbImage| jpeg(&scale(i, 0.75), 80))),
        // What a platform does to an upload; the end-to-end test's "strip".
        ("resize 0.5x then JPEG 75", Box::new(|i: &RgbImage| jpeg(&scale(i, 0.5), 75))),
        // The edits people make when they share (watermark v2).
        ("mirror horizontal", Box::new(|i: &RgbImage| image::imageops::flip_horizontal(i))),
        ("mirror vertical", Box::new(|i: &RgbImage| image::imageops::flip_vertical(i))),
        ("rotation 90", Box::new(|i: &RgbImage| image::imageops::rotate90(i))),
        ("rotation 180", Box::new(|i: &RgbImage| image::imageops::rotate180(i))),
        ("rotation 270", Box::new(|i: &RgbImage| image::imageops::rotate270(i))),
        ("rotation 5 degrees", Box::new(|i: &RgbImage| rotate(i, 5.0))),
        ("rotation -10 degrees", Box::new(|i: &RgbImage| rotate(i, -10.0))),
        ("resize 0.25x", Box::new(|i: &RgbImage| scale(i, 0.25))),
        ("resize 0.35x", Box::new(|i: &RgbImage| scale(i, 0.35))),
        ("resize 1.5x", Box::new(|i: &RgbImage| scale(i, 1.5))),
        ("resize 2x", Box::new(|i: &RgbImage| scale(i, 2.0))),
        ("aspect 0.8 across", Box::new(|i: &RgbImage| stretch(i, 0.8, 1.0))),
        ("aspect 1.25 down", Box::new(|i: &RgbImage| stretch(i, 1.0, 1.25))),
        ("crop keeping 25%, centred", Box::new(|i: &RgbImage| crop_area(i, 0.25, 0, 0))),
        ("crop keeping 25%, corner", Box::new(|i: &RgbImage| crop_corner(i, 0.25))),
        ("JPEG 30", Box::new(|i: &RgbImage| jpeg(i, 30))),
        ("crop, shrink, brighten, JPEG 60", Box::new(reshare)),
        ("WebP 75", Box::new(|i: &RgbImage| webp(i, 75.0))),
        ("WebP 50", Box::new(|i: &RgbImage| webp(i, 50.0))),
        ("resize 0.75x then WebP 80", Box::new(|i: &RgbImage| webp(&scale(i, 0.75), 80.0))),
        ("resize 0.5x then WebP 90", Box::new(|i: &RgbImage| webp(&scale(i, 0.5), 90.0))),
        ("resize 0.5x then WebP 75", Box::new(|i: &RgbImage| webp(&scale(i, 0.5), 75.0))),
    ];
    // LIKENESS_WM_ATTACKS=a,b keeps only attacks whose names contain one of them.
    let only: Option<Vec<String>> =
        std::env::var("LIKENESS_WM_ATTACKS").ok().map(|v| v.split(',').map(str::to_string).collect());
    let attacks: Vec<Attack> = attacks
        .into_iter()
        .filter(|(n, _)| n == &"none" || only.as_ref().is_none_or(|o| o.iter().any(|x| n.contains(x.as_str()))))
        .collect();
    let imgs = images();
    let mut marked = Vec::new();
    let mut psnrs = Vec::new();
    let mut ssims = Vec::new();
    let mut embed_ms_per_mp = Vec::new();
    let mut fingerprint_ms_per_mp = Vec::new();
    for (i, (name, img)) in imgs.iter().enumerate() {
        let mut m = img.clone();
        let payload = (i as u64 * 0x9e37_79b9_7f4a_7c15).to_be_bytes();
        let t = Instant::now();
        embed_informed(&mut m, &payload, &key, likeness_watermark::INFORMED_STRENGTH);
        embed_ms_per_mp.push(t.elapsed().as_secs_f64() * 1000.0 / (f64::from(img.width() * img.height()) / 1e6));
        psnrs.push((name.clone(), psnr(img, &m)));
        ssims.push(ssim(img, &m));
        let t = Instant::now();
        let fingerprint = Fingerprint::of(&m);
        fingerprint_ms_per_mp.push(t.elapsed().as_secs_f64() * 1000.0 / (f64::from(m.width() * m.height()) / 1e6));
        marked.push((payload, m, fingerprint));
    }
    println!("{} images, 64-bit payloads\n", imgs.len());
    println!(
        "{:<28} {:>14} {:>16}   content check of the recovered: matches / inconclusive / differs",
        "attack", "bit accuracy", "exact recovery"
    );
    let mut content_totals = [0usize; 3];
    let mut check_ms_per_mp = Vec::new();
    let mut detect_ms_per_mp = Vec::new();
    for (name, attack) in &attacks {
        let (mut bits_ok, mut exact) = (0usize, 0usize);
        let mut content = [0usize; 3];
        let mut differing = Vec::new();
        let mut missed = Vec::new();
        for (index, (payload, m, fingerprint)) in marked.iter().enumerate() {
            let a = attack(m);
            let t = Instant::now();
            let found = detect(&a, &key);
            if *name == "none" {
                detect_ms_per_mp.push(t.elapsed().as_secs_f64() * 1000.0 / (f64::from(a.width() * a.height()) / 1e6));
            }
            if let Some(d) = found.as_ref().filter(|d| &d.payload == payload) {
                exact += 1;
                let t = Instant::now();
                let check = d.content(&a).check(fingerprint);
                check_ms_per_mp.push(t.elapsed().as_secs_f64() * 1000.0 / (f64::from(a.width() * a.height()) / 1e6));
                let slot = match check.verdict {
                    ContentVerdict::Matches => 0,
                    ContentVerdict::Inconclusive => 1,
                    ContentVerdict::Differs => 2,
                };
                content[slot] += 1;
                if slot > 0 {
                    differing.push(format!(
                        "{} ({:?}, {}/{} pairs agree)",
                        imgs[index].0, check.verdict, check.agreeing, check.pairs
                    ));
                }
            } else {
                missed.push(imgs[index].0.as_str());
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
            "{name:<28} {:>13.1}% {:>10}/{n} ({:.0}%)   {} / {} / {}",
            100.0 * bits_ok as f64 / (64 * n) as f64,
            exact,
            100.0 * exact as f64 / n as f64,
            content[0],
            content[1],
            content[2]
        );
        content_totals.iter_mut().zip(content).for_each(|(t, c)| *t += c);
        if std::env::var_os("LIKENESS_WM_MISSES").is_some() {
            if !missed.is_empty() {
                println!("    missed: {}", missed.join(", "));
            }
            if !differing.is_empty() {
                println!("    content not confirmed: {}", differing.join(", "));
            }
        }
    }
    println!(
        "content check of every exact recovery: {} match, {} inconclusive, {} differ (a false rejection)",
        content_totals[0], content_totals[1], content_totals[2]
    );
    println!("\n{:<28} {:>9} {:>8}", "image", "PSNR", "SSIM");
    for ((name, p), q) in psnrs.iter().zip(&ssims) {
        println!("{name:<28} {p:>6.1} dB {q:>8.4}");
    }
    let mean_psnr = psnrs.iter().map(|p| p.1).sum::<f64>() / psnrs.len() as f64;
    let worst = psnrs.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    println!("\nPSNR: mean {mean_psnr:.1} dB, worst {:.1} dB ({})", worst.1, worst.0);
    let under: Vec<String> = psnrs.iter().filter(|p| p.1 < 38.0).map(|(n, p)| format!("{n} {p:.1} dB")).collect();
    println!("under 38 dB: {}", if under.is_empty() { "none".to_string() } else { under.join(", ") });
    let worst_ssim = ssims.iter().copied().fold(1.0f64, f64::min);
    println!("SSIM (luma): mean {:.4}, worst {worst_ssim:.4}", ssims.iter().sum::<f64>() / ssims.len() as f64);

    payload_sweep(&imgs, &key);

    copy_and_removal(&imgs, &key);

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
        "content check: fingerprint of a marked output, median {:.1} ms per megapixel; placing a received \
         image and comparing, median {:.1} ms per megapixel",
        median(&mut fingerprint_ms_per_mp),
        median(&mut check_ms_per_mp)
    );
    println!(
        "detect (unmarked, every hypothesis tried): median {:.1} ms per megapixel",
        median(&mut unmarked_ms_per_mp)
    );
    // The same at output sizes, where the fixed costs (the lattice
    // estimate, the eight turns) weigh less than on small crops.
    let mut large: Vec<f64> = imgs
        .iter()
        .filter(|(_, img)| img.width() * img.height() >= 500_000)
        .map(|(_, img)| {
            let start = Instant::now();
            assert!(detect(img, &key).is_none());
            start.elapsed().as_secs_f64() * 1000.0 / (f64::from(img.width() * img.height()) / 1e6)
        })
        .collect();
    println!(
        "detect (unmarked suite images of 0.5 MP or more, {}): median {:.1} ms per megapixel",
        large.len(),
        median(&mut large)
    );
}

/// The table marks one payload per image, and on flat pictures whether a
/// weak case reads depends on the payload (its sync variant and where its
/// coded bits fall): the flat and gradient images, each marked with
/// LIKENESS_WM_PAYLOADS random payloads (20 by default), under the edits
/// where that shows. Two threads.
fn payload_sweep(imgs: &[(String, RgbImage)], key: &Key) {
    let n: usize = std::env::var("LIKENESS_WM_PAYLOADS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    type Edit = (&'static str, fn(&RgbImage) -> RgbImage);
    let edits: [Edit; 5] = [
        ("0.5x, JPEG 75", |i| jpeg(&scale(i, 0.5), 75)),
        ("JPEG 30", |i| jpeg(i, 30)),
        ("crop 50%, JPEG 50", |i| jpeg(&crop_area(i, 0.5, 1, 3), 50)),
        ("corner 25%, JPEG 75", |i| jpeg(&crop_corner(i, 0.25), 75)),
        ("crop 50%, 0.5x, JPEG 75", |i| jpeg(&scale(&crop_area(i, 0.5, 0, 0), 0.5), 75)),
    ];
    let swept: Vec<&(String, RgbImage)> =
        imgs.iter().filter(|(name, _)| name.starts_with("flat") || name.contains("gradient")).collect();
    println!("\nexact recoveries over {n} random payloads per image (the table marks one)");
    print!("{:<28}", "image");
    edits.iter().for_each(|(e, _)| print!(" {e:>23}"));
    println!();
    let mut totals = vec![0usize; edits.len()];
    let tried = n * swept.len();
    for (name, img) in swept {
        let counts: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..2)
                .map(|t| {
                    scope.spawn(move || {
                        let mut read = vec![0usize; edits.len()];
                        for i in (t..n).step_by(2) {
                            let payload: [u8; 8] = rand_chacha::ChaCha8Rng::seed_from_u64(500 + i as u64).gen();
                            let mut m = img.clone();
                            embed_informed(&mut m, &payload, key, likeness_watermark::INFORMED_STRENGTH);
                            for ((_, edit), r) in edits.iter().zip(&mut read) {
                                *r += usize::from(detect(&edit(&m), key).is_some_and(|d| d.payload == payload));
                            }
                        }
                        read
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        print!("{name:<28}");
        for (e, total) in totals.iter_mut().enumerate() {
            let read: usize = counts.iter().map(|c| c[e]).sum();
            *total += read;
            print!(" {:>23}", format!("{read}/{n}"));
        }
        println!();
    }
    print!("{:<28}", "all");
    totals.iter().for_each(|t| print!(" {:>23}", format!("{t}/{tried}")));
    println!();
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

/// The attacks on the pattern itself, by someone holding many outputs but
/// not the key: estimate the pattern by averaging the fine detail of 100
/// marked outputs (all marked from their top-left corner, so aligned), then
/// (1) subtract that estimate from a new output to remove its mark, and
/// (2) add it to unmarked photos to forge one; and the classic copy attack:
/// (3) lift the fine detail of one output and add it to another photo so
/// that it resolves to the first one's manifest.
fn copy_and_removal(imgs: &[(String, RgbImage)], key: &Key) {
    const SIDE: u32 = 512;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    // Outputs: 512x512 views of the suite's images, each with its own payload.
    // Also which suite image it was cut from.
    let output = |rng: &mut rand_chacha::ChaCha8Rng| -> ([u8; 8], RgbImage, usize) {
        let from = rng.gen_range(0..imgs.len());
        let base = &imgs[from].1;
        let base = if base.width() < SIDE || base.height() < SIDE {
            image::imageops::resize(
                base,
                SIDE.max(base.width()),
                SIDE.max(base.height()),
                image::imageops::FilterType::Triangle,
            )
        } else {
            base.clone()
        };
        let (x, y) = (rng.gen_range(0..=base.width() - SIDE), rng.gen_range(0..=base.height() - SIDE));
        let mut img = image::imageops::crop_imm(&base, x, y, SIDE, SIDE).to_image();
        let payload: [u8; 8] = rng.gen();
        embed_informed(&mut img, &payload, key, likeness_watermark::INFORMED_STRENGTH);
        (payload, img, from)
    };
    let luma = |img: &RgbImage| -> Vec<f32> {
        img.pixels().map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])).collect()
    };
    // The attacker's high-pass: the luma minus its 3x3 mean.
    let detail = |img: &RgbImage| -> Vec<f32> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let l = luma(img);
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let mut sum = 0.0;
                for j in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                    for k in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                        sum += l[j * w + k];
                    }
                }
                let n = ((y + 1).min(h - 1) - y.saturating_sub(1) + 1) * ((x + 1).min(w - 1) - x.saturating_sub(1) + 1);
                l[i] - sum / n as f32
            })
            .collect()
    };
    let add = |img: &RgbImage, pattern: &dyn Fn(usize, usize) -> f32| -> RgbImage {
        let mut o = img.clone();
        for (x, y, p) in o.enumerate_pixels_mut() {
            let d = pattern(x as usize, y as usize);
            p.0 = p.0.map(|v| (f32::from(v) + d).round().clamp(0.0, 255.0) as u8);
        }
        o
    };
    // Each output's detail, folded onto the 128-px period (which the
    // autocorrelation of any output gives away), and, for scoring the
    // attacker only, which sync variant it carries.
    const PERIOD: usize = 128;
    const FOLDS_PER_OUTPUT: f32 = ((SIDE as usize / PERIOD) * (SIDE as usize / PERIOD)) as f32;
    let fold = |img: &RgbImage| -> Vec<f32> {
        let mut f = vec![0.0f32; PERIOD * PERIOD];
        for (i, d) in detail(img).iter().enumerate() {
            let (x, y) = (i % SIDE as usize, i / SIDE as usize);
            f[(y % PERIOD) * PERIOD + x % PERIOD] += d / FOLDS_PER_OUTPUT;
        }
        f
    };
    let (mut folds, mut truth) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let (payload, img, _) = output(&mut rng);
        folds.push(fold(&img));
        truth.push(sync_variant(&payload, key));
    }
    let mean = |members: &[&Vec<f32>]| -> Vec<f32> {
        let mut m = vec![0.0f32; PERIOD * PERIOD];
        for f in members {
            m.iter_mut().zip(f.iter()).for_each(|(m, v)| *m += v / members.len() as f32);
        }
        m
    };
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
    // The estimates each attacker subtracts: (a) the plain average of all
    // 100; (b) per cluster, when the attacker knows there are
    // SYNC_VARIANTS syncs and groups the outputs by how their folds
    // correlate (k-means on the cosine, best of 10 starts), each new
    // output getting the cluster it correlates with most; (c) per variant,
    // grouped by the truth, each new output getting its own variant's: the
    // best any clustering could do.
    let average = vec![mean(&folds.iter().collect::<Vec<_>>())];
    let clusters = kmeans(&folds, SYNC_VARIANTS, &mut rng);
    let clustered: Vec<Vec<f32>> = (0..SYNC_VARIANTS)
        .map(|k| mean(&folds.iter().zip(&clusters).filter(|(_, &c)| c == k).map(|(f, _)| f).collect::<Vec<_>>()))
        .collect();
    let purity: usize = (0..SYNC_VARIANTS)
        .map(|k| {
            (0..SYNC_VARIANTS)
                .map(|v| clusters.iter().zip(&truth).filter(|&(&c, &t)| c == k && t == v).count())
                .max()
                .unwrap_or(0)
        })
        .sum();
    let oracle: Vec<Vec<f32>> = (0..SYNC_VARIANTS)
        .map(|v| mean(&folds.iter().zip(&truth).filter(|(_, &t)| t == v).map(|(f, _)| f).collect::<Vec<_>>()))
        .collect();
    println!("\ncopy and removal, by someone with 100 outputs and no key:");
    println!(
        "  the {SYNC_VARIANTS} sync variants split the 100 outputs {:?}; the attacker's clusters agree with them for {purity} of 100",
        (0..SYNC_VARIANTS).map(|v| truth.iter().filter(|&&t| t == v).count()).collect::<Vec<_>>()
    );
    // (1) Removal: subtract the estimate (as it is, and doubled) from new
    // outputs, choosing among several the one the new output correlates
    // with most; then also crop, so that the mark no longer starts at a
    // corner.
    // The same 20 new outputs for every attacker and gain, so that the
    // rows compare.
    let targets: Vec<([u8; 8], RgbImage)> = (0..20)
        .map(|_| {
            let (payload, img, _) = output(&mut rng);
            (payload, img)
        })
        .collect();
    for (who, estimates, by_truth) in [
        ("the average of all 100", &average, false),
        ("the attacker's clusters' averages", &clustered, false),
        ("its own variant's true average", &oracle, true),
    ] {
        for gain in [1.0f32, 1.5, 2.0] {
            let (mut kept, mut kept_cropped, mut tried, mut psnr_sum) = (0, 0, 0, 0.0);
            for (payload, img) in &targets {
                let (payload, img) = (*payload, img);
                let own = fold(img);
                let estimate = if by_truth {
                    &estimates[sync_variant(&payload, key)]
                } else {
                    estimates
                        .iter()
                        .max_by(|a, b| {
                            let score = |e: &Vec<f32>| dot(&own, e) / dot(e, e).sqrt().max(1e-12);
                            score(a).total_cmp(&score(b))
                        })
                        .expect("at least one estimate")
                };
                let removed = add(img, &|x, y| -gain * estimate[(y % PERIOD) * PERIOD + x % PERIOD]);
                psnr_sum += psnr(img, &removed);
                tried += 1;
                if detect(&removed, key).is_some_and(|f| f.payload == payload) {
                    kept += 1;
                }
                let cropped = image::imageops::crop_imm(&removed, 37, 21, SIDE - 60, SIDE - 40).to_image();
                if detect(&cropped, key).is_some_and(|f| f.payload == payload) {
                    kept_cropped += 1;
                }
            }
            println!(
                "  removal ({who} x{gain} subtracted from a new output): mark still read in {kept}/{tried}; \
                 after also cropping: {kept_cropped}/{tried} (PSNR of the attacked image {:.1} dB)",
                psnr_sum / tried as f64
            );
        }
    }
    let estimate = &average[0];
    let at = |x: usize, y: usize| estimate[(y % PERIOD) * PERIOD + x % PERIOD];
    // (2) Forgery from the estimate: added to unmarked photos.
    let mut forged = 0;
    for (i, (_, img)) in imgs.iter().enumerate() {
        let fake = add(img, &|x, y| 3.0 * at(x, y) / estimate.iter().map(|e| e.abs()).fold(1e-6, f32::max));
        if detect(&fake, key).is_some() {
            forged += 1;
            println!("    the averaged estimate made image {i} read as marked");
        }
    }
    println!("  forgery (the averaged estimate added to {} unmarked images): read as marked in {forged}", imgs.len());
    // (3) Copy: one output's detail added to another, unmarked photo; the
    // resolver then checks the picture against the source's fingerprint.
    let (mut copied, mut copy_psnr, mut n) = (0, 0.0, 0);
    let mut verdicts = [0usize; 3];
    for (name, target) in imgs {
        let (payload, source, from) = output(&mut rng);
        let fingerprint = Fingerprint::of(&source);
        let d = detail(&source);
        let (w, h) = (target.width().min(SIDE), target.height().min(SIDE));
        let target = image::imageops::crop_imm(target, 0, 0, w, h).to_image();
        let fake = add(&target, &|x, y| d[y * SIDE as usize + x]);
        copy_psnr += psnr(&target, &fake);
        n += 1;
        if let Some(found) = detect(&fake, key).filter(|f| f.payload == payload) {
            copied += 1;
            let check = found.content(&fake).check(&fingerprint);
            match check.verdict {
                ContentVerdict::Matches => verdicts[0] += 1,
                ContentVerdict::Inconclusive => verdicts[1] += 1,
                ContentVerdict::Differs => verdicts[2] += 1,
            }
            if check.verdict != ContentVerdict::Differs {
                println!("    copied from a view of {} onto {name}: {check:?}", imgs[from].0);
            }
        }
    }
    println!(
        "  copy (one output's fine detail added to another photo): the mark reads as the source's in {copied}/{n} \
         (PSNR of the forgery against the photo {:.1} dB); the content check says: {} match (would resolve), \
         {} inconclusive (would resolve, flagged), {} differ (refused)",
        copy_psnr / n as f64,
        verdicts[0],
        verdicts[1],
        verdicts[2]
    );
}

/// k-means on the cosine between folds: the cluster of each, best of 10
/// starts (k-means++ seeding) by the summed similarity to the centres.
fn kmeans(folds: &[Vec<f32>], k: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<usize> {
    let unit: Vec<Vec<f32>> = folds
        .iter()
        .map(|f| {
            let n = f.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            f.iter().map(|v| v / n).collect()
        })
        .collect();
    let cos = |a: &[f32], b: &[f32]| {
        let n = b.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>() / n
    };
    let mut best = (f32::MIN, vec![0; folds.len()]);
    for _ in 0..10 {
        let mut centres = vec![unit[rng.gen_range(0..unit.len())].clone()];
        while centres.len() < k {
            // The next seed: far (in cosine) from the seeds so far.
            let far: Vec<f32> =
                unit.iter().map(|u| 1.0 - centres.iter().map(|c| cos(u, c)).fold(f32::MIN, f32::max)).collect();
            let mut pick = rng.gen::<f32>() * far.iter().sum::<f32>();
            let i = far.iter().position(|&d| {
                pick -= d;
                pick <= 0.0
            });
            centres.push(unit[i.unwrap_or(unit.len() - 1)].clone());
        }
        let mut assign = vec![0; unit.len()];
        for _ in 0..30 {
            for (a, u) in assign.iter_mut().zip(&unit) {
                *a = (0..k).max_by(|&x, &y| cos(u, &centres[x]).total_cmp(&cos(u, &centres[y]))).unwrap_or(0);
            }
            for (c, centre) in centres.iter_mut().enumerate() {
                let members: Vec<&Vec<f32>> =
                    unit.iter().zip(&assign).filter(|(_, &a)| a == c).map(|(u, _)| u).collect();
                if !members.is_empty() {
                    *centre = (0..centre.len()).map(|i| members.iter().map(|m| m[i]).sum::<f32>()).collect();
                }
            }
        }
        let fit: f32 = unit.iter().zip(&assign).map(|(u, &a)| cos(u, &centres[a])).sum();
        if fit > best.0 {
            best = (fit, assign);
        }
    }
    best.1
}
