//! `likeness verify`: the publisher's check of an image's Content Credentials.
//!
//! For every file it also reads the invisible watermark, when it has the
//! watermark key. With `--resolver URL`, a file without credentials (a
//! platform stripped them) gets them back through the watermark: the
//! resolver's `/matches/...` gives the manifest id, `/manifests/{id}` the
//! manifest, validated here against these pixels. The image itself goes
//! to the resolver (`byContent`) even when the mark was read here: only
//! with the picture can it tell the marked output from another picture the
//! mark was copied onto.
//!
//! Exit codes: 0 every file trusted or valid (embedded or recovered); 1 any
//! invalid (it outranks everything else, so a tampered file is never hidden
//! by another error); 3 usage or I/O errors; 2 any without credentials that
//! could be checked (none, or a remote manifest that is not fetched).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use likeness_provenance::{TrustState, Verification, Verifier};

use crate::keys::{self, DataDir};
use serde::Serialize;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Print one JSON object per file per line.
    #[arg(long)]
    json: bool,
    /// PEM file of trust anchors (CA certificates); repeatable.
    #[arg(long = "trust", value_name = "PEM")]
    trust: Vec<PathBuf>,
    /// The watermark key (64 hex digits) to read marks with
    /// [default: <data-dir>/keys/watermark.key, when it exists].
    #[arg(long, value_name = "FILE", env = "LIKENESS_WATERMARK_KEY_FILE")]
    watermark_key: Option<PathBuf>,
    /// A C2PA Soft Binding Resolution API (e.g. a likeness gateway's
    /// http://HOST:PORT): recover the credentials of files that have none.
    #[arg(long, value_name = "URL")]
    resolver: Option<String>,
    /// Files, directories (searched recursively) or glob patterns.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
}

/// Extensions picked up when walking a directory (explicit files are always read).
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "tif", "tiff", "gif", "avif", "heic", "heif"];

/// Prints one line of the human report with every control and bidi
/// character escaped: a manifest's strings and a file's name come from
/// whoever made the file, and a newline or an escape sequence in them
/// could otherwise print a fake `trusted` line.
macro_rules! say {
    ($($t:tt)*) => { println!("{}", shown(&format!($($t)*))) };
}

/// `s` with control characters (newlines, escapes) and bidirectional
/// overrides written as `\u{..}`.
pub(crate) fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn run(args: VerifyArgs, data_dir: &DataDir) -> ExitCode {
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

    let key = match watermark_key(args.watermark_key.as_deref(), data_dir) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(3);
        }
    };
    let resolver = match args.resolver.as_deref().map(Resolver::new).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --resolver: {e:#}");
            return ExitCode::from(3);
        }
    };

    let (files, mut io_error) = expand(&args.paths);
    let (mut any_invalid, mut any_unverified) = (false, false);
    for file in files {
        // A panic anywhere in one hostile file's checks must not end the run.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_file(&file, &verifier, key.as_ref(), resolver.as_ref(), args.json)
        }));
        match checked {
            Ok(Ok(TrustState::Trusted | TrustState::Valid)) => {}
            Ok(Ok(TrustState::Invalid)) => any_invalid = true,
            Ok(Ok(TrustState::None | TrustState::Remote)) => any_unverified = true,
            Ok(Err(())) => io_error = true,
            Err(_) => {
                io_error = true;
                let message = "verify crashed on this file";
                if args.json {
                    let line =
                        serde_json::json!({ "file": file.display().to_string(), "state": "error", "error": message });
                    println!("{line}");
                } else {
                    say!("{}: error: {message}", file.display());
                }
            }
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

/// Checks one file and prints its report: its state, or `Err` when it
/// could not be read.
fn check_file(
    file: &Path,
    verifier: &Verifier,
    key: Option<&likeness_watermark::Key>,
    resolver: Option<&Resolver>,
    json: bool,
) -> Result<TrustState, ()> {
    let result = verifier.verify_file(file);
    // The file's bytes, read once for the watermark and the resolver, and
    // only if one of them needs them; no more than an image may be to be
    // decoded, so a huge file costs no memory.
    let bytes = std::cell::OnceCell::new();
    let bytes = || {
        bytes.get_or_init(|| {
            crate::read_bounded(file, likeness_media::DecodeLimits::default().max_bytes as u64)
                .map_err(|e| format!("{e:#}"))
        })
    };
    let watermark = key.map(|k| read_watermark(bytes(), k));
    let recovered = match (resolver, &result) {
        (Some(r), Ok(v)) if v.state == TrustState::None => {
            let found = watermark.as_ref().and_then(|w| w.as_ref().ok()).and_then(|d| d.as_ref());
            Some(r.recover(verifier, bytes(), found))
        }
        _ => None,
    };
    if json {
        println!("{}", json_line(file, &result, watermark.as_ref(), recovered.as_ref()));
    } else {
        print_human(file, &result);
        print_watermark(watermark.as_ref(), resolver.is_some());
        if let Some(r) = &recovered {
            print_recovered(r);
        }
    }
    match (&recovered, &result) {
        (Some(rec), _) => Ok(rec.state.unwrap_or(TrustState::None)),
        (None, Ok(v)) => Ok(v.state),
        (None, Err(_)) => Err(()),
    }
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
            eprintln!("error: {}: {e}", shown(&dir.display().to_string()));
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

fn json_line(
    file: &Path,
    result: &Result<Verification, likeness_provenance::ProvenanceError>,
    watermark: Option<&WatermarkRead>,
    recovered: Option<&Recovered>,
) -> String {
    let mut value = match result {
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
    // null: no key to read it with.
    value["watermark"] = match watermark {
        None => serde_json::Value::Null,
        Some(Ok(found)) => serde_json::json!({
            "detected": found.is_some(),
            "payload": found.as_ref().map(|d| hex::encode(d.payload)),
            "score": found.as_ref().map(|d| (f64::from(d.score) * 1000.0).round() / 1000.0),
        }),
        Some(Err(e)) => serde_json::json!({ "detected": false, "payload": null, "score": null, "error": e }),
    };
    // null: not attempted (no --resolver, or the file has credentials of its own).
    value["recovered"] = serde_json::to_value(recovered).unwrap_or_default();
    value.to_string()
}

/// What the watermark reader said of one file: found or not, or why it
/// could not read the image.
type WatermarkRead = Result<Option<likeness_watermark::Detection>, String>;

fn watermark_key(given: Option<&Path>, data_dir: &DataDir) -> anyhow::Result<Option<likeness_watermark::Key>> {
    match given {
        Some(path) => keys::load_watermark_key(path).map(Some),
        None => {
            let default = data_dir.watermark_key();
            if default.exists() {
                keys::load_watermark_key(&default).map(Some)
            } else {
                Ok(None)
            }
        }
    }
}

fn read_watermark(bytes: &Result<Vec<u8>, String>, key: &likeness_watermark::Key) -> WatermarkRead {
    let decoded = likeness_media::decode(bytes.as_ref()?, None, &likeness_media::DecodeLimits::default())
        .map_err(|e| format!("cannot read the image: {e}"))?;
    Ok(likeness_watermark::detect(&decoded.pixels, key))
}

fn print_watermark(read: Option<&WatermarkRead>, resolver: bool) {
    match read {
        None if resolver => say!("  watermark:     no local key; the resolver reads it"),
        None => say!("  watermark:     not checked (no watermark key; give --watermark-key, or --resolver)"),
        Some(Ok(Some(d))) => say!("  watermark:     {} (score {:.3})", hex::encode(d.payload), d.score),
        Some(Ok(None)) => say!("  watermark:     none found"),
        Some(Err(e)) => say!("  watermark:     not read: {e}"),
    }
}

/// How the resolver was asked: always with the image (`byContent`), also
/// when the mark was read here. The resolver then checks that the picture
/// is the marked output's and refuses a mark copied onto another picture;
/// a lookup by the payload's value (`byBinding`) would find the output's
/// manifest for the copy just the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
enum ResolverQuery {
    ByContent,
}

/// Whether the byte hash a recovered manifest signed still matches the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum HardBinding {
    /// The bytes are the signed ones after all.
    Intact,
    /// As expected for pixels re-encoded since signing.
    Mismatch,
}

/// Whether a recovered manifest declares the watermark found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum SoftBindingCheck {
    /// The manifest declares the payload read here.
    Match,
    /// The resolver read the mark and matched it.
    Resolver,
    /// The manifest does not declare it: the credentials are not this image's.
    Mismatch,
}

/// Credentials found through a soft-binding resolver for a file that had
/// none embedded.
#[derive(Debug, Serialize)]
struct Recovered {
    resolver: String,
    query: ResolverQuery,
    alg: &'static str,
    /// The watermark payload as a soft-binding value (base64), when read here.
    value: Option<String>,
    manifest_id: Option<String>,
    /// The resolver's similarity score, 0 to 100.
    similarity: Option<u8>,
    hard_binding: Option<HardBinding>,
    /// A mismatch makes the state invalid.
    soft_binding: Option<SoftBindingCheck>,
    /// The signer's trust state, the hard binding set aside; null when
    /// nothing was recovered.
    state: Option<TrustState>,
    signer: Option<String>,
    /// likeness's own assertion of the recovered manifest.
    likeness: Option<serde_json::Value>,
    failures: Vec<likeness_provenance::Failure>,
    /// Why nothing was recovered, when nothing was.
    error: Option<String>,
}

struct Resolver {
    base: String,
    client: reqwest::blocking::Client,
}

/// Largest manifest store accepted from a resolver.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Largest match list (JSON) accepted from a resolver.
const MAX_ANSWER_BYTES: u64 = 256 * 1024;
/// How much of a resolver's error text is shown.
const MAX_ERROR_CHARS: usize = 300;

/// Whether a URL's host is this machine (where plain http is acceptable).
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Resolver {
    /// A resolver is believed about which manifest belongs to an image, so
    /// it must be reached over https (plain http only on this machine), and
    /// its answers may not send us elsewhere: no redirects, no `endpoint`
    /// on another origin.
    fn new(url: &str) -> anyhow::Result<Resolver> {
        let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&parsed) => {}
            "http" => anyhow::bail!(
                "{url}: a resolver is reached over https (plain http only on loopback): \
                 over http anyone on the path could answer with any manifest"
            ),
            _ => anyhow::bail!("{url}: the resolver must be an https URL"),
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("likeness-verify/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Resolver { base: url.trim_end_matches('/').to_string(), client })
    }

    /// An `endpoint` from a match, only when it is the resolver's own origin.
    fn same_origin<'a>(&'a self, endpoint: Option<&'a str>) -> anyhow::Result<&'a str> {
        let Some(endpoint) = endpoint else { return Ok(&self.base) };
        let (ours, theirs) = (reqwest::Url::parse(&self.base)?, reqwest::Url::parse(endpoint));
        match theirs {
            Ok(t) if t.origin() == ours.origin() => Ok(endpoint.trim_end_matches('/')),
            _ => anyhow::bail!("the resolver pointed to a manifest on another origin ({endpoint}); not followed"),
        }
    }

    fn recover(
        &self,
        verifier: &Verifier,
        bytes: &Result<Vec<u8>, String>,
        found: Option<&likeness_watermark::Detection>,
    ) -> Recovered {
        let value = found.map(|d| likeness_pipeline::soft_binding(&d.payload).value);
        let mut rec = Recovered {
            resolver: self.base.clone(),
            query: ResolverQuery::ByContent,
            alg: likeness_watermark::ALG,
            value: value.clone(),
            manifest_id: None,
            similarity: None,
            hard_binding: None,
            soft_binding: None,
            state: None,
            signer: None,
            likeness: None,
            failures: vec![],
            error: None,
        };
        match bytes {
            Ok(bytes) => {
                if let Err(e) = self.fill(&mut rec, verifier, bytes, value.as_deref()) {
                    rec.error = Some(format!("{e:#}"));
                }
            }
            Err(e) => rec.error = Some(e.clone()),
        }
        rec
    }

    fn fill(&self, rec: &mut Recovered, verifier: &Verifier, bytes: &[u8], value: Option<&str>) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let answer = self
            .client
            .post(format!("{}/matches/byContent", self.base))
            .query(&[("alg", likeness_watermark::ALG), ("maxResults", "1")])
            .header(reqwest::header::CONTENT_TYPE, sniff_mime(bytes))
            .body(bytes.to_vec())
            .send();
        let answer = answer.context("the resolver did not answer")?;
        let status = answer.status();
        let text = bounded(answer, MAX_ANSWER_BYTES).context("reading the resolver's answer")?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&text).chars().take(MAX_ERROR_CHARS).collect();
            anyhow::bail!("the resolver answered {status}: {}", text.escape_debug());
        }
        let body: serde_json::Value = serde_json::from_slice(&text).context("the resolver's answer is not JSON")?;
        let Some(first) = body.get("matches").and_then(|m| m.as_array()).and_then(|m| m.first()) else {
            anyhow::bail!(if value.is_some() {
                "the resolver matched no manifest to this image, though its watermark was read here: the \
                 resolver refuses a mark copied onto another picture (its content check), and a mark made \
                 with a key it does not hold"
            } else {
                "the resolver matched no manifest to this image: it found no watermark it knows, or one \
                 copied onto this picture from another (its content check)"
            });
        };
        let manifest_id = first
            .get("manifestId")
            .and_then(|m| m.as_str())
            .context("the resolver's match has no manifestId")?
            .to_string();
        rec.similarity = first.get("similarityScore").and_then(|s| s.as_u64()).map(|s| s.min(100) as u8);
        if manifest_id.is_empty() || manifest_id.contains(['/', '?', '#']) {
            anyhow::bail!("the resolver's manifestId {:?} is not an id", manifest_id);
        }
        let endpoint = self.same_origin(first.get("endpoint").and_then(|e| e.as_str()))?;
        let store = self.manifest(endpoint, &manifest_id)?;
        rec.manifest_id = Some(manifest_id);

        let v = verifier.verify_with_manifest(&store, bytes).context("validating the recovered manifest")?;
        rec.hard_binding =
            v.hard_binding_intact.map(|intact| if intact { HardBinding::Intact } else { HardBinding::Mismatch });
        // The manifest must declare this watermark: the value read here, or,
        // when the resolver read the mark, at least this algorithm. Any other
        // signed manifest says nothing about these pixels.
        let declares_alg = v.soft_bindings.iter().any(|b| b.alg == likeness_watermark::ALG);
        rec.soft_binding = Some(match value {
            Some(v2) if v.soft_bindings.iter().any(|b| b.alg == likeness_watermark::ALG && b.value == v2) => {
                SoftBindingCheck::Match
            }
            Some(_) => SoftBindingCheck::Mismatch,
            None if declares_alg => SoftBindingCheck::Resolver,
            None => SoftBindingCheck::Mismatch,
        });
        rec.state = Some(if rec.soft_binding == Some(SoftBindingCheck::Mismatch) {
            TrustState::Invalid
        } else {
            v.state_apart_from_hard_binding()
        });
        rec.signer = v.signer.clone();
        rec.likeness = v.likeness.clone();
        rec.failures = v.failures;
        Ok(())
    }

    fn manifest(&self, endpoint: &str, id: &str) -> anyhow::Result<Vec<u8>> {
        use anyhow::Context as _;
        let resp = self.client.get(format!("{endpoint}/manifests/{id}")).send().context("fetching the manifest")?;
        if !resp.status().is_success() {
            anyhow::bail!("fetching manifest {id}: {}", resp.status());
        }
        bounded(resp, MAX_MANIFEST_BYTES).context("reading the manifest")
    }
}

/// A response body of at most `max` bytes, never holding more.
fn bounded(resp: reqwest::blocking::Response, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut body = Vec::new();
    resp.take(max + 1).read_to_end(&mut body)?;
    if body.len() as u64 > max {
        anyhow::bail!("the answer is over {max} bytes");
    }
    Ok(body)
}

fn sniff_mime(bytes: &[u8]) -> &'static str {
    likeness_media::MediaType::sniff(bytes).map_or("application/octet-stream", |m| m.mime())
}

fn print_recovered(r: &Recovered) {
    let Some(id) = &r.manifest_id else {
        say!("  recovered:     nothing via {} ({})", r.resolver, r.error.as_deref().unwrap_or("no match"));
        return;
    };
    let state = match r.state {
        Some(TrustState::Trusted) => "trusted: signed by a trusted signer",
        Some(TrustState::Valid) => "valid: well signed, but the signer is not on a trust list",
        _ => "INVALID: the recovered credentials do not hold",
    };
    say!("  recovered:     credentials recovered via the watermark from {} ({id})", r.resolver);
    match r.hard_binding {
        Some(HardBinding::Mismatch) => {
            say!("  hard binding:  no longer matches these pixels (re-encoded since signing)")
        }
        Some(HardBinding::Intact) => say!("  hard binding:  intact"),
        None => say!("  hard binding:  could not be told"),
    }
    match r.soft_binding {
        Some(SoftBindingCheck::Match) => {
            say!("  soft binding:  matches (the watermark's payload is the one the manifest declares)")
        }
        Some(SoftBindingCheck::Resolver) => say!(
            "  soft binding:  matched by the resolver (score {})",
            r.similarity.map_or("-".to_string(), |s| s.to_string())
        ),
        Some(SoftBindingCheck::Mismatch) | None => say!("  soft binding:  DOES NOT MATCH the manifest"),
    }
    say!("  signer state:  {state}");
    if let Some(signer) = &r.signer {
        say!("  signer:        {signer}");
    }
    if let Some(l) = &r.likeness {
        print_likeness(l);
    }
}

/// likeness's own assertion: which asset, which consent receipt.
fn print_likeness(l: &serde_json::Value) {
    let field = |k: &str| l.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
    say!("  asset:         {}", field("asset_id"));
    say!("  consent:       receipt {}", field("receipt"));
}

fn print_human(file: &Path, result: &Result<Verification, likeness_provenance::ProvenanceError>) {
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            say!("{}: error: {e}", file.display());
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
    say!("{}: {headline}", file.display());
    if let Some(url) = &v.remote_url {
        say!("  remote manifest: {url}");
    }
    if v.state == TrustState::None {
        return;
    }
    // The disclosure: who provides the system, which system, when, which asset.
    if v.provider.is_some() || v.created.is_some() {
        let by = v.provider.as_deref().map(|p| format!(" by {p}")).unwrap_or_default();
        let with = v.claim_generator.as_deref().map(|g| format!(" with {g}")).unwrap_or_default();
        let on = v.created.as_deref().map(|t| format!(", {t}")).unwrap_or_default();
        say!("  made with AI:  generated{by}{with}{on}");
    }
    if let Some(asset) = &v.asset {
        say!("  identifier:    {asset}");
    }
    if let Some(signer) = &v.signer {
        let issuer = v.issuer.as_deref().map(|i| format!(" (issued by {i})")).unwrap_or_default();
        say!("  signer:        {signer}{issuer}");
    }
    if let Some(t) = &v.signed_at {
        say!("  signed at:     {t}");
    }
    if let Some(intact) = v.hard_binding_intact {
        say!(
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
        say!("  action:        {}{dst}{agent}", a.action);
    }
    for i in &v.ingredients {
        say!("  ingredient:    {} ({})", i.hash.as_deref().unwrap_or("no hash"), i.relationship);
    }
    if let Some(l) = &v.likeness {
        print_likeness(l);
    }
    if v.failures.is_empty() {
        say!("  failures:      none");
    }
    for f in &v.failures {
        say!("  failure:       {}{}", f.code, f.explanation.as_deref().map(|e| format!(": {e}")).unwrap_or_default());
    }
}

fn short_iri(iri: &str) -> &str {
    iri.rsplit('/').next().unwrap_or(iri)
}
