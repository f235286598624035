//! Stable Diffusion WebUI (AUTOMATIC1111, and Forge, which keeps its API):
//! `POST /sdapi/v1/txt2img`, or `/sdapi/v1/img2img` with the references as
//! base64 `init_images` and a `denoising_strength`. The answer's `images`
//! are base64 PNGs without a `data:` prefix; `info` is a JSON string. With
//! `--api-auth`, the API wants HTTP basic auth.

use base64::Engine as _;
use likeness_pipeline::Job;
use serde::Deserialize;
use serde_json::json;

use crate::http::Http;
use crate::{styled_prompt, BackendConfig, BackendError, B64};

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    images: Vec<String>,
}

pub(crate) async fn generate(http: &Http, config: &BackendConfig, job: &Job) -> Result<Vec<Vec<u8>>, BackendError> {
    // img2img starts every image of the batch from one init image; given
    // several, WebUI pairs them with images or fails. Say so before sending.
    if job.references.len() > 1 {
        return Err(BackendError::Rejected {
            backend: http.backend.clone(),
            detail: format!("img2img takes one reference, the request has {}", job.references.len()),
        });
    }
    let mut body = json!({
        "prompt": styled_prompt(job),
        "negative_prompt": config.negative_prompt,
        // WebUI takes -1 for a random seed; ours is a u64: fold it into its range.
        "seed": (job.seed % (u32::MAX as u64)) as i64,
        "width": job.width,
        "height": job.height,
        "batch_size": job.count,
        "n_iter": 1,
        "send_images": true,
        "save_images": false,
    });
    if let Some(model) = &config.model {
        body["override_settings"] = json!({ "sd_model_checkpoint": model });
    }
    let path = if job.references.is_empty() {
        "/sdapi/v1/txt2img"
    } else {
        body["init_images"] = json!(job.references.iter().map(|r| B64.encode(r)).collect::<Vec<_>>());
        body["denoising_strength"] = json!(config.denoising_strength);
        "/sdapi/v1/img2img"
    };
    let url = http.url(path);
    let what = format!("POST {path}");
    let resp = http.send(&what, |c| c.post(&url).json(&body)).await?;
    let answer: Answer = http.json(&what, resp).await?;
    answer
        .images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            // Tolerate a data URL, though WebUI sends bare base64.
            let b64 = img.split_once("base64,").map_or(img.as_str(), |(_, rest)| rest);
            B64.decode(b64.trim()).map_err(|e| http.bad(format!("image {}: not base64: {e}", i + 1)))
        })
        .collect()
}
