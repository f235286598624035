//! The OpenAI Images API, and services that speak it.
//!
//! - No reference: `POST {base}/v1/images/generations`, JSON.
//! - References: `POST {base}/v1/images/edits`, multipart: one reference as
//!   `image`, several as repeated `image[]` parts.
//!
//! GPT image models always answer `b64_json` and refuse `response_format`
//! (400 `unknown_parameter`); DALL-E models and most compatible services
//! answer URLs unless asked for `b64_json`. So it is sent to every model
//! but `gpt-image-*` (which are asked for `output_format: png` instead),
//! unless the backend's config says otherwise (`send_response_format`).
//! Images come back as `data[].b64_json`.

use base64::Engine as _;
use likeness_pipeline::Job;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::json;

use crate::http::Http;
use crate::{styled_prompt, BackendConfig, BackendError, Options, B64};

#[derive(Deserialize)]
struct Answer {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    #[serde(default)]
    b64_json: Option<String>,
}

/// Whether to ask for `response_format: b64_json`: the config's say, else
/// every model but OpenAI's GPT image models, which refuse the parameter.
fn takes_response_format(config: &BackendConfig, model: &str) -> bool {
    config.send_response_format.unwrap_or(!model.starts_with("gpt-image"))
}

pub(crate) async fn generate(
    http: &Http,
    config: &BackendConfig,
    job: &Job,
    options: &Options,
) -> Result<Vec<Vec<u8>>, BackendError> {
    let model = config.model.clone().unwrap_or_else(|| "gpt-image-1".to_string());
    let size = format!("{}x{}", job.width, job.height);
    let prompt = styled_prompt(job);
    let resp = if job.references.is_empty() {
        let mut body = json!({ "model": model, "prompt": prompt, "n": job.count, "size": size });
        if takes_response_format(config, &model) {
            body["response_format"] = json!("b64_json");
        } else if model.starts_with("gpt-image") {
            body["output_format"] = json!("png");
        }
        for (key, value) in [("quality", &options.quality), ("background", &options.background)] {
            if let Some(v) = value {
                body[key] = json!(v);
            }
        }
        let url = http.url("/v1/images/generations");
        http.send("POST /v1/images/generations", |c| c.post(&url).json(&body)).await?
    } else {
        let url = http.url("/v1/images/edits");
        // A multipart body is consumed by sending: build it anew for each attempt.
        let form = || -> Form {
            let mut form = Form::new()
                .text("model", model.clone())
                .text("prompt", prompt.clone())
                .text("n", job.count.to_string())
                .text("size", size.clone());
            if takes_response_format(config, &model) {
                form = form.text("response_format", "b64_json");
            } else if model.starts_with("gpt-image") {
                form = form.text("output_format", "png");
            }
            for (key, value) in [("quality", &options.quality), ("background", &options.background)] {
                if let Some(v) = value {
                    form = form.text(key, v.clone());
                }
            }
            let name = if job.references.len() == 1 { "image" } else { "image[]" };
            for (i, bytes) in job.references.iter().enumerate() {
                let part = Part::bytes(bytes.clone())
                    .file_name(format!("reference-{}.png", i + 1))
                    .mime_str("image/png")
                    .expect("a valid mime type");
                form = form.part(name, part);
            }
            form
        };
        http.send("POST /v1/images/edits", |c| c.post(&url).multipart(form())).await?
    };
    let answer: Answer = http.json("the images answer", resp).await?;
    answer
        .data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let b64 = d.b64_json.as_deref().ok_or_else(|| http.bad(format!("image {}: no b64_json", i + 1)))?;
            B64.decode(b64.trim()).map_err(|e| http.bad(format!("image {}: b64_json is not base64: {e}", i + 1)))
        })
        .collect()
}
