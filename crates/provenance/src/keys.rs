//! Signing keys: making the development CA and signing certificate (as PEM
//! text; the CLI writes the files), and loading a chain and key from PEM.
//!
//! The leaf must pass the C2PA certificate profile and the reference reader's
//! checks: not a CA, `digitalSignature` key usage, an AuthorityKeyIdentifier,
//! and an EKU list that includes emailProtection (c2pa-python rejects a leaf
//! whose only EKU is documentSigning or the C2PA OID).

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};

use crate::ProvenanceError;

/// Where a signing identity lives on disk.
#[derive(Debug, Clone)]
pub struct KeyPaths {
    /// PEM chain: the signing certificate first, then its issuers.
    pub chain: PathBuf,
    /// PKCS#8 PEM Ed25519 private key of the signing certificate.
    pub key: PathBuf,
}

/// A generated development identity, as PEM text.
pub struct DevIdentity {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

/// Makes a development CA and an Ed25519 signing certificate issued by it.
pub fn generate_dev_identity(organization: &str) -> Result<DevIdentity, ProvenanceError> {
    let err = |e: rcgen::Error| ProvenanceError::Key(format!("certificate generation failed: {e}"));
    let now = time::OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate_for(&PKCS_ED25519).map_err(err)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(organization, &format!("{organization} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(3650);
    ca.serial_number = Some(random_serial());
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let leaf_key = KeyPair::generate_for(&PKCS_ED25519).map_err(err)?;
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = name(organization, &format!("{organization} signer"));
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + time::Duration::days(825);
    leaf.serial_number = Some(random_serial());
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).map_err(err)?;

    Ok(DevIdentity {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key_pem: leaf_key.serialize_pem(),
    })
}

fn name(organization: &str, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    rcgen::SerialNumber::from_slice(&bytes)
}

fn io_err(path: &Path, e: std::io::Error) -> ProvenanceError {
    ProvenanceError::Key(format!("{}: {e}", path.display()))
}

/// Parses a PKCS#8 PEM Ed25519 private key.
pub fn parse_signing_key(pem: &str) -> Result<SigningKey, ProvenanceError> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| ProvenanceError::Key(format!("the signing key is not a PKCS#8 Ed25519 key: {e}")))
}

/// Reads a chain and key from disk.
pub fn load(paths: &KeyPaths) -> Result<(Vec<u8>, SigningKey), ProvenanceError> {
    let chain = std::fs::read(&paths.chain).map_err(|e| io_err(&paths.chain, e))?;
    let key = std::fs::read_to_string(&paths.key).map_err(|e| io_err(&paths.key, e))?;
    Ok((chain, parse_signing_key(&key)?))
}
