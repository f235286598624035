//! Content Credentials (C2PA): building, signing, reading and validating
//! manifests, and the signing keys.
//!
//! No network, ever: the `c2pa` crate is built without its HTTP features, no
//! timestamp authority is used, OCSP fetching is off, and the SDK's own
//! network allow-list is empty.
//!
//! [`SignedAsset`] is the only value the HTTP layer may send as an image, and
//! only [`Signer::sign`] constructs it.

pub mod keys;
mod verify;

use std::io::Cursor;
use std::sync::Arc;

use c2pa::{Builder, CallbackSigner, Context, Settings, SigningAlg};
use likeness_media::MediaType;
use serde_json::json;

pub use verify::{ActionSummary, Failure, IngredientSummary, TrustState, Verification, Verifier};

/// Whether `signature` is `public_key`'s Ed25519 signature of `message`.
pub fn verify_message(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(public_key)
        .is_ok_and(|k| k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok())
}

/// The public key of the signing certificate of a PEM chain.
pub fn chain_public_key(chain_pem: &[u8]) -> Option<[u8; 32]> {
    verify::leaf_public_key(chain_pem)
}

/// The version written into every manifest as the software agent.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// IPTC digital source types used by likeness.
pub const TRAINED_ALGORITHMIC_MEDIA: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";
pub const COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia";

/// Label of the C2PA soft-binding assertion.
pub const SOFT_BINDING_ASSERTION: &str = "c2pa.soft-binding";

/// Label of likeness's own assertion: request id, asset id, generator and
/// consent receipt id.
pub const REQUEST_ASSERTION: &str = "org.likeness.request";

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("could not build the manifest: {0}")]
    Manifest(String),
    #[error("could not sign: {0}")]
    Sign(String),
    #[error("{0}")]
    Read(String),
    #[error("not a format that can carry Content Credentials")]
    Unsupported,
}

/// The identity of one generated image: 16 random bytes, shown as 32 hex
/// digits. The watermark carries it (or its first 8 bytes) in the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AssetId(pub [u8; 16]);

impl AssetId {
    pub fn random() -> AssetId {
        AssetId(rand::random())
    }
}

impl std::fmt::Display for AssetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for AssetId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<AssetId, hex::FromHexError> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b)?;
        Ok(AssetId(b))
    }
}

/// What the manifest says about an asset. Derived data only: no prompt, no
/// user id, no pixels of the references.
#[derive(Debug, Clone)]
pub struct AssetDescription {
    pub asset_id: AssetId,
    pub request_id: String,
    /// Generator and style, e.g. `builtin/watercolor`.
    pub generator: String,
    /// HMAC-SHA256 (hex) of each reference photo under the operator's key,
    /// in request order: only the operator can tell which photo it was.
    pub ingredient_hashes: Vec<String>,
    /// The consent receipt the request relied on: an id, never personal data.
    pub receipt_id: String,
    /// What ties the manifest to the pixels once the file's metadata is
    /// gone: the watermark's algorithm and payload.
    pub soft_binding: Option<SoftBinding>,
    /// The version (content hash) of the policy that allowed it.
    pub policy_version: String,
    /// The labels the policy put on it (e.g. `ai_generated`).
    pub labels: Vec<String>,
}

/// A soft binding (C2PA): an algorithm name and a value computed from, or
/// carried by, the content rather than its bytes. For likeness the value is
/// the watermark payload, base64, as the Soft Binding Resolution API takes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SoftBinding {
    pub alg: String,
    pub value: String,
}

/// An encoded image with its signed manifest embedded. Its fields are private
/// and it has no public constructor: holding one proves the bytes were signed.
pub struct SignedAsset {
    asset_id: AssetId,
    media_type: MediaType,
    bytes: Vec<u8>,
    manifest_id: String,
    manifest_store: Vec<u8>,
    soft_binding: Option<SoftBinding>,
}

impl SignedAsset {
    pub fn asset_id(&self) -> AssetId {
        self.asset_id
    }
    pub fn media_type(&self) -> MediaType {
        self.media_type
    }
    /// The image file, manifest embedded.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The manifest's label (`urn:c2pa:...`).
    pub fn manifest_id(&self) -> &str {
        &self.manifest_id
    }
    /// The manifest store alone (`application/c2pa`), for the resolver.
    pub fn manifest_store(&self) -> &[u8] {
        &self.manifest_store
    }
    /// The soft binding the manifest declares, if any.
    pub fn soft_binding(&self) -> Option<&SoftBinding> {
        self.soft_binding.as_ref()
    }
}

impl std::fmt::Debug for SignedAsset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedAsset")
            .field("asset_id", &self.asset_id)
            .field("media_type", &self.media_type)
            .field("bytes", &self.bytes.len())
            .field("manifest_id", &self.manifest_id)
            .finish()
    }
}

/// Settings shared by signing and reading: never touch the network.
fn offline_settings() -> Result<Settings, c2pa::Error> {
    Settings::new().with_json(
        r#"{
            "verify": { "ocsp_fetch": false, "remote_manifest_fetch": false },
            "builder": { "thumbnail": { "enabled": false } },
            "core": { "allowed_network_hosts": [] }
        }"#,
    )
}

/// Signs assets with one Ed25519 identity.
pub struct Signer {
    context: Arc<Context>,
    signer: CallbackSigner,
    subject: String,
    /// Who offers the generation service (the operator), named in every
    /// manifest: the provider the AI-disclosure laws ask for.
    provider: Option<String>,
    /// The same key, for the decision log's checkpoints.
    key: ed25519_dalek::SigningKey,
}

impl Signer {
    /// From a PEM chain (signing certificate first) and a PKCS#8 Ed25519 key.
    pub fn new(chain_pem: &[u8], key: ed25519_dalek::SigningKey) -> Result<Signer, ProvenanceError> {
        let subject = verify::leaf_subject(chain_pem)
            .ok_or_else(|| ProvenanceError::Key("the certificate chain has no readable PEM certificate".into()))?;
        // The key must match the certificate, or every signature would be invalid.
        let leaf_key = verify::leaf_public_key(chain_pem)
            .ok_or_else(|| ProvenanceError::Key("cannot read the signing certificate's public key".into()))?;
        if leaf_key != key.verifying_key().to_bytes() {
            return Err(ProvenanceError::Key("the private key does not belong to the signing certificate".into()));
        }
        let callback_key = key.clone();
        let callback = move |_ctx: *const (), data: &[u8]| -> Result<Vec<u8>, c2pa::Error> {
            use ed25519_dalek::Signer as _;
            Ok(callback_key.sign(data).to_bytes().to_vec())
        };
        let signer = CallbackSigner::new(callback, SigningAlg::Ed25519, chain_pem.to_vec());
        let settings = offline_settings()
            .and_then(|s| s.with_value("verify.verify_after_sign", true))
            .map_err(|e| ProvenanceError::Manifest(e.to_string()))?;
        let context =
            Context::new().with_settings(settings).map_err(|e| ProvenanceError::Manifest(e.to_string()))?.into_shared();
        let signer = Signer { context, signer, subject, key, provider: None };
        // Sign a tiny image once now: a certificate that fails the C2PA profile
        // should stop the gateway at start, not fail every request later.
        signer.self_test()?;
        Ok(signer)
    }

    /// Names `provider` (the operator) in every manifest from now on.
    pub fn with_provider(mut self, provider: impl Into<String>) -> Signer {
        self.provider = Some(provider.into());
        self
    }

    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    pub fn from_paths(paths: &keys::KeyPaths) -> Result<Signer, ProvenanceError> {
        let (chain, key) = keys::load(paths)?;
        Signer::new(&chain, key)
    }

    /// Signs `message` with the signing key (Ed25519): the decision log's
    /// checkpoints. Domain-separated from manifests by what is signed.
    pub fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }

    /// The signing key's public half, as the certificate carries it.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signing certificate's subject (common name).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    fn self_test(&self) -> Result<(), ProvenanceError> {
        let pixels = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 50]));
        let bytes = likeness_media::encode(&pixels, likeness_media::OutputFormat::Png)
            .map_err(|e| ProvenanceError::Sign(e.to_string()))?;
        let desc = AssetDescription {
            asset_id: AssetId([0; 16]),
            request_id: "self-test".into(),
            generator: "self-test".into(),
            ingredient_hashes: vec![],
            receipt_id: "self-test".into(),
            soft_binding: Some(SoftBinding { alg: "org.likeness.self-test".into(), value: "AA==".into() }),
            policy_version: "self-test".into(),
            labels: vec![],
        };
        self.sign(&bytes, MediaType::Png, &desc)
            .map(drop)
            .map_err(|e| ProvenanceError::Key(format!("the signing identity cannot produce valid C2PA manifests: {e}")))
    }

    /// Embeds a signed manifest describing `desc` into `encoded`.
    pub fn sign(
        &self,
        encoded: &[u8],
        media_type: MediaType,
        desc: &AssetDescription,
    ) -> Result<SignedAsset, ProvenanceError> {
        let manifest_id = format!("urn:c2pa:{}", uuid::Uuid::new_v4().hyphenated());
        let definition = manifest_definition(desc, media_type, &manifest_id, self.provider.as_deref());
        let mut builder = Builder::from_shared_context(&self.context)
            .with_definition(definition)
            .map_err(|e| ProvenanceError::Manifest(e.to_string()))?;
        let mut source = Cursor::new(encoded);
        let mut dest = Cursor::new(Vec::with_capacity(encoded.len() + 32 * 1024));
        let manifest_store = builder
            .sign(&self.signer, media_type.mime(), &mut source, &mut dest)
            .map_err(|e| ProvenanceError::Sign(e.to_string()))?;
        Ok(SignedAsset {
            asset_id: desc.asset_id,
            media_type,
            bytes: dest.into_inner(),
            manifest_id,
            manifest_store,
            soft_binding: desc.soft_binding.clone(),
        })
    }
}

/// The assertion naming the provider and the asset: schema.org's
/// `CreativeWork`, which C2PA readers show.
pub const CREATIVE_WORK_ASSERTION: &str = "stds.schema-org.CreativeWork";

fn manifest_definition(
    desc: &AssetDescription,
    media_type: MediaType,
    label: &str,
    provider: Option<&str>,
) -> serde_json::Value {
    let when = now_rfc3339();
    let ingredients: Vec<serde_json::Value> = desc
        .ingredient_hashes
        .iter()
        .enumerate()
        .map(|(i, hash)| {
            // Identified by hash alone: no title from the user, no thumbnail, no data.
            json!({
                "title": format!("reference {}", i + 1),
                "format": "application/octet-stream",
                "relationship": "inputTo",
                "label": format!("reference-{}", i + 1),
                "instance_id": format!("hmac-sha256:{hash}"),
            })
        })
        .collect();
    let ingredient_ids: Vec<String> = (1..=ingredients.len()).map(|i| format!("reference-{i}")).collect();
    let source_type =
        if ingredients.is_empty() { TRAINED_ALGORITHMIC_MEDIA } else { COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA };
    let mut created = json!({
        "action": "c2pa.created",
        "digitalSourceType": source_type,
        "softwareAgent": { "name": "likeness", "version": SOFTWARE_VERSION },
        "when": when,
        "description": "generated by likeness from a prompt and the user's consented reference photos",
    });
    if !ingredient_ids.is_empty() {
        created["parameters"] = json!({ "ingredientIds": ingredient_ids });
    }
    let mut actions = vec![created];
    if let Some(binding) = &desc.soft_binding {
        // C2PA 2.2: the invisible watermark that carries the soft binding
        // below (which this action requires).
        actions.push(json!({
            "action": "c2pa.watermarked",
            "softwareAgent": { "name": "likeness", "version": SOFTWARE_VERSION },
            "description": format!("invisible watermark {} carrying this manifest's soft binding", binding.alg),
        }));
    }
    let mut assertions = vec![
        json!({ "label": "c2pa.actions.v2", "data": { "actions": actions } }),
        json!({ "label": "cawg.training-mining", "data": { "entries": {
            "cawg.ai_inference": { "use": "notAllowed" },
            "cawg.ai_generative_training": { "use": "notAllowed" },
            "cawg.ai_training": { "use": "notAllowed" },
            "cawg.data_mining": { "use": "notAllowed" },
        } } }),
        json!({ "label": REQUEST_ASSERTION, "data": {
            "request_id": desc.request_id,
            "asset_id": desc.asset_id.to_string(),
            "generator": desc.generator,
            "receipt": desc.receipt_id,
            "policy": desc.policy_version,
            "labels": desc.labels,
        } }),
    ];
    // The latent disclosure: who provides the system, which system, when,
    // and the asset's own identifier (EU AI Act Art. 50(2); California's
    // AI Transparency Act). Never the user.
    let mut work = json!({
        "@context": "https://schema.org",
        "@type": "CreativeWork",
        "identifier": asset_urn(desc.asset_id),
        "dateCreated": when,
        "isBasedOn": { "@type": "SoftwareApplication", "name": "likeness", "softwareVersion": SOFTWARE_VERSION },
        "description": "AI-generated image",
    });
    if let Some(provider) = provider {
        work["provider"] = json!({ "@type": "Organization", "name": provider });
        work["creditText"] = format!("Made with AI by {provider}").into();
    }
    assertions.push(json!({ "label": CREATIVE_WORK_ASSERTION, "data": work }));
    if let Some(binding) = &desc.soft_binding {
        // One block covering the whole image (an empty scope).
        assertions.push(json!({ "label": SOFT_BINDING_ASSERTION, "data": {
            "alg": binding.alg,
            "blocks": [{ "scope": {}, "value": binding.value }],
        } }));
    }
    json!({
        "label": label,
        "title": format!("likeness asset {}", desc.asset_id),
        "instance_id": asset_urn(desc.asset_id),
        "format": media_type.mime(),
        "claim_generator_info": [{ "name": "likeness", "version": SOFTWARE_VERSION }],
        "ingredients": ingredients,
        "assertions": assertions,
    })
}

/// The asset's identifier as manifests carry it.
pub fn asset_urn(asset: AssetId) -> String {
    format!("urn:likeness:asset:{asset}")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;

    fn identity() -> keys::DevIdentity {
        keys::generate_dev_identity("likeness test").unwrap()
    }

    fn signer(id: &keys::DevIdentity) -> Signer {
        Signer::new(id.chain_pem.as_bytes(), keys::parse_signing_key(&id.key_pem).unwrap()).unwrap()
    }

    fn test_png() -> Vec<u8> {
        let px = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        likeness_media::encode(&px, likeness_media::OutputFormat::Png).unwrap()
    }

    fn description(hashes: Vec<String>) -> AssetDescription {
        AssetDescription {
            asset_id: AssetId::random(),
            request_id: "req_test".into(),
            generator: "builtin/sketch".into(),
            ingredient_hashes: hashes,
            receipt_id: "rcpt_test".into(),
            soft_binding: Some(SoftBinding { alg: "org.likeness.wm.1".into(), value: "AQIDBAUGBwg=".into() }),
            policy_version: "0".repeat(64),
            labels: vec!["ai_generated".into()],
        }
    }

    #[test]
    fn dev_leaf_passes_the_c2pa_profile() {
        let id = identity();
        let (_, pem) = x509_parser::pem::parse_x509_pem(id.chain_pem.as_bytes()).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&pem.contents).unwrap();
        assert!(!leaf.is_ca());
        let mut saw = (false, false, false);
        for ext in leaf.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => saw.0 = ku.digital_signature() && !ku.key_cert_sign(),
                ParsedExtension::ExtendedKeyUsage(eku) => saw.1 = eku.email_protection && !eku.any,
                ParsedExtension::AuthorityKeyIdentifier(aki) => saw.2 = aki.key_identifier.is_some(),
                _ => {}
            }
        }
        assert_eq!(saw, (true, true, true), "(digitalSignature, emailProtection EKU, AKI)");
        assert_eq!(leaf.signature_algorithm.algorithm.to_id_string(), "1.3.101.112", "Ed25519");
    }

    #[test]
    fn signed_asset_is_trusted_with_the_ca_and_valid_without() {
        let id = identity();
        let hash = "ab".repeat(32);
        let desc = description(vec![hash.clone()]);
        let asset = signer(&id).with_provider("Example Corp").sign(&test_png(), MediaType::Png, &desc).unwrap();
        assert!(asset.manifest_id().starts_with("urn:c2pa:"));
        assert!(!asset.manifest_store().is_empty());

        let trusted = Verifier::new(Some(&id.ca_cert_pem)).unwrap().verify_bytes(asset.bytes()).unwrap();
        assert_eq!(trusted.state, TrustState::Trusted, "{:?}", trusted.failures);
        assert_eq!(trusted.manifest_id.as_deref(), Some(asset.manifest_id()));
        assert_eq!(trusted.actions[0].action, "c2pa.created");
        assert_eq!(trusted.actions[1].action, "c2pa.watermarked", "the watermark is declared with its soft binding");
        assert_eq!(trusted.actions[0].digital_source_type.as_deref(), Some(COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA));
        assert_eq!(trusted.ingredients[0].hash.as_deref(), Some(format!("hmac-sha256:{hash}").as_str()));
        assert_eq!(
            trusted.soft_bindings,
            [SoftBinding { alg: "org.likeness.wm.1".into(), value: "AQIDBAUGBwg=".into() }]
        );
        // The latent disclosure: provider, system, time, the asset's identifier.
        assert_eq!(trusted.provider.as_deref(), Some("Example Corp"));
        assert_eq!(trusted.asset, Some(asset_urn(desc.asset_id)));
        assert_eq!(trusted.created, trusted.actions[0].when);
        assert!(trusted.created.as_deref().is_some_and(|t| t.starts_with("20")), "{:?}", trusted.created);
        assert_eq!(trusted.claim_generator.as_deref(), Some(format!("likeness {SOFTWARE_VERSION}").as_str()));

        let valid = Verifier::new(None).unwrap().verify_bytes(asset.bytes()).unwrap();
        assert_eq!(valid.state, TrustState::Valid);
        let codes: Vec<_> = valid.failures.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["signingCredential.untrusted"]);

        // Trusted only by its own CA.
        let other = identity();
        let untrusted = Verifier::new(Some(&other.ca_cert_pem)).unwrap().verify_bytes(asset.bytes()).unwrap();
        assert_eq!(untrusted.state, TrustState::Valid);
    }

    #[test]
    fn a_manifest_kept_apart_from_re_encoded_pixels_keeps_its_signer_state() {
        let id = identity();
        let asset = signer(&id).sign(&test_png(), MediaType::Png, &description(vec![])).unwrap();
        // The same picture, re-encoded without its metadata: what a platform serves.
        let pixels = likeness_media::decode(asset.bytes(), None, &Default::default()).unwrap().pixels;
        let stripped = likeness_media::encode(&pixels, likeness_media::OutputFormat::Jpeg { quality: 75 }).unwrap();

        let trusted = Verifier::new(Some(&id.ca_cert_pem)).unwrap();
        let v = trusted.verify_with_manifest(asset.manifest_store(), &stripped).unwrap();
        assert_eq!(v.state, TrustState::Invalid, "the byte hash cannot match: {:?}", v.failures);
        assert_eq!(v.hard_binding_intact, Some(false));
        assert_eq!(v.state_apart_from_hard_binding(), TrustState::Trusted);
        assert_eq!(v.manifest_id.as_deref(), Some(asset.manifest_id()));

        let untrusted = Verifier::new(None).unwrap();
        let v = untrusted.verify_with_manifest(asset.manifest_store(), &stripped).unwrap();
        assert_eq!(v.state_apart_from_hard_binding(), TrustState::Valid);

        // A manifest store whose signature is broken stays invalid.
        let mut forged = asset.manifest_store().to_vec();
        let n = forged.len();
        forged[n - 40] ^= 0xff;
        let v = trusted.verify_with_manifest(&forged, &stripped).unwrap();
        assert_eq!(v.state_apart_from_hard_binding(), TrustState::Invalid, "{:?}", v.failures);
    }

    #[test]
    fn unsigned_and_unreadable_inputs() {
        let verifier = Verifier::new(None).unwrap();
        assert_eq!(verifier.verify_bytes(&test_png()).unwrap().state, TrustState::None);
        assert!(matches!(verifier.verify_bytes(b"plain text, not an image"), Err(ProvenanceError::Unsupported)));
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let (a, b) = (identity(), identity());
        let err = Signer::new(a.chain_pem.as_bytes(), keys::parse_signing_key(&b.key_pem).unwrap()).err().unwrap();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn a_certificate_outside_the_c2pa_profile_stops_the_signer_at_start() {
        // A leaf with no EKU at all: c2pa refuses to sign with it, and the
        // signer's self-test turns that into a start-up error.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        let err =
            Signer::new(cert.pem().as_bytes(), keys::parse_signing_key(&key.serialize_pem()).unwrap()).err().unwrap();
        assert!(err.to_string().contains("cannot produce valid C2PA manifests"), "{err}");
    }
}
