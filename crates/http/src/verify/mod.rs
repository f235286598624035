//! `POST /v1/verify`: the public detection API. Anyone sends an image (the
//! body, a form's `file`, or `{"url": ...}` on a public host) and learns
//! what its Content Credentials say, checked against the gateway's
//! trust anchors, and, when they were stripped, what the invisible
//! watermark recovers from this gateway's own records. Public and
//! rate-limited like the resolver, with its upload limits; nothing sent is
//! kept, and the answer is system provenance only: who provided the system,
//! which system, when, which asset, never a user.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, FromRequest as _, Multipart, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use likeness_codes::ErrorCode;
use likeness_provenance::{TrustState, Verification};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::resolver::{content_of, Content};
use crate::state::AppState;

pub(crate) mod feedback;

/// The verify page: one self-contained file, its script and styles inline
/// (no CDN, no build step), served by the binary.
const PAGE: &str = include_str!("page.html");

/// `GET /verify`, with a content security policy that allows exactly the
/// page's own inline script and styles (by hash) and calls to this origin.
pub(crate) async fn page() -> Response {
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let hash = |tag: &str| {
            use base64::Engine as _;
            use sha2::Digest as _;
            let open = format!("<{tag}>");
            let inner = PAGE.split_once(&open).and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")));
            let digest = sha2::Sha256::digest(inner.map_or("", |(text, _)| text).as_bytes());
            format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
        };
        let csp = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
            hash("script"),
            hash("style")
        );
        HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'none'"))
    });
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, policy.clone());
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

#[derive(Serialize)]
pub(crate) struct VerifyAnswer {
    /// This answer's id (the request id): what feedback on it names.
    verdict_id: String,
    /// The verdict in plain words.
    verdict: String,
    /// `credentials` (a manifest in the file), `watermark` (recovered through
    /// the invisible mark), or `none`.
    source: &'static str,
    /// The manifest in the file, as `likeness verify --json` reports it.
    credentials: Option<Verification>,
    watermark: WatermarkAnswer,
    /// The manifest the watermark led to, checked the same way (its hard
    /// binding set aside: the pixels were re-encoded since).
    recovered: Option<Recovered>,
}

#[derive(Serialize)]
struct WatermarkAnswer {
    detected: bool,
    alg: &'static str,
    /// When a record was found for the mark: whether this picture is the
    /// output it was made in (`matches`), another one carrying its mark
    /// (`differs`: nothing is recovered), too little to tell
    /// (`inconclusive`), or an asset kept without a fingerprint
    /// (`unchecked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Content>,
}

#[derive(Serialize)]
struct Recovered {
    manifest_id: String,
    /// The signer's trust state, the hard binding set aside.
    state: TrustState,
    credentials: Verification,
}

pub(crate) async fn verify(
    State(state): State<Arc<AppState>>,
    Extension(request): Extension<RequestId>,
    req: Request,
) -> Result<Json<VerifyAnswer>, ApiError> {
    let headers = req.headers().clone();
    let bytes = match crate::body::media_type(&headers).as_str() {
        "multipart/form-data" => read_form(&state, req).await?,
        "application/json" => fetch_url(&state, req).await?,
        _ => {
            crate::resolver::require_image(&headers)?;
            crate::resolver::read_upload(&state, &headers, req.into_body()).await?
        }
    };
    if bytes.is_empty() {
        return Err(ApiError::new(ErrorCode::ResolverInvalidQuery, "the image is empty"));
    }
    let verifier = state.verifier.clone().map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
    let slot = crate::resolver::detection_slot(&state).await?;
    let pipeline = state.pipeline.clone();
    let image = bytes.clone();
    let checker = verifier.clone();
    let (credentials, mark) = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let credentials = checker.verify_bytes(&image).ok().filter(|v| v.state != TrustState::None);
        (credentials, pipeline.read_watermark(&image))
    })
    .await
    .map_err(ApiError::task_failed)?;
    let mark = mark.map_err(crate::resolver::upload_error)?;
    let intact = credentials.as_ref().is_some_and(intact);
    let mut recovered = None;
    let mut content = None;
    if let (false, Some(found)) = (intact, &mark) {
        let value = likeness_pipeline::soft_binding(&found.detection.payload).value;
        let ids = state.store.manifests_by_binding(likeness_watermark::ALG, &value, 1).await?;
        if let Some(id) = ids.into_iter().next() {
            let record = state.store.manifest(&id).await?;
            content = record.as_ref().map(|r| content_of(&r.manifest_id, r.fingerprint.as_ref(), &found.content));
            // Another picture carrying this output's mark: its manifest is
            // not this image's.
            if let Some(record) = record.filter(|_| content != Some(Content::Differs)) {
                let checker = verifier.clone();
                let found =
                    tokio::task::spawn_blocking(move || checker.verify_with_manifest(&record.manifest_store, &bytes))
                        .await
                        .map_err(ApiError::task_failed)?;
                if let Ok(v) = found {
                    recovered =
                        Some(Recovered { manifest_id: id, state: v.state_apart_from_hard_binding(), credentials: v });
                }
            }
        }
    }
    let source = if intact {
        "credentials"
    } else if recovered.is_some() {
        "watermark"
    } else {
        "none"
    };
    let verdict = verdict(credentials.as_ref(), recovered.as_ref(), mark.is_some(), content);
    // What was answered, under the request id a person's feedback names;
    // never the image, its URL or anything in it.
    tracing::info!(source, watermark = mark.is_some(), "verdict");
    Ok(Json(VerifyAnswer {
        verdict_id: request.0,
        verdict,
        source,
        credentials,
        watermark: WatermarkAnswer { detected: mark.is_some(), alg: likeness_watermark::ALG, content },
        recovered,
    }))
}

/// `{"url": "https://..."}`: the image on the public web, fetched with the
/// SSRF guards of [`likeness_photos::web`] and the bounds of an upload (its
/// slot among the uploads in flight, the decode byte limit).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlQuery {
    url: String,
}

async fn fetch_url(state: &Arc<AppState>, req: Request) -> Result<Bytes, ApiError> {
    let query: UrlQuery = crate::body::read_small_json(state, req).await?;
    let limit = state.pipeline.limits().decode.max_bytes;
    let _receiving = crate::resolver::upload_slot(state)?;
    let fetched = state.web.fetch(&query.url, limit).await.map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    Ok(Bytes::from(fetched.bytes))
}

/// Credentials that still hold for this file: well signed and matching it.
fn intact(v: &Verification) -> bool {
    matches!(v.state, TrustState::Trusted | TrustState::Valid)
}

/// The image of a form upload (the field `file`, as the page's form would
/// send it), with the same bounds as a raw upload: the resolver's uploads
/// in flight, the decode size limit and the upload timeout.
async fn read_form(state: &Arc<AppState>, req: Request) -> Result<Bytes, ApiError> {
    let limit = state.pipeline.limits().decode.max_bytes;
    let malformed = |e: String| ApiError::new(ErrorCode::RequestMalformed, format!("the form could not be read: {e}"));
    let _receiving = crate::resolver::upload_slot(state)?;
    let read = async {
        let mut form = Multipart::from_request(req, state).await.map_err(|e| malformed(e.body_text()))?;
        while let Some(mut field) = form.next_field().await.map_err(|e| malformed(e.body_text()))? {
            if field.name() != Some("file") {
                continue;
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| malformed(e.body_text()))? {
                if bytes.len() + chunk.len() > limit {
                    return Err(crate::resolver::image_too_large(limit));
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(Bytes::from(bytes));
        }
        Err(ApiError::new(ErrorCode::ResolverInvalidQuery, "the form has no `file` field; send the image in it"))
    };
    let timeout = state.config.resolver.upload_timeout;
    tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| Err(crate::body::timed_out(timeout)))
}

/// What a person reads first.
fn verdict(
    credentials: Option<&Verification>,
    recovered: Option<&Recovered>,
    marked: bool,
    content: Option<Content>,
) -> String {
    let made = |v: &Verification, state: TrustState| {
        let by = v.provider.as_deref().map(|p| format!(" by {p}")).unwrap_or_default();
        let with = v.claim_generator.as_deref().map(|g| format!("'s {g}")).unwrap_or_default();
        let on = v.created.as_deref().and_then(|t| t.get(..10)).map(|d| format!(", on {d}")).unwrap_or_default();
        let trust = match state {
            TrustState::Trusted => "signed by a trusted signer",
            _ => "signed, but by a signer this gateway does not trust",
        };
        format!("Made with AI{by}{with}{on}; {trust}")
    };
    match (credentials.filter(|v| intact(v)), recovered) {
        (Some(v), _) => format!("{}.", made(v, v.state)),
        (None, Some(r)) => format!(
            "{}; credentials recovered from the invisible watermark after they were stripped or broken.{}",
            made(&r.credentials, r.state),
            if content == Some(Content::Inconclusive) {
                " Too little of the picture is left to confirm it is the one they were made for."
            } else {
                ""
            }
        ),
        (None, None) if credentials.is_some() => {
            "The file's Content Credentials do not match it: it was changed after signing, or they are malformed."
                .into()
        }
        (None, None) if content == Some(Content::Differs) => {
            "The image carries a watermark from this gateway, but it is not the picture that watermark was made in: \
             the mark was copied onto another image. No credentials are recovered for it."
                .into()
        }
        (None, None) if marked => "The image carries this gateway's watermark, but no record of it was found.".into(),
        (None, None) => {
            "No Content Credentials and no watermark from this gateway. That does not tell whether it was made with AI."
                .into()
        }
    }
}
