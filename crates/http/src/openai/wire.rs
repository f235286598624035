//! OpenAI's wire shapes, and how they become an [`Order`].

use axum::extract::Multipart;
use axum::http::HeaderMap;
use likeness_codes::ErrorCode;
use likeness_media::{MediaType, OutputFormat};
use likeness_pipeline::{GenerationOutcome, GenerationRequest, ReferenceInput};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::generations::{Order, Reference};
use crate::state::AppState;
use crate::upload::B64;

/// What the headers (or `user`) say about the person behind the request.
pub(super) struct Personal {
    user: String,
    grant: Option<String>,
    subjects: Vec<String>,
    review: Option<String>,
}

impl Personal {
    pub(super) fn from_headers(headers: &HeaderMap, user_field: Option<&str>) -> Result<Personal, ApiError> {
        let header = |name: &str| -> Result<Option<String>, ApiError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_string()))
                    .map_err(|_| ApiError::new(ErrorCode::RequestInvalid, format!("{name}: not a valid header value"))),
            }
        };
        let user = header("x-likeness-user")?.or_else(|| user_field.map(String::from)).ok_or_else(|| {
            ApiError::new(ErrorCode::RequestUserInvalid, "send the app's user id as X-Likeness-User or `user`")
        })?;
        let subjects = header("x-likeness-subjects")?
            .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        Ok(Personal { user, grant: header("x-likeness-grant")?, subjects, review: header("x-likeness-review")? })
    }
}

/// `POST /v1/images/generations`: the fields both calls share.
pub(crate) type GenerationsBody = Common;

/// The fields both calls share, checked the same way: OpenAI's, every one
/// of them known, so a typo is an error rather than a silent default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Common {
    #[serde(default)]
    prompt: String,
    pub(super) user: Option<String>,
    model: Option<String>,
    n: Option<u32>,
    size: Option<String>,
    quality: Option<String>,
    background: Option<String>,
    output_format: Option<String>,
    response_format: Option<String>,
    /// JPEG quality, 0 to 100.
    output_compression: Option<u32>,
    /// OpenAI's own moderation level; the gateway's checks apply whatever it says.
    moderation: Option<String>,
    /// DALL-E 3's `vivid` or `natural`; no backend here takes it.
    style: Option<String>,
    stream: Option<bool>,
    partial_images: Option<u32>,
    /// Edits: how closely to keep the input's features; passed on by no backend yet.
    input_fidelity: Option<String>,
}

impl Common {
    pub(super) fn generation(self, request_id: String, p: Personal, state: &AppState) -> Result<Order, ApiError> {
        self.into_order(request_id, p, Vec::new(), state)
    }
}

/// `POST /v1/images/edits`, read from its multipart form.
pub(super) struct EditForm {
    pub(super) common: Common,
    images: Vec<ReferenceInput>,
}

impl EditForm {
    pub(super) async fn read(mut form: Multipart, max_images: usize) -> Result<EditForm, ApiError> {
        let malformed = |e: axum::extract::multipart::MultipartError| {
            let code =
                if e.status().as_u16() == 413 { ErrorCode::RequestTooLarge } else { ErrorCode::RequestMalformed };
            ApiError::new(code, e.body_text())
        };
        let mut common = Common::default();
        let mut images = Vec::new();
        while let Some(field) = form.next_field().await.map_err(malformed)? {
            let name = field.name().unwrap_or_default().to_string();
            if name == "image" || name == "image[]" {
                if images.len() == max_images {
                    return Err(ApiError::new(
                        ErrorCode::RequestTooManyReferences,
                        format!("image: at most {max_images} images"),
                    ));
                }
                let declared = field.content_type().and_then(MediaType::from_mime);
                let bytes = field.bytes().await.map_err(malformed)?.to_vec();
                images.push(ReferenceInput { bytes, declared });
                continue;
            }
            let text = field.text().await.map_err(malformed)?;
            let slot = match name.as_str() {
                "prompt" => {
                    common.prompt = text;
                    continue;
                }
                "n" | "output_compression" | "partial_images" => {
                    let number = text.trim().parse().map_err(|_| {
                        let code = if name == "n" { ErrorCode::RequestNOutOfRange } else { ErrorCode::RequestInvalid };
                        ApiError::new(code, format!("{name}: {text:?} is not a number"))
                    })?;
                    *match name.as_str() {
                        "n" => &mut common.n,
                        "output_compression" => &mut common.output_compression,
                        _ => &mut common.partial_images,
                    } = Some(number);
                    continue;
                }
                "stream" => {
                    common.stream = Some(text.trim() == "true");
                    continue;
                }
                "model" => &mut common.model,
                "size" => &mut common.size,
                "quality" => &mut common.quality,
                "background" => &mut common.background,
                "output_format" => &mut common.output_format,
                "response_format" => &mut common.response_format,
                "moderation" => &mut common.moderation,
                "style" => &mut common.style,
                "input_fidelity" => &mut common.input_fidelity,
                "user" => &mut common.user,
                "mask" => return Err(ApiError::new(ErrorCode::RequestInvalid, "mask: masked edits are not supported")),
                other => {
                    return Err(ApiError::new(ErrorCode::RequestInvalid, format!("unknown field {other:?}")));
                }
            };
            *slot = Some(text);
        }
        if images.is_empty() {
            return Err(ApiError::new(ErrorCode::RequestInvalid, "image: send at least one image to edit"));
        }
        Ok(EditForm { common, images })
    }

    pub(super) fn into_order(self, request_id: String, p: Personal, state: &AppState) -> Result<Order, ApiError> {
        self.common.into_order(request_id, p, self.images, state)
    }
}

impl Common {
    fn into_order(
        self,
        request_id: String,
        p: Personal,
        images: Vec<ReferenceInput>,
        state: &AppState,
    ) -> Result<Order, ApiError> {
        if let Some(f) = self.response_format.as_deref().filter(|f| *f != "b64_json") {
            return Err(ApiError::new(
                ErrorCode::RequestResponseFormatUnsupported,
                format!("response_format: {f:?} is not offered; images come back as b64_json only (they are signed, not hosted)"),
            ));
        }
        let invalid = |message: String| Err(ApiError::new(ErrorCode::RequestInvalid, message));
        if self.stream == Some(true) || self.partial_images.is_some_and(|n| n > 0) {
            return invalid("stream: images are checked, marked and signed whole before any byte goes out; streaming and partial images are not offered".into());
        }
        if let Some(m) = self.moderation.as_deref().filter(|m| !["auto", "low"].contains(m)) {
            return invalid(format!("moderation: {m:?} is not auto or low"));
        }
        if let Some(s) = self.style.as_deref().filter(|s| !["vivid", "natural"].contains(s)) {
            return invalid(format!("style: {s:?} is not vivid or natural"));
        }
        if let Some(f) = self.input_fidelity.as_deref().filter(|f| !["high", "low"].contains(f)) {
            return invalid(format!("input_fidelity: {f:?} is not high or low"));
        }
        let quality = match self.output_compression {
            None => 90,
            Some(c) if c <= 100 => c.max(1) as u8,
            Some(c) => return invalid(format!("output_compression: {c} is not between 0 and 100")),
        };
        let output = match self.output_format.as_deref().unwrap_or("png") {
            "png" => OutputFormat::Png,
            "jpeg" | "jpg" => OutputFormat::Jpeg { quality },
            other => {
                return Err(ApiError::new(
                    ErrorCode::RequestOutputFormatUnknown,
                    format!("output_format: {other:?} is not offered (png or jpeg)"),
                ))
            }
        };
        let size = self.size.filter(|s| s != "auto").unwrap_or_else(|| "1024x1024".into());
        let bad_size =
            || ApiError::new(ErrorCode::RequestSizeInvalid, format!("size must look like 1024x1024, got {size:?}"));
        let (w, h) = size.split_once('x').ok_or_else(bad_size)?;
        let (width, height) = (w.trim().parse().map_err(|_| bad_size())?, h.trim().parse().map_err(|_| bad_size())?);
        // `model` names a configured backend, by its name or its model, or
        // `builtin`; anything else is refused later as `generator.unknown`
        // rather than quietly made by another generator.
        let backend = self.model.as_deref().map(|m| state.backends.by_name_or_model(m).unwrap_or(m).to_string());
        let request = GenerationRequest {
            request_id,
            user: p.user,
            prompt: self.prompt,
            style: None,
            references: images.into_iter().map(Reference::Upload).collect(),
            count: self.n.unwrap_or(1),
            width,
            height,
            output,
            seed: None,
        };
        Ok(Order {
            request,
            grant_id: p.grant,
            subjects: p.subjects,
            review_id: p.review,
            backend,
            options: likeness_backends::Options { quality: self.quality, background: self.background },
        })
    }
}

#[derive(Serialize)]
pub(super) struct ImagesResponse {
    created: u64,
    data: Vec<Datum>,
    output_format: &'static str,
    size: String,
}

#[derive(Serialize)]
struct Datum {
    b64_json: String,
}

impl From<GenerationOutcome> for ImagesResponse {
    fn from(outcome: GenerationOutcome) -> ImagesResponse {
        use base64::Engine as _;
        let output_format = outcome.assets.first().map_or("png", |a| match a.media_type() {
            MediaType::Jpeg => "jpeg",
            MediaType::Png => "png",
            MediaType::Webp => "webp",
        });
        let size = outcome
            .decision
            .inputs
            .first()
            .map_or_else(String::new, |i| format!("{}x{}", i.request.width, i.request.height));
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let data = outcome.assets.iter().map(|a| Datum { b64_json: B64.encode(a.bytes()) }).collect();
        ImagesResponse { created, data, output_format, size }
    }
}

/// The request field an error code is about, as OpenAI's `param`.
pub(crate) fn param_of(code: &str) -> Option<&'static str> {
    Some(match code {
        "request.n_out_of_range" => "n",
        "request.size_out_of_range" | "request.size_invalid" => "size",
        "request.prompt_invalid" => "prompt",
        "request.output_format_unknown" => "output_format",
        "request.response_format_unsupported" => "response_format",
        "request.user_invalid" => "user",
        "generator.unknown" => "model",
        c if c.starts_with("reference.") || c == "request.too_many_references" => "image",
        _ => return None,
    })
}
