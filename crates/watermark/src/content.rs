//! The content check: what ties a recovered mark to the picture it was
//! made in.
//!
//! The mark alone cannot. Someone can lift one output's fine detail (the
//! mark comes with it) and add it to another photo, which then carries the
//! first output's payload: the copy attack, or a transplant. So the
//! gateway keeps, beside each manifest, a [`Fingerprint`] of the marked
//! output's coarse structure, and the resolver compares it with the
//! received image, placed by the geometry the detector found
//! ([`crate::Detection::content`]). A transplanted mark brings its payload
//! but not its picture.
//!
//! The fingerprint cuts the image into blocks of [`BLOCK`] pixels, four per
//! period of the pattern, so that the detector's offset (known modulo the
//! period) places them up to a whole number of periods. For each block and
//! its right and lower neighbour it keeps whether the mean luma rises,
//! falls or stays within [`FLAT`] levels: two bits per pair, 512 bytes for
//! a 1024×1024 output. That is which way brightness changes at 1/32 scale,
//! not a picture. Block means shrug off what the mark survives (JPEG,
//! noise, blur, rescaling); brightness and contrast scale the changes but
//! keep their signs.
//!
//! A received image matches when, for some placement (the whole periods
//! the offset leaves open), the pairs it can be compared on agree well
//! beyond chance: at least [`AGREEMENT`] of them, and [`Z_MATCH`] standard
//! deviations above the half that unrelated pictures agree on, and as far
//! above what pictures with the same rises and falls would agree on by
//! chance (two ramps running the same way agree nearly everywhere; such a
//! placement is inconclusive, and outranks placements that differ). Pairs
//! count when the output changed there, or when the received image
//! changes strongly ([`STRONG`]) where the output did not. A picture that
//! does not match is [`ContentVerdict::Differs`] with at least
//! [`MIN_PAIRS`] pairs, and [`ContentVerdict::Inconclusive`] with fewer (a
//! small crop, a featureless picture): never a match by default.

use image::RgbImage;

use crate::{luma, LUMA};

/// The fingerprint's name where it is stored beside the watermark's
/// binding; the version changes with anything that changes the values.
pub const FINGERPRINT_ALG: &str = "org.likeness.fp.1";

/// Block side, in pixels of the marked image: a quarter of the pattern's
/// period, so block edges fall on period edges.
pub const BLOCK: usize = 32;
const _: () = assert!(crate::PERIOD.is_multiple_of(BLOCK));
const PER_PERIOD: i64 = (crate::PERIOD / BLOCK) as i64;

/// A change of mean luma between neighbouring blocks within this many
/// levels (of 255) counts as none.
pub const FLAT: f32 = 2.0;

/// Where the output had no change, a received change this strong is a
/// disagreement.
pub const STRONG: f32 = 6.0;

/// Least fraction of the compared pairs that must agree for a match.
pub const AGREEMENT: f32 = 0.8;

/// Least z-score of the agreement against chance (half the pairs) for a
/// match. About 3e-7 per placement under independent pairs; natural
/// pictures are not independent, which is what [`AGREEMENT`] is for.
pub const Z_MATCH: f32 = 5.0;

/// Fewest compared pairs for a [`ContentVerdict::Differs`]: below it, a
/// picture that does not match is inconclusive.
pub const MIN_PAIRS: usize = 40;

/// A received block counts when at least this fraction of the pixels a
/// whole block would hold landed in it (crop edges make partial blocks,
/// whose means are off).
const FULL: f32 = 0.85;

/// How the mean luma changes from a block to its neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Flat = 0,
    Rises = 1,
    Falls = 2,
    /// No neighbour there (the last column or row).
    None = 3,
}

impl Change {
    fn of(delta: f32) -> Change {
        if delta > FLAT {
            Change::Rises
        } else if delta < -FLAT {
            Change::Falls
        } else {
            Change::Flat
        }
    }

    fn from_bits(b: u8) -> Change {
        match b & 3 {
            0 => Change::Flat,
            1 => Change::Rises,
            2 => Change::Falls,
            _ => Change::None,
        }
    }
}

/// A marked output's coarse structure: per block, how the mean luma
/// changes to the right and downwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    columns: usize,
    rows: usize,
    /// Per block, row by row: [to the right, downwards].
    changes: Vec<[Change; 2]>,
}

/// A stored fingerprint that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a {FINGERPRINT_ALG} fingerprint: {0}")]
pub struct FingerprintError(&'static str);

const FORMAT: u8 = 1;

impl Fingerprint {
    /// The fingerprint of a marked image, in its own coordinates (the
    /// mark's origin is its top-left corner). Blocks cut by the right or
    /// bottom edge are left out.
    pub fn of(img: &RgbImage) -> Fingerprint {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (columns, rows) = (w / BLOCK, h / BLOCK);
        // Channel sums in integers (a block's fit in u32 many times over),
        // weighted into luma once per block: the gateway does this for
        // every output.
        let mut sums = vec![[0u32; 3]; columns * rows];
        for (y, row) in img.chunks_exact(3 * w).enumerate().take(rows * BLOCK) {
            let line = &mut sums[(y / BLOCK) * columns..][..columns];
            for (sum, block) in line.iter_mut().zip(row.chunks_exact(3 * BLOCK)) {
                for px in block.chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
        }
        let means: Vec<f32> = sums
            .iter()
            .map(|s| (LUMA[0] * s[0] as f32 + LUMA[1] * s[1] as f32 + LUMA[2] * s[2] as f32) / (BLOCK * BLOCK) as f32)
            .collect();
        let changes = (0..rows * columns)
            .map(|i| {
                let (c, r) = (i % columns, i / columns);
                let right = if c + 1 < columns { Change::of(means[i + 1] - means[i]) } else { Change::None };
                let down = if r + 1 < rows { Change::of(means[i + columns] - means[i]) } else { Change::None };
                [right, down]
            })
            .collect();
        Fingerprint { columns, rows, changes }
    }

    /// The stored form: a format byte, the block columns and rows (two
    /// bytes each, big-endian), then two bits per change, four per byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.changes.len().div_ceil(2));
        out.push(FORMAT);
        out.extend_from_slice(&(self.columns as u16).to_be_bytes());
        out.extend_from_slice(&(self.rows as u16).to_be_bytes());
        for pair in self.changes.chunks(2) {
            let mut byte = 0u8;
            for (i, c) in pair.iter().flatten().enumerate() {
                byte |= (*c as u8) << (6 - 2 * i);
            }
            out.push(byte);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Fingerprint, FingerprintError> {
        let (&format, rest) = bytes.split_first().ok_or(FingerprintError("empty"))?;
        if format != FORMAT {
            return Err(FingerprintError("unknown format"));
        }
        if rest.len() < 4 {
            return Err(FingerprintError("truncated header"));
        }
        let columns = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let rows = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let blocks = columns * rows;
        let packed = &rest[4..];
        if packed.len() != blocks.div_ceil(2) {
            return Err(FingerprintError("length does not match its size"));
        }
        let changes = (0..blocks)
            .map(|b| {
                let byte = packed[b / 2];
                let shift = if b % 2 == 0 { 6 } else { 2 };
                [Change::from_bits(byte >> shift), Change::from_bits(byte >> (shift - 2))]
            })
            .collect();
        Ok(Fingerprint { columns, rows, changes })
    }
}

/// Where a received image's pixels came from in the marked image, as the
/// detector found it: `marked = m · (received − centre) − offset`, modulo
/// the pattern's period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Alignment {
    pub(crate) m: [f32; 4],
    pub(crate) centre: (f32, f32),
    pub(crate) offset: (f32, f32),
}

impl Alignment {
    pub(crate) fn marked(&self, x: f32, y: f32) -> (f32, f32) {
        let [a, b, c, d] = self.m;
        let (dx, dy) = (x - self.centre.0, y - self.centre.1);
        (a * dx + b * dy - self.offset.0, c * dx + d * dy - self.offset.1)
    }
}

/// A received image's block means, on the marked image's block grid up
/// to a whole number of periods. Made from the pixels once; holds no
/// picture finer than the blocks.
#[derive(Clone, PartialEq)]
pub struct ContentView {
    /// The grid's first block, in blocks of the marked image (before the
    /// unknown whole periods).
    first: (i64, i64),
    columns: usize,
    rows: usize,
    /// Mean luma per block; `None` where too little of the block was
    /// received.
    means: Vec<Option<f32>>,
}

impl std::fmt::Debug for ContentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentView({}x{} blocks)", self.columns, self.rows)
    }
}

/// What the content check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentVerdict {
    /// The received picture is the marked output's (edited or not).
    Matches,
    /// Enough of it could be compared, and it is not: the mark was carried
    /// onto another picture.
    Differs,
    /// Too little to compare: a small crop, or a picture with almost no
    /// coarse structure.
    Inconclusive,
}

/// The check's verdict and the figures behind it (at the best placement).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentCheck {
    pub verdict: ContentVerdict,
    /// Pairs of neighbouring blocks compared.
    pub pairs: usize,
    /// How many of them agreed.
    pub agreeing: usize,
}

impl ContentView {
    pub(crate) fn new(img: &RgbImage, alignment: &Alignment) -> ContentView {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let block = BLOCK as f32;
        // The grid spans the blocks the image's corners fall in.
        let corners =
            [(0.0, 0.0), (w as f32, 0.0), (0.0, h as f32), (w as f32, h as f32)].map(|(x, y)| alignment.marked(x, y));
        let lo = |i: usize| corners.iter().map(|c| if i == 0 { c.0 } else { c.1 }).fold(f32::MAX, f32::min);
        let hi = |i: usize| corners.iter().map(|c| if i == 0 { c.0 } else { c.1 }).fold(f32::MIN, f32::max);
        let first = ((lo(0) / block).floor() as i64, (lo(1) / block).floor() as i64);
        let columns = ((hi(0) / block).floor() as i64 - first.0 + 1) as usize;
        let rows = ((hi(1) / block).floor() as i64 - first.1 + 1) as usize;
        let mut sums = vec![0.0f32; columns * rows];
        let mut counts = vec![0u32; columns * rows];
        let [a, _, c, _] = alignment.m;
        // Shifted so that the block index is a truncation of a positive number.
        let (sx, sy) = (first.0 as f32 * block, first.1 as f32 * block);
        for (y, row) in img.chunks_exact(3 * w).enumerate() {
            let (u0, v0) = alignment.marked(0.5, y as f32 + 0.5);
            for (x, px) in row.chunks_exact(3).enumerate() {
                let (u, v) = (u0 + a * x as f32 - sx, v0 + c * x as f32 - sy);
                let (i, j) = ((u / block) as usize, (v / block) as usize);
                if u >= 0.0 && v >= 0.0 && i < columns && j < rows {
                    sums[j * columns + i] += luma(px);
                    counts[j * columns + i] += 1;
                }
            }
        }
        // Each received pixel covers |det m| marked pixels.
        let [a, b, c, d] = alignment.m;
        let whole = (BLOCK * BLOCK) as f32 / (a * d - b * c).abs().max(1e-6);
        let means = sums.iter().zip(&counts).map(|(s, &n)| (n as f32 >= FULL * whole).then(|| s / n as f32)).collect();
        ContentView { first, columns, rows, means }
    }

    /// Compares the view with an output's fingerprint at every placement
    /// the offset leaves open, and answers for the best one.
    pub fn check(&self, fp: &Fingerprint) -> ContentCheck {
        let mut best = ContentCheck { verdict: ContentVerdict::Inconclusive, pairs: 0, agreeing: 0 };
        let mut best_rank: Option<(Reading, f32)> = None;
        // Block (i, j) of the view is block (first + (i, j) + PER_PERIOD·k)
        // of the output, for a whole number of periods k.
        let range = |first: i64, len: usize, stored: usize| {
            let lo = (-(first + len as i64 - 1)).div_euclid(PER_PERIOD);
            let hi = (stored as i64 - 1 - first).div_euclid(PER_PERIOD);
            lo..=hi
        };
        for ky in range(self.first.1, self.rows, fp.rows) {
            for kx in range(self.first.0, self.columns, fp.columns) {
                let shift = (self.first.0 + PER_PERIOD * kx, self.first.1 + PER_PERIOD * ky);
                let tally = self.compare(fp, shift);
                let (pairs, agreeing) = (tally.pairs, tally.agreeing);
                let reading = reading(&tally);
                // Ranked by reading, then agreement.
                let rank = (reading, agreeing as f32 / pairs.max(1) as f32);
                if best_rank.as_ref().is_none_or(|best| rank > *best) {
                    best_rank = Some(rank);
                    best = ContentCheck { verdict: reading.verdict(), pairs, agreeing };
                }
            }
        }
        best
    }

    /// The pairs compared, with view block (0, 0) on output block `shift`.
    fn compare(&self, fp: &Fingerprint, shift: (i64, i64)) -> Tally {
        let mut tally = Tally::default();
        let mean = |i: i64, j: i64| -> Option<f32> {
            if i < 0 || j < 0 || i >= self.columns as i64 || j >= self.rows as i64 {
                return None;
            }
            self.means[j as usize * self.columns + i as usize]
        };
        for r in 0..fp.rows {
            let j = r as i64 - shift.1;
            if j < -1 || j > self.rows as i64 {
                continue;
            }
            for c in 0..fp.columns {
                let i = c as i64 - shift.0;
                let Some(here) = mean(i, j) else { continue };
                for (dir, (di, dj)) in [(1, 0), (0, 1)].into_iter().enumerate() {
                    let stored = fp.changes[r * fp.columns + c][dir];
                    let Some(there) = mean(i + di, j + dj) else { continue };
                    let delta = there - here;
                    let counts = match stored {
                        Change::None => false,
                        Change::Flat => delta.abs() > STRONG,
                        Change::Rises | Change::Falls => true,
                    };
                    if counts {
                        tally.add(dir, stored, delta);
                    }
                }
            }
        }
        tally
    }
}

/// The pairs compared at one placement, and per direction (to the right,
/// downwards) how often each side rises and falls: what chance alone
/// would agree on.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    pairs: usize,
    agreeing: usize,
    /// Per direction: pairs, stored rises, stored falls, received rises,
    /// received falls.
    margins: [[usize; 5]; 2],
}

impl Tally {
    fn add(&mut self, dir: usize, stored: Change, delta: f32) {
        let m = &mut self.margins[dir];
        self.pairs += 1;
        m[0] += 1;
        match stored {
            Change::Rises => m[1] += 1,
            Change::Falls => m[2] += 1,
            _ => {}
        }
        if delta > 0.0 {
            m[3] += 1;
        } else if delta < 0.0 {
            m[4] += 1;
        }
        if (stored == Change::Rises && delta > 0.0) || (stored == Change::Falls && delta < 0.0) {
            self.agreeing += 1;
        }
    }

    /// How many standard deviations the agreement lies above what two
    /// unrelated pictures with these same rises and falls would agree on
    /// (each pair's two sides drawn independently from their direction's
    /// margins). Two plain gradients running the same way agree on nearly
    /// every pair by chance; two photos, on about half.
    fn z_over_chance(&self) -> f32 {
        let (mut expected, mut variance) = (0.0f32, 0.0f32);
        for m in self.margins.iter().filter(|m| m[0] > 0) {
            let n = m[0] as f32;
            let p = (m[1] as f32 * m[3] as f32 + m[2] as f32 * m[4] as f32) / (n * n);
            expected += n * p;
            variance += n * p * (1.0 - p);
        }
        (self.agreeing as f32 - expected) / variance.max(1e-6).sqrt()
    }
}

/// What one placement says, strongest first: a placement that matches
/// decides; agreement that chance explains leaves the check inconclusive
/// whatever other placements say (it is the picture's, or a ramp like it);
/// only then does a placement that differs refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reading {
    TooFew,
    Differs,
    Explained,
    Matches,
}

impl Reading {
    fn verdict(self) -> ContentVerdict {
        match self {
            Reading::Matches => ContentVerdict::Matches,
            Reading::Differs => ContentVerdict::Differs,
            Reading::Explained | Reading::TooFew => ContentVerdict::Inconclusive,
        }
    }
}

fn reading(tally: &Tally) -> Reading {
    let (n, a) = (tally.pairs as f32, tally.agreeing as f32);
    let z = (2.0 * a - n) / n.max(1.0).sqrt();
    // The z-score alone asks nearly every pair to agree when there are few
    // (all of 25, 29 of 30), so a small crop can match; refusing takes
    // more pairs, since a few disagreements are no proof.
    if a >= AGREEMENT * n && z >= Z_MATCH {
        // Agreement that the two pictures' own margins explain (both
        // brighten the same way throughout) proves nothing either way.
        if tally.z_over_chance() >= Z_MATCH {
            Reading::Matches
        } else {
            Reading::Explained
        }
    } else if tally.pairs >= MIN_PAIRS {
        Reading::Differs
    } else {
        Reading::TooFew
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_and_bad_bytes_are_refused() {
        let img =
            RgbImage::from_fn(200, 100, |x, y| image::Rgb([(x % 256) as u8, (y * 2) as u8, ((x * y) % 256) as u8]));
        let fp = Fingerprint::of(&img);
        assert_eq!((fp.columns, fp.rows), (6, 3));
        assert_eq!(Fingerprint::from_bytes(&fp.to_bytes()), Ok(fp.clone()));
        let bytes = fp.to_bytes();
        assert!(Fingerprint::from_bytes(&[]).is_err());
        assert!(Fingerprint::from_bytes(&[2, 0, 6, 0, 3]).is_err());
        assert!(Fingerprint::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Fingerprint::from_bytes(&bytes[..3]).is_err());
    }

    fn verdict(tally: &Tally) -> ContentVerdict {
        reading(tally).verdict()
    }

    /// A tally whose sides rise and fall equally often: chance agrees on
    /// half.
    fn balanced(pairs: usize, agreeing: usize) -> Tally {
        let half = pairs / 2;
        Tally { pairs, agreeing, margins: [[pairs, half, pairs - half, half, pairs - half], [0; 5]] }
    }

    #[test]
    fn verdicts_follow_the_figures() {
        let verdict = |pairs, agreeing| verdict(&balanced(pairs, agreeing));
        assert_eq!(verdict(0, 0), ContentVerdict::Inconclusive);
        assert_eq!(verdict(24, 24), ContentVerdict::Inconclusive);
        assert_eq!(verdict(30, 29), ContentVerdict::Matches);
        assert_eq!(verdict(30, 28), ContentVerdict::Inconclusive);
        assert_eq!(verdict(39, 30), ContentVerdict::Inconclusive);
        assert_eq!(verdict(40, 36), ContentVerdict::Matches);
        assert_eq!(verdict(40, 30), ContentVerdict::Differs);
        assert_eq!(verdict(400, 330), ContentVerdict::Matches);
        assert_eq!(verdict(400, 300), ContentVerdict::Differs);
    }

    #[test]
    fn agreement_the_margins_explain_confirms_nothing() {
        // 36 of 40 agree, but both sides rise to the right 9 times in 10:
        // chance alone agrees on 82% of such pairs.
        let gradients = Tally { pairs: 40, agreeing: 36, margins: [[40, 36, 4, 36, 4], [0; 5]] };
        assert_eq!(verdict(&gradients), ContentVerdict::Inconclusive);
        // As many pairs, as much agreement, one side balanced: a match.
        let one_sided = Tally { pairs: 40, agreeing: 36, margins: [[40, 36, 4, 20, 20], [0; 5]] };
        assert_eq!(verdict(&one_sided), ContentVerdict::Matches);
    }
}
