//! An invisible watermark in the pixels: a 64-bit payload (enough of an
//! asset id to look the asset up) that survives re-encoding, resizing and
//! cropping. Pure Rust, no I/O.
//!
//! # Design (version 2)
//!
//! - **Pattern.** A key-derived tile of 32×32 cells, each cell 4×4 pixels,
//!   repeated over the whole image (period 128 px). Cells of 4 px keep
//!   the mark below the frequencies JPEG quantises away even after the
//!   image is halved (2-px cells did not survive halving plus JPEG 75).
//!   Every cell carries the sum of a *sync* chip (±1) and a *data* chip:
//!   one coded bit, multiplied by a key-derived ±1 whitening sign, at a
//!   key-derived position. The tiling makes a crop lose nothing but some
//!   repetitions.
//! - **Sync variants.** The key derives [`SYNC_VARIANTS`] sync patterns;
//!   a keyed hash of the payload picks the one a mark carries. A single
//!   sync, the same in every output, was what someone holding many
//!   outputs could average out of them and subtract. Averaging outputs
//!   with different syncs estimates each only in proportion to its share,
//!   and telling which outputs share one takes the key or a clustering of
//!   their fine detail (measured in the attack bench).
//! - **Strength.** The pattern is added to R, G and B alike (a luma change;
//!   where a channel clips, the others make up for it), scaled by local
//!   activity: weaker in flat areas, stronger in texture.
//! - **Informed embedding** ([`embed_informed`], what the gateway uses).
//!   The embedder knows the picture, so it predicts how the detector will
//!   read each coded bit (one streaming pass folds the picture's own
//!   residual and how strongly each place of the period will be read) and
//!   gives more amplitude to the bits the picture works against. This is
//!   what makes halftones and fine patterns markable at all. Version 1
//!   marked and re-read the image up to four times; the prediction costs
//!   one pass.
//! - **Payload coding.** 64 bits + a keyed 40-bit tag (SHA-256 over the key
//!   and the payload), then a rate-1/2 convolutional code (K = 7), 220
//!   coded bits, each spread over about 4.7 cells per tile and over every
//!   tile; soft-decision Viterbi decoding.
//! - **Detection.** High-pass the luma, weight each pixel by the inverse
//!   of the picture's local energy there (the high-pass's mean square
//!   over 7×7 pixels: edges and texture drown the mark; flat areas carry
//!   it); fold the image onto one 128×128
//!   period (summing all repetitions) under a geometry hypothesis; find the
//!   crop offset, and which of the eight quarter turns and mirrors the
//!   image went through, as the peak of the circular cross-correlation of
//!   the turned fold with each sync variant (FFT; a turned fold's spectrum
//!   is the spectrum turned, so each turn of each variant costs one
//!   inverse FFT, two correlations sharing one); read the soft bits at
//!   each variant's peak, strongest first, decode, and check the tag and
//!   that the payload is one that variant carries. When a peak does not
//!   decode, the places around it are read too: its eight neighbours, or
//!   the 24 within two pixels under a hypothesis that the image was
//!   shrunk to two thirds or less. JPEG pulls the sync's peak a pixel
//!   toward its own 8-px grid at some crop phases, and a shrunk image's
//!   peak spreads over as many marked pixels as one received pixel
//!   spans, while the data still reads whole beside it. Viterbi is cheap
//!   enough (each half of the states a vectorised pass) that reading
//!   around every peak costs little. The hypotheses, in order: the
//!   image as received; the scale, rotation and aspect ratio estimated from
//!   the image itself (the pattern repeats every 128 px, so the
//!   autocorrelation of the high-passed image peaks on that lattice,
//!   deformed as the image was; the strongest peak near the x axis (or
//!   its fundamental, when its multiples peak too) and one near its
//!   perpendicular span a candidate lattice, refined by a least-squares
//!   fit to every peak it predicts, and of three such second vectors the
//!   one whose lattice's predicted places peak most is kept, unless it is
//!   one no edit makes, mirrored or skewed 15 degrees or more, when the
//!   square lattice on the first vector is); then fixed rescalings
//!   ([`FALLBACK_SCALES`]) in case the estimate failed. A hypothesis folds
//!   each received pixel into the cell of the marked image it maps to, so
//!   none needs a resampled copy. Before reading, textures that repeat
//!   every few pixels are taken out of the fold and its strongest
//!   frequencies clipped (halftones, stripes), since they do not average
//!   out when folded.
//! - **Anchored reads.** Someone holding many outputs, who sorts them by
//!   sync variant well, can estimate each sync pattern and subtract it,
//!   which hides the offset; and a flat picture halved and saved at JPEG
//!   75, as platforms share pictures, can lose its sync peak while its data
//!   still reads. An uncropped image needs no sync: its mark starts at one
//!   of its corners, whatever it was resized, turned or mirrored by. So,
//!   under every hypothesis, the detector also reads at the eight corner
//!   offsets (one per turn) when the sync-found offsets do not decode.
//!
//! # False positives
//!
//! The whitening signs make the decoded bits of an unmarked image (or one
//! marked with another key) behave as independent fair coins, so the keyed
//! 40-bit tag matches by chance with probability 2^-40 per decoding. The
//! detector decodes, under each of at most [`MAX_HYPOTHESES`] = 6
//! geometry hypotheses, once per sync variant at that variant's best turn
//! and offset ([`SYNC_VARIANTS`] = 4) and at up to 24 places around each
//! (the offset search and the lattice estimate choose *where* to decode,
//! they never decode), and at the 8 corner offsets: at most
//! [`MAX_DECODES`] = 6 × (4 × 25 + 8) = 648 decodings. By the union
//! bound the false-positive rate per image is at most
//! `648 × 2^-40 ≈ 5.9e-10`, under the 1e-9 required. (A read placed by a
//! variant other than the first must also find a payload of that variant,
//! which makes the true rate lower still; the bound does not count on it.)
//! Any read added later must keep `MAX_DECODES × 2^-40 ≤ 1e-9`, i.e. at
//! most 1099 decodings.
//!
//! The bound assumes the key is secret and the bits of an unmarked image
//! are unbiased; the benchmark checks the second empirically (no detection
//! on thousands of unmarked images and their crops and re-encodings).

mod analysis;
mod code;
mod content;
mod fft;

pub use content::{ContentCheck, ContentVerdict, ContentView, Fingerprint, FingerprintError, FINGERPRINT_ALG};

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rustfft::num_complex::Complex32;

use fft::{fft2, fft2_transposed, magnitude, HalfSpectrum};

/// The algorithm's name in C2PA soft-binding assertions and in the Soft
/// Binding Resolution API. Not (yet) on the C2PA soft-binding algorithm
/// list, hence a reverse-DNS name of our own; the version changes with any
/// change that makes old marks unreadable.
pub const ALG: &str = "org.likeness.wm.2";

/// Earlier versions. Their marks are no longer read from pixels (version 2
/// changed the tag and the coded length), but the assets they marked can
/// still be found by their binding value.
pub const RETIRED_ALGS: [&str; 1] = ["org.likeness.wm.1"];

/// Cells per tile side.
const TILE: usize = 32;

/// Pixels per cell side.
const CHIP: usize = 4;
/// The pattern's period in pixels.
const PERIOD: usize = TILE * CHIP;
const _: () = assert!(PERIOD.is_power_of_two());

/// Rescalings the detector falls back on when the estimated geometry
/// fails: as if the image had been halved, shrunk to 0.75 or doubled since
/// it was marked (a doubled image's period is too long for the estimate's
/// window).
pub const FALLBACK_SCALES: [f32; 3] = [2.0, 4.0 / 3.0, 0.5];

/// The secret the pattern derives from. Marking and detecting need the same key.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    pub fn new(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// A key for another purpose, derived from this one (SHA-256 of a
    /// version label, the purpose and this key), so replicas that share the
    /// watermark key share it too and neither reveals the other.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"likeness key derivation v1\0");
        h.update(purpose.as_bytes());
        h.update(b"\0");
        h.update(self.0);
        h.finalize().into()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// What was found in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub payload: [u8; 8],
    /// Normalised correlation of the soft bits with the decoded codeword,
    /// in (0, 1]: how clearly the mark was read.
    pub score: f32,
    /// The rescaling under which it was found (received → marked; 2 for
    /// an image halved since marking).
    pub scale: f32,
    /// The rotation undone to find it, in degrees (quarter turns included).
    pub angle: f32,
    /// Whether the image was mirrored since marking.
    pub mirrored: bool,
    /// Where the received pixels sit in the marked image.
    alignment: content::Alignment,
}

impl Detection {
    /// The received image's coarse structure, placed on the marked
    /// output's grid by the geometry found, for the content check
    /// ([`ContentView::check`] against the output's [`Fingerprint`]).
    /// `img` must be the image this detection was made on.
    pub fn content(&self, img: &RgbImage) -> ContentView {
        ContentView::new(img, &self.alignment)
    }
}

/// The key's pattern: per cell, the sync chip of each sync variant, the
/// whitening sign and which coded bit it carries.
struct Pattern {
    /// One ±1 chip per cell for each of the [`SYNC_VARIANTS`].
    sync: Vec<Vec<f32>>,
    sign: Vec<f32>,
    bit: Vec<usize>,
    /// For reading soft bits, the cells again, grouped by the coded bit
    /// they carry (in cell order, then padded with cells of sign 0 to
    /// [`CELLS_PER_BIT`]): per bit, their signs, and per turn t of
    /// [`TURNS`] where each cell's block starts in a fold turned by t and
    /// read at offset zero. Summing a bit's cells together keeps its sum
    /// in a register, where a sweep over the cells scattered every sum
    /// through memory and turned every cell.
    sign_by_bit: Vec<[f32; CELLS_PER_BIT]>,
    corner_by_bit: Vec<Vec<[(u8, u8); CELLS_PER_BIT]>>,
    /// Per sync variant, the conjugate FFT of one period of its chips:
    /// what every fold's spectrum is multiplied by to correlate it with
    /// that sync.
    sync_conj: Vec<Vec<Complex32>>,
}

impl Pattern {
    fn new(key: &Key) -> Pattern {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(key.0);
        let cells = TILE * TILE;
        let chips = |rng: &mut rand_chacha::ChaCha20Rng| -> Vec<f32> {
            (0..cells).map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 }).collect()
        };
        // Variant 0 is drawn first from the key's own stream, as every sync
        // was before there were variants, so older marks still read.
        let mut sync = vec![chips(&mut rng)];
        let sign = chips(&mut rng);
        // Each coded bit gets an equal share of cells, at shuffled places.
        let mut bit: Vec<usize> = (0..cells).map(|i| i % code::CODED_BITS).collect();
        for i in (1..cells).rev() {
            bit.swap(i, rng.gen_range(0..=i));
        }
        for v in 1..SYNC_VARIANTS {
            let seed = key.derive(&format!("watermark sync variant {v}"));
            sync.push(chips(&mut rand_chacha::ChaCha20Rng::from_seed(seed)));
        }
        let sync_conj = sync
            .iter()
            .map(|chips| {
                let period =
                    (0..PERIOD * PERIOD).map(|i| Complex32::new(chips[Pattern::cell(i % PERIOD, i / PERIOD)], 0.0));
                fft2(period.collect(), PERIOD, false).iter().map(|c| c.conj()).collect()
            })
            .collect();
        let mut by_bit = vec![Vec::new(); code::CODED_BITS];
        for (c, &b) in bit.iter().enumerate() {
            by_bit[b].push(c);
        }
        fn padded<T>(cells: &[usize], f: impl Fn(Option<usize>) -> T) -> [T; CELLS_PER_BIT] {
            std::array::from_fn(|k| f(cells.get(k).copied()))
        }
        let sign_by_bit = by_bit.iter().map(|cells| padded(cells, |c| c.map_or(0.0, |c| sign[c]))).collect();
        let corner_by_bit = TURNS
            .iter()
            .map(|m| {
                // A marked cell from p to p + (3, 3) lands on the fold's
                // block m·p + m·[0, 3]², whose least corner is m·p moved by this.
                let least = |a: i32, b: i32| (CHIP as i32 - 1) * (a.min(0) + b.min(0));
                let wrap = |v: usize, by: i32| ((v as i32 + by) & (PERIOD as i32 - 1)) as u8;
                let corner = |c: usize| {
                    let (x, y) = turn(m, CHIP * (c % TILE), CHIP * (c / TILE));
                    (wrap(x, least(m[0], m[1])), wrap(y, least(m[2], m[3])))
                };
                by_bit.iter().map(|cells| padded(cells, |c| c.map_or((0, 0), corner))).collect()
            })
            .collect();
        Pattern { sync, sign, bit, sign_by_bit, corner_by_bit, sync_conj }
    }

    /// The key's pattern, made once per thread for the last key used (a
    /// gateway marks and reads with one key): making it, four transforms
    /// of the sync variants and the tables, was 2% of detection's
    /// instructions on small unmarked images. It holds about half a
    /// megabyte (mostly the sync spectra), what every call allocated
    /// anyway; an idle blocking thread that exits frees it.
    fn of(key: &Key) -> std::rc::Rc<Pattern> {
        type Last = Option<([u8; 32], std::rc::Rc<Pattern>)>;
        thread_local! {
            static LAST: std::cell::RefCell<Last> = const { std::cell::RefCell::new(None) };
        }
        LAST.with_borrow_mut(|last| match last {
            Some((k, pattern)) if *k == key.0 => pattern.clone(),
            _ => {
                let pattern = std::rc::Rc::new(Pattern::new(key));
                *last = Some((key.0, pattern.clone()));
                pattern
            }
        })
    }

    fn cell(x: usize, y: usize) -> usize {
        ((y / CHIP) % TILE) * TILE + (x / CHIP) % TILE
    }
}

/// Embeds `payload` with `key`. `strength` 1.0 is the default trade-off:
/// on the test images 38.7 to 41.7 dB PSNR (see the README's table); on
/// flat and gradient areas the mark shows as a faint grain.
pub fn embed(img: &mut RgbImage, payload: &[u8; 8], key: &Key, strength: f32) {
    let pattern = Pattern::of(key);
    let coded = code::encode(&code::data_bits(payload, &key.0));
    let sync = &pattern.sync[code::sync_variant(payload, &key.0, SYNC_VARIANTS)];
    let mask = activity_mask(img);
    embed_with_gains(img, &pattern, sync, &coded, &mask, strength, &vec![1.0; code::CODED_BITS]);
}

/// Embeds like [`embed`], giving more amplitude to the coded bits the
/// picture itself works against. For pictures whose own texture interferes
/// with the mark (halftone screens, fine regular patterns): the embedder
/// knows the picture, so it can outweigh exactly that interference.
///
/// It predicts the detector's reading instead of marking and reading again:
/// one pass over the picture folds its residual (the interference, bit by
/// bit) and how strongly each place of the period will be read (the mask
/// times the detector's weight); the mark's own reading follows from that
/// and the pattern, linearly in each bit's gain. Each bit then gets the
/// gain that lifts its predicted margin to [`INFORMED_TARGET`] times the
/// typical margin of an undisturbed bit, up to [`MAX_GAIN`]. The
/// prediction ignores what the mark changes in the weights and the
/// detector's clipping; the gateway reads every output back anyway.
pub fn embed_informed(img: &mut RgbImage, payload: &[u8; 8], key: &Key, strength: f32) {
    let pattern = Pattern::of(key);
    let coded = code::encode(&code::data_bits(payload, &key.0));
    let own_sync = &pattern.sync[code::sync_variant(payload, &key.0, SYNC_VARIANTS)];
    let wants = analysis::Wants { residual: false, mask: true, folds: true };
    let a = analysis::analyse(img, wants);
    let mut gains = vec![1.0f32; code::CODED_BITS];
    if img.width() as usize >= PERIOD && img.height() as usize >= PERIOD {
        let read = |fold: Vec<f32>, clip: bool| Fold::new(fold, true, clip).soft_bits(&pattern, 0, (0, 0));
        let interference = read(a.residual_fold, true);
        // The two parts of the mark as the detector's high-pass sees them
        // (a 3x3 box taken away; the pattern is periodic, so on the torus),
        // times how strongly each place is read.
        let chips = |part: &dyn Fn(usize) -> f32| -> Vec<f32> {
            let at = |x: usize, y: usize| part(Pattern::cell(x % PERIOD, y % PERIOD));
            let mut out = vec![0.0f32; PERIOD * PERIOD];
            for y in 0..PERIOD {
                for x in 0..PERIOD {
                    let mut around = 0.0;
                    for j in [PERIOD - 1, 0, 1] {
                        for i in [PERIOD - 1, 0, 1] {
                            around += at(x + i, y + j);
                        }
                    }
                    out[y * PERIOD + x] = 0.5 * strength * a.response_fold[y * PERIOD + x] * (at(x, y) - around / 9.0);
                }
            }
            out
        };
        let sync = read(chips(&|c| SYNC_AMPLITUDE * own_sync[c]), false);
        let data = read(chips(&|c| pattern.sign[c] * coded[pattern.bit[c]]), false);
        let own: Vec<f32> = data.iter().zip(&coded).map(|(d, c)| d * c).collect();
        let mut sorted = own.clone();
        sorted.sort_by(f32::total_cmp);
        let target = INFORMED_TARGET * sorted[sorted.len() / 2];
        for (b, g) in gains.iter_mut().enumerate() {
            let against = coded[b] * (interference[b] + sync[b]);
            if own[b] > 0.0 && against + own[b] < target {
                *g = ((target - against) / own[b]).clamp(1.0, MAX_GAIN);
            }
        }
    }
    embed_with_gains(img, &pattern, own_sync, &coded, &a.mask, strength, &gains);
}

/// The most cells that carry one coded bit: each bit has an equal share
/// of the tile's cells, give or take one.
const CELLS_PER_BIT: usize = (TILE * TILE).div_ceil(code::CODED_BITS);

/// Sync patterns per key; each mark carries one, chosen by a keyed hash
/// of its payload. With one, the sync is the same in every output, and
/// averaging outputs estimates it well enough to subtract it (measured on
/// 100 outputs: the mark then survived a crop in 2 of 20). Averaging
/// outputs that carry different syncs estimates each only in proportion
/// to its share. Each variant costs the detector four inverse FFTs and one
/// decoding per hypothesis.
pub const SYNC_VARIANTS: usize = 4;

/// The sync chip's amplitude, relative to a data chip's. The sync is read
/// over the whole period (16,384 positions) and each coded bit over about
/// 74, so it can be fainter than the data; at full amplitude it was half
/// the mark's energy. 0.6 is the faintest at which a cell where sync and
/// data disagree still moves a flat pixel by a whole level (0.5 × 0.92 ×
/// 2.85 × 0.4 = 0.52, rounded to 1; at 0.7 or 0.8 it rounds to nothing,
/// and flat images were lost to JPEG). Measured on the attack suite
/// (2026-11-28), against 1.0: PSNR 42.1 dB mean from 40.2, SSIM 0.976 from
/// 0.962, and 3 fewer exact recoveries of 495 (the text-like graphic
/// rotated 2 degrees, chelsea at 0.35x, coffee after the re-share chain).
const SYNC_AMPLITUDE: f32 = 0.6;

/// The margin every coded bit is lifted to by [`embed_informed`], as a
/// fraction of the median margin the mark alone gives a bit.
const INFORMED_TARGET: f32 = 0.7;

/// Most a coded bit's amplitude grows in [`embed_informed`].
const MAX_GAIN: f32 = 2.5;

/// The strength the gateway marks with through [`embed_informed`]: a
/// little under [`embed`]'s default, since the weak bits get more.
pub const INFORMED_STRENGTH: f32 = 0.92;

/// Per pixel, how much mark the picture hides there: flat areas get less,
/// texture more.
fn activity_mask(img: &RgbImage) -> Vec<f32> {
    analysis::analyse(img, analysis::Wants { residual: false, mask: true, folds: false }).mask
}

/// The embedder: each pixel gets the sum of its cell's chip of `sync` (the
/// payload's variant) and data chip (scaled by its coded bit's gain),
/// times the strength and the activity mask, as a luma change.
fn embed_with_gains(
    img: &mut RgbImage,
    pattern: &Pattern,
    sync: &[f32],
    coded: &[f32],
    mask: &[f32],
    strength: f32,
    gains: &[f32],
) {
    // One value per cell of the tile, then one multiply per pixel.
    let chips: Vec<f32> = (0..TILE * TILE)
        .map(|c| {
            let b = pattern.bit[c];
            strength * 0.5 * (SYNC_AMPLITUDE * sync[c] + pattern.sign[c] * coded[b] * gains[b])
        })
        .collect();
    let w = img.width() as usize;
    for (y, (row, mask)) in img.chunks_exact_mut(3 * w).zip(mask.chunks_exact(w)).enumerate() {
        let tile_row = &chips[((y / CHIP) % TILE) * TILE..][..TILE];
        for (x, (px, m)) in row.chunks_exact_mut(3).zip(mask).enumerate() {
            let px: &mut [u8; 3] = px.try_into().expect("three channels");
            add_luma(px, m * tile_row[(x / CHIP) % TILE]);
        }
    }
}

/// The weights of R, G and B in the luma the mark is added to and read from
/// (BT.601).
pub(crate) const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// The luma of an RGB pixel.
pub(crate) fn luma(px: &[u8]) -> f32 {
    LUMA[0] * f32::from(px[0]) + LUMA[1] * f32::from(px[1]) + LUMA[2] * f32::from(px[2])
}

/// Adds `delta` to the pixel's luma, on all three channels alike; where a
/// channel clips (saturated colours, near black or white), the shortfall
/// goes to the channels that still have room, so the mark keeps its
/// strength there.
fn add_luma(px: &mut [u8; 3], delta: f32) {
    let old = px.map(f32::from);
    // Nearly always no channel clips: add and round (+0.5 and truncate,
    // since the value is not negative; `round` is a library call here).
    if old.iter().all(|v| (0.0..=255.0).contains(&(v + delta))) {
        *px = old.map(|v| (v + delta + 0.5) as u8);
        return;
    }
    let mut new = old.map(|v| (v + delta).clamp(0.0, 255.0));
    let achieved: f32 = (0..3).map(|c| LUMA[c] * (new[c] - old[c])).sum();
    let room: f32 = (0..3).filter(|&c| new[c] > 0.0 && new[c] < 255.0).map(|c| LUMA[c]).sum();
    if room > 0.05 && (delta - achieved).abs() > 0.01 {
        let extra = (delta - achieved) / room;
        for v in new.iter_mut().filter(|v| **v > 0.0 && **v < 255.0) {
            *v = (*v + extra).clamp(0.0, 255.0);
        }
    }
    *px = new.map(|v| (v + 0.5) as u8);
}

/// Looks for a mark made with `key`. `None` means no mark was found; by
/// construction that is also the answer for unmarked images, with at most
/// the false-positive rate derived in the crate docs.
pub fn detect(img: &RgbImage, key: &Key) -> Option<Detection> {
    let pattern = Pattern::of(key);
    let received = Received::new(img);
    let found = received.hypotheses().find_map(|g| {
        let fold = received.fold_cleaned(&g)?;
        // Decodes at turn `turn` and `offset`; `variant` is the sync
        // variant whose peak placed the read, when one did.
        let found = |turn: usize, offset: (usize, usize), variant: Option<usize>| {
            let soft = fold.soft_bits(&pattern, turn, offset);
            let (payload, score) = decode(&soft, key)?;
            // A read placed by a sync must find a payload of that sync's
            // variant. Variant 0 takes any: marks made before there were
            // variants all carry it.
            if variant.is_some_and(|v| v != 0 && v != code::sync_variant(&payload, &key.0, SYNC_VARIANTS)) {
                return None;
            }
            Some(Detection {
                payload,
                score,
                scale: g.scale(),
                angle: (g.angle() + TURN_ANGLES[turn]).rem_euclid(360.0),
                mirrored: turn >= 4,
                alignment: received.alignment(&g, &TURNS[turn], offset),
            })
        };
        let peaks = fold.sync_peaks(&pattern);
        // A peak may sit a pixel off the cells (JPEG biases it toward its
        // own 8-px grid at some crop phases; resampling blurs it) while
        // the data reads whole beside it: when a peak does not decode, the
        // places around it are read too, two pixels out when the image
        // was shrunk to two thirds or less (a received pixel then spans
        // 1.5 marked ones or more, and the peak spreads as far).
        let reach = if g.scale() >= WIDE_SCALE { WIDE_REACH } else { 1 };
        let around = |(x, y): (usize, usize)| {
            let at = |o: usize, e: i32| (o as i32 + e).rem_euclid(PERIOD as i32) as usize;
            (-reach..=reach)
                .flat_map(move |ey| (-reach..=reach).map(move |ex| (ex, ey)))
                .filter(|&e| e != (0, 0))
                .map(move |(ex, ey)| (at(x, ex), at(y, ey)))
        };
        let placed = |p: &SyncPeak| {
            let variant = Some(p.variant);
            found(p.turn, p.offset, variant).or_else(|| around(p.offset).find_map(|o| found(p.turn, o, variant)))
        };
        peaks.iter().find_map(placed).or_else(|| {
            // The image as a whole, perhaps turned or mirrored, perhaps
            // resized: the mark's origin is at one of its corners, whatever
            // the sync says (which JPEG may have blurred on a flat picture,
            // or an attacker subtracted).
            (0..TURNS.len()).find_map(|t| found(t, received.anchored_offset(&g, &TURNS[t]), None))
        })
    });
    found
}

/// The eight ways a square can be turned and mirrored, as signed
/// permutation matrices `[a, b, c, d]` acting on `(x, y)`: the identity,
/// quarter turns, then mirrors. A fold turned or mirrored this way reads a
/// mark made on an image that was since turned or mirrored the other way.
const TURNS: [[i32; 4]; 8] = [
    [1, 0, 0, 1],
    [0, -1, 1, 0],
    [-1, 0, 0, -1],
    [0, 1, -1, 0],
    [-1, 0, 0, 1],
    [1, 0, 0, -1],
    [0, 1, 1, 0],
    [0, -1, -1, 0],
];
/// For turn `t` of [`TURNS`], where each place of the period goes:
/// `turned(t)[y * PERIOD + x]` is the index of m·(x, y). The sync search
/// gathers every fold's spectrum through these.
fn turned(t: usize) -> &'static [u16] {
    const _: () = assert!(PERIOD * PERIOD <= 1 << 16);
    static TABLES: std::sync::OnceLock<Vec<Vec<u16>>> = std::sync::OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        let index = |m: &[i32; 4], i: usize| {
            let (x, y) = turn(m, i % PERIOD, i / PERIOD);
            (y * PERIOD + x) as u16
        };
        TURNS.iter().map(|m| (0..PERIOD * PERIOD).map(|i| index(m, i)).collect()).collect()
    });
    &tables[t]
}

/// The rotation each of [`TURNS`] undoes, in degrees.
const TURN_ANGLES: [f32; 8] = [0.0, 90.0, 180.0, 270.0, 0.0, 0.0, 90.0, 270.0];

/// `m · (x, y)` on the period's torus.
fn turn(m: &[i32; 4], x: usize, y: usize) -> (usize, usize) {
    // PERIOD is a power of two: the wrap is a mask (on two's complement,
    // also for negative values), not a division.
    const WRAP: i32 = PERIOD as i32 - 1;
    let (x, y) = (x as i32, y as i32);
    (((m[0] * x + m[1] * y) & WRAP) as usize, ((m[2] * x + m[3] * y) & WRAP) as usize)
}

/// The payload bits read under each geometry hypothesis whether or not the
/// CRC holds, for measuring bit accuracy in the benchmark. Not a detector:
/// it has no false-positive bound.
#[doc(hidden)]
pub fn read_unchecked(img: &RgbImage, key: &Key) -> Vec<[u8; 8]> {
    let pattern = Pattern::of(key);
    let received = Received::new(img);
    received
        .hypotheses()
        .map(|g| {
            let bits = received
                .fold_cleaned(&g)
                .map(|fold| {
                    let best = &fold.sync_peaks(&pattern)[0];
                    code::decode(&fold.soft_bits(&pattern, best.turn, best.offset))
                })
                .unwrap_or_default();
            let mut payload = [0u8; 8];
            for (i, b) in bits.iter().take(64).enumerate() {
                payload[i / 8] |= b << (7 - i % 8);
            }
            payload
        })
        .collect()
}

/// Which sync variant a payload's mark carries under `key`. For the
/// benchmark's attacks, which compare what an attacker finds with the truth.
#[doc(hidden)]
pub fn sync_variant(payload: &[u8; 8], key: &Key) -> usize {
    code::sync_variant(payload, &key.0, SYNC_VARIANTS)
}

/// Decodes soft bits; the payload and score when the tag holds.
fn decode(soft: &[f32], key: &Key) -> Option<([u8; 8], f32)> {
    let bits = code::decode(soft);
    let payload = code::payload_if_valid(&bits, &key.0)?;
    let codeword = code::encode(&bits);
    let dot: f32 = soft.iter().zip(&codeword).map(|(s, c)| s * c).sum();
    let norm = soft.iter().map(|s| s * s).sum::<f32>().sqrt() * (codeword.len() as f32).sqrt();
    Some((payload, if norm > 0.0 { dot / norm } else { 0.0 }))
}

/// A geometry hypothesis: the linear map from received coordinates
/// (relative to the image centre) to the marked image's. The translation
/// is left to the sync correlation.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry([f32; 4]);

impl Geometry {
    const IDENTITY: Geometry = Geometry([1.0, 0.0, 0.0, 1.0]);

    fn scaled(factor: f32) -> Geometry {
        Geometry([factor, 0.0, 0.0, factor])
    }

    /// The rescaling it applies (received → marked), e.g. 2 for a halved image.
    fn scale(&self) -> f32 {
        let [a, b, c, d] = self.0;
        (a * d - b * c).abs().sqrt()
    }

    /// The rotation it undoes, in degrees.
    fn angle(&self) -> f32 {
        let [a, _, c, _] = self.0;
        c.atan2(a).to_degrees()
    }

    /// Whether some edit in scope (rotation, rescaling, a moderate change
    /// of aspect ratio) could have made this geometry: not a mirror (the
    /// turns cover those), and the marked axes within 15 degrees of square.
    fn could_be_an_edit(&self) -> bool {
        let [a, b, c, d] = self.0;
        let cos = (a * b + c * d) / ((a * a + c * c) * (b * b + d * d)).sqrt();
        a * d - b * c > 0.0 && cos.abs() < 0.26
    }

    /// Whether two hypotheses would read the same fold: within a fraction
    /// of a cell across a 2048-px image.
    fn close_to(&self, other: &Geometry) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| (a - b).abs() < 5e-4)
    }
}

/// A received image, reduced to what detection reads: the weighted
/// high-pass of its luma (the pattern lives in the fine detail; the
/// picture mostly not).
struct Received {
    residual: Vec<f32>,
    w: usize,
    h: usize,
}

impl Received {
    fn new(img: &RgbImage) -> Received {
        let (w, h) = (img.width() as usize, img.height() as usize);
        // Each pixel weighted by how little the picture itself varies
        // there: edges and texture drown the mark, flat areas carry it.
        let wants = analysis::Wants { residual: true, mask: false, folds: false };
        Received { residual: analysis::analyse(img, wants).residual, w, h }
    }

    /// The hypotheses, in order, lazily: as received (costs nothing more);
    /// then the geometry estimated from the image's own periodicity (any
    /// scale, small rotations); then fixed rescalings, as a fallback when
    /// that estimate fails. At most [`MAX_HYPOTHESES`], the number the
    /// false-positive bound counts.
    fn hypotheses(&self) -> impl Iterator<Item = Geometry> + '_ {
        let estimated = std::iter::once_with(|| estimate_geometry(&self.residual, self.w, self.h)).flatten();
        let fixed = FALLBACK_SCALES.iter().map(|&s| Geometry::scaled(s));
        let mut tried: Vec<Geometry> = Vec::new();
        std::iter::once(Geometry::IDENTITY)
            .chain(estimated)
            .chain(fixed)
            .filter(move |g| {
                let new = !tried.iter().any(|t| t.close_to(g)) && (MIN_SCALE..=MAX_SCALE).contains(&g.scale());
                if new {
                    tried.push(*g);
                }
                new
            })
            .take(MAX_HYPOTHESES)
    }

    /// Where received pixels sit in the marked image when the fold under
    /// `g`, turned by `m`, reads the mark at `offset`: the fold places
    /// pixel p at f = g·(p − centre), and the reading takes marked
    /// position q from m·(q + offset), so q = mᵀ·g·(p − centre) − offset.
    fn alignment(&self, g: &Geometry, m: &[i32; 4], offset: (usize, usize)) -> content::Alignment {
        let t = [m[0], m[2], m[1], m[3]].map(|v| v as f32);
        let [a, b, c, d] = g.0;
        // The fold of the image as received is not centred (see `fold`).
        let centre = if g == &Geometry::IDENTITY { (0.0, 0.0) } else { (self.w as f32 / 2.0, self.h as f32 / 2.0) };
        content::Alignment {
            m: [t[0] * a + t[1] * c, t[0] * b + t[1] * d, t[2] * a + t[3] * c, t[2] * b + t[3] * d],
            centre,
            offset: (offset.0 as f32, offset.1 as f32),
        }
    }

    /// The offset at which the fold under `g`, turned by `m`, reads a
    /// mark whose origin is at a corner of the received image: the image
    /// is a whole marked image, turned, mirrored or resized since. The
    /// marked image's top-left edge is the received corner it maps
    /// least to; the offset is what the reading's map (see
    /// [`Received::alignment`]) needs to take that corner there.
    fn anchored_offset(&self, g: &Geometry, m: &[i32; 4]) -> (usize, usize) {
        let at_zero = self.alignment(g, m, (0, 0));
        let (w, h) = (self.w as f32 - 0.5, self.h as f32 - 0.5);
        let (qx, qy) = [(-0.5, -0.5), (w, -0.5), (-0.5, h), (w, h)]
            .map(|(x, y)| at_zero.marked(x, y))
            .into_iter()
            .min_by(|p, q| (p.0 + p.1).total_cmp(&(q.0 + q.1)))
            .expect("four corners");
        // Pixel edges at -0.5: the marked edge (-0.5, -0.5) reads at offset
        // q + 0.5, rounded to the pixel the fold put it in.
        let wrap = |v: f32| ((v + 0.5).floor() as i64).rem_euclid(PERIOD as i64) as usize;
        (wrap(qx), wrap(qy))
    }

    /// Sums the residual onto one period of the marked image's pattern,
    /// under geometry `g`: every received pixel lands in the cell of the
    /// marked image it came from.
    fn fold(&self, g: &Geometry) -> Vec<f32> {
        let mut fold = vec![0.0f32; PERIOD * PERIOD];
        let (w, h) = (self.w, self.h);
        if g == &Geometry::IDENTITY {
            for (y, row) in self.residual.chunks_exact(w).enumerate() {
                let line = &mut fold[(y % PERIOD) * PERIOD..][..PERIOD];
                // A period of the row at a time, which vectorises.
                for part in row.chunks(PERIOD) {
                    line.iter_mut().zip(part).for_each(|(f, r)| *f += r);
                }
            }
            return fold;
        }
        let [a, b, c, d] = g.0;
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        if b == 0.0 && c == 0.0 {
            // A pure rescaling: the marked column of each received column
            // is the same on every row, so it is looked up, not computed.
            let column = |x: usize| ((a * (x as f32 - cx) + (PERIOD * 256) as f32) as usize) % PERIOD;
            let columns: Vec<usize> = (0..w).map(column).collect();
            for (y, row) in self.residual.chunks_exact(w).enumerate() {
                let v = ((d * (y as f32 - cy) + (PERIOD * 256) as f32) as usize) % PERIOD;
                // As an array, with the column masked, no index needs a check.
                let line: &mut [f32; PERIOD] = (&mut fold[v * PERIOD..][..PERIOD]).try_into().expect("one row");
                for (r, &u) in row.iter().zip(&columns) {
                    line[u & (PERIOD - 1)] += r;
                }
            }
            return fold;
        }
        // Marked coordinates in fixed point (32 fractional bits), stepped
        // along each row by (a, c) per pixel: integer steps are exact, so
        // nothing drifts, and an arithmetic shift floors and a mask wraps
        // (PERIOD is a power of two) negative coordinates too. Per pixel
        // that is two adds, where f32 needed a multiply, an add and a
        // checked cast for each coordinate.
        const ONE: f64 = (1u64 << 32) as f64;
        let fixed = |v: f64| (v * ONE).floor() as i64;
        let (du, dv) = (fixed(f64::from(a)), fixed(f64::from(c)));
        let period: &mut [f32; PERIOD * PERIOD] = fold.as_mut_slice().try_into().expect("one period");
        for (y, row) in self.residual.chunks_exact(w).enumerate() {
            let dy = y as f64 - f64::from(cy);
            let (mut u, mut v) = (
                fixed(f64::from(a) * -f64::from(cx) + f64::from(b) * dy),
                fixed(f64::from(c) * -f64::from(cx) + f64::from(d) * dy),
            );
            for r in row {
                let (iu, iv) = ((u >> 32) as usize & (PERIOD - 1), (v >> 32) as usize & (PERIOD - 1));
                period[iv * PERIOD + iu] += r;
                u += du;
                v += dv;
            }
        }
        fold
    }

    /// The fold under `g`, cleaned of what repeats in the picture itself;
    /// `None` when the image is smaller than one period under `g`.
    fn fold_cleaned(&self, g: &Geometry) -> Option<Fold> {
        let (sw, sh) = (self.w as f32 * g.scale(), self.h as f32 * g.scale());
        if sw < PERIOD as f32 || sh < PERIOD as f32 {
            return None;
        }
        // At a rescaling, received textures no longer repeat in whole
        // marked pixels, and a shrunk image fills only some of the fold.
        Some(Fold::new(self.fold(g), g.scale() < 1.25, true))
    }
}

/// The real or the imaginary part of a packed correlation.
type Part = fn(&Complex32) -> f32;

/// The largest real part and the largest imaginary part over `values`
/// (the two correlations a packed transform holds), in one pass.
fn largest_parts(values: &[Complex32]) -> (f32, f32) {
    // By lanes, which vectorises. Taking each part through a function
    // pointer, as this did, cost an indirect call per value: 4% of
    // unmarked detection's instructions.
    let (mut re, mut im) = ([f32::MIN; 8], [f32::MIN; 8]);
    for chunk in values.chunks_exact(8) {
        for (i, v) in chunk.iter().enumerate() {
            if v.re > re[i] {
                re[i] = v.re;
            }
            if v.im > im[i] {
                im[i] = v.im;
            }
        }
    }
    let rest = values.chunks_exact(8).remainder();
    let largest = |lanes: [f32; 8], part: Part| rest.iter().map(part).chain(lanes).fold(f32::MIN, f32::max);
    (largest(re, |c| c.re), largest(im, |c| c.im))
}

/// Per place of a period, the sum of the CHIP×CHIP block starting there,
/// wrapping around the torus: across each row, then down each column.
fn block_sums(values: &[f32]) -> Vec<f32> {
    const WRAP: usize = PERIOD - 1;
    let mut across = vec![0.0f32; PERIOD * PERIOD];
    for (row, out) in values.chunks_exact(PERIOD).zip(across.chunks_exact_mut(PERIOD)) {
        for (x, o) in out.iter_mut().enumerate() {
            *o = (0..CHIP).map(|i| row[(x + i) & WRAP]).sum();
        }
    }
    let mut sums = vec![0.0f32; PERIOD * PERIOD];
    for y in 0..PERIOD {
        for j in 0..CHIP {
            let from = &across[((y + j) & WRAP) * PERIOD..][..PERIOD];
            sums[y * PERIOD..][..PERIOD].iter_mut().zip(from).for_each(|(s, v)| *s += v);
        }
    }
    sums
}

/// Where one sync variant correlates best with a fold.
struct SyncPeak {
    variant: usize,
    turn: usize,
    offset: (usize, usize),
    value: f32,
}

/// One period of the marked image's pattern as read from a received image,
/// and its spectrum.
struct Fold {
    /// Per place of the fold, the sum of the CHIP×CHIP block of it that
    /// starts there (on the torus): what one cell of the mark reads,
    /// wherever a cell lands. Soft bits are read from these, a value per
    /// cell rather than per pixel.
    cells: Vec<f32>,
    /// The whole spectrum, by rows: the sync search reads it turned,
    /// which is a plain gather from the whole but not from the half.
    spectrum: Vec<Complex32>,
}

impl Fold {
    /// Cleans a raw fold: takes out short periods (when the image is
    /// about its marked size) and clips the strongest frequencies.
    fn new(mut fold: Vec<f32>, short_periods: bool, clip: bool) -> Fold {
        if short_periods {
            remove_short_periods(&mut fold);
        }
        let mut spectrum = HalfSpectrum::of(&mut fold, PERIOD, PERIOD);
        if clip {
            clip_spectral_peaks(&mut spectrum);
        }
        let n = (PERIOD * PERIOD) as f32;
        let mut values = spectrum.inverse();
        values.iter_mut().for_each(|v| *v /= n);
        let spectrum = (0..PERIOD * PERIOD).map(|i| spectrum.at(i % PERIOD, i / PERIOD)).collect();
        let cells = block_sums(&values);
        Fold { cells, spectrum }
    }

    /// For each sync variant, the turn (an index into [`TURNS`]) and
    /// offset at which it correlates best: C(d) = Σ_p fold(m·(p + d)) ·
    /// sync(p) over the torus, for each turn m. Strongest first. A turned
    /// fold's spectrum is the spectrum turned the same way (m is
    /// orthogonal), so each turn of each variant costs one inverse FFT.
    fn sync_peaks(&self, pattern: &Pattern) -> Vec<SyncPeak> {
        let mut peaks: Vec<SyncPeak> =
            (0..SYNC_VARIANTS).map(|variant| SyncPeak { variant, turn: 0, offset: (0, 0), value: f32::MIN }).collect();
        // Each correlation is real (its spectrum is Hermitian), so two
        // share one inverse FFT: the first as the real part, the second as
        // the imaginary part. The two turned spectra are packed once and
        // serve every variant.
        // One buffer serves every product and its transform.
        let mut corr = Vec::with_capacity(PERIOD * PERIOD);
        for pair in (0..TURNS.len()).step_by(2) {
            let packed: Vec<Complex32> = turned(pair)
                .iter()
                .zip(turned(pair + 1))
                .map(|(&i, &j)| {
                    let (a, b) = (self.spectrum[usize::from(i)], self.spectrum[usize::from(j)]);
                    Complex32::new(a.re - b.im, a.im + b.re)
                })
                .collect();
            for (best, sync_conj) in peaks.iter_mut().zip(&pattern.sync_conj) {
                corr.clear();
                corr.extend(packed.iter().zip(sync_conj).map(|(p, s)| p * s));
                // Transposed: the correlation at offset (x, y) is at x·PERIOD + y.
                fft2_transposed(&mut corr, PERIOD, true);
                let (re, im) = largest_parts(&corr);
                let parts: [(usize, f32, Part); 2] = [(pair, re, |c| c.re), (pair + 1, im, |c| c.im)];
                for (turn, max, part) in parts {
                    // The place is looked for only when it is needed (the
                    // first, if several tie).
                    if max > best.value {
                        let at = corr.iter().position(|c| part(c) == max).expect("the largest is there");
                        best.turn = turn;
                        best.offset = (at / PERIOD, at % PERIOD);
                        best.value = max;
                    }
                }
            }
        }
        peaks.sort_by(|a, b| b.value.total_cmp(&a.value));
        peaks
    }

    /// One soft value per coded bit, read with the fold turned by turn `t`
    /// of [`TURNS`] and moved by `offset`.
    fn soft_bits(&self, pattern: &Pattern, t: usize, (dx, dy): (usize, usize)) -> Vec<f32> {
        const WRAP: usize = PERIOD - 1;
        // The turn is linear, m·(p + d) = m·p + m·d: the offset moves
        // every cell's block alike.
        let (ox, oy) = turn(&TURNS[t], dx, dy);
        let cells: &[f32; PERIOD * PERIOD] = self.cells.as_slice().try_into().expect("one value per place");
        pattern.corner_by_bit[t]
            .iter()
            .zip(&pattern.sign_by_bit)
            .map(|(corners, signs)| {
                // Summed in cell order, as every bit's cells always were
                // (the padding adds zeros last).
                let mut sum = 0.0f32;
                for (&(x, y), sign) in corners.iter().zip(signs) {
                    let (x, y) = ((usize::from(x) + ox) & WRAP, (usize::from(y) + oy) & WRAP);
                    sum += sign * cells[y * PERIOD + x];
                }
                sum
            })
            .collect()
    }
}

/// Periods up to this (in received pixels, along either axis) are taken
/// out of the fold.
const SHORT_PERIOD: usize = 8;

/// Removes from the fold what repeats every [`SHORT_PERIOD`] pixels along
/// a row or a column. A texture with a short period (a halftone screen,
/// dithering, a JPEG grid) does not average out when folded: any period
/// sharing a factor of 2 with 128 piles up coherently, and drowns the
/// mark. The pattern itself has little there (its cells are random), so
/// this costs it about an eighth of its energy.
fn remove_short_periods(fold: &mut [f32]) {
    let n = PERIOD;
    for v in 0..n {
        let row = &mut fold[v * n..(v + 1) * n];
        let mut mean = [0.0f32; SHORT_PERIOD];
        for (u, x) in row.iter().enumerate() {
            mean[u % SHORT_PERIOD] += x;
        }
        for (u, x) in row.iter_mut().enumerate() {
            *x -= mean[u % SHORT_PERIOD] * SHORT_PERIOD as f32 / n as f32;
        }
    }
    for u in 0..n {
        let mut mean = [0.0f32; SHORT_PERIOD];
        for v in 0..n {
            mean[v % SHORT_PERIOD] += fold[v * n + u];
        }
        for v in 0..n {
            fold[v * n + u] -= mean[v % SHORT_PERIOD] * SHORT_PERIOD as f32 / n as f32;
        }
    }
}

/// How far above the fold's median spectral magnitude a frequency may
/// stand before it is clipped.
const PEAK_CLIP: f32 = 4.0;

/// Clips the strongest frequencies of the fold's spectrum to
/// [`PEAK_CLIP`] times the median magnitude. Periodic textures (halftone
/// screens, patterns, stripes) fold into a few strong frequencies; the
/// mark is spread over all of them, so clipping the peaks takes the texture
/// out and leaves the mark.
fn clip_spectral_peaks(spectrum: &mut HalfSpectrum) {
    // The median over the whole spectrum: each stored frequency counted
    // as often as it occurs there.
    let mut mags: Vec<f32> = Vec::with_capacity(spectrum.n * spectrum.n);
    for (i, c) in spectrum.values.iter().enumerate() {
        let m = magnitude(c);
        mags.extend(std::iter::repeat_n(m, spectrum.multiplicity(i)));
    }
    let mid = mags.len() / 2;
    let limit = PEAK_CLIP * *mags.select_nth_unstable_by(mid, f32::total_cmp).1;
    if limit > 0.0 {
        for c in spectrum.values.iter_mut() {
            let m = magnitude(c);
            if m > limit {
                *c *= limit / m;
            }
        }
    }
}

/// Most geometry hypotheses decoded per image: as received, up to
/// 2 estimated ones (`LATTICE_CANDIDATES`), and the fixed rescalings.
pub const MAX_HYPOTHESES: usize = 1 + LATTICE_CANDIDATES + FALLBACK_SCALES.len();

/// Most decodings per image: under each hypothesis, one per sync variant
/// at its peak and up to [`WIDE_AROUND`] around each, and the anchored
/// reads (one per turn). What the false-positive bound counts.
pub const MAX_DECODES: usize = MAX_HYPOTHESES * (SYNC_VARIANTS * (1 + WIDE_AROUND) + TURNS.len());
const _: () = assert!(MAX_DECODES as f64 <= 1e-9 * (1u64 << code::TAG_BITS) as f64);

/// From this rescaling on (received → marked), the places up to
/// [`WIDE_REACH`] pixels around a peak are read, not only its eight
/// neighbours.
const WIDE_SCALE: f32 = 1.5;
const WIDE_REACH: i32 = 2;
/// Places read around a sync peak that does not decode, at the widest: a
/// square of that reach but its centre.
const WIDE_AROUND: usize = (2 * WIDE_REACH as usize + 1).pow(2) - 1;

/// Estimated geometries tried per image.
const LATTICE_CANDIDATES: usize = 2;

/// The rescalings (received → marked) the detector reads: from an image
/// upscaled a little over 2x to one shrunk to a little under a quarter.
const MIN_SCALE: f32 = 0.45;
const MAX_SCALE: f32 = 4.5;

/// Estimates how the image was scaled and rotated since marking, from the
/// pattern's own repetition: the residual's autocorrelation peaks on the
/// lattice of the 128-px period, moved by the same scale and rotation.
/// Finds the strongest peaks near the axes, then fits the lattice to every
/// peak it predicts, for sub-pixel precision.
fn estimate_geometry(residual: &[f32], w: usize, h: usize) -> Vec<Geometry> {
    let side = w.min(h);
    if side < PERIOD / 2 {
        return Vec::new();
    }
    // The largest square window from the centre, at most 512 px, its side
    // a multiple of 16 (sizes the FFT handles fast).
    let n = side.min(512) / 16 * 16;
    // A small window is padded with zeros to twice its side, so that its
    // autocorrelation reaches lags up to 3/4 of the window rather than
    // half of it (1.5 times was measured too: cheaper, but it lost images
    // to the wrap-around): a small image shrunk since marking may hold a period
    // longer than half its side.
    let m = if n < 384 { 2 * n } else { n };
    let (x0, y0) = ((w - n) / 2, (h - n) / 2);
    let mut window = vec![0.0f32; m * m];
    for y in 0..n {
        window[y * m..y * m + n].copy_from_slice(&residual[(y0 + y) * w + x0..][..n]);
    }
    // Rows past the n-th are zeros, and so is their transform.
    let mut spectrum = HalfSpectrum::of(&mut window, m, n);
    // Whitened (|F| instead of |F|²): sharper peaks, the picture's own
    // low-frequency energy counts less. (Clipping its strongest
    // frequencies, as the fold's are, was measured: it freed the text-like
    // image at small rotations but lost flat images to aspect changes,
    // whose strongest frequencies are the pattern's own.)
    spectrum.values.iter_mut().for_each(|c| *c = Complex32::new(magnitude(c), 0.0));
    let acf = spectrum.inverse();
    // Every lag asked for lies within the window's side, so wrapping a
    // negative lag is one add (a division, as `rem_euclid`, cost 6% of
    // the estimate).
    let wrap = |d: i64| {
        debug_assert!(d.unsigned_abs() < m as u64);
        (if d < 0 { d + m as i64 } else { d }) as usize
    };
    let at = |dx: i64, dy: i64| acf[wrap(dy) * m + wrap(dx)];
    // Padded to twice its side, the autocorrelation no longer wraps; past
    // 3/4 of the side the window overlaps itself too little to trust.
    let half = if m > n { n as i64 * 3 / 4 } else { n as i64 / 2 - 2 };
    // Lattice vectors of the period as received at any scale the detector
    // reads (within the window): local maxima of the autocorrelation over
    // a half plane (it is symmetric).
    let (r_min, r_max) = (PERIOD as f32 / MAX_SCALE, (PERIOD as f32 / MIN_SCALE).min(half as f32));
    let mut peaks: Vec<(f32, i64, i64)> = Vec::new();
    for dy in -half..=half {
        for dx in 0..=half {
            if dx == 0 && dy <= 0 {
                continue;
            }
            let r = ((dx * dx + dy * dy) as f32).sqrt();
            if r < r_min || r > r_max {
                continue;
            }
            let v = at(dx, dy);
            if (-1..=1).all(|j| (-1..=1).all(|i| (i == 0 && j == 0) || at(dx + i, dy + j) <= v)) {
                peaks.push((v, dx, dy));
            }
        }
    }
    peaks.sort_by(|a, b| b.0.total_cmp(&a.0));
    // The first lattice vector within 25 degrees of the x axis; the second
    // near its perpendicular, 0.7 to 1.45 times as long (the aspect ratio
    // may have changed).
    let near_x = |p: &&(f32, i64, i64)| (p.2.abs() as f32) <= p.1 as f32 * 0.47;
    let mut out = Vec::new();
    for &(v, dx, dy) in peaks.iter().filter(near_x).take(LATTICE_CANDIDATES * 3) {
        // A multiple of the period peaks too: prefer the fundamental, when
        // every multiple of it up to this peak, and the next one, peak as
        // well (those inside the window). A picture's own texture often
        // peaks near a third or a half of the true period; checking only
        // there took it for the fundamental, and lost chelsea rotated by
        // 10 degrees and enlarged 1.5x, and coffee after the re-share chain.
        let (mut fx, mut fy) = (dx as f32, dy as f32);
        for k in [3.0f32, 2.0] {
            let (qx, qy) = (dx as f32 / k, dy as f32 / k);
            if (qx * qx + qy * qy).sqrt() >= r_min {
                let strong = |j: f32| local_max(&at, (qx * j).round() as i64, (qy * j).round() as i64, 1).2 >= 0.5 * v;
                let (px, py, _) = local_max(&at, qx.round() as i64, qy.round() as i64, 1);
                let inside = |j: f32| (qx * j).abs().max((qy * j).abs()) <= half as f32 - 2.0;
                let k = k as i64;
                if (1..=k + 1).filter(|&j| j != k).all(|j| !inside(j as f32) || strong(j as f32)) {
                    (fx, fy) = (px as f32, py as f32);
                    break;
                }
            }
        }
        let len = (fx * fx + fy * fy).sqrt();
        // The perpendicular, on the half plane the peaks were taken from.
        let (ux, uy) = if fy > 0.0 { (fy / len, -fx / len) } else { (-fy / len, fx / len) };
        let qualifies = |q: &&(f32, i64, i64)| {
            let (qx, qy) = (q.1 as f32, q.2 as f32);
            let ql = (qx * qx + qy * qy).sqrt();
            (0.7..=1.45).contains(&(ql / len)) && (qx * ux + qy * uy) / ql >= 0.906
        };
        // The second lattice vector: the two strongest peaks there, and the
        // quarter turn of the first, each fitted; the lattice whose
        // predicted peaks are strongest wins. (Taking the strongest peak
        // alone let the text-like graphic's own lattice supply it.)
        let seconds = peaks.iter().filter(qualifies).take(2).map(|q| (q.1 as f32, q.2 as f32));
        let fits: Vec<Option<(Geometry, f32)>> =
            seconds.chain([(-fy, fx)]).map(|p2| fit_lattice(&at, (fx, fy), p2, half)).collect();
        // The square lattice on the first vector: the quarter turn's fit.
        let square = fits.last().copied().flatten().map(|(g, _)| g);
        let fitted = fits
            .iter()
            .flatten()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|&(g, _)| g)
            // A lattice no edit makes (mirrored, or its vectors 15 degrees
            // or more from square) took its second vector from the
            // picture's own lattice (text lines, say): the square one is
            // taken instead.
            .and_then(|g| if g.could_be_an_edit() { Some(g) } else { square });
        if let Some(g) = fitted {
            if !out.iter().any(|o: &Geometry| o.close_to(&g)) {
                out.push(g);
            }
        }
        if out.len() == LATTICE_CANDIDATES {
            break;
        }
    }
    out
}

/// The strongest autocorrelation value within `r` of (x, y).
fn local_max(at: &impl Fn(i64, i64) -> f32, x: i64, y: i64, r: i64) -> (i64, i64, f32) {
    let mut best = (x, y, f32::MIN);
    for j in -r..=r {
        for i in -r..=r {
            let v = at(x + i, y + j);
            if v > best.2 {
                best = (x + i, y + j, v);
            }
        }
    }
    best
}

/// Fits the lattice spanned by `p1` and `p2` (near its perpendicular) to every peak it
/// predicts inside the window (weighted least squares on sub-pixel peak
/// positions), and returns the map from received to marked coordinates,
/// with how strongly the predicted places peak (their mean
/// autocorrelation): a lattice that is not the pattern's predicts places
/// that do not peak.
fn fit_lattice(at: &impl Fn(i64, i64) -> f32, p1: (f32, f32), p2: (f32, f32), half: i64) -> Option<(Geometry, f32)> {
    let (px, py, _) = local_max(at, p2.0.round() as i64, p2.1.round() as i64, 3);
    let p2 = (px as f32, py as f32);
    // Σ w q iᵀ and Σ w i iᵀ, over lattice indices i = (i, j).
    let (mut qi, mut ii) = ([0.0f32; 4], [0.0f32; 4]);
    let (mut total, mut points) = (0.0f32, 0usize);
    for j in -4i32..=4 {
        for i in -4i32..=4 {
            if i == 0 && j == 0 {
                continue;
            }
            let (ex, ey) = (i as f32 * p1.0 + j as f32 * p2.0, i as f32 * p1.1 + j as f32 * p2.1);
            if ex.abs() > half as f32 - 2.0 || ey.abs() > half as f32 - 2.0 {
                continue;
            }
            let (mx, my, v) = local_max(at, ex.round() as i64, ey.round() as i64, 2);
            points += 1;
            total += v.max(0.0);
            if v <= 0.0 {
                continue;
            }
            // Parabolic sub-pixel refinement on each axis.
            let sub = |m: f32, l: f32, r: f32| {
                let den = l - 2.0 * m + r;
                if den < 0.0 {
                    (0.5 * (l - r) / den).clamp(-0.5, 0.5)
                } else {
                    0.0
                }
            };
            let qx = mx as f32 + sub(v, at(mx - 1, my), at(mx + 1, my));
            let qy = my as f32 + sub(v, at(mx, my - 1), at(mx, my + 1));
            let (fi, fj) = (i as f32, j as f32);
            qi[0] += v * qx * fi;
            qi[1] += v * qx * fj;
            qi[2] += v * qy * fi;
            qi[3] += v * qy * fj;
            ii[0] += v * fi * fi;
            ii[1] += v * fi * fj;
            ii[3] += v * fj * fj;
        }
    }
    ii[2] = ii[1];
    // A = QI · II⁻¹: the columns are the lattice vectors in received pixels.
    let det = ii[0] * ii[3] - ii[1] * ii[2];
    if det.abs() < 1e-6 {
        return None;
    }
    let inv = [ii[3] / det, -ii[1] / det, -ii[2] / det, ii[0] / det];
    let a = [
        qi[0] * inv[0] + qi[1] * inv[2],
        qi[0] * inv[1] + qi[1] * inv[3],
        qi[2] * inv[0] + qi[3] * inv[2],
        qi[2] * inv[1] + qi[3] * inv[3],
    ];
    // Received = A/PERIOD · marked, so marked = PERIOD · A⁻¹ · received.
    let det_a = a[0] * a[3] - a[1] * a[2];
    if det_a.abs() < 1e-3 {
        return None;
    }
    let p = PERIOD as f32;
    Some((
        Geometry([p * a[3] / det_a, -p * a[1] / det_a, -p * a[2] / det_a, p * a[0] / det_a]),
        total / points.max(1) as f32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(*b"likeness watermark unit key 0001")
    }

    /// A textured picture, cropped off its corner after marking so that
    /// only the sync can place the read.
    fn marked_and_cropped(payload: &[u8; 8], sync_variant: usize) -> RgbImage {
        let mut img = RgbImage::from_fn(520, 390, |x, y| {
            let v = ((x * 7 + y * 13) % 61 + (x * y) % 37 + 80) as u8;
            image::Rgb([v, v.wrapping_add(20), 255 - v])
        });
        let pattern = Pattern::new(&key());
        let coded = code::encode(&code::data_bits(payload, &key().0));
        let mask = activity_mask(&img);
        let gains = vec![1.0; code::CODED_BITS];
        embed_with_gains(&mut img, &pattern, &pattern.sync[sync_variant], &coded, &mask, 1.0, &gains);
        image::imageops::crop_imm(&img, 45, 31, 400, 300).to_image()
    }

    fn payload_of_variant(v: usize) -> [u8; 8] {
        (0u64..).map(|i| i.to_be_bytes()).find(|p| code::sync_variant(p, &key().0, SYNC_VARIANTS) == v).unwrap()
    }

    #[test]
    fn every_sync_variant_is_read_from_a_crop() {
        for v in 0..SYNC_VARIANTS {
            let payload = payload_of_variant(v);
            let found = detect(&marked_and_cropped(&payload, v), &key()).map(|d| d.payload);
            assert_eq!(found, Some(payload), "variant {v}");
        }
    }

    #[test]
    fn marks_from_before_the_variants_still_read() {
        // Then every mark carried the first sync, whatever its payload.
        let payload = payload_of_variant(SYNC_VARIANTS - 1);
        assert_eq!(detect(&marked_and_cropped(&payload, 0), &key()).map(|d| d.payload), Some(payload));
    }

    #[test]
    fn only_geometries_an_edit_could_make_are_taken_from_the_lattice_fit() {
        let turned = |deg: f32, sx: f32, sy: f32| {
            let (s, c) = deg.to_radians().sin_cos();
            Geometry([c * sx, s * sx, -s * sy, c * sy])
        };
        for (g, edit) in [
            (Geometry::IDENTITY, true),
            (turned(10.0, 1.0, 1.0), true),
            (turned(-10.0, 2.0, 2.0), true),
            (turned(10.0, 1.25, 1.0), true),
            (turned(-3.0, 0.8, 1.0), true),
            // A mirror (the turns read those) and a lattice skewed by 20 degrees.
            (Geometry([1.0, 0.0, 0.0, -1.0]), false),
            (Geometry([1.0, 0.36, 0.0, 1.0]), false),
            // What the text-like graphic turned by 2 degrees gave.
            (Geometry([1.0, 0.011, 0.027, -0.80]), false),
        ] {
            assert_eq!(g.could_be_an_edit(), edit, "{g:?}");
        }
    }

    #[test]
    fn corner_reads_of_the_image_as_received_start_at_its_corners() {
        // Before corner reads were tried under every hypothesis, the
        // image as received computed them directly: minus the marked
        // coordinates of its first pixel, whole marked images turned or
        // mirrored by the inverse of m. The general map must agree.
        for (w, h) in [(512, 512), (800, 600), (451, 300), (130, 1000)] {
            let received = Received { residual: Vec::new(), w, h };
            for m in &TURNS {
                let a = [m[0], m[2], m[1], m[3]];
                let corner = |first: i32, second: i32| -> i64 {
                    if first < 0 {
                        w as i64 - 1
                    } else if second < 0 {
                        h as i64 - 1
                    } else {
                        0
                    }
                };
                let (tx, ty) = (corner(a[0], a[1]), corner(a[2], a[3]));
                let p = PERIOD as i64;
                let direct = ((-tx).rem_euclid(p) as usize, (-ty).rem_euclid(p) as usize);
                assert_eq!(received.anchored_offset(&Geometry::IDENTITY, m), direct, "{w}x{h}, {m:?}");
            }
        }
    }

    #[test]
    fn a_sync_found_must_carry_its_own_payloads() {
        // A read placed by any sync but the first is accepted only with a
        // payload of that sync's variant: a sync found by chance must also
        // meet the payload's keyed hash.
        let payload = payload_of_variant(1);
        assert_eq!(detect(&marked_and_cropped(&payload, 2), &key()), None);
    }
}
