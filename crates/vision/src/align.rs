//! Face alignment: a similarity transform (scale, rotation, translation) from
//! a fixed five-point template to the detected landmarks, fitted by least
//! squares (Umeyama's method, in its 2-D complex-number form), then the chip
//! sampled bilinearly through it.

use image::RgbImage;

/// Template for the 150x150 embedding chip (eyes, nose, mouth corners).
pub const EMBEDDING_TEMPLATE: [[f32; 2]; 5] =
    [[44.95, 44.52], [102.05, 44.25], [73.57, 75.65], [49.02, 103.42], [97.48, 102.87]];
/// Template for the 64x64 age chip.
pub const AGE_TEMPLATE: [[f32; 2]; 5] =
    [[18.28, 17.72], [44.15, 17.60], [31.25, 31.83], [20.12, 44.41], [42.08, 44.16]];

/// `image_point = a * chip_point + b` in complex numbers: `a` carries scale
/// and rotation, `b` the translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: (f32, f32),
    pub b: (f32, f32),
}

impl Similarity {
    /// Least-squares fit mapping `from` onto `to`.
    pub fn fit(from: &[[f32; 2]; 5], to: &[[f32; 2]; 5]) -> Similarity {
        let n = from.len() as f32;
        let mean = |p: &[[f32; 2]; 5]| {
            let s = p.iter().fold([0.0, 0.0], |acc, q| [acc[0] + q[0], acc[1] + q[1]]);
            [s[0] / n, s[1] / n]
        };
        let (mf, mt) = (mean(from), mean(to));
        let (mut num_re, mut num_im, mut den) = (0.0f32, 0.0f32, 0.0f32);
        for (f, t) in from.iter().zip(to) {
            let (wr, wi) = (f[0] - mf[0], f[1] - mf[1]);
            let (zr, zi) = (t[0] - mt[0], t[1] - mt[1]);
            // z * conj(w)
            num_re += zr * wr + zi * wi;
            num_im += zi * wr - zr * wi;
            den += wr * wr + wi * wi;
        }
        let a = (num_re / den.max(1e-9), num_im / den.max(1e-9));
        let b = (mt[0] - (a.0 * mf[0] - a.1 * mf[1]), mt[1] - (a.0 * mf[1] + a.1 * mf[0]));
        Similarity { a, b }
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [self.a.0 * p[0] - self.a.1 * p[1] + self.b.0, self.a.0 * p[1] + self.a.1 * p[0] + self.b.1]
    }
}

/// Cuts a `size` x `size` chip whose `template` points land on `landmarks`.
/// Pixels outside the image are black.
pub fn chip(img: &RgbImage, landmarks: &[[f32; 2]; 5], template: &[[f32; 2]; 5], size: u32) -> RgbImage {
    let t = Similarity::fit(template, landmarks);
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    RgbImage::from_fn(size, size, |x, y| {
        let [sx, sy] = t.apply([x as f32 + 0.5, y as f32 + 0.5]);
        let (sx, sy) = (sx - 0.5, sy - 0.5);
        let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let mut out = [0.0f32; 3];
        for (dx, dy, wgt) in
            [(0, 0, (1.0 - fx) * (1.0 - fy)), (1, 0, fx * (1.0 - fy)), (0, 1, (1.0 - fx) * fy), (1, 1, fx * fy)]
        {
            let (px, py) = (x0 + dx, y0 + dy);
            if px >= 0 && py >= 0 && px < w && py < h {
                let i = ((py * w + px) * 3) as usize;
                for c in 0..3 {
                    out[c] += wgt * f32::from(raw[i + c]);
                }
            }
        }
        image::Rgb(out.map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_similarity() {
        let truth = Similarity { a: (1.8 * 0.3f32.cos(), 1.8 * 0.3f32.sin()), b: (40.0, -12.0) };
        let to = EMBEDDING_TEMPLATE.map(|p| truth.apply(p));
        let fit = Similarity::fit(&EMBEDDING_TEMPLATE, &to);
        assert!((fit.a.0 - truth.a.0).abs() < 1e-4 && (fit.a.1 - truth.a.1).abs() < 1e-4, "{fit:?}");
        assert!((fit.b.0 - truth.b.0).abs() < 1e-2 && (fit.b.1 - truth.b.1).abs() < 1e-2, "{fit:?}");
    }

    #[test]
    fn chip_of_an_identity_transform_copies_pixels() {
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 3, y as u8 * 3, 9]));
        let c = chip(&img, &AGE_TEMPLATE, &AGE_TEMPLATE, 64);
        assert_eq!(c.get_pixel(10, 20), img.get_pixel(10, 20));
    }
}
