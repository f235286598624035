//! A small floating-point raster toolkit for the built-in styles.
//!
//! Everything works on linear buffers of `[f32; 3]` in 0..1 sRGB space; the
//! filters are separable or built on summed-area tables so a 1024x1024 output
//! costs a few tens of milliseconds, not seconds.

use image::{imageops, RgbImage};

#[derive(Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub px: Vec<[f32; 3]>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: [f32; 3]) -> Canvas {
        Canvas { width, height, px: vec![fill; width * height] }
    }

    pub fn to_image(&self) -> RgbImage {
        let mut out = RgbImage::new(self.width as u32, self.height as u32);
        for (dst, src) in out.pixels_mut().zip(&self.px) {
            for c in 0..3 {
                dst[c] = (src[c].clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            }
        }
        out
    }

    pub fn luma(&self) -> Vec<f32> {
        self.px.iter().map(|p| luma(*p)).collect()
    }

    pub fn map(&mut self, mut f: impl FnMut(usize, usize, [f32; 3]) -> [f32; 3]) {
        let w = self.width;
        for (i, p) in self.px.iter_mut().enumerate() {
            *p = f(i % w, i / w, *p);
        }
    }

    /// Draws `src` over the rectangle (x0, y0, w, h), resized to cover it and
    /// cropped, so a reference fills its panel without distortion. `framing`
    /// is (zoom >= 1, horizontal and vertical crop position in 0..1).
    pub fn paste_cover(&mut self, src: &RgbImage, x0: usize, y0: usize, w: usize, h: usize, framing: (f32, f32, f32)) {
        let (zoom, fx, fy) = framing;
        let cover = |sw: f32, sh: f32| (w as f32 / sw).max(h as f32 / sh) * zoom.max(1.0);
        // A photo much larger than its panel is first shrunk with a box filter
        // (no aliasing), then sampled bilinearly at the exact scale.
        let shrunk;
        let mut src = src;
        let k = (0.5 / cover(src.width() as f32, src.height() as f32)).floor();
        if k >= 2.0 {
            shrunk = imageops::thumbnail(src, (src.width() as f32 / k) as u32, (src.height() as f32 / k) as u32);
            src = &shrunk;
        }
        let (sw, sh) = (src.width() as f32, src.height() as f32);
        let scale = cover(sw, sh);
        let (rw, rh) = (sw * scale, sh * scale);
        let ox = (rw - w as f32).max(0.0) * fx.clamp(0.0, 1.0);
        // Portraits keep their upper part (fy < 0.5): faces sit above the centre.
        let oy = (rh - h as f32).max(0.0) * fy.clamp(0.0, 1.0);
        let (maxx, maxy) = (src.width() as usize - 1, src.height() as usize - 1);
        let raw = src.as_raw();
        let stride = src.width() as usize * 3;
        for y in 0..h {
            let sy = ((y as f32 + oy + 0.5) / scale - 0.5).clamp(0.0, maxy as f32);
            let (y0i, ty) = (sy.floor() as usize, sy.fract());
            let y1i = (y0i + 1).min(maxy);
            let row = &mut self.px[(y0 + y) * self.width + x0..][..w];
            for (x, dst) in row.iter_mut().enumerate() {
                let sx = ((x as f32 + ox + 0.5) / scale - 0.5).clamp(0.0, maxx as f32);
                let (x0i, tx) = (sx.floor() as usize, sx.fract());
                let x1i = (x0i + 1).min(maxx);
                for c in 0..3 {
                    let p = |xx: usize, yy: usize| raw[yy * stride + xx * 3 + c] as f32;
                    let top = p(x0i, y0i) + (p(x1i, y0i) - p(x0i, y0i)) * tx;
                    let bottom = p(x0i, y1i) + (p(x1i, y1i) - p(x0i, y1i)) * tx;
                    dst[c] = (top + (bottom - top) * ty) / 255.0;
                }
            }
        }
    }
}

#[inline]
pub fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

#[inline]
pub fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

#[inline]
pub fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Box blur of one channel, separable, running sums (O(1) per pixel).
pub fn box_blur_plane(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    if r == 0 {
        return src.to_vec();
    }
    let mut tmp = vec![0.0f32; w * h];
    let mut out = vec![0.0f32; w * h];
    let norm = 1.0 / (2 * r + 1) as f32;
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        let mut acc = 0.0f32;
        for i in 0..=2 * r {
            acc += row[clamp_idx(i as isize - r as isize, w)];
        }
        for x in 0..w {
            tmp[y * w + x] = acc * norm;
            acc += row[clamp_idx(x as isize + r as isize + 1, w)] - row[clamp_idx(x as isize - r as isize, w)];
        }
    }
    // Vertical pass row by row, with one running sum per column: the same
    // arithmetic as a column walk, but it reads memory in order.
    let mut acc = vec![0.0f32; w];
    for i in 0..=2 * r {
        let row = &tmp[clamp_idx(i as isize - r as isize, h) * w..][..w];
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    for y in 0..h {
        let add = clamp_idx(y as isize + r as isize + 1, h) * w;
        let sub = clamp_idx(y as isize - r as isize, h) * w;
        let dst = &mut out[y * w..(y + 1) * w];
        for x in 0..w {
            dst[x] = acc[x] * norm;
            acc[x] += tmp[add + x] - tmp[sub + x];
        }
    }
    out
}

#[inline]
fn clamp_idx(i: isize, n: usize) -> usize {
    i.clamp(0, n as isize - 1) as usize
}

/// Approximate Gaussian blur (three box passes).
pub fn gaussian_plane(src: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    // Box radius whose triple convolution matches the variance of `sigma`.
    let r = (((12.0 * sigma * sigma / 3.0) + 1.0).sqrt() / 2.0).round().max(0.0) as usize;
    let a = box_blur_plane(src, w, h, r);
    let b = box_blur_plane(&a, w, h, r);
    box_blur_plane(&b, w, h, r)
}

pub fn gaussian(c: &Canvas, sigma: f32) -> Canvas {
    let mut planes = split(c);
    for p in planes.iter_mut() {
        *p = gaussian_plane(p, c.width, c.height, sigma);
    }
    join(&planes, c.width, c.height)
}

pub fn split(c: &Canvas) -> [Vec<f32>; 3] {
    [0, 1, 2].map(|k| c.px.iter().map(|p| p[k]).collect())
}

pub fn join(planes: &[Vec<f32>; 3], w: usize, h: usize) -> Canvas {
    let px = (0..w * h).map(|i| [planes[0][i], planes[1][i], planes[2][i]]).collect();
    Canvas { width: w, height: h, px }
}

/// Kuwahara filter: each pixel takes the mean colour of whichever of its four
/// quadrant windows is most uniform. Flattens texture into painterly patches
/// while keeping edges (eyes, mouth, outlines) sharp, which is why faces stay
/// recognisable after it.
///
/// A quadrant of side `r + 1` anchored at a corner of the pixel is a centred
/// box of radius `r / 2` shifted by `r / 2`, so five box-filtered planes (the
/// three colours, luminance and its square) give every quadrant's mean and
/// variance by lookup. `r` is rounded to an even number for that.
pub fn kuwahara(c: &Canvas, r: usize) -> Canvas {
    let (w, h) = (c.width, c.height);
    let half = (r / 2).max(1);
    let [pr, pg, pb] = split(c);
    let l = c.luma();
    let l2: Vec<f32> = l.iter().map(|v| v * v).collect();
    let [mr, mg, mb, ml, ml2] = [&pr, &pg, &pb, &l, &l2].map(|p| box_blur_plane(p, w, h, half));
    let mut out = Canvas::new(w, h, [0.0; 3]);
    let (hx, hy) = (half as isize, half as isize);
    for y in 0..h {
        let ys = [clamp_idx(y as isize - hy, h), clamp_idx(y as isize + hy, h)];
        for x in 0..w {
            let xs = [clamp_idx(x as isize - hx, w), clamp_idx(x as isize + hx, w)];
            let mut best = f32::MAX;
            let mut at = 0;
            for cy in ys {
                for cx in xs {
                    let i = cy * w + cx;
                    let var = ml2[i] - ml[i] * ml[i];
                    if var < best {
                        best = var;
                        at = i;
                    }
                }
            }
            out.px[y * w + x] = [mr[at], mg[at], mb[at]];
        }
    }
    out
}

/// Extended difference of Gaussians: ink-like line strength in 0..1 (1 = line).
pub fn xdog_lines(l: &[f32], w: usize, h: usize, sigma: f32, threshold: f32, sharpness: f32) -> Vec<f32> {
    let g1 = gaussian_plane(l, w, h, sigma);
    let g2 = gaussian_plane(l, w, h, sigma * 1.6);
    g1.iter()
        .zip(&g2)
        .map(|(a, b)| {
            let d = a - b;
            // Darker-than-surroundings ridges become lines.
            let v = -d;
            if v < threshold {
                0.0
            } else {
                (((v - threshold) * sharpness).tanh()).clamp(0.0, 1.0)
            }
        })
        .collect()
}

/// Sobel gradient magnitude of a plane.
pub fn sobel(l: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let p = |dx: isize, dy: isize| l[clamp_idx(y as isize + dy, h) * w + clamp_idx(x as isize + dx, w)];
            let gx = p(1, -1) + 2.0 * p(1, 0) + p(1, 1) - p(-1, -1) - 2.0 * p(-1, 0) - p(-1, 1);
            let gy = p(-1, 1) + 2.0 * p(0, 1) + p(1, 1) - p(-1, -1) - 2.0 * p(0, -1) - p(1, -1);
            out[y * w + x] = (gx * gx + gy * gy).sqrt();
        }
    }
    out
}

/// `floor` without the libm call (hot in the noise functions).
#[inline]
fn fast_floor(x: f32) -> i64 {
    let i = x as i64;
    if (i as f32) > x {
        i - 1
    } else {
        i
    }
}

/// Deterministic value noise with fractal octaves (fBm), 0..1.
pub struct Noise {
    seed: u64,
    /// Lattice values, made on first use: a lookup is far cheaper than
    /// hashing four corners for every sample of every octave.
    lattice: std::cell::OnceCell<Vec<f32>>,
}

const LATTICE: usize = 512;

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise { seed, lattice: std::cell::OnceCell::new() }
    }

    fn lattice(&self) -> &[f32] {
        self.lattice.get_or_init(|| {
            (0..LATTICE * LATTICE).map(|i| self.hash((i % LATTICE) as i64, (i / LATTICE) as i64)).collect()
        })
    }

    #[inline]
    fn hash(&self, x: i64, y: i64) -> f32 {
        let mut v =
            (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ self.seed;
        v ^= v >> 33;
        v = v.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        v ^= v >> 33;
        (v >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn value(&self, x: f32, y: f32) -> f32 {
        let (xi, yi) = (fast_floor(x), fast_floor(y));
        let (fx, fy) = (x - xi as f32, y - yi as f32);
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let t = self.lattice();
        let m = LATTICE as i64 - 1;
        let at = |x: i64, y: i64| t[((y & m) as usize) * LATTICE + (x & m) as usize];
        let (a, b, c, d) = (at(xi, yi), at(xi + 1, yi), at(xi, yi + 1), at(xi + 1, yi + 1));
        let top = a + (b - a) * sx;
        let bottom = c + (d - c) * sx;
        top + (bottom - top) * sy
    }

    pub fn fbm(&self, x: f32, y: f32, octaves: u32) -> f32 {
        let (mut amp, mut freq, mut sum, mut norm) = (0.5, 1.0, 0.0, 0.0);
        for o in 0..octaves {
            sum += amp * self.value(x * freq + o as f32 * 17.3, y * freq - o as f32 * 9.1);
            norm += amp;
            amp *= 0.5;
            freq *= 2.0;
        }
        sum / norm
    }

    /// White noise in -0.5..0.5 for one pixel.
    pub fn grain(&self, x: usize, y: usize) -> f32 {
        self.hash(x as i64, y as i64 ^ 0x5bd1_e995) - 0.5
    }
}
