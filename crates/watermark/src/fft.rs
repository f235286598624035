//! Two-dimensional FFTs of square arrays stored by rows, with the plans
//! cached per thread. What detection transforms is mostly real (folds,
//! the lattice estimate's window, their autocorrelations), and a real
//! array's spectrum is Hermitian: half of it says everything, at about
//! half the cost of a complex transform.

use std::cell::RefCell;
use std::sync::Arc;

use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

thread_local! {
    // Planning anew on every call cost more than the small transforms
    // themselves; the planners cache their plans.
    static COMPLEX: RefCell<FftPlanner<f32>> = RefCell::new(FftPlanner::new());
    static REAL: RefCell<RealFftPlanner<f32>> = RefCell::new(RealFftPlanner::new());
}

fn complex_plan(n: usize, inverse: bool) -> Arc<dyn Fft<f32>> {
    COMPLEX.with(|p| {
        let mut planner = p.borrow_mut();
        if inverse {
            planner.plan_fft_inverse(n)
        } else {
            planner.plan_fft_forward(n)
        }
    })
}

/// Transforms every length-`n` row of `data` in one call, with one scratch
/// buffer (`process` would allocate one per call).
fn rows(data: &mut [Complex32], n: usize, inverse: bool) {
    let fft = complex_plan(n, inverse);
    let mut scratch = vec![Complex32::new(0.0, 0.0); fft.get_inplace_scratch_len()];
    fft.process_with_scratch(data, &mut scratch);
}

/// 2-D FFT of a complex `n`×`n` array (unnormalised).
pub(crate) fn fft2(mut data: Vec<Complex32>, n: usize, inverse: bool) -> Vec<Complex32> {
    fft2_transposed(&mut data, n, inverse);
    transpose_square(&mut data, n);
    data
}

/// [`fft2`] in place, left transposed: (kx, ky) at `kx * n + ky`. For
/// callers that only search it, which can swap the coordinates instead.
pub(crate) fn fft2_transposed(data: &mut [Complex32], n: usize, inverse: bool) {
    rows(data, n, inverse);
    // The columns, as the rows of the transpose.
    transpose_square(data, n);
    rows(data, n, inverse);
}

/// The spectrum of a real `n`×`n` array: only the columns `kx` = 0 to
/// n/2, the others being the conjugates of these mirrored
/// (F(−k) = F(k)*). Stored by column: (kx, ky) at `kx * n + ky`.
pub(crate) struct HalfSpectrum {
    pub(crate) n: usize,
    pub(crate) values: Vec<Complex32>,
}

impl HalfSpectrum {
    /// The spectrum of the real `n`×`n` array `data`, whose rows from
    /// `nonzero_rows` on are zeros (their transforms are skipped). `data`
    /// is used as scratch.
    pub(crate) fn of(data: &mut [f32], n: usize, nonzero_rows: usize) -> HalfSpectrum {
        assert!(n.is_multiple_of(2) && data.len() == n * n && nonzero_rows <= n);
        let h = n / 2 + 1;
        let r2c: Arc<dyn RealToComplex<f32>> = REAL.with(|p| p.borrow_mut().plan_fft_forward(n));
        let mut scratch = r2c.make_scratch_vec();
        let mut half_rows = vec![Complex32::new(0.0, 0.0); nonzero_rows * h];
        for (row, out) in data.chunks_exact_mut(n).zip(half_rows.chunks_exact_mut(h)) {
            r2c.process_with_scratch(row, out, &mut scratch).expect("lengths match the plan");
        }
        // Each column, zero-padded below the nonzero rows, as a row of
        // the transpose.
        let mut values = transpose(&half_rows, nonzero_rows, h, n);
        rows(&mut values, n, false);
        HalfSpectrum { n, values }
    }

    /// F(kx, ky) for any frequency of the full spectrum.
    #[inline]
    pub(crate) fn at(&self, kx: usize, ky: usize) -> Complex32 {
        let n = self.n;
        if kx <= n / 2 {
            self.values[kx * n + ky]
        } else {
            self.values[(n - kx) * n + (n - ky) % n].conj()
        }
    }

    /// How many frequencies of the full spectrum each stored one stands
    /// for: columns 0 and n/2 once, the others twice (themselves and
    /// their mirror).
    pub(crate) fn multiplicity(&self, index: usize) -> usize {
        let kx = index / self.n;
        if kx == 0 || kx == self.n / 2 {
            1
        } else {
            2
        }
    }

    /// The real array this is the spectrum of, times n² (unnormalised,
    /// like the complex inverse).
    pub(crate) fn inverse(&self) -> Vec<f32> {
        let (n, h) = (self.n, self.n / 2 + 1);
        let mut columns = self.values.clone();
        rows(&mut columns, n, true);
        let mut half_rows = transpose(&columns, h, n, h);
        let c2r: Arc<dyn ComplexToReal<f32>> = REAL.with(|p| p.borrow_mut().plan_fft_inverse(n));
        let mut scratch = c2r.make_scratch_vec();
        let mut out = vec![0.0f32; n * n];
        for (row, out) in half_rows.chunks_exact_mut(h).zip(out.chunks_exact_mut(n)) {
            // Real by symmetry; rounding may leave a trace that the
            // real transform would refuse.
            row[0].im = 0.0;
            row[h - 1].im = 0.0;
            c2r.process_with_scratch(row, out, &mut scratch).expect("lengths match the plan");
        }
        out
    }
}

/// |c|, without `hypot`'s care for overflow (these values are far from
/// it), which made it a tenth of the time spent on small unmarked images.
pub(crate) fn magnitude(c: &Complex32) -> f32 {
    c.norm_sqr().sqrt()
}

/// The transpose of a matrix of `rows` rows of `cols` values, stored by
/// rows, each of its rows padded with zeros to `width` (at least `rows`).
/// By tiles (see [`transpose_square_by_tiles`]), the edges past the last
/// whole tile one value at a time. (The plain column-by-column gather was
/// a sixth of detection's time on the lattice estimate's larger windows.)
fn transpose(data: &[Complex32], rows: usize, cols: usize, width: usize) -> Vec<Complex32> {
    debug_assert!(data.len() == rows * cols && width >= rows);
    let mut out = vec![Complex32::new(0.0, 0.0); cols * width];
    let (whole_rows, whole_cols) = (rows / TILE * TILE, cols / TILE * TILE);
    for r0 in (0..whole_rows).step_by(TILE) {
        for c0 in (0..whole_cols).step_by(TILE) {
            write_turned(&mut out, width, &read_tile(data, cols, r0, c0), c0, r0);
        }
    }
    for r in 0..rows {
        let first = if r < whole_rows { whole_cols } else { 0 };
        for c in first..cols {
            out[c * width + r] = data[r * cols + c];
        }
    }
    out
}

/// Transposes a square `n`×`n` matrix in place: by tiles when `n` is a
/// multiple of their side, otherwise in blocks that stay in cache.
fn transpose_square(data: &mut [Complex32], n: usize) {
    if n.is_multiple_of(TILE) {
        return transpose_square_by_tiles(data, n);
    }
    const BLOCK: usize = 16;
    for r0 in (0..n).step_by(BLOCK) {
        for c0 in (r0..n).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(n) {
                let first = if c0 == r0 { r + 1 } else { c0 };
                for c in first..(c0 + BLOCK).min(n) {
                    data.swap(r * n + c, c * n + r);
                }
            }
        }
    }
}

/// Side of the tiles the transposes move.
const TILE: usize = 8;

type Tile = [[Complex32; TILE]; TILE];

/// The tile whose top-left corner is at (`row`, `col`) of a matrix stored
/// by rows of `stride` values.
fn read_tile(data: &[Complex32], stride: usize, row: usize, col: usize) -> Tile {
    std::array::from_fn(|r| data[(row + r) * stride + col..][..TILE].try_into().expect("a tile's row"))
}

/// Writes `tile` turned (its rows as columns) with its top-left corner at
/// (`row`, `col`) of a matrix stored by rows of `stride` values.
fn write_turned(data: &mut [Complex32], stride: usize, tile: &Tile, row: usize, col: usize) {
    for c in 0..TILE {
        let out: &mut [Complex32; TILE] =
            (&mut data[(row + c) * stride + col..][..TILE]).try_into().expect("a tile's row");
        for (r, o) in out.iter_mut().enumerate() {
            *o = tile[r][c];
        }
    }
}

/// [`transpose_square`] for sides that are a multiple of [`TILE`]: each
/// pair of mirrored tiles is copied out whole and written back turned.
/// Fixed-size tiles leave no bounds to check inside them; swapping
/// element by element cost about four times the instructions, and the
/// sync search transposes sixteen times per hypothesis.
fn transpose_square_by_tiles(data: &mut [Complex32], n: usize) {
    for bi in (0..n).step_by(TILE) {
        for bj in (bi..n).step_by(TILE) {
            let a = read_tile(data, n, bi, bj);
            if bi != bj {
                let b = read_tile(data, n, bj, bi);
                write_turned(data, n, &b, bi, bj);
            }
            write_turned(data, n, &a, bj, bi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2-D transforms agree with the definition, F(kx, ky) =
    /// Σ f(x, y) e^(∓2πi(kx·x + ky·y)/n), on a size that is not a
    /// multiple of the transpose's blocks.
    #[test]
    fn fft2_is_the_dft() {
        let n = 20;
        let data: Vec<Complex32> =
            (0..n * n).map(|i| Complex32::new(((i * 31) % 17) as f32 - 8.0, ((i * 13) % 7) as f32 - 3.0)).collect();
        for inverse in [false, true] {
            let fast = fft2(data.clone(), n, inverse);
            let mut transposed = data.clone();
            fft2_transposed(&mut transposed, n, inverse);
            let sign = if inverse { 1.0 } else { -1.0 };
            for ky in 0..n {
                for kx in 0..n {
                    let mut sum = Complex32::new(0.0, 0.0);
                    for (i, v) in data.iter().enumerate() {
                        let phase = (kx * (i % n) + ky * (i / n)) % n;
                        sum += v * Complex32::from_polar(1.0, sign * std::f32::consts::TAU * phase as f32 / n as f32);
                    }
                    let (a, b) = (fast[ky * n + kx], transposed[kx * n + ky]);
                    assert!((a - sum).norm() < 1e-2 * (1.0 + sum.norm()), "({kx}, {ky}): {a} vs {sum}");
                    assert_eq!(a, b);
                }
            }
        }
    }

    /// Both ways of transposing in place agree with the definition, on
    /// sides that are and are not a multiple of the tiles.
    #[test]
    fn transposes_in_place() {
        for n in [20, 24, 128] {
            let data: Vec<Complex32> = (0..n * n).map(|i| Complex32::new(i as f32, -(i as f32))).collect();
            let mut turned = data.clone();
            transpose_square(&mut turned, n);
            for (i, v) in turned.iter().enumerate() {
                assert_eq!(*v, data[(i % n) * n + i / n], "{n}: {i}");
            }
        }
    }

    /// The padded transpose agrees with the definition, whole tiles or not.
    #[test]
    fn transposes_with_padding() {
        for (rows, cols, width) in [(30, 65, 128), (65, 128, 65), (16, 24, 20), (3, 5, 7)] {
            let data: Vec<Complex32> = (0..rows * cols).map(|i| Complex32::new(i as f32, 1.0)).collect();
            let out = transpose(&data, rows, cols, width);
            assert_eq!(out.len(), cols * width);
            for c in 0..cols {
                for r in 0..width {
                    let want = if r < rows { data[r * cols + c] } else { Complex32::new(0.0, 0.0) };
                    assert_eq!(out[c * width + r], want, "{rows}x{cols}/{width}: ({r}, {c})");
                }
            }
        }
    }

    /// The half spectrum agrees with the complex transform of the same
    /// array, everywhere, and transforms back to it.
    #[test]
    fn half_spectrum_is_the_complex_one() {
        let n = 48;
        let nonzero = 30;
        let real: Vec<f32> =
            (0..n * n).map(|i| if i / n < nonzero { ((i * 7919) % 101) as f32 - 50.0 } else { 0.0 }).collect();
        let full = fft2(real.iter().map(|&v| Complex32::new(v, 0.0)).collect(), n, false);
        let half = HalfSpectrum::of(&mut real.clone(), n, nonzero);
        for ky in 0..n {
            for kx in 0..n {
                let (a, b) = (full[ky * n + kx], half.at(kx, ky));
                assert!((a - b).norm() < 1e-2 * (1.0 + a.norm()), "({kx}, {ky}): {a} vs {b}");
            }
        }
        let counted: usize = (0..half.values.len()).map(|i| half.multiplicity(i)).sum();
        assert_eq!(counted, n * n);
        let back = half.inverse();
        for (a, b) in real.iter().zip(&back) {
            assert!((a - b / (n * n) as f32).abs() < 1e-3, "{a} vs {}", b / (n * n) as f32);
        }
    }
}
