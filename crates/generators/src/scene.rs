//! What goes on the canvas before a style paints it: the reference photos laid
//! out in panels, or, with no reference, a landscape composed from the prompt.

use image::RgbImage;

use crate::raster::{mix, smoothstep, Canvas, Noise};

/// Lays the references out on a `w` x `h` canvas: one fills it, two share it
/// side by side (or stacked on a portrait canvas), three or four make a grid.
/// `variant` shifts the order and, past the first output, reframes each photo
/// slightly (zoom and centre from `seed`), so several outputs differ the way
/// a real generator's do while each stays deterministic.
pub fn layout(refs: &[RgbImage], w: usize, h: usize, variant: u32, seed: u64) -> Canvas {
    let mut canvas = Canvas::new(w, h, [1.0; 3]);
    let n = refs.len();
    let order: Vec<&RgbImage> = (0..n).map(|i| &refs[(i + variant as usize) % n]).collect();
    let panels: Vec<(usize, usize, usize, usize)> = match n {
        1 => vec![(0, 0, w, h)],
        2 if w >= h => vec![(0, 0, w / 2, h), (w / 2, 0, w - w / 2, h)],
        2 => vec![(0, 0, w, h / 2), (0, h / 2, w, h - h / 2)],
        _ => {
            let (hw, hh) = (w / 2, h / 2);
            let mut cells = vec![(0, 0, hw, hh), (hw, 0, w - hw, hh), (0, hh, hw, h - hh), (hw, hh, w - hw, h - hh)];
            if n == 3 {
                // The first reference takes the whole top row.
                cells = vec![(0, 0, w, hh), (0, hh, hw, h - hh), (hw, hh, w - hw, h - hh)];
            }
            cells
        }
    };
    let noise = Noise::new(seed);
    let framing = if variant == 0 {
        (1.0, 0.5, 0.15)
    } else {
        (1.03 + 0.07 * noise.value(0.5, 1.5), 0.44 + 0.12 * noise.value(2.5, 3.5), 0.08 + 0.14 * noise.value(4.5, 5.5))
    };
    for (img, (x, y, pw, ph)) in order.iter().zip(panels) {
        canvas.paste_cover(img, x, y, pw, ph, framing);
    }
    canvas
}

/// Keywords of the prompt that change the composed scene.
#[derive(Default)]
struct Mood {
    night: bool,
    sunset: bool,
    beach: bool,
    city: bool,
    forest: bool,
    winter: bool,
}

impl Mood {
    fn from_prompt(prompt: &str) -> Mood {
        let p = prompt.to_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| p.contains(w));
        Mood {
            night: any(&["night", "stars", "moon", "midnight"]),
            sunset: any(&["sunset", "sunrise", "dusk", "dawn", "golden hour", "evening"]),
            beach: any(&["beach", "sea", "ocean", "coast", "island", "sand"]),
            city: any(&["city", "town", "street", "skyline", "building"]),
            forest: any(&["forest", "tree", "wood", "park", "jungle"]),
            winter: any(&["snow", "winter", "ice", "ski", "christmas"]),
        }
    }
}

/// A landscape from the prompt: sky, sun or moon, layered hills, water with
/// reflections, and keyword-driven details (a skyline, trees, sand, snow).
/// The seed varies the terrain and colours; the prompt picks the mood.
pub fn compose(prompt: &str, w: usize, h: usize, seed: u64) -> Canvas {
    let mood = Mood::from_prompt(prompt);
    let noise = Noise::new(seed);
    let hue_shift = noise.value(3.3, 7.7) * 0.15;
    let (sky_top, sky_horizon) = if mood.night {
        ([0.02, 0.03, 0.12], [0.10, 0.14, 0.32])
    } else if mood.sunset {
        ([0.20 + hue_shift, 0.18, 0.45], [0.99, 0.58, 0.30])
    } else {
        ([0.20, 0.45 + hue_shift, 0.85], [0.78, 0.88, 0.97])
    };
    let horizon = 0.55 + 0.1 * (noise.value(1.1, 2.2) - 0.5);
    let sun = (0.25 + 0.5 * noise.value(5.5, 1.5), horizon - 0.18 - 0.1 * noise.value(2.0, 9.0));
    let land = if mood.winter {
        [[0.70, 0.75, 0.85], [0.85, 0.88, 0.95], [0.95, 0.96, 0.99]]
    } else if mood.beach {
        [[0.45, 0.55, 0.45], [0.80, 0.72, 0.52], [0.93, 0.85, 0.65]]
    } else {
        [[0.35, 0.45, 0.55], [0.25, 0.45, 0.25], [0.35, 0.55, 0.20]]
    };
    let water = mood.beach || !mood.city;
    let scale = 1.0 / w.min(h) as f32;
    let mut c = Canvas::new(w, h, [0.0; 3]);
    // Ridge heights per column for three layers, far to near.
    let ridges: Vec<[f32; 3]> = (0..w)
        .map(|x| {
            let u = x as f32 * scale;
            [
                horizon - 0.16 * noise.fbm(u * 3.0, 0.3, 5),
                horizon - 0.08 * noise.fbm(u * 5.0 + 10.0, 1.7, 5),
                horizon - 0.03 * noise.fbm(u * 8.0 + 20.0, 4.1, 4),
            ]
        })
        .collect();
    let skyline: Vec<f32> = (0..w)
        .map(|x| {
            let block = (x as f32 * scale * 18.0).floor();
            horizon - 0.05 - 0.22 * noise.value(block, 42.0).powf(1.5)
        })
        .collect();
    c.map(|x, y, _| {
        let (u, v) = (x as f32 * scale, y as f32 / h as f32);
        let (xu, yv) = (x as f32 / w as f32, v);
        // Sky with soft clouds.
        let t = (v / horizon).clamp(0.0, 1.0);
        let mut p = mix(sky_top, sky_horizon, t.powf(0.8));
        let cloud = smoothstep(0.55, 0.8, noise.fbm(u * 4.0, v * 9.0, 5));
        p = mix(p, if mood.night { [0.2, 0.22, 0.3] } else { [1.0, 0.98, 0.96] }, cloud * 0.7 * (1.0 - t));
        let (dx, dy) = ((xu - sun.0) * w as f32 / h as f32, yv - sun.1);
        let d = (dx * dx + dy * dy).sqrt();
        let glow = if mood.night {
            [0.95, 0.95, 0.85]
        } else if mood.sunset {
            [1.0, 0.75, 0.35]
        } else {
            [1.0, 0.97, 0.85]
        };
        p = mix(p, glow, (1.0 - smoothstep(0.05, 0.07, d)) + 0.35 * (1.0 - smoothstep(0.0, 0.35, d)));
        if mood.night && noise.value(x as f32 * 0.9, y as f32 * 0.9) > 0.985 && v < horizon {
            p = [1.0, 1.0, 0.95];
        }
        if mood.city && v < horizon && v > skyline[x] {
            let lit = mood.night && noise.value((x / 6) as f32, (y / 9) as f32) > 0.7;
            p = if lit { [0.98, 0.85, 0.45] } else { mix([0.18, 0.2, 0.26], p, 0.25) };
        }
        for (k, col) in land.iter().enumerate() {
            if v > ridges[x][k] && v < horizon + 0.02 {
                p = mix(*col, sky_horizon, 0.35 - 0.12 * k as f32);
            }
        }
        if v >= horizon {
            let depth = (v - horizon) / (1.0 - horizon);
            if water {
                // Reflection of the sky and ridges, broken by ripples.
                let ripple = 0.015 * (noise.fbm(u * 2.0, v * 60.0, 3) - 0.5);
                let mv = (2.0 * horizon - v + ripple).clamp(0.0, horizon - 0.001);
                let rt = (mv / horizon).clamp(0.0, 1.0);
                let refl = mix(sky_top, sky_horizon, rt.powf(0.8));
                let deep = if mood.beach { [0.05, 0.35, 0.45] } else { [0.08, 0.20, 0.30] };
                p = mix(refl, deep, 0.35 + 0.4 * depth);
                if mood.beach && v > 0.8 + 0.04 * noise.fbm(u * 3.0, 0.0, 3) {
                    p = mix(land[2], [1.0, 1.0, 1.0], 0.1 * noise.fbm(u * 40.0, v * 40.0, 2));
                }
            } else {
                p = mix(land[1], land[2], depth + 0.2 * noise.fbm(u * 6.0, v * 6.0, 4));
            }
        }
        if mood.forest {
            // Pines along the near shore.
            let col = (x as f32 * scale * 30.0).floor();
            let tx = (x as f32 * scale * 30.0).fract() - 0.5;
            let tree_h = 0.08 + 0.12 * noise.value(col, 77.0);
            let base = horizon + 0.015;
            let top = base - tree_h;
            if v > top && v < base && tx.abs() < 0.5 * (v - top) / tree_h {
                p = mix([0.05, 0.22, 0.12], p, 0.15);
            }
        }
        if mood.winter && v > horizon + 0.02 {
            p = mix(p, [0.95, 0.96, 1.0], 0.6);
        }
        p
    });
    c
}
