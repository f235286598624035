//! The payload's error correction: a keyed 40-bit tag for detection, then
//! a rate-1/2 convolutional code (constraint length 7, the NASA polynomials
//! 171/133 octal) decoded with soft-decision Viterbi.

use sha2::{Digest, Sha256};

/// Bits of the keyed tag. Random bits match it with probability 2^-40, so
/// the detector may decode up to about a thousand times per image and keep
/// its false-positive bound under 1e-9 (see the crate docs).
pub const TAG_BITS: usize = 40;
/// Data bits: the 64-bit payload plus its tag.
pub const DATA_BITS: usize = 64 + TAG_BITS;
const K: usize = 7;
const TAIL: usize = K - 1;
/// Coded bits carried by the pattern.
pub const CODED_BITS: usize = 2 * (DATA_BITS + TAIL);
const G0: u32 = 0o171;
const G1: u32 = 0o133;

fn parity(x: u32) -> f32 {
    if x.count_ones().is_multiple_of(2) {
        1.0
    } else {
        -1.0
    }
}

/// The tag: the first 40 bits of SHA-256 over a label, the key and the
/// payload. Keyed, so that without the key nobody can write a payload the
/// detector accepts (copying a whole mark is another matter; see the crate
/// docs).
fn tag(payload: &[u8; 8], key: &[u8; 32]) -> [u8; TAG_BITS / 8] {
    keyed_hash(b"likeness watermark v2 tag", payload, key)[..TAG_BITS / 8]
        .try_into()
        .expect("a SHA-256 digest is longer than the tag")
}

/// SHA-256 over a label, the key and the payload: what the tag and the
/// sync variant are cut from, each under its own label.
fn keyed_hash(label: &[u8], payload: &[u8; 8], key: &[u8; 32]) -> [u8; 32] {
    Sha256::new().chain_update(label).chain_update(key).chain_update(payload).finalize().into()
}

/// Which of `variants` sync patterns a payload's mark carries: a keyed
/// hash of the payload, like the tag but under its own label, so that
/// without the key nobody can tell from the payloads (which manifests
/// show) which outputs share a sync.
pub fn sync_variant(payload: &[u8; 8], key: &[u8; 32], variants: usize) -> usize {
    let digest = keyed_hash(b"likeness watermark v2 sync variant", payload, key);
    (u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest is longer than 8 bytes")) % variants as u64)
        as usize
}

/// The payload and its tag as bits, most significant first.
pub fn data_bits(payload: &[u8; 8], key: &[u8; 32]) -> Vec<u8> {
    let tag = tag(payload, key);
    payload.iter().chain(tag.iter()).flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect()
}

/// Encodes data bits to ±1 symbols (bit 0 → +1).
pub fn encode(bits: &[u8]) -> Vec<f32> {
    let mut state = 0u32;
    let mut out = Vec::with_capacity(2 * (bits.len() + TAIL));
    for &b in bits.iter().chain(std::iter::repeat_n(&0u8, TAIL)) {
        state = ((state << 1) | u32::from(b)) & ((1 << K) - 1);
        out.push(parity(state & G0));
        out.push(parity(state & G1));
    }
    out
}

/// Soft-decision Viterbi: `soft` holds one correlation per coded bit
/// (positive means +1). Returns the most likely data bits.
pub fn decode(soft: &[f32]) -> Vec<u8> {
    const STATES: usize = 1 << (K - 1);
    const HALF: usize = STATES / 2;
    // Both generators tap the newest and the oldest register bit, so the
    // two branches into state 2j + b (from j and from j + 32) emit
    // complementary symbols, and so do the branches out of one state for
    // b = 0 and 1: one gain per j decides a butterfly of four branches.
    // Per j, the signs of that gain's two symbols (a set parity bit is -1).
    const SIGNS: [[f32; HALF]; 2] = {
        let mut t = [[0.0f32; HALF]; 2];
        let mut j = 0;
        while j < HALF {
            let full = (2 * j) as u32;
            t[0][j] = if (full & G0).count_ones().is_multiple_of(2) { 1.0 } else { -1.0 };
            t[1][j] = if (full & G1).count_ones().is_multiple_of(2) { 1.0 } else { -1.0 };
            j += 1;
        }
        t
    };
    // Far below any reachable path (soft values are sums of pixel
    // values), and finite, so no step needs a test for unreachable states.
    const UNREACHED: f32 = -1e30;
    let steps = soft.len() / 2;
    let mut metric = [UNREACHED; STATES];
    metric[0] = 0.0;
    // Per step, which predecessor each state kept, as two masks: for the
    // even states 2j and the odd states 2j + 1, bit j set for the one
    // whose dropped bit is 1 (j + 32 rather than j). Each half is
    // computed apart, so the loop vectorises.
    let mut history: Vec<[u32; 2]> = Vec::with_capacity(steps);
    for pair in soft.chunks_exact(2) {
        let (s0, s1) = (pair[0], pair[1]);
        let (low, high) = metric.split_at(HALF);
        let (mut even, mut odd) = ([0.0f32; HALF], [0.0f32; HALF]);
        let mut kept = [0u32; 2];
        for j in 0..HALF {
            let gain = SIGNS[0][j] * s0 + SIGNS[1][j] * s1;
            let (from_low, from_high) = (low[j], high[j]);
            // A tie keeps the first (from j), as a scan of predecessors in
            // order would.
            let (a, b) = (from_low + gain, from_high - gain);
            even[j] = if b > a { b } else { a };
            kept[0] |= u32::from(b > a) << j;
            let (a, b) = (from_low - gain, from_high + gain);
            odd[j] = if b > a { b } else { a };
            kept[1] |= u32::from(b > a) << j;
        }
        for (j, pair) in metric.chunks_exact_mut(2).enumerate() {
            pair[0] = even[j];
            pair[1] = odd[j];
        }
        history.push(kept);
    }
    // The tail drives the encoder back to state 0.
    let mut state = 0usize;
    let mut bits = vec![0u8; steps];
    for t in (0..steps).rev() {
        bits[t] = (state & 1) as u8;
        let top = ((history[t][state & 1] >> (state >> 1)) & 1) as usize;
        state = (state >> 1) | (top << (K - 2));
    }
    bits.truncate(steps.saturating_sub(TAIL));
    bits
}

/// The payload, if the tag over the decoded bits holds.
pub fn payload_if_valid(bits: &[u8], key: &[u8; 32]) -> Option<[u8; 8]> {
    if bits.len() != DATA_BITS {
        return None;
    }
    let mut bytes = [0u8; DATA_BITS / 8];
    for (i, b) in bits.iter().enumerate() {
        bytes[i / 8] |= b << (7 - i % 8);
    }
    let payload: [u8; 8] = bytes[..8].try_into().ok()?;
    (tag(&payload, key)[..] == bytes[8..]).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_noise() {
        let payload = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67];
        let key = [3u8; 32];
        let bits = data_bits(&payload, &key);
        let coded = encode(&bits);
        assert_eq!(coded.len(), CODED_BITS);
        assert_eq!(payload_if_valid(&decode(&coded), &key), Some(payload));
        // Another key's tag does not hold.
        assert_eq!(payload_if_valid(&decode(&coded), &[4u8; 32]), None);
        // Flip a tenth of the symbols, spread out: still decoded.
        let noisy: Vec<f32> = coded.iter().enumerate().map(|(i, s)| if i % 10 == 3 { -s } else { *s }).collect();
        assert_eq!(payload_if_valid(&decode(&noisy), &key), Some(payload));
        // Heavier noise, against a plain reading of Viterbi's algorithm.
        let mut x = 12345u32;
        for _ in 0..50 {
            let noisy: Vec<f32> = coded
                .iter()
                .map(|s| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    s + ((x >> 8) as f32 / (1 << 24) as f32 - 0.5) * 4.0
                })
                .collect();
            assert_eq!(decode(&noisy), plain_viterbi(&noisy));
        }
        // A corrupted bit is caught.
        let mut wrong = decode(&coded);
        wrong[3] ^= 1;
        assert_eq!(payload_if_valid(&wrong, &key), None);
    }

    /// Viterbi as the textbook puts it: every path into every state, kept
    /// if it is the best so far. Slow and plain, what `decode` must equal.
    fn plain_viterbi(soft: &[f32]) -> Vec<u8> {
        let states = 1usize << (K - 1);
        let mut paths: Vec<Option<(f32, Vec<u8>)>> = vec![None; states];
        paths[0] = Some((0.0, Vec::new()));
        for pair in soft.chunks_exact(2) {
            let mut next: Vec<Option<(f32, Vec<u8>)>> = vec![None; states];
            for (prev, path) in paths.iter().enumerate() {
                let Some((metric, bits)) = path else { continue };
                for b in 0..2u8 {
                    let full = ((prev << 1) | usize::from(b)) as u32;
                    let gain = parity(full & G0) * pair[0] + parity(full & G1) * pair[1];
                    let ns = full as usize & (states - 1);
                    if next[ns].as_ref().is_none_or(|(m, _)| metric + gain > *m) {
                        let mut bits = bits.clone();
                        bits.push(b);
                        next[ns] = Some((metric + gain, bits));
                    }
                }
            }
            paths = next;
        }
        let mut bits = paths[0].take().expect("state 0 is reached").1;
        bits.truncate(bits.len() - TAIL);
        bits
    }
}
