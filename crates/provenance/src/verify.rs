//! Reading and validating Content Credentials, for `likeness verify`. The trust state follows the C2PA reference
//! implementation: `trusted` needs a signer that chains to a given anchor;
//! `valid` is intact and well signed but not trusted; anything else that
//! carries a manifest is `invalid`.

use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use c2pa::{Context, Reader, ValidationState};
use serde::Serialize;

use crate::{offline_settings, ProvenanceError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustState {
    Trusted,
    Valid,
    Invalid,
    /// No Content Credentials at all.
    None,
    /// The manifest is at a remote URL, which is never fetched.
    Remote,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub code: String,
    pub explanation: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionSummary {
    pub action: String,
    pub digital_source_type: Option<String>,
    pub software_agent: Option<String>,
    pub when: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngredientSummary {
    pub title: Option<String>,
    pub relationship: String,
    /// The ingredient's identity: for likeness outputs, `sha256:<hex>` of the
    /// reference photo.
    pub hash: Option<String>,
}

/// What a file's credentials say.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub state: TrustState,
    /// The signing certificate's subject common name (or organization).
    pub signer: Option<String>,
    /// The common name of the certificate that issued the signer's.
    pub issuer: Option<String>,
    /// Time of a trusted timestamp, when the manifest has one.
    pub signed_at: Option<String>,
    pub signing_alg: Option<String>,
    /// Whether the hash of the file's content still matches the signed one;
    /// `None` when it could not be told.
    pub hard_binding_intact: Option<bool>,
    pub manifest_id: Option<String>,
    pub claim_generator: Option<String>,
    pub actions: Vec<ActionSummary>,
    pub ingredients: Vec<IngredientSummary>,
    pub failures: Vec<Failure>,
    pub remote_url: Option<String>,
    /// The soft bindings the manifest declares (the watermark's algorithm
    /// and payload), by which it can be found when stripped from the file.
    pub soft_bindings: Vec<crate::SoftBinding>,
    /// likeness's own assertion (`org.likeness.request`): request, asset and
    /// consent receipt ids, when the signer was a likeness gateway.
    pub likeness: Option<serde_json::Value>,
    /// The provider the manifest names (schema.org `CreativeWork`'s
    /// `provider`): who offers the generation service.
    pub provider: Option<String>,
    /// The asset's identifier (`CreativeWork`'s `identifier`).
    pub asset: Option<String>,
    /// When it was created (`CreativeWork`'s `dateCreated`).
    pub created: Option<String>,
    /// Whether the signing certificate chains to a trust anchor, when the
    /// validator said either way.
    #[serde(skip)]
    signer_trusted: Option<bool>,
}

impl Verification {
    fn empty(state: TrustState) -> Verification {
        Verification {
            state,
            signer: None,
            issuer: None,
            signed_at: None,
            signing_alg: None,
            hard_binding_intact: None,
            manifest_id: None,
            claim_generator: None,
            actions: vec![],
            ingredients: vec![],
            failures: vec![],
            remote_url: None,
            soft_bindings: vec![],
            likeness: None,
            provider: None,
            asset: None,
            created: None,
            signer_trusted: None,
        }
    }

    /// The trust state with the hard binding set aside: for a manifest
    /// found through a soft binding, whose pixels were re-encoded since
    /// signing, so the signed byte hash cannot match. Every other failure
    /// still makes it `invalid`; `trusted` needs the validator's own word
    /// that the signer chains to an anchor.
    pub fn state_apart_from_hard_binding(&self) -> TrustState {
        if self.state != TrustState::Invalid || self.manifest_id.is_none() {
            return self.state;
        }
        let others = self
            .failures
            .iter()
            .filter(|f| !HARD_BINDING_MISMATCH.contains(&f.code.as_str()) && f.code != "signingCredential.untrusted");
        if others.count() > 0 {
            TrustState::Invalid
        } else if self.signer_trusted == Some(true) {
            TrustState::Trusted
        } else {
            TrustState::Valid
        }
    }
}

/// Validates files against an optional set of trust anchors.
pub struct Verifier {
    context: Arc<Context>,
    max_file_bytes: u64,
}

/// Largest file `verify_file` reads. The C2PA reader holds a whole JPEG in
/// memory, so this bounds what a hostile file can cost.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

impl Verifier {
    /// `trust_anchors`: PEM bundle of CA certificates. With none, a good
    /// signature is at best `valid`.
    pub fn new(trust_anchors: Option<&str>) -> Result<Verifier, ProvenanceError> {
        let mut settings = offline_settings().map_err(|e| ProvenanceError::Read(e.to_string()))?;
        if let Some(pem) = trust_anchors {
            settings = settings
                .with_value("trust.trust_anchors", pem.to_string())
                .map_err(|e| ProvenanceError::Read(format!("trust anchors: {e}")))?;
        }
        let context = Context::new()
            .with_settings(settings)
            .map_err(|e| ProvenanceError::Read(format!("trust anchors: {e}")))?
            .into_shared();
        Ok(Verifier { context, max_file_bytes: DEFAULT_MAX_FILE_BYTES })
    }

    /// Reads a regular file of at most `max_file_bytes` as a stream.
    pub fn verify_file(&self, path: &Path) -> Result<Verification, ProvenanceError> {
        let mut file = std::fs::File::open(path).map_err(|e| ProvenanceError::Read(e.to_string()))?;
        let meta = file.metadata().map_err(|e| ProvenanceError::Read(e.to_string()))?;
        if !meta.is_file() {
            return Err(ProvenanceError::Read("not a regular file".into()));
        }
        if meta.len() > self.max_file_bytes {
            return Err(ProvenanceError::Read(format!(
                "the file is {} bytes; files over {} bytes are not read",
                meta.len(),
                self.max_file_bytes
            )));
        }
        let format = sniff_format(&mut file)
            .or_else(|| path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()))
            .ok_or(ProvenanceError::Unsupported)?;
        self.verify_stream(&format, file)
    }

    pub fn verify_bytes(&self, bytes: &[u8]) -> Result<Verification, ProvenanceError> {
        let mut cursor = std::io::Cursor::new(bytes);
        let format = sniff_format(&mut cursor).ok_or(ProvenanceError::Unsupported)?;
        self.verify_stream(&format, cursor)
    }

    /// Validates `asset` against a manifest store kept apart from it (what the
    /// soft-binding resolver returns, or a sidecar `.c2pa`).
    pub fn verify_with_manifest(&self, manifest_store: &[u8], asset: &[u8]) -> Result<Verification, ProvenanceError> {
        let mut cursor = std::io::Cursor::new(asset);
        let format = sniff_format(&mut cursor).ok_or(ProvenanceError::Unsupported)?;
        match Reader::from_shared_context(&self.context).with_manifest_data_and_stream(manifest_store, &format, cursor)
        {
            Ok(reader) => Ok(summarize(&reader)),
            Err(e) => Ok(Verification {
                failures: vec![Failure { code: "manifest.malformed".into(), explanation: Some(e.to_string()) }],
                ..Verification::empty(TrustState::Invalid)
            }),
        }
    }

    fn verify_stream(&self, format: &str, stream: impl Read + Seek + Send) -> Result<Verification, ProvenanceError> {
        match Reader::from_shared_context(&self.context).with_stream(format, stream) {
            Ok(reader) => Ok(summarize(&reader)),
            Err(c2pa::Error::JumbfNotFound) => Ok(Verification::empty(TrustState::None)),
            Err(c2pa::Error::RemoteManifestUrl(url)) => {
                Ok(Verification { remote_url: Some(url), ..Verification::empty(TrustState::Remote) })
            }
            Err(c2pa::Error::UnsupportedType) => Err(ProvenanceError::Unsupported),
            Err(c2pa::Error::IoError(e)) => Err(ProvenanceError::Read(e.to_string())),
            // A manifest is there but cannot be parsed: that is a broken
            // credential, not an absent one.
            Err(e) => Ok(Verification {
                failures: vec![Failure { code: "manifest.malformed".into(), explanation: Some(e.to_string()) }],
                ..Verification::empty(TrustState::Invalid)
            }),
        }
    }
}

/// The C2PA format string for a file, from its first bytes.
fn sniff_format(stream: &mut (impl Read + Seek)) -> Option<String> {
    let mut head = [0u8; 16];
    let n = stream.read(&mut head).ok()?;
    stream.rewind().ok()?;
    let h = &head[..n];
    let mime = if h.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if h.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if h.len() >= 12 && &h[..4] == b"RIFF" && &h[8..12] == b"WEBP" {
        "image/webp"
    } else if h.starts_with(b"II*\0") || h.starts_with(b"MM\0*") {
        "image/tiff"
    } else if h.starts_with(b"GIF8") {
        "image/gif"
    } else if h.len() >= 12 && &h[4..8] == b"ftyp" {
        match &h[8..12] {
            b"avif" | b"avis" => "image/avif",
            b"heic" | b"heix" | b"mif1" | b"msf1" => "image/heic",
            _ => "video/mp4",
        }
    } else {
        return None;
    };
    Some(mime.to_string())
}

const HARD_BINDING_MISMATCH: &[&str] = &[
    "assertion.dataHash.mismatch",
    "assertion.boxesHash.mismatch",
    "assertion.bmffHash.mismatch",
    "assertion.collectionHash.mismatch",
];
const HARD_BINDING_MATCH: &[&str] = &[
    "assertion.dataHash.match",
    "assertion.boxesHash.match",
    "assertion.bmffHash.match",
    "assertion.collectionHash.match",
];

fn summarize(reader: &Reader) -> Verification {
    let state = match reader.validation_state() {
        ValidationState::Trusted => TrustState::Trusted,
        ValidationState::Valid => TrustState::Valid,
        ValidationState::Invalid => TrustState::Invalid,
    };
    let failures: Vec<Failure> = reader
        .validation_status()
        .unwrap_or(&[])
        .iter()
        .map(|s| Failure { code: s.code().to_string(), explanation: s.explanation().map(str::to_string) })
        .collect();
    let successes: Vec<String> = reader
        .validation_results()
        .and_then(|r| r.active_manifest())
        .map(|s| s.success().iter().map(|v| v.code().to_string()).collect())
        .unwrap_or_default();
    let hard_binding_intact = if failures.iter().any(|f| HARD_BINDING_MISMATCH.contains(&f.code.as_str())) {
        Some(false)
    } else if successes.iter().any(|c| HARD_BINDING_MATCH.contains(&c.as_str())) {
        Some(true)
    } else {
        None
    };

    let signer_trusted = if successes.iter().any(|c| c == "signingCredential.trusted") {
        Some(true)
    } else if failures.iter().any(|f| f.code == "signingCredential.untrusted") {
        Some(false)
    } else {
        None
    };
    let mut v = Verification { failures, hard_binding_intact, signer_trusted, ..Verification::empty(state) };
    let Some(manifest) = reader.active_manifest() else { return v };
    v.manifest_id = manifest.label().map(str::to_string);
    v.claim_generator =
        manifest.claim_generator_info.as_ref().and_then(|list| list.first()).map(|g| match &g.version {
            Some(ver) => format!("{} {ver}", g.name),
            None => g.name.clone(),
        });
    if let Some(sig) = manifest.signature_info() {
        v.signing_alg = sig.alg.map(|a| a.to_string());
        v.signed_at = sig.time.clone();
        let chain = sig.cert_chain().as_bytes();
        v.signer = leaf_subject(chain).or_else(|| sig.common_name.clone()).or_else(|| sig.issuer.clone());
        v.issuer = leaf_issuer(chain);
    }
    for assertion in manifest.assertions() {
        if assertion.label() == crate::REQUEST_ASSERTION {
            v.likeness = assertion.value().ok().cloned();
            continue;
        }
        if assertion.label() == crate::CREATIVE_WORK_ASSERTION {
            if let Ok(work) = assertion.value() {
                let text = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).map(str::to_string);
                v.provider = text(work.get("provider").and_then(|p| p.get("name")));
                v.asset = text(work.get("identifier"));
                v.created = text(work.get("dateCreated"));
            }
            continue;
        }
        if assertion.label() == crate::SOFT_BINDING_ASSERTION {
            if let Ok(value) = assertion.value() {
                let alg = value.get("alg").and_then(|a| a.as_str()).unwrap_or_default();
                for block in value.get("blocks").and_then(|b| b.as_array()).into_iter().flatten() {
                    if let Some(v2) = block.get("value").and_then(|x| x.as_str()) {
                        v.soft_bindings.push(crate::SoftBinding { alg: alg.to_string(), value: v2.to_string() });
                    }
                }
            }
            continue;
        }
        if !assertion.label().starts_with("c2pa.actions") {
            continue;
        }
        let Ok(value) = assertion.value() else { continue };
        for a in value.get("actions").and_then(|a| a.as_array()).into_iter().flatten() {
            let text = |k: &str| a.get(k).and_then(|x| x.as_str()).map(str::to_string);
            let agent = match a.get("softwareAgent") {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(obj) => obj.get("name").and_then(|n| n.as_str()).map(|name| {
                    match obj.get("version").and_then(|x| x.as_str()) {
                        Some(ver) => format!("{name} {ver}"),
                        None => name.to_string(),
                    }
                }),
                None => None,
            };
            v.actions.push(ActionSummary {
                action: text("action").unwrap_or_default(),
                digital_source_type: text("digitalSourceType"),
                software_agent: agent,
                when: text("when"),
            });
        }
    }
    for ing in manifest.ingredients() {
        v.ingredients.push(IngredientSummary {
            title: ing.title().map(str::to_string),
            relationship: serde_json::to_value(ing.relationship())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            hash: Some(ing.instance_id().to_string()).filter(|s| s != "None"),
        });
    }
    v
}

fn first_cert(chain_pem: &[u8]) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem).ok()?;
    Some(pem.contents)
}

fn with_leaf<T>(
    chain_pem: &[u8],
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> Option<T>,
) -> Option<T> {
    let der = first_cert(chain_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    f(&cert)
}

fn display_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .or_else(|| name.iter_organization().next())
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
}

pub(crate) fn leaf_subject(chain_pem: &[u8]) -> Option<String> {
    with_leaf(chain_pem, |c| display_name(c.subject()))
}

fn leaf_issuer(chain_pem: &[u8]) -> Option<String> {
    with_leaf(chain_pem, |c| display_name(c.issuer()))
}

pub(crate) fn leaf_public_key(chain_pem: &[u8]) -> Option<[u8; 32]> {
    with_leaf(chain_pem, |c| c.public_key().subject_public_key.data.as_ref().try_into().ok())
}
