//! The built-in styles. Each is a short chain of classic non-photorealistic
//! rendering filters over the composed canvas.

use crate::raster::{self, gaussian_plane, kuwahara, mix, smoothstep, sobel, xdog_lines, Canvas, Noise};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    Watercolor,
    Sketch,
    Cartoon,
    Poster,
    Vintage,
    OilPainting,
}

impl Style {
    pub const ALL: &'static [Style] =
        &[Style::Watercolor, Style::Sketch, Style::Cartoon, Style::Poster, Style::Vintage, Style::OilPainting];

    pub fn as_str(self) -> &'static str {
        match self {
            Style::Watercolor => "watercolor",
            Style::Sketch => "sketch",
            Style::Cartoon => "cartoon",
            Style::Poster => "poster",
            Style::Vintage => "vintage",
            Style::OilPainting => "oil-painting",
        }
    }

    /// Words that name the style, lowercase; the first is the canonical name.
    pub(crate) fn aliases(self) -> &'static [&'static str] {
        match self {
            Style::Watercolor => &["watercolor", "watercolour", "aquarelle"],
            Style::Sketch => &["sketch", "pencil sketch", "pencil", "drawing", "charcoal"],
            Style::Cartoon => &["cartoon", "comic", "anime", "illustration"],
            Style::Poster => &["poster", "pop art", "pop-art", "screen print"],
            Style::Vintage => &["vintage", "sepia", "old photo", "retro"],
            Style::OilPainting => &["oil-painting", "oil painting", "oilpainting", "impasto", "oil"],
        }
    }
}

/// Scale-aware filter radius: the same look at 256 px and at 2048 px.
fn radius(c: &Canvas, at_1024: f32) -> f32 {
    (at_1024 * (c.width.min(c.height) as f32 / 1024.0)).max(1.0)
}

pub fn apply(style: Style, canvas: Canvas, seed: u64) -> Canvas {
    let noise = Noise::new(seed);
    match style {
        Style::Watercolor => watercolor(canvas, &noise),
        Style::Sketch => sketch(canvas, &noise),
        Style::Cartoon => cartoon(canvas),
        Style::Poster => poster(canvas, seed),
        Style::Vintage => vintage(canvas, &noise),
        Style::OilPainting => oil(canvas, &noise),
    }
}

/// Soft washes: painterly patches, colours bleeding along paper fibres,
/// pigment pooling at the edges of each wash, and paper showing through.
fn watercolor(c: Canvas, noise: &Noise) -> Canvas {
    let (w, h) = (c.width, c.height);
    let washes = kuwahara(&c, radius(&c, 7.0) as usize);
    let soft = raster::gaussian(&washes, radius(&c, 2.5));
    let l = soft.luma();
    let edges = sobel(&gaussian_plane(&l, w, h, radius(&c, 1.0)), w, h);
    let scale = 1.0 / radius(&c, 40.0);
    let mut out = soft;
    out.map(|x, y, p| {
        let (fx, fy) = (x as f32, y as f32);
        let paper = noise.fbm(fx * scale * 4.0, fy * scale * 4.0, 4);
        let fibre = noise.value(fx * 0.35, fy * 0.35);
        // Lighter, diluted, slightly brighter pigment; more dilution where
        // the paper is raised. Highlights go back to bare paper.
        let l = raster::luma(p);
        let dilute = 0.22 + 0.16 * paper + 0.5 * smoothstep(0.75, 0.95, l);
        let mut q = mix(saturate(p, 1.15), [1.0, 1.0, 1.0], dilute.min(1.0));
        // Pigment pools where washes meet.
        let pool = (edges[y * w + x] * 1.2).min(0.25);
        q = q.map(|v| v * (1.0 - pool));
        // Granulation and paper grain.
        let grain = 0.02 * (fibre - 0.5) + 0.025 * (paper - 0.5);
        let warm_paper = [0.99, 0.97, 0.92];
        [q[0] * warm_paper[0] + grain, q[1] * warm_paper[1] + grain, q[2] * warm_paper[2] + grain]
    });
    out
}

/// Pencil: colour-dodge of the inverted, blurred luminance (the classic
/// graphite look), XDoG contour lines, cross-hatching in the shadows.
fn sketch(c: Canvas, noise: &Noise) -> Canvas {
    let (w, h) = (c.width, c.height);
    let l = c.luma();
    let inv: Vec<f32> = l.iter().map(|v| 1.0 - v).collect();
    let blur = gaussian_plane(&inv, w, h, radius(&c, 10.0));
    let lines = xdog_lines(&l, w, h, radius(&c, 1.2), 0.004, 40.0);
    let period = radius(&c, 7.0);
    let mut out = Canvas::new(w, h, [1.0; 3]);
    out.map(|x, y, _| {
        let i = y * w + x;
        let dodge = (l[i] / (1.0 - blur[i] + 1e-3)).min(1.0);
        // Dodge alone turns every flat area white; keep some of the tone so
        // a face still reads as a face (and a detector still finds it).
        let shade = dodge.powf(1.6) * (0.5 + 0.5 * (1.0 - blur[i]));
        let (fx, fy) = (x as f32, y as f32);
        // Hatching strokes appear as the tone darkens.
        let hatch1 = (((fx + fy) / period).fract() < 0.3) as u8 as f32;
        let hatch2 = (((fx - fy) / period).fract() < 0.3) as u8 as f32;
        let dark = 1.0 - l[i];
        let hatch = hatch1 * smoothstep(0.45, 0.7, dark) * 0.18 + hatch2 * smoothstep(0.6, 0.85, dark) * 0.18;
        let paper = 0.97 + 0.03 * noise.fbm(fx * 0.08, fy * 0.08, 3);
        let g = (shade - hatch - 0.75 * lines[i]).clamp(0.0, 1.0) * paper;
        [g * 0.98, g * 0.97, g * 0.95]
    });
    out
}

/// Flat cel shading: smoothed regions, colours quantised in a few bands,
/// bold ink outlines.
fn cartoon(c: Canvas) -> Canvas {
    let (w, h) = (c.width, c.height);
    let smooth = kuwahara(&kuwahara(&c, radius(&c, 4.0) as usize), radius(&c, 3.0) as usize);
    let l = c.luma();
    let lines = xdog_lines(&l, w, h, radius(&c, 1.5), 0.008, 30.0);
    let levels = 6.0;
    let mut out = smooth;
    out.map(|x, y, p| {
        let boosted = saturate(p, 1.35);
        let q = boosted.map(|v| ((v * levels).floor() + 0.5) / levels);
        let ink = lines[y * w + x];
        q.map(|v| v * (1.0 - 0.9 * ink))
    });
    out
}

/// Screen-print poster: luminance mapped onto a four-ink palette picked by
/// the seed, with a halftone dot texture in the mid tones.
fn poster(c: Canvas, seed: u64) -> Canvas {
    const PALETTES: [[[f32; 3]; 4]; 4] = [
        [[0.08, 0.09, 0.23], [0.85, 0.22, 0.25], [0.98, 0.66, 0.23], [0.98, 0.94, 0.82]],
        [[0.05, 0.16, 0.20], [0.16, 0.50, 0.55], [0.93, 0.56, 0.35], [0.99, 0.93, 0.79]],
        [[0.16, 0.05, 0.22], [0.55, 0.16, 0.50], [0.98, 0.45, 0.55], [1.00, 0.90, 0.72]],
        [[0.10, 0.10, 0.10], [0.75, 0.10, 0.12], [0.55, 0.70, 0.80], [0.96, 0.95, 0.90]],
    ];
    let palette = PALETTES[(seed % PALETTES.len() as u64) as usize];
    let (w, h) = (c.width, c.height);
    let smooth = kuwahara(&c, radius(&c, 3.0) as usize);
    let l = smooth.luma();
    // Stretch contrast so every ink is used whatever the photo's exposure.
    let mut sorted = l.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let lo = sorted[sorted.len() / 50];
    let hi = sorted[sorted.len() - 1 - sorted.len() / 50];
    let cell = radius(&c, 6.0);
    let lines = xdog_lines(&c.luma(), w, h, radius(&c, 1.3), 0.01, 30.0);
    let mut out = smooth;
    out.map(|x, y, _| {
        let i = y * w + x;
        let t = ((l[i] - lo) / (hi - lo + 1e-4)).clamp(0.0, 1.0);
        // Halftone: dot radius follows the tone within its band.
        let band = (t * 4.0).min(3.999);
        let k = band.floor() as usize;
        let frac = band - k as f32;
        let (cx, cy) = ((x as f32 / cell).fract() - 0.5, (y as f32 / cell).fract() - 0.5);
        let dot = (cx * cx + cy * cy).sqrt() < 0.5 * (1.0 - frac).sqrt() * 0.9;
        let ink = if dot || k == 3 { palette[k] } else { palette[(k + 1).min(3)] };
        ink.map(|v| v * (1.0 - 0.85 * lines[i]))
    });
    out
}

/// An old print: sepia toning, lifted blacks, soft focus, vignette, grain,
/// and a few vertical scratches.
fn vintage(c: Canvas, noise: &Noise) -> Canvas {
    let (w, h) = (c.width, c.height);
    let soft = raster::gaussian(&c, radius(&c, 1.2));
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let maxd = (cx * cx + cy * cy).sqrt();
    let scratch_cols: Vec<f32> = (0..6).map(|k| noise.value(k as f32 * 13.7, 0.5) * w as f32).collect();
    let mut out = soft;
    out.map(|x, y, p| {
        let l = raster::luma(p);
        // Sepia from luminance, with a little of the original colour left.
        let sepia = [l * 1.07 + 0.08, l * 0.95 + 0.05, l * 0.74 + 0.02];
        let mut q = mix(p, sepia, 0.85);
        // Faded blacks, softened whites.
        q = q.map(|v| 0.10 + 0.82 * v);
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let d = (dx * dx + dy * dy).sqrt() / maxd;
        let vignette = 1.0 - 0.55 * smoothstep(0.45, 1.05, d);
        let grain = 0.07 * noise.grain(x, y);
        let scratch =
            scratch_cols.iter().any(|&sx| (x as f32 - sx - 4.0 * noise.value(0.0, y as f32 * 0.02)).abs() < 0.8) as u8
                as f32
                * 0.12
                * noise.value(x as f32 * 0.1, y as f32 * 0.01);
        q.map(|v| v * vignette + grain + scratch)
    });
    out
}

/// Thick paint: a strong Kuwahara for brush patches, richer colour, and
/// canvas weave with relief lit from the top-left.
fn oil(c: Canvas, noise: &Noise) -> Canvas {
    let (w, h) = (c.width, c.height);
    let paint = kuwahara(&c, radius(&c, 9.0) as usize);
    let l = paint.luma();
    let gx = sobel(&l, w, h);
    let mut out = paint;
    out.map(|x, y, p| {
        let (fx, fy) = (x as f32, y as f32);
        let weave = ((fx * 0.9).sin() * (fy * 0.9).sin()) * 0.02;
        let relief = (gx[y * w + x] * 0.25).min(0.12) * (noise.value(fx * 0.2, fy * 0.2) - 0.3);
        saturate(p, 1.25).map(|v| v + weave + relief)
    });
    out
}

fn saturate(p: [f32; 3], amount: f32) -> [f32; 3] {
    let l = raster::luma(p);
    p.map(|v| l + (v - l) * amount)
}
