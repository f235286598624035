//! likeness's own small protocol, for teams that put a model of their own
//! behind the gateway: one JSON call.
//!
//! `POST {base}/generate`
//! ```json
//! {"prompt": "...", "style": "watercolor", "width": 1024, "height": 1024, "n": 1, "seed": 7,
//!  "model": "optional", "references": [{"mime": "image/png", "data": "<base64>"}]}
//! ```
//! answers `200 {"images": [{"mime": "image/png", "data": "<base64>"}]}` with
//! exactly `n` images of `width` x `height`; an error is a non-2xx status
//! with `{"error": {"message": "..."}}` (4xx: the request is refused; 429
//! and 5xx are retried).

use base64::Engine as _;
use likeness_pipeline::Job;
use serde::Deserialize;
use serde_json::json;

use crate::http::Http;
use crate::{BackendConfig, BackendError, B64};

#[derive(Deserialize)]
struct Answer {
    images: Vec<Image>,
}

#[derive(Deserialize)]
struct Image {
    data: String,
}

pub(crate) async fn generate(http: &Http, config: &BackendConfig, job: &Job) -> Result<Vec<Vec<u8>>, BackendError> {
    let body = json!({
        "prompt": job.prompt,
        "style": job.style,
        "width": job.width,
        "height": job.height,
        "n": job.count,
        "seed": job.seed,
        "model": config.model,
        "references": job.references.iter().map(|r| json!({"mime": "image/png", "data": B64.encode(r)})).collect::<Vec<_>>(),
    });
    let url = http.url("/generate");
    let resp = http.send("POST /generate", |c| c.post(&url).json(&body)).await?;
    let answer: Answer = http.json("POST /generate", resp).await?;
    answer
        .images
        .iter()
        .enumerate()
        .map(|(i, img)| B64.decode(img.data.trim()).map_err(|e| http.bad(format!("image {}: not base64: {e}", i + 1))))
        .collect()
}
