//! ComfyUI: a workflow template in API format, queued and polled.
//!
//! 1. Each reference is uploaded: `POST /upload/image` (multipart `image`,
//!    `type=input`, `overwrite`); the name it answers is the one to use
//!    (ComfyUI renames on a collision, or answers an existing file's name
//!    when the bytes are the same).
//! 2. The template's placeholders are filled: `{{prompt}}`,
//!    `{{negative_prompt}}`, `{{seed}}`, `{{width}}`, `{{height}}`,
//!    `{{batch_size}}`, `{{reference_1}}`, `{{reference_2}}`... A string that
//!    is exactly a number's placeholder becomes the number.
//! 3. `POST /prompt` `{"prompt", "client_id"}` queues it; a 400 names the
//!    nodes that failed validation (`node_errors`).
//! 4. `GET /history/{prompt_id}` answers `{}` until the run ends; then its
//!    `outputs` list the images (an identical graph is served from
//!    ComfyUI's cache, its history naming the earlier files), and a
//!    `status_str` of `error` carries the failing node in `messages`.
//! 5. Each image: `GET /view?filename=&subfolder=&type=`.
//!
//! A request dropped before the end (the client hung up) deletes the queued
//! prompt (`POST /queue {"delete": [id]}`) and interrupts it if it runs
//! (`POST /interrupt {"prompt_id"}`).

use std::collections::BTreeMap;

use likeness_pipeline::Job;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::http::Http;
use crate::{styled_prompt, BackendConfig, BackendError, Workflow};

pub(crate) struct ComfyUi {
    workflow: Workflow,
    /// How many `{{reference_N}}` the template has.
    references: usize,
    /// Whether it has `{{batch_size}}` (else it makes one image).
    batches: bool,
}

fn placeholders(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let Some(end) = rest[start..].find("}}") else { break };
                out.push(rest[start + 2..start + end].trim().to_string());
                rest = &rest[start + end + 2..];
            }
        }
        Value::Array(items) => items.iter().for_each(|i| placeholders(i, out)),
        Value::Object(map) => map.values().for_each(|i| placeholders(i, out)),
        _ => {}
    }
}

impl ComfyUi {
    pub(crate) fn new(config: &BackendConfig) -> Result<ComfyUi, String> {
        let name = &config.name;
        let workflow =
            config.workflow.clone().ok_or_else(|| format!("backend {name}: a comfyui backend needs a workflow"))?;
        if !workflow.template.as_object().is_some_and(|nodes| {
            nodes.values().all(|n| {
                n.get("class_type").is_some_and(Value::is_string) && n.get("inputs").is_some_and(Value::is_object)
            })
        }) {
            return Err(format!(
                "backend {name}: workflow {}: not API format (an object of nodes, each with class_type and inputs)",
                workflow.name
            ));
        }
        let mut found = Vec::new();
        placeholders(&workflow.template, &mut found);
        let known = ["prompt", "negative_prompt", "seed", "width", "height", "batch_size"];
        for p in &found {
            let reference = p.strip_prefix("reference_").is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n >= 1));
            if !known.contains(&p.as_str()) && !reference {
                return Err(format!("backend {name}: workflow {}: unknown placeholder {{{{{p}}}}}", workflow.name));
            }
        }
        if !found.iter().any(|p| p == "prompt") {
            return Err(format!("backend {name}: workflow {}: no {{{{prompt}}}} placeholder", workflow.name));
        }
        let references = (1..).take_while(|i| found.contains(&format!("reference_{i}"))).count();
        Ok(ComfyUi { references, batches: found.iter().any(|p| p == "batch_size"), workflow })
    }

    pub(crate) fn workflow_name(&self) -> &str {
        &self.workflow.name
    }

    /// The template with its placeholders filled.
    fn graph(&self, config: &BackendConfig, job: &Job, uploaded: &[String]) -> Value {
        let mut text: BTreeMap<String, String> = BTreeMap::new();
        text.insert("prompt".into(), styled_prompt(job));
        text.insert("negative_prompt".into(), config.negative_prompt.clone());
        for (i, name) in uploaded.iter().enumerate() {
            text.insert(format!("reference_{}", i + 1), name.clone());
        }
        let numbers: BTreeMap<&str, u64> = [
            ("seed", job.seed),
            ("width", u64::from(job.width)),
            ("height", u64::from(job.height)),
            ("batch_size", u64::from(job.count)),
        ]
        .into_iter()
        .collect();
        fn fill(v: &mut Value, text: &BTreeMap<String, String>, numbers: &BTreeMap<&str, u64>) {
            match v {
                Value::String(s) => {
                    let trimmed = s.trim();
                    if let Some(n) = trimmed
                        .strip_prefix("{{")
                        .and_then(|t| t.strip_suffix("}}"))
                        .and_then(|k| numbers.get(k.trim()))
                    {
                        *v = json!(n);
                        return;
                    }
                    // One pass over the template's text: what is put in (a
                    // prompt that says `{{seed}}`) is never read again.
                    let mut out = String::with_capacity(s.len());
                    let mut rest = s.as_str();
                    while let Some(start) = rest.find("{{") {
                        let Some(len) = rest[start..].find("}}") else { break };
                        let key = rest[start + 2..start + len].trim();
                        out.push_str(&rest[..start]);
                        match (text.get(key), numbers.get(key)) {
                            (Some(t), _) => out.push_str(t),
                            (None, Some(n)) => out.push_str(&n.to_string()),
                            (None, None) => out.push_str(&rest[start..start + len + 2]),
                        }
                        rest = &rest[start + len + 2..];
                    }
                    out.push_str(rest);
                    *s = out;
                }
                Value::Array(items) => items.iter_mut().for_each(|i| fill(i, text, numbers)),
                Value::Object(map) => map.values_mut().for_each(|i| fill(i, text, numbers)),
                _ => {}
            }
        }
        let mut graph = self.workflow.template.clone();
        fill(&mut graph, &text, &numbers);
        graph
    }

    pub(crate) async fn generate(
        &self,
        http: &Http,
        config: &BackendConfig,
        job: &Job,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        // What this workflow cannot do is the request's problem (422); what
        // goes wrong in ComfyUI is the backend's (502).
        let refuse = |detail: String| BackendError::Rejected { backend: http.backend.clone(), detail };
        if job.references.len() != self.references {
            return Err(refuse(format!(
                "workflow {} takes {} reference(s), the request has {}",
                self.workflow.name,
                self.references,
                job.references.len()
            )));
        }
        if job.count > 1 && !self.batches {
            return Err(refuse(format!(
                "workflow {} makes one image (no {{{{batch_size}}}}); ask for n = 1",
                self.workflow.name
            )));
        }
        let mut uploaded = Vec::with_capacity(job.references.len());
        for (i, bytes) in job.references.iter().enumerate() {
            uploaded.push(upload(http, i, bytes).await?);
        }
        let graph = self.graph(config, job, &uploaded);
        let client_id = uuid::Uuid::new_v4().to_string();
        let body = json!({ "prompt": graph, "client_id": client_id });
        let url = http.url("/prompt");
        let resp = http.send_any("POST /prompt", |c| c.post(&url).json(&body)).await?;
        let status = resp.status();
        let answer: Value = http.json("POST /prompt", resp).await?;
        if !status.is_success() {
            return Err(http.bad(format!("the workflow was refused: {}", validation_error(&answer))));
        }
        let prompt_id = answer["prompt_id"]
            .as_str()
            .ok_or_else(|| http.bad("POST /prompt answered no prompt_id".into()))?
            .to_string();
        let mut guard = Cancel { http: http.clone(), prompt_id: prompt_id.clone(), armed: true };
        let entry = loop {
            let url = http.url(&format!("/history/{prompt_id}"));
            let resp = http.send("GET /history", |c| c.get(&url)).await?;
            let history: Value = http.json("GET /history", resp).await?;
            if let Some(entry) = history.get(&prompt_id) {
                break entry.clone();
            }
            tokio::time::sleep(config.poll_interval).await;
        };
        guard.armed = false;
        if entry["status"]["status_str"] == "error" {
            return Err(http.bad(execution_error(&entry)));
        }
        let mut files = Vec::new();
        if let Some(outputs) = entry["outputs"].as_object() {
            let mut nodes: Vec<(&String, &Value)> = outputs.iter().collect();
            nodes.sort_by_key(|(id, _)| id.parse::<u64>().unwrap_or(u64::MAX));
            for (_, out) in nodes {
                for img in out["images"].as_array().into_iter().flatten() {
                    if img["type"] == "output" {
                        files.push(img.clone());
                    }
                }
            }
        }
        let mut images = Vec::with_capacity(files.len());
        for f in files {
            let (Some(filename), subfolder) = (f["filename"].as_str(), f["subfolder"].as_str().unwrap_or("")) else {
                return Err(http.bad("an output without a filename".into()));
            };
            let url = http.url("/view");
            let query = [("filename", filename), ("subfolder", subfolder), ("type", "output")];
            let resp = http.send("GET /view", |c| c.get(&url).query(&query)).await?;
            images.push(http.bytes(resp).await?);
        }
        Ok(images)
    }
}

async fn upload(http: &Http, index: usize, bytes: &[u8]) -> Result<String, BackendError> {
    // A name of our own: references of different requests never collide,
    // and ComfyUI's answer is used whatever it did.
    let name = format!("likeness-{}-{}.png", uuid::Uuid::new_v4().simple(), index + 1);
    let url = http.url("/upload/image");
    let form = || {
        let part =
            Part::bytes(bytes.to_vec()).file_name(name.clone()).mime_str("image/png").expect("a valid mime type");
        Form::new().part("image", part).text("type", "input").text("overwrite", "true")
    };
    let resp = http.send("POST /upload/image", |c| c.post(&url).multipart(form())).await?;
    let answer: Value = http.json("POST /upload/image", resp).await?;
    let name = answer["name"].as_str().ok_or_else(|| http.bad("POST /upload/image answered no name".into()))?;
    Ok(match answer["subfolder"].as_str().filter(|s| !s.is_empty()) {
        Some(sub) => format!("{sub}/{name}"),
        None => name.to_string(),
    })
}

/// What a 400 from `/prompt` says, naming the nodes: both the newer shape
/// (`error` an object, `node_errors` a map) and the older (`error` a string,
/// `node_errors` a list).
fn validation_error(answer: &Value) -> String {
    let error = &answer["error"];
    let mut text = match error {
        Value::String(s) => s.clone(),
        _ => format!(
            "{} ({})",
            error["message"].as_str().unwrap_or("invalid prompt"),
            error["type"].as_str().unwrap_or("invalid_prompt")
        ),
    };
    if let Some(nodes) = answer["node_errors"].as_object() {
        for (id, node) in nodes {
            for e in node["errors"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "; node {id} ({}): {}: {}",
                    node["class_type"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or(""),
                    e["details"].as_str().unwrap_or("")
                ));
            }
        }
    }
    text
}

/// The failing node of a run whose `status_str` is `error`.
fn execution_error(entry: &Value) -> String {
    let messages = entry["status"]["messages"].as_array().cloned().unwrap_or_default();
    for m in &messages {
        match (m[0].as_str(), &m[1]) {
            (Some("execution_error"), d) => {
                return format!(
                    "node {} ({}) failed: {}",
                    d["node_id"].as_str().unwrap_or("?"),
                    d["node_type"].as_str().unwrap_or("?"),
                    d["exception_message"].as_str().unwrap_or("").trim()
                )
            }
            (Some("execution_interrupted"), d) => {
                return format!("the run was interrupted at node {}", d["node_id"].as_str().unwrap_or("?"))
            }
            _ => {}
        }
    }
    "the run failed".to_string()
}

/// Cancels a queued or running prompt when dropped armed: the request was
/// abandoned (the client hung up) before its images were read.
struct Cancel {
    http: Http,
    prompt_id: String,
    armed: bool,
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (http, id) = (self.http.clone(), self.prompt_id.clone());
        runtime.spawn(async move {
            let (queue, stop) = (http.url("/queue"), http.url("/interrupt"));
            // Running: interrupted, and only then, since ComfyUI before
            // targeted interrupts stops whatever runs, whoever queued it.
            // Otherwise taken out of the queue (a no-op if it is gone).
            let running = match http.authed(http.client.get(&queue)).send().await {
                Ok(r) => r.json::<Value>().await.ok().is_some_and(|q| {
                    q["queue_running"].as_array().into_iter().flatten().any(|item| item[1].as_str() == Some(&id))
                }),
                Err(_) => false,
            };
            if running {
                let _ = http.authed(http.client.post(&stop).json(&json!({ "prompt_id": id }))).send().await;
            } else {
                let _ = http.authed(http.client.post(&queue).json(&json!({ "delete": [id] }))).send().await;
            }
            tracing::info!(backend = %http.backend, prompt = %id, running, "abandoned prompt cancelled");
        });
    }
}
