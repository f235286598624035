//! Decoding and encoding of images, with limits.
//!
//! Every image that enters likeness from outside (an upload, a provider's photo,
//! a file given to `likeness verify`) is decoded by [`decode`], and nowhere else.
//! The `image` crate's defaults accept decompression bombs (a tiny PNG that
//! claims 100000x100000 pixels), so the limits are checked twice: on the header
//! before any pixel is allocated, and by the decoder's own allocation limit.
//!
//! This crate does no I/O: it works on bytes in memory.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};
use sha2::{Digest, Sha256};

pub use image::RgbImage as Rgb8;

/// Bounds for one decoded image.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest encoded size accepted, in bytes.
    pub max_bytes: usize,
    /// Largest width or height, in pixels.
    pub max_side: u32,
    /// Largest number of pixels (width x height).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    /// 25 MB files, 8192 px a side, 40 megapixels: more than any phone camera
    /// produces, far less than a bomb asks for.
    fn default() -> Self {
        DecodeLimits { max_bytes: 25 * 1024 * 1024, max_side: 8192, max_pixels: 40_000_000 }
    }
}

/// The formats likeness reads. Everything else is refused as unsupported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    Jpeg,
    Png,
    Webp,
}

impl MediaType {
    pub fn mime(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Jpeg => "jpg",
            MediaType::Png => "png",
            MediaType::Webp => "webp",
        }
    }

    pub fn from_mime(mime: &str) -> Option<MediaType> {
        match mime.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" => Some(MediaType::Jpeg),
            "image/png" => Some(MediaType::Png),
            "image/webp" => Some(MediaType::Webp),
            _ => None,
        }
    }

    /// Recognises a format from the first bytes of a file (its magic number).
    pub fn sniff(bytes: &[u8]) -> Option<MediaType> {
        match image::guess_format(bytes).ok()? {
            ImageFormat::Jpeg => Some(MediaType::Jpeg),
            ImageFormat::Png => Some(MediaType::Png),
            ImageFormat::WebP => Some(MediaType::Webp),
            _ => None,
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            MediaType::Jpeg => ImageFormat::Jpeg,
            MediaType::Png => ImageFormat::Png,
            MediaType::Webp => ImageFormat::WebP,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("the image is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the image is {width}x{height} pixels; the limit is {max_side} px a side and {max_pixels} pixels")]
    TooManyPixels { width: u32, height: u32, max_side: u32, max_pixels: u64 },
    #[error("not a supported image format (JPEG, PNG or WebP)")]
    Unsupported,
    #[error("declared as {declared} but the data is {actual}")]
    MimeMismatch { declared: &'static str, actual: &'static str },
    #[error("the image data is corrupt: {0}")]
    Corrupt(String),
    #[error("could not encode the image: {0}")]
    Encode(String),
}

impl MediaError {
    /// The stable code of a reference photo that fails this way.
    pub fn code(&self) -> likeness_codes::ErrorCode {
        use likeness_codes::ErrorCode;
        match self {
            MediaError::TooLarge { .. } => ErrorCode::ReferenceTooLarge,
            MediaError::TooManyPixels { .. } => ErrorCode::ReferenceTooManyPixels,
            MediaError::Unsupported => ErrorCode::ReferenceUnsupportedFormat,
            MediaError::MimeMismatch { .. } => ErrorCode::ReferenceMimeMismatch,
            MediaError::Corrupt(_) => ErrorCode::ReferenceCorrupt,
            MediaError::Encode(_) => ErrorCode::OutputEncodeFailed,
        }
    }
}

/// A decoded image, always 8-bit RGB (alpha is composited on white, grey expanded).
#[derive(Clone)]
pub struct Decoded {
    pub media_type: MediaType,
    pub pixels: RgbImage,
}

impl std::fmt::Debug for Decoded {
    // Never print pixels: a reference photo must not reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("media_type", &self.media_type)
            .field("width", &self.pixels.width())
            .field("height", &self.pixels.height())
            .finish()
    }
}

/// Decodes an image from memory within `limits`.
///
/// `declared` is the MIME type the caller was told, if any; a mismatch with
/// the bytes is an error, so a client cannot smuggle one format as another.
pub fn decode(bytes: &[u8], declared: Option<MediaType>, limits: &DecodeLimits) -> Result<Decoded, MediaError> {
    if bytes.len() > limits.max_bytes {
        return Err(MediaError::TooLarge { size: bytes.len(), limit: limits.max_bytes });
    }
    let media_type = MediaType::sniff(bytes).ok_or(MediaError::Unsupported)?;
    if let Some(declared) = declared {
        if declared != media_type {
            return Err(MediaError::MimeMismatch { declared: declared.mime(), actual: media_type.mime() });
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), media_type.image_format());
    // Header first: refuse a bomb before a single pixel buffer is allocated.
    let (width, height) = reader.into_dimensions().map_err(|e| MediaError::Corrupt(e.to_string()))?;
    check_dimensions(width, height, limits)?;

    reader = ImageReader::with_format(Cursor::new(bytes), media_type.image_format());
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // RGBA at 8 bits plus the decoder's working buffers.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4).saturating_add(64 << 20));
    reader.limits(decoder_limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            MediaError::TooManyPixels { width, height, max_side: limits.max_side, max_pixels: limits.max_pixels }
        }
        other => MediaError::Corrupt(other.to_string()),
    })?;
    // The JPEG decoder fills a truncated scan with grey and reports success;
    // a half-missing photo must not pass as a photo.
    if media_type == MediaType::Jpeg && !jpeg_is_complete(bytes) {
        return Err(MediaError::Corrupt("the JPEG is truncated (no end-of-image marker after the scan)".into()));
    }
    let pixels = if image.color().has_alpha() { flatten_on_white(&image.to_rgba8()) } else { image.to_rgb8() };
    Ok(Decoded { media_type, pixels })
}

/// Walks a JPEG's marker segments to the first scan and checks that an
/// end-of-image marker follows it. Inside entropy-coded data 0xFF is always
/// stuffed, so 0xFF 0xD9 there can only be the real marker.
fn jpeg_is_complete(b: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        match marker {
            0xFF => i += 1,
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
                if marker == 0xDA {
                    let start = (i + 2 + len).min(b.len());
                    return b[start..].windows(2).any(|w| w == [0xFF, 0xD9]);
                }
                i += 2 + len;
            }
        }
    }
    false
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::Corrupt("the image has no pixels".into()));
    }
    if width > limits.max_side || height > limits.max_side || u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

fn flatten_on_white(rgba: &image::RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u16::from(p[3]);
        let blend = |c: u8| ((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}

/// The formats likeness writes its outputs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Jpeg { quality: u8 },
    Png,
}

impl OutputFormat {
    pub fn media_type(self) -> MediaType {
        match self {
            OutputFormat::Jpeg { .. } => MediaType::Jpeg,
            OutputFormat::Png => MediaType::Png,
        }
    }
}

/// Encodes pixels. No metadata is written: credentials are added afterwards by
/// the provenance step, which binds them to exactly these bytes.
pub fn encode(pixels: &RgbImage, format: OutputFormat) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::with_capacity((pixels.width() * pixels.height()) as usize / 4);
    match format {
        OutputFormat::Jpeg { quality } => {
            // jpeg-encoder's SIMD path is several times faster than image's encoder.
            let (w, h) = (
                u16::try_from(pixels.width()).map_err(|_| MediaError::Encode("wider than 65535 px".into()))?,
                u16::try_from(pixels.height()).map_err(|_| MediaError::Encode("taller than 65535 px".into()))?,
            );
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
            encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
            encoder
                .encode(pixels.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| MediaError::Encode(e.to_string()))?;
        }
        OutputFormat::Png => {
            let encoder = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            );
            pixels.write_with_encoder(encoder).map_err(|e| MediaError::Encode(e.to_string()))?;
        }
    }
    Ok(out)
}

/// SHA-256 of some bytes, as lowercase hex. The identity of a reference photo
/// everywhere likeness keeps a trace of it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hostile inputs for tests of the limits, here so every crate's tests use
/// the same ones.
pub mod hostile {
    use super::*;

    /// A valid 1x1 PNG whose header is rewritten to claim `width` x `height`:
    /// the classic decompression bomb (a few bytes that ask for gigabytes).
    pub fn forged_png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3]));
        let mut bytes = encode(&img, OutputFormat::Png).expect("encode 1x1");
        bytes[16..20].copy_from_slice(&width.to_be_bytes());
        bytes[20..24].copy_from_slice(&height.to_be_bytes());
        // The IHDR CRC covers the chunk type and data (bytes 12..29).
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_header_is_refused_before_allocation() {
        let bomb = crate::hostile::forged_png(100_000, 100_000);
        let err = decode(&bomb, None, &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, MediaError::TooManyPixels { width: 100_000, height: 100_000, .. }), "{err:?}");
    }

    #[test]
    fn pixel_budget_applies_even_within_side_limit() {
        let bomb = crate::hostile::forged_png(8000, 8000);
        let err = decode(&bomb, None, &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, MediaError::TooManyPixels { .. }), "{err:?}");
    }

    #[test]
    fn oversize_file_refused() {
        let limits = DecodeLimits { max_bytes: 10, ..Default::default() };
        let bytes = encode(&RgbImage::new(4, 4), OutputFormat::Png).unwrap();
        assert!(matches!(decode(&bytes, None, &limits), Err(MediaError::TooLarge { .. })));
    }

    #[test]
    fn garbage_and_truncation_are_corrupt_or_unsupported() {
        assert_eq!(decode(b"hello world", None, &DecodeLimits::default()).unwrap_err(), MediaError::Unsupported);
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let jpeg = encode(&img, OutputFormat::Jpeg { quality: 90 }).unwrap();
        for cut in [jpeg.len() / 3, jpeg.len() - 2] {
            let err = decode(&jpeg[..cut], None, &DecodeLimits::default()).unwrap_err();
            assert!(matches!(err, MediaError::Corrupt(_)), "cut at {cut}: {err:?}");
        }
    }

    #[test]
    fn declared_type_must_match() {
        let png = encode(&RgbImage::new(4, 4), OutputFormat::Png).unwrap();
        let err = decode(&png, Some(MediaType::Jpeg), &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, MediaError::MimeMismatch { .. }));
    }

    #[test]
    fn alpha_is_flattened_on_white() {
        let rgba = image::RgbaImage::from_pixel(2, 2, image::Rgba([0, 0, 0, 0]));
        let mut png = Vec::new();
        rgba.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let d = decode(&png, Some(MediaType::Png), &DecodeLimits::default()).unwrap();
        assert_eq!(d.pixels.get_pixel(0, 0).0, [255, 255, 255]);
    }

    #[test]
    fn round_trip_jpeg_and_png() {
        let img = RgbImage::from_fn(33, 17, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 100]));
        for format in [OutputFormat::Png, OutputFormat::Jpeg { quality: 95 }] {
            let bytes = encode(&img, format).unwrap();
            let d = decode(&bytes, Some(format.media_type()), &DecodeLimits::default()).unwrap();
            assert_eq!(d.pixels.dimensions(), (33, 17));
        }
    }
}
