//! `likeness vision analyze` and `likeness gallery add`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use likeness_vision::{Gallery, ImageAnalysis, Vision};

/// Distance under which a face matches a gallery entry: the gateway's
/// default (see `Thresholds`), justified in the README.
fn default_match_threshold() -> f32 {
    likeness_pipeline::Thresholds::default().match_distance
}

#[derive(clap::Args)]
pub struct ModelArgs {
    /// Directory holding the models and manifest.json [default: ./models, or the nearest parent's].
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
}

impl ModelArgs {
    fn dir(&self) -> PathBuf {
        self.models.clone().unwrap_or_else(likeness_vision::default_models_dir)
    }

    pub fn load(&self) -> anyhow::Result<Vision> {
        Ok(Vision::load(&likeness_vision::config_for(&self.dir()))?)
    }
}

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// One JSON object per image per line.
    #[arg(long)]
    json: bool,
    /// Public-figure gallery to match faces against [default: the shipped
    /// example gallery, <models>/gallery.example.json, as `serve` uses].
    #[arg(long, value_name = "FILE")]
    gallery: Option<PathBuf>,
    #[arg(long, default_value_t = default_match_threshold())]
    match_threshold: f32,
    #[command(flatten)]
    models: ModelArgs,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

pub fn analyze(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let vision = args.models.load()?;
    let gallery_path = args.gallery.clone().unwrap_or_else(|| args.models.dir().join(likeness_vision::EXAMPLE_GALLERY));
    let gallery = Gallery::load(&gallery_path)?;
    let mut failed = false;
    for path in &args.images {
        match analyze_file(&vision, path) {
            Ok(a) => print_analysis(path, &a, &gallery, args.match_threshold, args.json),
            Err(e) => {
                failed = true;
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({ "file": path.display().to_string(), "error": format!("{e:#}") })
                    );
                } else {
                    println!("{}: error: {e:#}", path.display());
                }
            }
        }
    }
    Ok(if failed { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

fn analyze_file(vision: &Vision, path: &Path) -> anyhow::Result<ImageAnalysis> {
    let limits = likeness_media::DecodeLimits::default();
    let bytes = crate::read_bounded(path, limits.max_bytes as u64)?;
    let img = likeness_media::decode(&bytes, None, &limits)?.pixels;
    Ok(vision.analyze(&img)?)
}

fn print_analysis(path: &Path, a: &ImageAnalysis, gallery: &Gallery, threshold: f32, json: bool) {
    let faces: Vec<serde_json::Value> = a
        .faces
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or_default();
            v["matches"] = serde_json::to_value(gallery.matches(&f.embedding, threshold)).unwrap_or_default();
            v
        })
        .collect();
    if json {
        let line = serde_json::json!({
            "file": path.display().to_string(), "width": a.width, "height": a.height,
            "faces": faces, "nsfw": a.nsfw,
        });
        println!("{line}");
        return;
    }
    println!("{}: {} face(s), nsfw {:.4}", path.display(), a.faces.len(), a.nsfw);
    for (f, v) in a.faces.iter().zip(&faces) {
        let [x, y, w, h] = f.bbox;
        println!(
            "  face at ({x:.0}, {y:.0}) {w:.0}x{h:.0}  score {:.2}  age {:.0}  P(minor) {:.3}",
            f.score, f.age, f.p_minor
        );
        for m in v["matches"].as_array().into_iter().flatten() {
            println!(
                "    matches {} ({}) at distance {:.3}",
                m["name"].as_str().unwrap_or(""),
                m["id"].as_str().unwrap_or(""),
                m["distance"].as_f64().unwrap_or(0.0)
            );
        }
    }
}

#[derive(clap::Args)]
pub struct GalleryAddArgs {
    /// Display name, e.g. "Grace Hopper".
    #[arg(long)]
    name: String,
    /// Stable id, e.g. "grace-hopper".
    #[arg(long)]
    id: String,
    /// A note on where the photos come from (default: the file names).
    #[arg(long)]
    source: Option<String>,
    /// Gallery file to create or extend.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    models: ModelArgs,
    /// Photos showing exactly one face each.
    #[arg(required = true, value_name = "PHOTO")]
    photos: Vec<PathBuf>,
}

pub fn gallery_add(args: GalleryAddArgs) -> anyhow::Result<ExitCode> {
    let vision = args.models.load()?;
    let mut gallery = if args.output.exists() { Gallery::load(&args.output)? } else { Gallery::default() };
    for photo in &args.photos {
        let a = analyze_file(&vision, photo)?;
        if a.faces.len() != 1 {
            bail!("{}: found {} faces; a gallery photo must show exactly one", photo.display(), a.faces.len());
        }
        let source = args.source.clone().unwrap_or_else(|| photo.display().to_string());
        gallery.add(&args.id, &args.name, &a.faces[0].embedding, &source)?;
    }
    gallery.save(&args.output)?;
    let entry = gallery.entries.iter().find(|e| e.id == args.id).map_or(0, |e| e.embeddings.len());
    println!("{}: {} ({}) now has {entry} embedding(s)", args.output.display(), args.name, args.id);
    Ok(ExitCode::SUCCESS)
}
