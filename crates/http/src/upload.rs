//! An image sent inline, base64 in JSON: a generation's reference or a
//! subject's enrollment photo.

use base64::Engine as _;
use likeness_codes::ErrorCode;
use likeness_media::MediaType;
use likeness_pipeline::ReferenceInput;
use serde::Deserialize;

use crate::error::ApiError;

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadBody {
    data: String,
    #[serde(default)]
    mime: Option<String>,
}

impl UploadBody {
    /// The photo's bytes and declared type; `index` is 0-based, messages
    /// count from 1.
    pub(crate) fn decode(self, index: usize) -> Result<ReferenceInput, ApiError> {
        let declared = match self.mime.as_deref() {
            None => None,
            Some(m) => Some(MediaType::from_mime(m).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ReferenceUnsupportedFormat,
                    format!("reference {}: {m:?} is not supported (image/jpeg, image/png, image/webp)", index + 1),
                )
            })?),
        };
        let bytes = B64.decode(self.data.trim()).map_err(|e| {
            ApiError::new(
                ErrorCode::ReferenceInvalidBase64,
                format!("reference {}: data is not valid base64: {e}", index + 1),
            )
        })?;
        Ok(ReferenceInput { bytes, declared })
    }
}
