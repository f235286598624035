//! Face embeddings at rest: sealed with ChaCha20-Poly1305 under a key the
//! operator gives, and bound to their subject and position, so a copied
//! database file or backup yields no embedding and a row moved to another
//! subject does not open. Rows written before a key existed (clear little-
//! endian f32s) still read; every new row is sealed.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;

use crate::StoreError;

/// What a sealed row starts with: the format's name and version.
const MAGIC: &[u8; 4] = b"LKE1";
const NONCE_BYTES: usize = 12;

/// The key embeddings are sealed with. Prints nothing of itself.
pub struct EmbeddingKey(ChaCha20Poly1305);

impl EmbeddingKey {
    pub fn new(key: &[u8; 32]) -> EmbeddingKey {
        EmbeddingKey(ChaCha20Poly1305::new(key.into()))
    }
}

impl std::fmt::Debug for EmbeddingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddingKey(..)")
    }
}

/// The row's identity, authenticated with it.
fn aad(subject: &str, position: i64) -> Vec<u8> {
    let mut aad = subject.as_bytes().to_vec();
    aad.push(0);
    aad.extend(position.to_le_bytes());
    aad
}

/// The bytes stored for an embedding: sealed when there is a key.
pub(crate) fn seal(key: Option<&EmbeddingKey>, subject: &str, position: i64, clear: &[u8]) -> Vec<u8> {
    let Some(key) = key else { return clear.to_vec() };
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = aad(subject, position);
    // Encryption into a Vec cannot fail for inputs this small.
    let sealed = key.0.encrypt(&Nonce::from(nonce), Payload { msg: clear, aad: &aad }).unwrap_or_default();
    [MAGIC.as_slice(), &nonce, &sealed].concat()
}

/// The clear bytes of a stored embedding.
pub(crate) fn open(
    key: Option<&EmbeddingKey>,
    subject: &str,
    position: i64,
    stored: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else { return Ok(stored.to_vec()) };
    let key = key.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "subject {subject}: its embeddings are encrypted and no embedding key is configured"
        ))
    })?;
    if rest.len() < NONCE_BYTES {
        return Err(StoreError::Corrupt(format!("subject {subject}: a sealed embedding is truncated")));
    }
    let (nonce, sealed) = rest.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().unwrap_or_default();
    key.0.decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: &aad(subject, position) }).map_err(|_| {
        StoreError::Corrupt(format!(
            "subject {subject}: an embedding does not open with the configured key (another key, or altered)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_rows_open_only_with_their_key_subject_and_position() {
        let key = EmbeddingKey::new(&[7; 32]);
        let clear = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let sealed = seal(Some(&key), "sub_a", 0, &clear);
        assert!(sealed.starts_with(MAGIC) && !sealed.windows(clear.len()).any(|w| w == clear));
        assert_eq!(open(Some(&key), "sub_a", 0, &sealed).unwrap(), clear);
        assert_ne!(seal(Some(&key), "sub_a", 0, &clear), sealed, "a fresh nonce each time");
        assert!(open(Some(&key), "sub_b", 0, &sealed).is_err(), "moved to another subject");
        assert!(open(Some(&key), "sub_a", 1, &sealed).is_err(), "moved to another position");
        assert!(open(Some(&EmbeddingKey::new(&[8; 32])), "sub_a", 0, &sealed).is_err(), "another key");
        assert!(open(None, "sub_a", 0, &sealed).is_err(), "no key");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(Some(&key), "sub_a", 0, &altered).is_err());
        // Rows from before the key: read as they are.
        assert_eq!(open(Some(&key), "sub_a", 0, &clear).unwrap(), clear);
        assert_eq!(seal(None, "sub_a", 0, &clear), clear);
        assert_eq!(format!("{key:?}"), "EmbeddingKey(..)");
    }
}
