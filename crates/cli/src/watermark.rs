//! `likeness watermark embed|detect`: the invisible watermark from the
//! command line. The key lives in `<data-dir>/keys/watermark.key` (64 hex
//! digits, mode 0600), made by `likeness keys init`; `--key-file` names
//! another.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use likeness_media::{DecodeLimits, OutputFormat};
use likeness_watermark::Key;

use crate::keys::{self, DataDir};

/// Largest image file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// The 64-bit payload, 16 hex digits (e.g. the first 8 bytes of an asset id).
    #[arg(long)]
    payload: String,
    /// The watermark key file [default: <data-dir>/keys/watermark.key].
    #[arg(long, env = "LIKENESS_WATERMARK_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// JPEG, PNG or WebP to mark.
    input: PathBuf,
    /// Where to write; the format follows the extension (.jpg, .jpeg, .png).
    output: PathBuf,
}

#[derive(clap::Args)]
pub struct DetectArgs {
    /// One JSON object per file: file, detected, payload, score.
    #[arg(long)]
    json: bool,
    /// The watermark key file [default: <data-dir>/keys/watermark.key].
    #[arg(long, env = "LIKENESS_WATERMARK_KEY_FILE")]
    key_file: Option<PathBuf>,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn key(given: Option<PathBuf>, data_dir: &DataDir) -> anyhow::Result<Key> {
    keys::load_watermark_key(&given.unwrap_or_else(|| data_dir.watermark_key()))
}

fn read_image(path: &Path) -> anyhow::Result<image::RgbImage> {
    let bytes = crate::read_bounded(path, MAX_FILE_BYTES)?;
    let decoded = likeness_media::decode(&bytes, None, &DecodeLimits::default())
        .with_context(|| format!("{}: cannot read the image", path.display()))?;
    Ok(decoded.pixels)
}

pub fn embed(args: EmbedArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let mut payload = [0u8; 8];
    hex::decode_to_slice(args.payload.trim(), &mut payload).context("--payload must be exactly 16 hex digits")?;
    let format = match args.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("jpg" | "jpeg") => OutputFormat::Jpeg { quality: 90 },
        Some("png") => OutputFormat::Png,
        _ => bail!("{}: the output must end in .jpg, .jpeg or .png", args.output.display()),
    };
    let key = key(args.key_file, data_dir)?;
    let mut img = read_image(&args.input)?;
    // As the gateway marks its outputs.
    likeness_watermark::embed_informed(&mut img, &payload, &key, likeness_watermark::INFORMED_STRENGTH);
    let bytes = likeness_media::encode(&img, format).context("encoding the output")?;
    std::fs::write(&args.output, bytes).with_context(|| format!("writing {}", args.output.display()))?;
    println!("{}: marked with payload {}", args.output.display(), hex::encode(payload));
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when every file has a mark, 2 when any has none, 3 when any
/// could not be read.
pub fn detect(args: DetectArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let key = key(args.key_file, data_dir)?;
    let (mut missing, mut errors) = (false, false);
    for file in &args.files {
        let shown = file.display().to_string();
        match read_image(file) {
            Ok(img) => {
                let found = likeness_watermark::detect(&img, &key);
                missing |= found.is_none();
                if args.json {
                    let line = serde_json::json!({
                        "file": shown,
                        "detected": found.is_some(),
                        "payload": found.as_ref().map(|d| hex::encode(d.payload)),
                        "score": found.as_ref().map(|d| (f64::from(d.score) * 1000.0).round() / 1000.0),
                    });
                    println!("{line}");
                } else {
                    match &found {
                        Some(d) => println!("{shown}: watermark {} (score {:.3})", hex::encode(d.payload), d.score),
                        None => println!("{shown}: no watermark"),
                    }
                }
            }
            Err(e) => {
                errors = true;
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({ "file": shown, "detected": false, "payload": null, "score": null, "error": format!("{e:#}") })
                    );
                } else {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    Ok(ExitCode::from(if errors {
        3
    } else if missing {
        2
    } else {
        0
    }))
}
