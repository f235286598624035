//! Loopback servers that speak the generator backends' protocols as their
//! own servers do, for the tests of the backend adapters, the gateway and
//! the binary. Each can be told to misbehave the ways real ones do: answer
//! slowly, fail with 500 then recover, rate-limit with `Retry-After`, send
//! garbage, a decompression bomb, images of the wrong size or count.
//!
//! The shapes follow the servers' code: OpenAI's Images API (and its error
//! body), ComfyUI's `server.py`/`execution.py` (upload, queue, `/history`
//! answering `{}` until done, cached identical graphs, `node_errors`,
//! `execution_error` messages, `/view`, `/queue` deletes, `/interrupt`),
//! and AUTOMATIC1111's `modules/api` (`images` as bare base64, `info` a
//! JSON string, `{error, detail, body, errors}` errors, basic auth).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How a fake backend answers its next generation calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Behaviour {
    #[default]
    Ok,
    /// Waits this long before answering.
    Slow(Duration),
    /// Answers these encoded bytes for every image asked, whatever the
    /// size: a backend that costs nothing (the overhead benchmark).
    Fixed(Arc<Vec<u8>>),
    /// Answers 500 this many times, then works.
    FailThenOk(u32),
    /// Answers 429 with `Retry-After: secs` this many times, then works.
    RateLimited { times: u32, retry_after_secs: u64 },
    /// A 200 whose body is not what the protocol promises.
    Garbage,
    /// A PNG header claiming 100000 x 100000 pixels.
    Bomb,
    /// Images of another size than asked.
    WrongSize,
    /// One image more than asked.
    WrongCount,
    /// Always 500.
    Down,
}

/// What a fake backend saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Generation calls (including failed ones).
    pub calls: u32,
    /// The paths called, in order.
    pub paths: Vec<String>,
    /// When each generation call came in, in order.
    pub at: Vec<std::time::Instant>,
    /// The last JSON body of a generation call.
    pub last_json: Value,
    /// The multipart part names of the last multipart call, in order.
    pub parts: Vec<String>,
    /// The last `Authorization` header.
    pub authorization: Option<String>,
    /// ComfyUI: prompt ids deleted from the queue, and interrupts.
    pub deleted: Vec<String>,
    pub interrupts: Vec<Value>,
}

#[derive(Default)]
struct Shared {
    behaviour: Mutex<(Behaviour, u32)>,
    seen: Mutex<Seen>,
    /// ComfyUI: uploaded input files, graphs already run (for the cache),
    /// finished history entries, and polls left before a prompt finishes.
    uploads: Mutex<BTreeMap<String, Vec<u8>>>,
    outputs: Mutex<BTreeMap<String, Vec<u8>>>,
    graphs: Mutex<Vec<(Value, Value)>>,
    history: Mutex<BTreeMap<String, (u32, Value)>>,
    counter: Mutex<u32>,
    /// ComfyUI: the next run fails in execution.
    fail_next: Mutex<bool>,
    /// ComfyUI: polls of `/history` a run takes (unset: 2).
    run_polls: Mutex<Option<u32>>,
}

/// A fake backend on a loopback port, served by its own thread.
pub struct FakeBackend {
    pub base: String,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeBackend {
    fn start(router: Router<Arc<Shared>>) -> FakeBackend {
        let shared = Arc::new(Shared { behaviour: Mutex::new((Behaviour::Ok, 0)), ..Default::default() });
        let app = router.with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel::<SocketAddr>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr.recv().unwrap();
        FakeBackend { base: format!("http://{addr}"), shared, _stop: stop }
    }

    /// OpenAI's Images API; `key` is the bearer token it accepts.
    pub fn openai(key: &str) -> FakeBackend {
        let key = key.to_string();
        let k2 = key.clone();
        FakeBackend::start(
            Router::new()
                .route("/v1/images/generations", post(move |s, h, b| openai_generations(s, h, b, key.clone())))
                .route("/v1/images/edits", post(move |s, h, m| openai_edits(s, h, m, k2.clone()))),
        )
    }

    pub fn comfyui() -> FakeBackend {
        FakeBackend::start(
            Router::new()
                .route("/upload/image", post(comfy_upload))
                .route("/prompt", post(comfy_prompt))
                .route("/history/{id}", get(comfy_history))
                .route("/view", get(comfy_view))
                .route("/queue", post(comfy_queue).get(comfy_queue_state))
                .route("/interrupt", post(comfy_interrupt)),
        )
    }

    /// AUTOMATIC1111's API; with `auth` (`user:pass`), basic auth as `--api-auth`.
    pub fn sdwebui(auth: Option<&str>) -> FakeBackend {
        let auth = auth.map(|a| format!("Basic {}", B64.encode(a)));
        let a2 = auth.clone();
        FakeBackend::start(
            Router::new()
                .route("/sdapi/v1/txt2img", post(move |s, h, b| webui(s, h, b, auth.clone(), false)))
                .route("/sdapi/v1/img2img", post(move |s, h, b| webui(s, h, b, a2.clone(), true))),
        )
    }

    /// likeness's generic protocol.
    pub fn generic() -> FakeBackend {
        FakeBackend::start(Router::new().route("/generate", post(generic)))
    }

    /// ComfyUI: another client's prompt, queued and running (never polled, so it never ends).
    pub fn comfy_someone_elses_prompt(&self) -> String {
        let id = uuid_like(&self.shared);
        self.shared.history.lock().unwrap().insert(id.clone(), (u32::MAX, json!({})));
        id
    }

    pub fn behave(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = (b, 0);
    }

    pub fn seen(&self) -> Seen {
        self.shared.seen.lock().unwrap().clone()
    }
}

/// A valid PNG of `w` x `h`, in a colour of `seed`.
pub fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let c = [(seed * 53 % 255) as u8, (seed * 97 % 255) as u8, 140];
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([c[0] ^ (x as u8 / 8), c[1] ^ (y as u8 / 8), c[2]]));
    likeness_media::encode(&img, likeness_media::OutputFormat::Png).unwrap()
}

/// What the current behaviour makes of one generation call: an error
/// answer, or the images (as encoded bytes) to give.
enum Outcome {
    Answer(Response),
    Images(Vec<Vec<u8>>),
    Garbage,
}

async fn decide(s: &Shared, path: &str, w: u32, h: u32, n: u32) -> Outcome {
    let (behaviour, count) = {
        let mut b = s.behaviour.lock().unwrap();
        b.1 += 1;
        (b.0.clone(), b.1)
    };
    {
        let mut seen = s.seen.lock().unwrap();
        seen.calls += 1;
        seen.paths.push(path.to_string());
        seen.at.push(std::time::Instant::now());
    }
    let images = |w: u32, h: u32, n: u32| (0..n).map(|i| png(w, h, count * 10 + i)).collect();
    match behaviour {
        Behaviour::Ok => Outcome::Images(images(w, h, n)),
        Behaviour::Fixed(bytes) => Outcome::Images(vec![bytes.to_vec(); n as usize]),
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            Outcome::Images(images(w, h, n))
        }
        Behaviour::FailThenOk(times) | Behaviour::RateLimited { times, .. } if count <= times => {
            if let Behaviour::RateLimited { retry_after_secs, .. } = behaviour {
                let body = json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
                return Outcome::Answer(
                    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after_secs.to_string())], Json(body))
                        .into_response(),
                );
            }
            Outcome::Answer((StatusCode::INTERNAL_SERVER_ERROR, "the server had an error").into_response())
        }
        Behaviour::FailThenOk(_) | Behaviour::RateLimited { .. } => Outcome::Images(images(w, h, n)),
        Behaviour::Down => Outcome::Answer((StatusCode::INTERNAL_SERVER_ERROR, "down").into_response()),
        Behaviour::Garbage => Outcome::Garbage,
        Behaviour::Bomb => Outcome::Images(vec![likeness_media::hostile::forged_png(100_000, 100_000); n as usize]),
        Behaviour::WrongSize => Outcome::Images(images(w / 2, h / 2, n)),
        Behaviour::WrongCount => Outcome::Images(images(w, h, n + 1)),
    }
}

fn openai_error(status: StatusCode, message: &str, param: Option<&str>, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    (status, Json(body)).into_response()
}

/// The refusal OpenAI answers to a wrong key, or `None` when the key is right.
fn openai_unauthorised(s: &Shared, headers: &HeaderMap, key: &str) -> Option<Response> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(String::from);
    s.seen.lock().unwrap().authorization = auth.clone();
    (auth.as_deref() != Some(&format!("Bearer {key}"))).then(|| {
        // As OpenAI words it: the key's first and last characters, masked between.
        let sent = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        let masked = match sent.char_indices().nth(4) {
            Some((i, _)) if sent.len() > 8 => format!("{}{}{}", &sent[..i], "*".repeat(8), &sent[sent.len() - 4..]),
            _ => "*".repeat(sent.len()),
        };
        let message = format!(
            "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
        );
        openai_error(StatusCode::UNAUTHORIZED, &message, None, "invalid_api_key")
    })
}

fn size_of(v: &Value) -> (u32, u32) {
    let size = v.as_str().unwrap_or("1024x1024");
    let (w, h) = size.split_once('x').unwrap_or(("1024", "1024"));
    (w.parse().unwrap_or(1024), h.parse().unwrap_or(1024))
}

async fn openai_answer(s: &Shared, path: &str, fields: &Value) -> Response {
    let model = fields["model"].as_str().unwrap_or("dall-e-2");
    if model.starts_with("gpt-image") && !fields["response_format"].is_null() {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Unknown parameter: 'response_format'.",
            Some("response_format"),
            "unknown_parameter",
        );
    }
    if fields["prompt"].as_str().is_none_or(str::is_empty) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'prompt'.",
            Some("prompt"),
            "missing_required_parameter",
        );
    }
    // OpenAI's own moderation refuses some prompts (gpt-image-1's wording).
    if fields["prompt"].as_str().is_some_and(|p| p.contains("will not draw")) {
        let body = json!({"error": {
            "message": "Your request was rejected as a result of our safety system. Your request may contain content that is not allowed by our safety system.",
            "type": "image_generation_user_error", "param": null, "code": "moderation_blocked"}});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let (w, h) = size_of(&fields["size"]);
    let n = fields["n"].as_u64().or_else(|| fields["n"].as_str().and_then(|n| n.parse().ok())).unwrap_or(1) as u32;
    match decide(s, path, w, h, n).await {
        Outcome::Answer(r) => r,
        Outcome::Garbage => {
            (StatusCode::OK, Json(json!({"created": 1, "data": [{"b64_json": "%%% not base64"}]}))).into_response()
        }
        // DALL-E answers URLs unless asked for base64.
        Outcome::Images(images) if !model.starts_with("gpt-image") && fields["response_format"] != "b64_json" => {
            let data: Vec<Value> = (0..images.len())
                .map(|i| json!({"url": format!("https://oaidalleapiprodscus.blob.core.windows.net/private/img-{i}.png"), "revised_prompt": null}))
                .collect();
            Json(json!({"created": 1_795_000_000, "data": data})).into_response()
        }
        Outcome::Images(images) => Json(json!({
            "created": 1_795_000_000,
            "data": images.iter().map(|i| json!({"b64_json": B64.encode(i)})).collect::<Vec<_>>(),
            "output_format": "png", "size": format!("{w}x{h}"), "quality": "high", "background": "opaque",
            "usage": {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50,
                      "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}},
        }))
        .into_response(),
    }
}

async fn openai_generations(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes, key: String) -> Response {
    if let Some(r) = openai_unauthorised(&s, &headers, &key) {
        return r;
    }
    let Ok(fields) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            None,
            "invalid_json",
        );
    };
    s.seen.lock().unwrap().last_json = fields.clone();
    openai_answer(&s, "/v1/images/generations", &fields).await
}

async fn openai_edits(State(s): State<Arc<Shared>>, headers: HeaderMap, mut form: Multipart, key: String) -> Response {
    if let Some(r) = openai_unauthorised(&s, &headers, &key) {
        return r;
    }
    let mut fields = json!({});
    let mut parts = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        parts.push(name.clone());
        if name == "image" || name == "image[]" {
            let bytes = field.bytes().await.unwrap_or_default();
            if likeness_media::MediaType::sniff(&bytes).is_none() {
                return openai_error(
                    StatusCode::BAD_REQUEST,
                    "Invalid image file",
                    Some("image"),
                    "invalid_image_file",
                );
            }
        } else {
            fields[name] = json!(field.text().await.unwrap_or_default());
        }
    }
    if !parts.iter().any(|p| p.starts_with("image")) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'image'.",
            Some("image"),
            "missing_required_parameter",
        );
    }
    {
        let mut seen = s.seen.lock().unwrap();
        seen.parts = parts;
        seen.last_json = fields.clone();
    }
    openai_answer(&s, "/v1/images/edits", &fields).await
}

async fn comfy_upload(State(s): State<Arc<Shared>>, mut form: Multipart) -> Response {
    let (mut file, mut overwrite, mut kind) = (None, false, "input".to_string());
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or_default() {
            "image" => {
                let name = field.file_name().unwrap_or_default().to_string();
                file = Some((name, field.bytes().await.unwrap_or_default().to_vec()));
            }
            "overwrite" => overwrite = matches!(field.text().await.unwrap_or_default().as_str(), "true" | "1"),
            "type" => kind = field.text().await.unwrap_or_default(),
            _ => {}
        }
    }
    let Some((name, bytes)) = file.filter(|(n, _)| !n.is_empty()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut uploads = s.uploads.lock().unwrap();
    let (stem, ext) =
        name.rsplit_once('.').map_or((name.clone(), String::new()), |(a, b)| (a.to_string(), format!(".{b}")));
    let mut final_name = name.clone();
    let mut i = 1;
    while !overwrite && uploads.get(&final_name).is_some_and(|b| b != &bytes) {
        final_name = format!("{stem} ({i}){ext}");
        i += 1;
    }
    uploads.insert(final_name.clone(), bytes);
    Json(json!({"name": final_name, "subfolder": "", "type": kind})).into_response()
}

fn node_error(id: &str, class: &str, kind: &str, message: &str, details: &str) -> Response {
    let body = json!({
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                  "details": format!("{message}: {details}"), "extra_info": {}},
        "node_errors": {id: {"errors": [{"type": kind, "message": message, "details": details, "extra_info": {}}],
                              "dependent_outputs": ["9"], "class_type": class}},
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn comfy_prompt(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let Some(graph) = body["prompt"].as_object().cloned() else {
        let e = json!({"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}, "node_errors": {}});
        return (StatusCode::BAD_REQUEST, Json(e)).into_response();
    };
    let (mut w, mut h, mut n, mut save) = (1024u32, 1024u32, 1u32, None);
    for (id, node) in &graph {
        let (class, inputs) = (node["class_type"].as_str().unwrap_or(""), &node["inputs"]);
        match class {
            "EmptyLatentImage" => {
                w = inputs["width"].as_u64().unwrap_or(1024) as u32;
                h = inputs["height"].as_u64().unwrap_or(1024) as u32;
                n = inputs["batch_size"].as_u64().unwrap_or(1) as u32;
            }
            // img2img: the reference scaled to the size asked, repeated per image.
            "ImageScale" => {
                w = inputs["width"].as_u64().unwrap_or(1024) as u32;
                h = inputs["height"].as_u64().unwrap_or(1024) as u32;
            }
            "RepeatLatentBatch" => n = inputs["amount"].as_u64().unwrap_or(1) as u32,
            "LoadImage" => {
                let image = inputs["image"].as_str().unwrap_or("");
                if !s.uploads.lock().unwrap().contains_key(image) {
                    return node_error(
                        id,
                        class,
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        &format!("image - Invalid image file: {image}"),
                    );
                }
            }
            "CLIPTextEncode" if !inputs["text"].is_string() => {
                return node_error(id, class, "required_input_missing", "Required input is missing", "text");
            }
            "SaveImage" => save = Some(id.clone()),
            _ => {}
        }
    }
    let Some(save) = save else {
        let e = json!({"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": {}});
        return (StatusCode::BAD_REQUEST, Json(e)).into_response();
    };
    let graph = Value::Object(graph);
    s.seen.lock().unwrap().last_json = graph.clone();
    let id = uuid_like(&s);
    if std::mem::take(&mut *s.fail_next.lock().unwrap()) {
        s.history.lock().unwrap().insert(id.clone(), (2, comfy_execution_error(&id)));
        return Json(json!({"prompt_id": id, "number": 1, "node_errors": {}})).into_response();
    }
    // An identical graph: nothing runs, the history names the earlier files.
    let cached = s.graphs.lock().unwrap().iter().find(|(g, _)| *g == graph).map(|(_, o)| o.clone());
    let entry = match cached {
        Some(outputs) => {
            history_entry(&id, outputs, "success", vec![json!(["execution_cached", {"nodes": [], "prompt_id": id}])])
        }
        None => match decide(&s, "/prompt", w, h, n).await {
            Outcome::Answer(r) => return r,
            Outcome::Garbage => history_entry(&id, json!({save.clone(): {"images": "not a list"}}), "success", vec![]),
            Outcome::Images(images) => {
                let mut files = Vec::new();
                for img in images {
                    let mut c = s.counter.lock().unwrap();
                    *c += 1;
                    let name = format!("ComfyUI_{:05}_.png", *c);
                    s.outputs.lock().unwrap().insert(name.clone(), img);
                    files.push(json!({"filename": name, "subfolder": "", "type": "output"}));
                }
                let outputs = json!({save.clone(): {"images": files}});
                s.graphs.lock().unwrap().push((graph.clone(), outputs.clone()));
                history_entry(&id, outputs, "success", vec![json!(["execution_success", {"prompt_id": id}])])
            }
        },
    };
    // Answered `{}` for two polls, as while queued and running.
    let polls = s.run_polls.lock().unwrap().unwrap_or(2);
    s.history.lock().unwrap().insert(id.clone(), (polls, entry));
    Json(json!({"prompt_id": id, "number": 1, "node_errors": {}})).into_response()
}

fn uuid_like(s: &Shared) -> String {
    let mut c = s.counter.lock().unwrap();
    *c += 1;
    format!("00000000-0000-4000-8000-{:012}", *c)
}

fn history_entry(id: &str, outputs: Value, status: &str, messages: Vec<Value>) -> Value {
    json!({
        "prompt": [1, id, {}, {}, []],
        "outputs": outputs,
        "status": {"status_str": status, "completed": status == "success", "messages": messages},
        "meta": {},
    })
}

/// A run that failed in execution at node 3, as ComfyUI reports it.
fn comfy_execution_error(entry_id: &str) -> Value {
    history_entry(
        entry_id,
        json!({}),
        "error",
        vec![
            json!(["execution_start", {"prompt_id": entry_id}]),
            json!(["execution_error", {"prompt_id": entry_id, "node_id": "3", "node_type": "KSampler",
                   "exception_message": "CUDA out of memory\n", "exception_type": "torch.OutOfMemoryError"}]),
        ],
    )
}

impl FakeBackend {
    /// ComfyUI: the next prompt fails in execution at node 3 (KSampler).
    pub fn fail_next_run(&self) {
        *self.shared.fail_next.lock().unwrap() = true;
    }

    /// ComfyUI: runs from now on take this many polls of `/history` to end.
    pub fn comfy_run_polls(&self, polls: u32) {
        *self.shared.run_polls.lock().unwrap() = Some(polls);
    }
}

async fn comfy_history(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut history = s.history.lock().unwrap();
    let Some((polls, entry)) = history.get_mut(&id) else { return Json(json!({})).into_response() };
    if *polls > 0 {
        *polls -= 1;
        return Json(json!({})).into_response();
    }
    Json(json!({ id: entry.clone() })).into_response()
}

async fn comfy_view(State(s): State<Arc<Shared>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(name) = q.get("filename").filter(|n| !n.is_empty()) else { return StatusCode::NOT_FOUND.into_response() };
    if name.contains("..") || name.starts_with('/') {
        return StatusCode::BAD_REQUEST.into_response();
    }
    if q.get("type").is_some_and(|t| !["output", "input", "temp"].contains(&t.as_str())) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    match s.outputs.lock().unwrap().get(name) {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /queue {"delete": [...]}` takes waiting prompts out; a running
/// one is not in the queue, so it goes on.
async fn comfy_queue(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> StatusCode {
    let running = comfy_unfinished(&s).into_iter().next();
    for id in body["delete"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        s.seen.lock().unwrap().deleted.push(id.to_string());
        if running.as_deref() != Some(id) {
            s.history.lock().unwrap().remove(id);
        }
    }
    StatusCode::OK
}

/// Prompts not finished, in queue order: the first runs, the rest wait.
fn comfy_unfinished(s: &Shared) -> Vec<String> {
    s.history.lock().unwrap().iter().filter(|(_, (polls, _))| *polls > 0).map(|(id, _)| id.clone()).collect()
}

/// `GET /queue`: items are `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
async fn comfy_queue_state(State(s): State<Arc<Shared>>) -> Json<Value> {
    let item = |(i, id): (usize, &String)| json!([i, id, {}, {}, ["9"]]);
    let ids = comfy_unfinished(&s);
    let (running, pending) = ids.split_at(ids.len().min(1));
    Json(json!({
        "queue_running": running.iter().enumerate().map(item).collect::<Vec<_>>(),
        "queue_pending": pending.iter().enumerate().map(item).collect::<Vec<_>>(),
    }))
}

/// Records every interrupt; as older ComfyUI does, one without a
/// `prompt_id` (or with the running one's) stops whatever runs.
async fn comfy_interrupt(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.seen.lock().unwrap().interrupts.push(v);
    if let Some(running) = comfy_unfinished(&s).into_iter().next() {
        s.history.lock().unwrap().remove(&running);
    }
    StatusCode::OK
}

fn webui_error(status: StatusCode, error: &str, detail: &str) -> Response {
    (status, Json(json!({"error": error, "detail": detail, "body": "", "errors": ""}))).into_response()
}

async fn webui(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
    auth: Option<String>,
    img2img: bool,
) -> Response {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    s.seen.lock().unwrap().authorization = given.map(String::from);
    if let Some(want) = &auth {
        match given {
            None => return webui_error(StatusCode::UNAUTHORIZED, "HTTPException", "Not authenticated"),
            Some(g) if g != want => {
                return webui_error(StatusCode::UNAUTHORIZED, "HTTPException", "Incorrect username or password")
            }
            _ => {}
        }
    }
    let Ok(fields) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body"], "msg": "invalid JSON", "type": "value_error"}]})),
        )
            .into_response();
    };
    s.seen.lock().unwrap().last_json = fields.clone();
    if img2img {
        let Some(inits) = fields["init_images"].as_array() else {
            return webui_error(StatusCode::NOT_FOUND, "HTTPException", "Init image not found");
        };
        for i in inits {
            let text = i.as_str().unwrap_or("");
            let b64 = if text.starts_with("data:image/") { text.split(',').nth(1).unwrap_or("") } else { text };
            if B64.decode(b64).ok().and_then(|b| likeness_media::MediaType::sniff(&b)).is_none() {
                return webui_error(StatusCode::INTERNAL_SERVER_ERROR, "HTTPException", "Invalid encoded image");
            }
        }
    }
    let w = fields["width"].as_u64().unwrap_or(512) as u32;
    let h = fields["height"].as_u64().unwrap_or(512) as u32;
    let mut batch = fields["batch_size"].as_u64().unwrap_or(1);
    // As A1111's img2img: one init image serves the whole batch; several
    // make the batch as many as they are; more than the batch is an error.
    let inits = fields["init_images"].as_array().map_or(0, Vec::len) as u64;
    if img2img && inits > 1 {
        if inits > batch {
            let detail = format!("bad number of images passed: {inits}; expecting {batch} or less");
            return webui_error(StatusCode::INTERNAL_SERVER_ERROR, "RuntimeError", &detail);
        }
        batch = inits;
    }
    let n = (batch * fields["n_iter"].as_u64().unwrap_or(1)) as u32;
    let path = if img2img { "/sdapi/v1/img2img" } else { "/sdapi/v1/txt2img" };
    match decide(&s, path, w, h, n).await {
        Outcome::Answer(r) => r,
        Outcome::Garbage => (StatusCode::OK, "<html>Internal Server Error</html>").into_response(),
        Outcome::Images(images) => {
            let info = json!({"prompt": fields["prompt"], "seed": fields["seed"], "all_seeds": [fields["seed"]],
                              "width": w, "height": h, "index_of_first_image": 0})
            .to_string();
            Json(json!({"images": images.iter().map(|i| B64.encode(i)).collect::<Vec<_>>(), "parameters": fields, "info": info}))
                .into_response()
        }
    }
}

async fn generic(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    s.seen.lock().unwrap().last_json = body.clone();
    let (w, h, n) = (
        body["width"].as_u64().unwrap_or(1024) as u32,
        body["height"].as_u64().unwrap_or(1024) as u32,
        body["n"].as_u64().unwrap_or(1) as u32,
    );
    match decide(&s, "/generate", w, h, n).await {
        Outcome::Answer(r) => r,
        Outcome::Garbage => (StatusCode::OK, "not json").into_response(),
        Outcome::Images(images) => {
            Json(json!({"images": images.iter().map(|i| json!({"mime": "image/png", "data": B64.encode(i)})).collect::<Vec<_>>()}))
                .into_response()
        }
    }
}

/// The workflow templates the README ships (`docs/comfyui/`): txt2img, or
/// img2img from one reference when `reference` is true. Tests use these
/// very files, so the documented templates are the tested ones.
pub fn comfy_workflow(reference: bool) -> Value {
    let text = if reference {
        include_str!("../../../docs/comfyui/img2img.json")
    } else {
        include_str!("../../../docs/comfyui/txt2img.json")
    };
    serde_json::from_str(text).expect("docs/comfyui templates are JSON")
}
