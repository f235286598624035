//! `likeness verify`: the publisher's check of an image's Content Credentials.
//!
//! Exit codes: 0 every file trusted or valid; 1 any invalid (it outranks
//! everything else, so a tampered file is never hidden by another error);
//! 3 usage or I/O errors; 2 any without credentials that could be checked
//! (none, or a remote manifest that is not fetched).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use likeness_provenance::{TrustState, Verification, Verifier};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Print one JSON object per file per line.
    #[arg(long)]
    json: bool,
    /// PEM file of trust anchors (CA certificates); repeatable.
    #[arg(long = "trust", value_name = "PEM")]
    trust: Vec<PathBuf>,
    /// Files, directories (searched recursively) or glob patterns.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
}

/// Extensions picked up when walking a directory (explicit files are always read).
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "tif", "tiff", "gif", "avif", "heic", "heif"];

pub fn run(args: VerifyArgs) -> ExitCode {
    let mut anchors = String::new();
    for path in &args.trust {
        match std::fs::read_to_string(path) {
            Ok(pem) => anchors.push_str(&pem),
            Err(e) => {
                eprintln!("error: trust anchors {}: {e}", path.display());
                return ExitCode::from(3);
            }
        }
    }
    let verifier = match Verifier::new((!anchors.is_empty()).then_some(anchors.as_str())) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };

    let (files, mut io_error) = expand(&args.paths);
    let (mut any_invalid, mut any_unverified) = (false, false);
    for file in files {
        // A panic inside the C2PA reader on one hostile file must not end the run.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verifier.verify_file(&file)))
            .unwrap_or_else(|_| {
                Err(likeness_provenance::ProvenanceError::Read("the C2PA reader crashed on this file".into()))
            });
        match &result {
            Ok(v) => match v.state {
                TrustState::Trusted | TrustState::Valid => {}
                TrustState::Invalid => any_invalid = true,
                TrustState::None | TrustState::Remote => any_unverified = true,
            },
            Err(_) => io_error = true,
        }
        if args.json {
            println!("{}", json_line(&file, &result));
        } else {
            print_human(&file, &result);
        }
    }
    ExitCode::from(if any_invalid {
        1
    } else if io_error {
        3
    } else if any_unverified {
        2
    } else {
        0
    })
}

/// Turns the arguments into a list of files. Missing paths and empty globs
/// are reported and make the exit code 3; the rest are still checked.
fn expand(args: &[String]) -> (Vec<PathBuf>, bool) {
    let mut files = Vec::new();
    let mut error = false;
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            error |= !walk(path, &mut files);
        } else if path.exists() {
            files.push(path.to_path_buf());
        } else if arg.contains(['*', '?', '[']) {
            match glob::glob(arg) {
                Ok(paths) => {
                    let before = files.len();
                    for p in paths.flatten() {
                        if p.is_dir() {
                            error |= !walk(&p, &mut files);
                        } else {
                            files.push(p);
                        }
                    }
                    if files.len() == before {
                        eprintln!("error: {arg}: no file matches");
                        error = true;
                    }
                }
                Err(e) => {
                    eprintln!("error: {arg}: bad pattern: {e}");
                    error = true;
                }
            }
        } else {
            eprintln!("error: {arg}: no such file or directory");
            error = true;
        }
    }
    (files, error)
}

/// Collects image files under `dir`. Symbolic links to directories are not
/// followed (no loops); an unreadable directory is reported and counts as an
/// I/O error.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            return false;
        }
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    let mut ok = true;
    for entry in entries {
        let p = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            ok &= walk(&p, out);
        } else if (kind.is_file() || (kind.is_symlink() && p.is_file()))
            && p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    ok
}

fn json_line(file: &Path, result: &Result<Verification, likeness_provenance::ProvenanceError>) -> String {
    let value = match result {
        Ok(v) => {
            let mut obj = serde_json::to_value(v).unwrap_or_default();
            obj["file"] = serde_json::Value::String(file.display().to_string());
            obj
        }
        Err(e) => serde_json::json!({
            "file": file.display().to_string(),
            "state": "error",
            "signer": null,
            "failures": [],
            "error": e.to_string(),
        }),
    };
    value.to_string()
}

fn print_human(file: &Path, result: &Result<Verification, likeness_provenance::ProvenanceError>) {
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            println!("{}: error: {e}", file.display());
            return;
        }
    };
    let headline = match v.state {
        TrustState::Trusted => "trusted: signed by a trusted signer, and intact",
        TrustState::Valid => "valid: intact and well signed, but the signer is not on a trust list",
        TrustState::Invalid => "INVALID: the credentials do not match this file or are malformed",
        TrustState::None => "no Content Credentials",
        TrustState::Remote => "the credentials live at a remote URL that was not fetched",
    };
    println!("{}: {headline}", file.display());
    if let Some(url) = &v.remote_url {
        println!("  remote manifest: {url}");
    }
    if v.state == TrustState::None {
        return;
    }
    if let Some(signer) = &v.signer {
        let issuer = v.issuer.as_deref().map(|i| format!(" (issued by {i})")).unwrap_or_default();
        println!("  signer:        {signer}{issuer}");
    }
    if let Some(t) = &v.signed_at {
        println!("  signed at:     {t}");
    }
    if let Some(intact) = v.hard_binding_intact {
        println!(
            "  hard binding:  {}",
            if intact {
                "intact (the pixels are the signed ones)"
            } else {
                "BROKEN (the file was changed after signing)"
            }
        );
    }
    for a in &v.actions {
        let dst = a.digital_source_type.as_deref().map(short_iri).map(|d| format!(" [{d}]")).unwrap_or_default();
        let agent = a.software_agent.as_deref().map(|s| format!(" by {s}")).unwrap_or_default();
        println!("  action:        {}{dst}{agent}", a.action);
    }
    for i in &v.ingredients {
        println!("  ingredient:    {} ({})", i.hash.as_deref().unwrap_or("no hash"), i.relationship);
    }
    if let Some(l) = &v.likeness {
        let field = |k: &str| l.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
        println!("  asset:         {}", field("asset_id"));
        println!("  consent:       receipt {}", field("receipt"));
    }
    if v.failures.is_empty() {
        println!("  failures:      none");
    }
    for f in &v.failures {
        println!(
            "  failure:       {}{}",
            f.code,
            f.explanation.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
}

fn short_iri(iri: &str) -> &str {
    iri.rsplit('/').next().unwrap_or(iri)
}
