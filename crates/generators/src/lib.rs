//! Image generators: what turns a prompt and reference photos into pixels.
//!
//! The built-in generator ([`Builtin`]) is the embedded default. It needs no
//! network and no model: it paints the reference photos in a style with
//! ordinary image processing, so the whole gateway (moderation, watermark,
//! signing) runs offline on outputs that really contain the people and things
//! of the references. Later backends speak HTTP to real image models.
//!
//! Generators never see user ids, consent records or keys; they get pixels in
//! memory and return pixels in memory.

mod raster;
mod scene;
mod styles;

use std::fmt;
use std::str::FromStr;

use image::RgbImage;
use sha2::{Digest, Sha256};

pub use styles::Style;

/// One generation job, as a generator sees it.
pub struct GenerationJob<'a> {
    pub prompt: &'a str,
    pub style: Style,
    /// Decoded reference photos, in the order the request gave them.
    pub references: &'a [RgbImage],
    pub width: u32,
    pub height: u32,
    /// How many images to produce.
    pub count: u32,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error("invalid generation job: {0}")]
    InvalidJob(String),
}

/// Something that makes images. Implementations must be deterministic for the
/// same job (same seed), so results can be reproduced and audited.
pub trait Generator: Send + Sync {
    /// A stable name recorded in the manifest (e.g. `builtin/watercolor`).
    fn name(&self) -> &str;
    fn generate(&self, job: &GenerationJob<'_>) -> Result<Vec<RgbImage>, GeneratorError>;
}

/// The built-in, offline generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct Builtin;

impl Generator for Builtin {
    fn name(&self) -> &str {
        "builtin"
    }

    fn generate(&self, job: &GenerationJob<'_>) -> Result<Vec<RgbImage>, GeneratorError> {
        if job.width == 0 || job.height == 0 || job.count == 0 {
            return Err(GeneratorError::InvalidJob("empty size or count".into()));
        }
        let base_seed = job_seed(job);
        Ok((0..job.count)
            .map(|variant| {
                let seed = base_seed ^ u64::from(variant).wrapping_mul(0xA24B_AED4_963E_E407);
                let canvas = if job.references.is_empty() {
                    scene::compose(job.prompt, job.width as usize, job.height as usize, seed)
                } else {
                    scene::layout(job.references, job.width as usize, job.height as usize, variant, seed)
                };
                styles::apply(job.style, canvas, seed).to_image()
            })
            .collect())
    }
}

/// Seed mixing the caller's seed with the prompt, so that with no seed given
/// the same prompt still gives the same image.
fn job_seed(job: &GenerationJob<'_>) -> u64 {
    let mut h = Sha256::new();
    h.update(job.seed.to_le_bytes());
    h.update(job.prompt.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown style {0:?}; known styles: {known}", known = Style::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownStyle(pub String);

impl FromStr for Style {
    type Err = UnknownStyle;

    fn from_str(s: &str) -> Result<Style, UnknownStyle> {
        let squash = |t: &str| t.trim().to_ascii_lowercase().replace(['-', '_', ' '], "");
        let norm = squash(s);
        Style::ALL
            .iter()
            .copied()
            .find(|st| st.aliases().iter().any(|a| squash(a) == norm))
            .ok_or_else(|| UnknownStyle(s.to_string()))
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Style {
    /// The style named in a prompt ("... as a watercolour"), if any; the first
    /// one mentioned wins.
    pub fn detect_in_prompt(prompt: &str) -> Option<Style> {
        let lower = prompt.to_lowercase();
        Style::ALL
            .iter()
            .flat_map(|st| st.aliases().iter().filter_map(|a| find_word(&lower, a)).map(move |pos| (pos, *st)))
            .min_by_key(|(pos, _)| *pos)
            .map(|(_, st)| st)
    }

    /// The style of a request: the explicit field, else the prompt, else watercolour.
    pub fn resolve(explicit: Option<&str>, prompt: &str) -> Result<Style, UnknownStyle> {
        match explicit {
            Some(s) => s.parse(),
            None => Ok(Style::detect_in_prompt(prompt).unwrap_or(Style::Watercolor)),
        }
    }
}

/// Position of `word` in `text` where it starts a word ("oil" in "an oil
/// painting", not in "boil").
fn find_word(text: &str, word: &str) -> Option<usize> {
    text.match_indices(word)
        .map(|(pos, _)| pos)
        .find(|&pos| !text[..pos].chars().next_back().is_some_and(char::is_alphanumeric))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portrait() -> RgbImage {
        // A synthetic "face": skin disc with dark eyes and mouth on a backdrop.
        RgbImage::from_fn(160, 200, |x, y| {
            let (dx, dy) = (x as f32 - 80.0, y as f32 - 90.0);
            let in_face = dx * dx / 2500.0 + dy * dy / 4200.0 < 1.0;
            let eye = ((x as i32 - 60).pow(2) + (y as i32 - 75).pow(2) < 60)
                || ((x as i32 - 100).pow(2) + (y as i32 - 75).pow(2) < 60);
            let mouth = (60..100).contains(&x) && (120..128).contains(&y);
            if eye || mouth && in_face {
                image::Rgb([30, 20, 20])
            } else if in_face {
                image::Rgb([220, 180, 150])
            } else {
                image::Rgb([40, 90, (y / 2) as u8 + 60])
            }
        })
    }

    fn job<'a>(refs: &'a [RgbImage], style: Style, seed: u64) -> GenerationJob<'a> {
        GenerationJob { prompt: "a portrait", style, references: refs, width: 256, height: 320, count: 2, seed }
    }

    #[test]
    fn every_style_is_deterministic_and_sized() {
        let refs = [portrait()];
        for style in Style::ALL {
            let a = Builtin.generate(&job(&refs, *style, 7)).unwrap();
            let b = Builtin.generate(&job(&refs, *style, 7)).unwrap();
            assert_eq!(a.len(), 2);
            assert_eq!(a[0].dimensions(), (256, 320));
            assert!(a[0] == b[0] && a[1] == b[1], "{style} is not deterministic");
            assert!(a[0] != a[1], "{style}: variants should differ");
        }
    }

    #[test]
    fn styled_output_still_resembles_the_reference() {
        // The reference, resized to the output, should correlate with every
        // style's luminance: the subject stays where it was, painted.
        let refs = [portrait()];
        let target = image::imageops::resize(&refs[0], 256, 320, image::imageops::FilterType::Triangle);
        for style in Style::ALL {
            let out = &Builtin.generate(&job(&refs, *style, 1)).unwrap()[0];
            let r = correlation(&target, out);
            assert!(r > 0.5, "{style}: correlation with the reference {r:.2}");
        }
    }

    #[test]
    fn no_reference_gives_a_scene_not_a_flat_colour() {
        for prompt in ["a lake at sunset", "a beach in summer", "the city at night", "a forest in winter"] {
            let j = GenerationJob {
                prompt,
                style: Style::Watercolor,
                references: &[],
                width: 300,
                height: 200,
                count: 1,
                seed: 3,
            };
            let img = &Builtin.generate(&j).unwrap()[0];
            let l: Vec<f32> = img.pixels().map(|p| p[0] as f32 + p[1] as f32 + p[2] as f32).collect();
            let mean = l.iter().sum::<f32>() / l.len() as f32;
            let var = l.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / l.len() as f32;
            assert!(var.sqrt() > 20.0, "{prompt}: too flat (sd {})", var.sqrt());
        }
    }

    #[test]
    fn styles_parse_and_are_found_in_prompts() {
        assert_eq!("Watercolour".parse::<Style>(), Ok(Style::Watercolor));
        assert_eq!("pencil sketch".parse::<Style>(), Ok(Style::Sketch));
        assert!("cubism".parse::<Style>().is_err());
        assert_eq!("oil-painting".parse::<Style>(), Ok(Style::OilPainting));
        assert_eq!("Pop Art".parse::<Style>(), Ok(Style::Poster));
        assert_eq!(Style::detect_in_prompt("my dog from our trip, as a watercolour"), Some(Style::Watercolor));
        assert_eq!(Style::detect_in_prompt("a vintage photo, not a cartoon"), Some(Style::Vintage));
        assert_eq!(Style::resolve(None, "just a dog"), Ok(Style::Watercolor));
        assert_eq!(Style::detect_in_prompt("water the boiling pot"), None);
        assert_eq!(Style::detect_in_prompt("an oil painting of my cat"), Some(Style::OilPainting));
    }

    fn correlation(a: &RgbImage, b: &RgbImage) -> f32 {
        let la: Vec<f32> = a.pixels().map(|p| p[0] as f32 * 0.3 + p[1] as f32 * 0.59 + p[2] as f32 * 0.11).collect();
        let lb: Vec<f32> = b.pixels().map(|p| p[0] as f32 * 0.3 + p[1] as f32 * 0.59 + p[2] as f32 * 0.11).collect();
        let n = la.len() as f32;
        let (ma, mb) = (la.iter().sum::<f32>() / n, lb.iter().sum::<f32>() / n);
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (x, y) in la.iter().zip(&lb) {
            sab += (x - ma) * (y - mb);
            saa += (x - ma).powi(2);
            sbb += (y - mb).powi(2);
        }
        sab / (saa.sqrt() * sbb.sqrt())
    }
}
