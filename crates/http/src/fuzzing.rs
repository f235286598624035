//! What the fuzz targets (`fuzz/`) run, and the normal suite runs again on
//! every kept finding (`fuzz/regressions/`): the gateway's readers of
//! untrusted bytes, each as the gateway calls it. Each function panics only
//! when the gateway would misbehave; an input refused cleanly is a pass.

use likeness_media::DecodeLimits;

/// Image decoding with the limits references get: any bytes are decoded
/// within them or refused, never a panic, never pixels past the limits.
pub fn decode_image(data: &[u8]) {
    let limits = DecodeLimits::default();
    if let Ok(d) = likeness_media::decode(data, None, &limits) {
        let (w, h) = d.pixels.dimensions();
        assert!(w.max(h) <= limits.max_side, "{w}x{h} decoded past max_side");
        assert!(u64::from(w) * u64::from(h) <= limits.max_pixels, "{w}x{h} decoded past max_pixels");
    }
}

/// What `likeness verify` does with a file's bytes: the C2PA manifest read
/// and validated, the watermark looked for.
pub fn verify_file(data: &[u8]) {
    use std::sync::OnceLock;
    static VERIFIER: OnceLock<likeness_provenance::Verifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| likeness_provenance::Verifier::new(None).expect("a verifier"));
    let _ = verifier.verify_bytes(data);
}

/// A `POST /v1/generations` body as the handler reads it: parsed, turned
/// into an order and checked against the request limits. Every refusal
/// carries a registered code.
pub fn generation_body(data: &[u8]) {
    let refused = match axum::Json::<crate::generations::GenerationBody>::from_bytes(data) {
        Err(rejection) => crate::error::ApiError::from(rejection),
        Ok(axum::Json(body)) => match body.into_order("req_fuzz".into()) {
            Err(e) => e,
            Ok(order) => match likeness_pipeline::RequestLimits::default().check(&order.request) {
                Ok(_) => return,
                Err(e) => crate::error::ApiError::from(e),
            },
        },
    };
    assert!((400..500).contains(&refused.status().as_u16()), "{}: {}", refused.code, refused.message);
}

/// A policy file: loads or is refused with problems, never a panic; one
/// that loads evaluates an empty request.
pub fn policy_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let files = [likeness_policy::SourceFile { path: "fuzz.yaml".into(), text: text.into() }];
    if let Ok(policy) = likeness_policy::Policy::load(&files, &Default::default()) {
        let _ = policy.evaluate(&likeness_policy::Input::default());
    }
}
