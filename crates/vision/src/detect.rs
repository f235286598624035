//! CenterFace: input preparation and decoding of its four output maps into
//! face boxes with five landmarks.

use image::RgbImage;
use serde::Serialize;

/// A detected face, in the coordinates of the analysed image.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Detection {
    /// x, y, width, height.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corners; (x, y).
    pub landmarks: [[f32; 2]; 5],
}

/// `img` scaled to `w`x`h` (smaller) with a triangle (bilinear) filter
/// whose support grows with the reduction, so every source pixel counts
/// (as `image`'s `FilterType::Triangle`), but with SIMD: `image`'s took 15
/// to 25 ms to bring a 1 MP photo to the detector's 640 px, as long as the
/// detector itself; this takes about a millisecond.
pub fn shrink(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    use fast_image_resize::{
        images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
    };
    let (w, h) = (w.max(1), h.max(1));
    let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
        .expect("an RgbImage holds width x height RGB pixels");
    let mut dst = Image::new(w, h, PixelType::U8x3);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)))
        .expect("same pixel type, non-empty sizes");
    RgbImage::from_raw(w, h, dst.into_vec()).expect("a buffer of the image's size")
}

/// `img` shrunk so that its longer side is at most `max_side`, or `None`
/// when it already is.
pub fn within(img: &RgbImage, max_side: u32) -> Option<RgbImage> {
    let (w, h) = img.dimensions();
    let scale = max_side as f32 / w.max(h) as f32;
    (scale < 1.0).then(|| shrink(img, (w as f32 * scale).round() as u32, (h as f32 * scale).round() as u32))
}

/// The network input for an image: longer side at most `max_side`, each side
/// padded up to a multiple of 32. Returns the NCHW data, its (H, W) and the
/// scale from original to network pixels.
pub fn prepare(img: &RgbImage, max_side: u32) -> (Vec<f32>, usize, usize, f32) {
    let resized = within(img, max_side);
    let src = resized.as_ref().unwrap_or(img);
    let (w, rw, rh) = (img.width(), src.width(), src.height());
    let (nw, nh) = ((rw as usize).div_ceil(32) * 32, (rh as usize).div_ceil(32) * 32);
    let mut data = vec![0.0f32; 3 * nw * nh];
    let plane = nw * nh;
    for (x, y, p) in src.enumerate_pixels() {
        let i = y as usize * nw + x as usize;
        data[i] = f32::from(p[0]);
        data[plane + i] = f32::from(p[1]);
        data[2 * plane + i] = f32::from(p[2]);
    }
    // Exact per-axis scale after rounding, so boxes map back precisely.
    let scale = rw as f32 / w as f32;
    (data, nh, nw, scale)
}

/// Decodes the maps (each `[1, C, h, w]`, flattened) into detections in the
/// original image's coordinates.
pub fn decode(
    heatmap: &[f32],
    scales: &[f32],
    offsets: &[f32],
    landmarks: &[f32],
    (h, w): (usize, usize),
    threshold: f32,
    scale: f32,
) -> Vec<Detection> {
    let plane = h * w;
    let mut found = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let score = heatmap[i];
            if score <= threshold {
                continue;
            }
            let bh = scales[i].exp() * 4.0;
            let bw = scales[plane + i].exp() * 4.0;
            let cy = (y as f32 + offsets[i] + 0.5) * 4.0;
            let cx = (x as f32 + offsets[plane + i] + 0.5) * 4.0;
            let (x1, y1) = (cx - bw / 2.0, cy - bh / 2.0);
            let mut lm = [[0.0f32; 2]; 5];
            for (j, point) in lm.iter_mut().enumerate() {
                *point = [
                    (x1 + landmarks[(2 * j + 1) * plane + i] * bw) / scale,
                    (y1 + landmarks[2 * j * plane + i] * bh) / scale,
                ];
            }
            found.push(Detection { bbox: [x1 / scale, y1 / scale, bw / scale, bh / scale], score, landmarks: lm });
        }
    }
    // A mosaic of faces must not make suppression quadratic in the image
    // size: keep the strongest candidates only.
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    found.truncate(MAX_CANDIDATES);
    nms(found, 0.3)
}

/// Candidate cells kept before non-maximum suppression.
const MAX_CANDIDATES: usize = 4096;

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ax2, ay2, bx2, by2) = (a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]);
    let iw = (ax2.min(bx2) - a[0].max(b[0])).max(0.0);
    let ih = (ay2.min(by2) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-6)
}

/// Greedy non-maximum suppression: the best-scoring box wins its overlaps.
pub fn nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    suppress(dets, threshold)
}

/// The faces found at several quarter turns, one detection each. Of
/// overlapping detections, one whose landmarks look like a face wins over
/// a higher score: the same face found at another turn can score a little
/// higher with landmarks squeezed onto a sideways face, and those align a
/// chip no embedding matches (a photo turned -20 degrees went from 0.47 to
/// 0.72 from the same man that way).
pub fn merge_turns(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| plausible(b).cmp(&plausible(a)).then(b.score.total_cmp(&a.score)));
    suppress(dets, threshold)
}

/// Keeps each detection that overlaps none kept before it, in order.
fn suppress(dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.iter().all(|k| iou(&k.bbox, &d.bbox) <= threshold) {
            kept.push(d);
        }
    }
    kept
}

/// Whether a detection's landmarks have a face's proportions: the mouth on
/// the far side of the eye line, and as far from it as the eyes are apart
/// (0.5 to 1.8 times; about 1 for a frontal face, more as it turns away).
pub fn plausible(d: &Detection) -> bool {
    let [le, re, _, lm, rm] = d.landmarks;
    let eyes = [re[0] - le[0], re[1] - le[1]];
    let eye_mid = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
    let down = [(lm[0] + rm[0]) / 2.0 - eye_mid[0], (lm[1] + rm[1]) / 2.0 - eye_mid[1]];
    let apart = eyes[0].hypot(eyes[1]);
    if apart < 1e-3 {
        return false;
    }
    let ratio = down[0].hypot(down[1]) / apart;
    let mouth_below = eyes[0] * down[1] - eyes[1] * down[0] > 0.0;
    mouth_below && (0.5..=1.8).contains(&ratio)
}

/// A quarter turn of an image, clockwise, and the way back for what was
/// found in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Quarter,
    Half,
    ThreeQuarters,
}

impl Turn {
    pub fn apply(self, img: &RgbImage) -> RgbImage {
        match self {
            Turn::Quarter => image::imageops::rotate90(img),
            Turn::Half => image::imageops::rotate180(img),
            Turn::ThreeQuarters => image::imageops::rotate270(img),
        }
    }

    /// A point of the turned image in the original `w` x `h` image
    /// (continuous coordinates: pixel edges, not centres).
    fn point_back(self, [x, y]: [f32; 2], w: f32, h: f32) -> [f32; 2] {
        match self {
            // rotate90 sends (x, y) to (h - y, x).
            Turn::Quarter => [y, h - x],
            Turn::Half => [w - x, h - y],
            // rotate270 sends (x, y) to (y, w - x).
            Turn::ThreeQuarters => [w - y, x],
        }
    }

    /// A detection in the turned image, in the original's coordinates.
    /// The landmarks keep their roles (left eye...): alignment undoes the turn.
    pub fn back(self, d: Detection, w: f32, h: f32) -> Detection {
        let [x, y, bw, bh] = d.bbox;
        let [ax, ay] = self.point_back([x, y], w, h);
        let [bx, by] = self.point_back([x + bw, y + bh], w, h);
        Detection {
            bbox: [ax.min(bx), ay.min(by), (ax - bx).abs(), (ay - by).abs()],
            score: d.score,
            landmarks: d.landmarks.map(|p| self.point_back(p, w, h)),
        }
    }
}

impl Detection {
    /// The same face in an image `sx` times wider and `sy` times taller.
    pub fn scaled(self, sx: f32, sy: f32) -> Detection {
        let [x, y, w, h] = self.bbox;
        Detection {
            bbox: [x * sx, y * sy, w * sx, h * sy],
            score: self.score,
            landmarks: self.landmarks.map(|[px, py]| [px * sx, py * sy]),
        }
    }
}

/// Clips a box to the image; drops it when nothing is left.
pub fn clip(mut d: Detection, width: u32, height: u32) -> Option<Detection> {
    let [x, y, w, h] = d.bbox;
    let (x1, y1) = (x.max(0.0), y.max(0.0));
    let (x2, y2) = ((x + w).min(width as f32), (y + h).min(height as f32));
    if x2 - x1 < 2.0 || y2 - y1 < 2.0 {
        return None;
    }
    d.bbox = [x1, y1, x2 - x1, y2 - y1];
    Some(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_point_turned_and_back_is_where_it_was() {
        let img = RgbImage::from_fn(7, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        for turn in [Turn::Quarter, Turn::Half, Turn::ThreeQuarters] {
            let turned = turn.apply(&img);
            // The centre of each turned pixel maps back to the centre of the
            // original pixel it came from.
            for (tx, ty, p) in turned.enumerate_pixels() {
                let [x, y] = turn.point_back([tx as f32 + 0.5, ty as f32 + 0.5], 7.0, 4.0);
                assert_eq!([p[0], p[1]], [(x - 0.5) as u8, (y - 0.5) as u8], "{turn:?} ({tx}, {ty})");
            }
            let d = Detection { bbox: [1.0, 2.0, 3.0, 1.0], score: 0.9, landmarks: [[1.5, 2.5]; 5] };
            let turned_det = Detection {
                bbox: {
                    // The same box, found in the turned image.
                    let corners = [[1.0, 2.0], [4.0, 3.0]].map(|p| forward(turn, p, 7.0, 4.0));
                    let [a, b] = corners;
                    [a[0].min(b[0]), a[1].min(b[1]), (a[0] - b[0]).abs(), (a[1] - b[1]).abs()]
                },
                score: 0.9,
                landmarks: [forward(turn, [1.5, 2.5], 7.0, 4.0); 5],
            };
            let back = turn.back(turned_det, 7.0, 4.0);
            assert_eq!(back.bbox, d.bbox, "{turn:?}");
            assert_eq!(back.landmarks, d.landmarks, "{turn:?}");
        }
    }

    /// Where a point of the original lands in the turned image.
    fn forward(turn: Turn, [x, y]: [f32; 2], w: f32, h: f32) -> [f32; 2] {
        match turn {
            Turn::Quarter => [h - y, x],
            Turn::Half => [w - x, h - y],
            Turn::ThreeQuarters => [y, w - x],
        }
    }

    use super::*;

    fn det(x: f32, y: f32, s: f32, score: f32) -> Detection {
        Detection { bbox: [x, y, s, s], score, landmarks: [[0.0; 2]; 5] }
    }

    #[test]
    fn across_turns_a_face_shaped_detection_beats_a_higher_score() {
        // Eyes 40 apart with the mouth 40 below them: a frontal face. The
        // same box found at another turn, eyes squeezed 10 apart.
        let face = Detection {
            bbox: [0.0, 0.0, 100.0, 100.0],
            score: 0.90,
            landmarks: [[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]],
        };
        let squeezed = Detection {
            bbox: [2.0, 0.0, 100.0, 100.0],
            score: 0.92,
            landmarks: [[45.0, 40.0], [55.0, 40.0], [50.0, 60.0], [35.0, 80.0], [45.0, 82.0]],
        };
        assert!(plausible(&face) && !plausible(&squeezed));
        let kept = merge_turns(vec![squeezed, face], 0.3);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].score, 0.90);
        // Within one run, the score alone decides.
        assert_eq!(nms(vec![face, squeezed], 0.3)[0].score, 0.92);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_separate_ones() {
        let kept = nms(vec![det(0.0, 0.0, 10.0, 0.6), det(1.0, 1.0, 10.0, 0.9), det(50.0, 50.0, 10.0, 0.7)], 0.3);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.9, 0.7]);
    }

    #[test]
    fn decode_places_a_box_at_its_cell() {
        // One 8x8 output map with a single hot cell at (y=2, x=3), no offset,
        // log-scale ln(4) -> a 16x16 box centred at ((3 + 0.5) * 4, (2 + 0.5) * 4).
        let (h, w) = (8, 8);
        let mut heat = vec![0.0; h * w];
        heat[2 * w + 3] = 0.9;
        let scales = vec![4f32.ln(); 2 * h * w];
        let offsets = vec![0.0; 2 * h * w];
        let lms = vec![0.5; 10 * h * w];
        let d = decode(&heat, &scales, &offsets, &lms, (h, w), 0.5, 0.5);
        assert_eq!(d.len(), 1);
        let b = d[0].bbox;
        // Network coordinates: centre (14, 10), size 16; scale 0.5 doubles them.
        assert_eq!(b, [12.0, 4.0, 32.0, 32.0]);
        assert_eq!(d[0].landmarks[0], [28.0, 20.0]);
    }

    #[test]
    fn shrinking_averages_every_pixel_and_keeps_the_size_asked() {
        // A fine checkerboard averages to mid-grey; a flat image stays flat.
        let board = RgbImage::from_fn(1024, 768, |x, y| {
            if (x + y) % 2 == 0 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        for (w, h) in [(256, 192), (480, 360), (300, 200), (1000, 700)] {
            let small = shrink(&board, w, h);
            assert_eq!(small.dimensions(), (w, h));
            let mean = small.pixels().map(|p| f64::from(p[0])).sum::<f64>() / f64::from(w * h);
            assert!((mean - 127.5).abs() < 3.0, "{w}x{h}: mean {mean}");
        }
        let flat = RgbImage::from_pixel(1024, 1024, image::Rgb([10, 200, 90]));
        assert!(shrink(&flat, 256, 256).pixels().all(|p| p.0 == [10, 200, 90]));
    }

    #[test]
    fn prepare_pads_to_multiples_of_32_and_limits_the_long_side() {
        let img = RgbImage::new(1000, 500);
        let (data, h, w, scale) = prepare(&img, 640);
        assert_eq!((h, w), (320, 640));
        assert_eq!(data.len(), 3 * 320 * 640);
        assert!((scale - 0.64).abs() < 1e-6);
        let (_, h, w, scale) = prepare(&RgbImage::new(100, 70), 640);
        assert_eq!((h, w, scale), (96, 128, 1.0));
    }
}
