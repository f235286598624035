"""The independent C2PA reference for likeness's tests, on c2pa-python.

    c2pa_reference.py read [--anchors CA.pem] FILE...
        One JSON line per file: {"file", "state", "failures", "remote_url", "error", "disclosure"}
        with state one of trusted, valid, invalid, none, remote, error
        (the same vocabulary as `likeness verify --json`).

    c2pa_reference.py make-foreign --source JPEG --out DIR
        Writes files signed by someone other than likeness, with c2pa-python's
        own signer (ES256, its own CA): foreign-valid.jpg, foreign-tampered.jpg,
        foreign-remote.jpg (manifest only at a remote URL), foreign-ca.pem.

Always offline: remote manifests and OCSP are never fetched.
"""

import argparse
import datetime
import json
import re
import sys

import c2pa
from c2pa import Builder, C2paError, C2paSignerInfo, C2paSigningAlg, Context, Reader, Signer


def offline(extra=None):
    cfg = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    for key, value in (extra or {}).items():
        cfg.setdefault(key, {}).update(value)
    return Context.from_dict(cfg)


def mime_of(path):
    with open(path, "rb") as f:
        head = f.read(12)
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def read(path, anchors):
    ctx = offline({"trust": {"trust_anchors": anchors}} if anchors else None)
    out = {"file": path, "state": None, "failures": [], "remote_url": None, "error": None, "disclosure": None}
    try:
        with open(path, "rb") as f, Reader(mime_of(path), f, context=ctx) as r:
            store = json.loads(r.json())
            out["state"] = (store.get("validation_state") or "invalid").lower()
            results = store.get("validation_results") or {}
            active = results.get("activeManifest") or {}
            codes = {s["code"] for s in active.get("failure", [])}
            for delta in results.get("ingredientDeltas", []):
                codes |= {s["code"] for s in delta.get("validationDeltas", {}).get("failure", [])}
            out["failures"] = sorted(codes)
            # The latent disclosure as this reader sees it: the active
            # manifest's generator, instance id and schema.org CreativeWork.
            manifest = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
            work = next((a.get("data") for a in manifest.get("assertions", [])
                         if a.get("label") == "stds.schema-org.CreativeWork"), None) or {}
            generator = (manifest.get("claim_generator_info") or [{}])[0]
            out["disclosure"] = {
                "provider": (work.get("provider") or {}).get("name"),
                "identifier": work.get("identifier"),
                "created": work.get("dateCreated"),
                "instance_id": manifest.get("instance_id"),
                "generator": " ".join(filter(None, [generator.get("name"), generator.get("version")])),
            }
    except C2paError as e:
        text = str(e)
        remote = re.search(r"remote manifests? from url (\S+)", text)
        if remote:
            out["state"], out["remote_url"] = "remote", remote.group(1)
        elif "ManifestNotFound" in type(e).__name__ or "no JUMBF data found" in text:
            out["state"] = "none"
        else:
            out["state"], out["error"] = "error", f"{type(e).__name__}: {text}"
    return out


def make_ca_and_leaf():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Foreign Test Org"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Foreign Test Root CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Foreign Test Org"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "Foreign Camera App")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    return pem(ca), pem(leaf) + pem(ca), key_pem


def sign(source, dest, chain, key, remote_url=None):
    manifest = {
        "claim_generator_info": [{"name": "foreign-camera-app", "version": "1.0"}],
        "title": "foreign.jpg",
        "format": "image/jpeg",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
            "action": "c2pa.created",
            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}]}}],
    }
    signer = Signer.from_info(C2paSignerInfo(C2paSigningAlg.ES256, chain, key, None))
    with Builder(manifest, context=offline({"builder": {"thumbnail": {"enabled": False}}})) as b:
        if remote_url:
            b.set_no_embed()
            b.set_remote_url(remote_url)
        with open(source, "rb") as src, open(dest, "w+b") as dst:
            b.sign(signer, "image/jpeg", src, dst)


def flip_scan_byte(path):
    """Flips one byte of entropy-coded JPEG data (after the last SOS marker's
    header), which changes pixels but leaves the manifest untouched."""
    data = bytearray(open(path, "rb").read())
    sos = data.rfind(b"\xff\xda")
    header_len = int.from_bytes(data[sos + 2:sos + 4], "big")
    i = sos + 2 + header_len + (len(data) - sos - header_len) // 2
    while data[i] == 0xFF or data[i - 1] == 0xFF or data[i] ^ 0x01 == 0xFF:
        i += 1
    data[i] ^= 0x01
    open(path, "wb").write(bytes(data))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read")
    r.add_argument("--anchors")
    r.add_argument("files", nargs="+")
    m = sub.add_parser("make-foreign")
    m.add_argument("--source", required=True)
    m.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "read":
        anchors = open(a.anchors).read() if a.anchors else None
        for f in a.files:
            print(json.dumps(read(f, anchors)), flush=True)
        return 0
    ca, chain, key = make_ca_and_leaf()
    open(f"{a.out}/foreign-ca.pem", "wb").write(ca)
    sign(a.source, f"{a.out}/foreign-valid.jpg", chain, key)
    sign(a.source, f"{a.out}/foreign-tampered.jpg", chain, key)
    flip_scan_byte(f"{a.out}/foreign-tampered.jpg")
    sign(a.source, f"{a.out}/foreign-remote.jpg", chain, key, remote_url="https://credentials.example.org/m/1.c2pa")
    return 0


if __name__ == "__main__":
    sys.exit(main())
