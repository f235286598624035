//! Each protocol against a loopback server that speaks it as the real one
//! does (`likeness-testkit`'s fakes), and the guards every backend shares:
//! retries, Retry-After, timeouts, bad answers, the circuit breaker, and
//! cancellation when the caller goes away.

use std::time::Duration;

use likeness_backends::*;
use likeness_pipeline::Job;
use likeness_testkit::backends::{comfy_workflow, png, Behaviour, FakeBackend};

fn job(references: usize, count: u32) -> Job {
    Job {
        prompt: "a lighthouse".into(),
        style: "oil-painting".into(),
        references: (0..references).map(|i| png(64, 48, i as u32)).collect(),
        width: 256,
        height: 192,
        count,
        seed: 42,
    }
}

fn backend(config: BackendConfig) -> Backend {
    Backend::new(BackendConfig { backoff: Duration::from_millis(10), ..config }).unwrap()
}

fn dims(images: &[Vec<u8>]) -> Vec<(u32, u32)> {
    images.iter().map(|i| likeness_media::decode(i, None, &Default::default()).unwrap().pixels.dimensions()).collect()
}

#[tokio::test]
async fn openai_generations_and_edits_with_one_and_several_references() {
    let fake = FakeBackend::openai("sk-test");
    let mut config = BackendConfig::new("cloud", Kind::OpenAi, &fake.base);
    config.auth = Auth::Bearer("sk-test".into());
    config.model = Some("gpt-image-1".into());
    let b = backend(config.clone());
    assert_eq!(b.generator(), "openai/gpt-image-1");

    let images = b.generate(&job(0, 2), &Options::default()).await.unwrap();
    assert_eq!(dims(&images), [(256, 192), (256, 192)]);
    let seen = fake.seen();
    assert_eq!(seen.paths, ["/v1/images/generations"]);
    assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-test"));
    assert!(seen.last_json.get("response_format").is_none(), "GPT image models refuse it: {}", seen.last_json);
    assert_eq!(seen.last_json["size"], "256x192");
    assert_eq!(seen.last_json["prompt"], "a lighthouse, as a oil painting");

    b.generate(&job(1, 1), &Options { quality: Some("high".into()), background: None }).await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.parts.iter().filter(|p| p.starts_with("image")).collect::<Vec<_>>(), ["image"]);
    assert_eq!(seen.last_json["quality"], "high");
    b.generate(&job(3, 1), &Options::default()).await.unwrap();
    assert_eq!(fake.seen().parts.iter().filter(|p| p.starts_with("image")).count(), 3);
    assert!(fake.seen().parts.iter().filter(|p| p.starts_with("image")).all(|p| p == "image[]"));

    // A DALL-E model (or another service's) is asked for base64
    // explicitly; a GPT image model never is (it refuses the parameter).
    assert!(fake.seen().last_json.get("response_format").is_none());
    let mut dalle = BackendConfig::new("old", Kind::OpenAi, &fake.base);
    dalle.auth = Auth::Bearer("sk-test".into());
    dalle.model = Some("dall-e-2".into());
    backend(dalle.clone()).generate(&job(0, 1), &Options::default()).await.unwrap();
    assert_eq!(fake.seen().last_json["response_format"], "b64_json");
    // The config has the last word: told not to ask, DALL-E answers a URL,
    // which is refused (images are never fetched from where a backend says).
    dalle.send_response_format = Some(false);
    let err = backend(dalle).generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(fake.seen().last_json.get("response_format").is_none());
    assert!(err.to_string().contains("no b64_json"), "{err}");

    // A wrong key: the backend is unusable, and nothing of the key shows
    // (OpenAI's 401 quotes its first and last characters).
    let mut wrong = BackendConfig::new("cloud", Kind::OpenAi, &fake.base);
    wrong.auth = Auth::Bearer("sk-wrong-secret".into());
    let err = backend(wrong).generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(matches!(&err, BackendError::Unavailable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("refused the gateway's credentials") && !text.contains("sk-w") && !text.contains("cret"),
        "{text}"
    );
    assert_eq!(err.code().as_str(), "generator.unavailable");

    // A request the backend refuses (its content policy) is the request's
    // fault, with the backend's reason.
    let refused = Job { prompt: "something it will not draw".into(), ..job(0, 1) };
    let err = backend(config).generate(&refused, &Options::default()).await.unwrap_err();
    assert_eq!(err.code().as_str(), "generator.rejected", "{err}");
    assert!(err.to_string().contains("safety system"), "{err}");
}

fn comfy(fake: &FakeBackend, reference: bool) -> Backend {
    let mut config = BackendConfig::new("studio", Kind::ComfyUi, &fake.base);
    config.workflow = Some(Workflow { name: "portrait".into(), template: comfy_workflow(reference) });
    config.poll_interval = Duration::from_millis(20);
    config.negative_prompt = "blurry".into();
    backend(config)
}

#[tokio::test]
async fn comfyui_uploads_queues_polls_and_fetches_and_serves_a_cached_graph() {
    let fake = FakeBackend::comfyui();
    let b = comfy(&fake, true);
    assert_eq!(b.generator(), "comfyui/portrait");
    let first = b.generate(&job(1, 2), &Options::default()).await.unwrap();
    assert_eq!(dims(&first), [(256, 192), (256, 192)]);
    let graph = fake.seen().last_json;
    assert_eq!(graph["3"]["inputs"]["seed"], 42, "a number placeholder becomes a number");
    assert_eq!(
        (&graph["12"]["inputs"]["width"], &graph["13"]["inputs"]["amount"]),
        (&serde_json::json!(256), &serde_json::json!(2))
    );
    assert_eq!(graph["7"]["inputs"]["text"], "blurry");
    // What the user wrote is never read as a placeholder.
    let sneaky = Job { prompt: "a sign that reads {{seed}} {{reference_1}}".into(), ..job(1, 1) };
    b.generate(&sneaky, &Options::default()).await.unwrap();
    let text = fake.seen().last_json["6"]["inputs"]["text"].as_str().unwrap().to_string();
    assert!(text.contains("a sign that reads {{seed}} {{reference_1}}"), "{text}");
    let uploaded = graph["10"]["inputs"]["image"].as_str().unwrap();
    assert!(uploaded.starts_with("likeness-") && uploaded.ends_with("-1.png"), "{uploaded}");
    // The identical graph again (same upload name is impossible: a new
    // name each time), so a txt2img workflow shows the cache: no new run,
    // the history names the earlier files, and they are fetched.
    let t2i = comfy(&fake, false);
    let a = t2i.generate(&job(0, 1), &Options::default()).await.unwrap();
    let calls = fake.seen().calls;
    let b2 = t2i.generate(&job(0, 1), &Options::default()).await.unwrap();
    assert_eq!(fake.seen().calls, calls, "served from the cache: nothing ran");
    assert_eq!(a, b2);

    // A workflow with no batch_size refuses n > 1; more references than it takes are refused.
    let mut single = comfy_workflow(false);
    single["5"]["inputs"]["batch_size"] = serde_json::json!(1);
    let mut config = BackendConfig::new("one", Kind::ComfyUi, &fake.base);
    config.workflow = Some(Workflow { name: "single".into(), template: single });
    let err = backend(config).generate(&job(0, 2), &Options::default()).await.unwrap_err();
    assert!(err.to_string().contains("makes one image"), "{err}");
    let err = t2i.generate(&job(1, 1), &Options::default()).await.unwrap_err();
    assert!(err.to_string().contains("takes 0 reference(s)"), "{err}");
}

#[tokio::test]
async fn comfyui_errors_name_the_node() {
    let fake = FakeBackend::comfyui();
    // A request the workflow cannot take is refused before anything is sent.
    let err = comfy(&fake, true).generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(err.to_string().contains("takes 1 reference(s), the request has 0"), "{err}");
    assert_eq!(err.code().as_str(), "generator.rejected");
    assert_eq!(fake.seen().calls, 0);
    // A workflow that loads a file the server does not have fails validation.
    let mut template = comfy_workflow(false);
    template["20"] = serde_json::json!({"class_type": "LoadImage", "inputs": {"image": "not-uploaded.png"}});
    let mut config = BackendConfig::new("studio", Kind::ComfyUi, &fake.base);
    config.workflow = Some(Workflow { name: "broken".into(), template });
    let err = backend(config).generate(&job(0, 1), &Options::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("node 20 (LoadImage)") && text.contains("Invalid image file"), "{text}");
    assert_eq!(err.code().as_str(), "generator.bad_response");
    fake.fail_next_run();
    let err = comfy(&fake, false).generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(err.to_string().contains("node 3 (KSampler) failed: CUDA out of memory"), "{err}");
    assert_eq!(err.code().as_str(), "generator.bad_response");
}

#[tokio::test]
async fn comfyui_workflows_are_checked_when_configured() {
    for (template, want) in [
        (serde_json::json!({"1": {"inputs": {}}}), "not API format"),
        (
            serde_json::json!({"1": {"class_type": "X", "inputs": {"text": "{{promt}}"}}}),
            "unknown placeholder {{promt}}",
        ),
        (serde_json::json!({"1": {"class_type": "X", "inputs": {"text": "no placeholder"}}}), "no {{prompt}}"),
    ] {
        let mut config = BackendConfig::new("w", Kind::ComfyUi, "http://127.0.0.1:1");
        config.workflow = Some(Workflow { name: "w".into(), template });
        let err = Backend::new(config).err().unwrap();
        assert!(err.contains(want), "{err}");
    }
}

#[tokio::test]
async fn comfyui_prompts_of_a_caller_that_went_away_are_deleted_and_interrupted() {
    let fake = FakeBackend::comfyui();
    let mut config = BackendConfig::new("studio", Kind::ComfyUi, &fake.base);
    config.workflow = Some(Workflow { name: "portrait".into(), template: comfy_workflow(false) });
    config.poll_interval = Duration::from_secs(3600);
    let b = backend(config);
    // The first poll answers {}; the call then waits an hour: drop it.
    let abandoned = tokio::time::timeout(Duration::from_millis(300), b.generate(&job(0, 1), &Options::default())).await;
    assert!(abandoned.is_err());
    for _ in 0..100 {
        if !fake.seen().interrupts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It was running: interrupted, by its id.
    let seen = fake.seen();
    assert_eq!((seen.interrupts.len(), seen.deleted.len()), (1, 0), "{seen:?}");
    let ours = seen.interrupts[0]["prompt_id"].as_str().unwrap().to_string();
    assert!(ours.starts_with("00000000-"), "{ours}");

    // Behind another client's running prompt, ours only waits: it is taken
    // out of the queue, and theirs is not interrupted.
    let theirs = fake.comfy_someone_elses_prompt();
    let abandoned = tokio::time::timeout(Duration::from_millis(300), b.generate(&job(0, 1), &Options::default())).await;
    assert!(abandoned.is_err());
    for _ in 0..100 {
        if !fake.seen().deleted.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = fake.seen();
    assert_eq!(seen.deleted.len(), 1, "{seen:?}");
    assert!(seen.deleted[0] != theirs && seen.deleted[0] != ours, "{seen:?}");
    assert_eq!(seen.interrupts.len(), 1, "nothing interrupted for a waiting prompt: {seen:?}");
}

#[tokio::test]
async fn sdwebui_txt2img_and_img2img_with_basic_auth() {
    let fake = FakeBackend::sdwebui(Some("ana:s3cret"));
    let mut config = BackendConfig::new("webui", Kind::SdWebUi, &fake.base);
    config.auth = Auth::Basic("ana:s3cret".into());
    config.model = Some("sd_xl_base_1.0".into());
    let b = backend(config);
    assert_eq!(dims(&b.generate(&job(0, 2), &Options::default()).await.unwrap()), [(256, 192), (256, 192)]);
    let seen = fake.seen();
    assert_eq!(seen.paths, ["/sdapi/v1/txt2img"]);
    assert_eq!((seen.last_json["batch_size"].as_u64(), seen.last_json["seed"].as_i64()), (Some(2), Some(42)));
    assert_eq!(seen.last_json["override_settings"]["sd_model_checkpoint"], "sd_xl_base_1.0");
    b.generate(&job(1, 1), &Options::default()).await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.paths.last().unwrap(), "/sdapi/v1/img2img");
    assert_eq!(seen.last_json["init_images"].as_array().unwrap().len(), 1);
    assert_eq!(seen.last_json["denoising_strength"], 0.6);
    let err = b.generate(&job(2, 1), &Options::default()).await.unwrap_err();
    assert_eq!(err.code().as_str(), "generator.rejected", "{err}");
    assert!(err.to_string().contains("img2img takes one reference, the request has 2"), "{err}");

    let mut wrong = BackendConfig::new("webui", Kind::SdWebUi, &fake.base);
    wrong.auth = Auth::Basic("ana:guess".into());
    let err = backend(wrong).generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(
        err.to_string().contains("refused the gateway's credentials") && !err.to_string().contains("guess"),
        "{err}"
    );
}

fn generic(fake: &FakeBackend, f: impl FnOnce(&mut BackendConfig)) -> Backend {
    let mut config = BackendConfig::new("custom", Kind::Generic, &fake.base);
    config.model = Some("house-style-v2".into());
    f(&mut config);
    backend(config)
}

#[tokio::test]
async fn retries_on_500_and_429_then_succeed() {
    let fake = FakeBackend::generic();
    let b = generic(&fake, |_| {});
    fake.behave(Behaviour::FailThenOk(2));
    assert_eq!(b.generate(&job(1, 1), &Options::default()).await.unwrap().len(), 1);
    assert_eq!(fake.seen().calls, 3);
    assert_eq!(fake.seen().last_json["references"][0]["mime"], "image/png");
    fake.behave(Behaviour::RateLimited { times: 1, retry_after_secs: 1 });
    assert_eq!(b.generate(&job(0, 1), &Options::default()).await.unwrap().len(), 1);
    let seen = fake.seen();
    assert_eq!(seen.calls, 5, "one 429, then the answer");
    // Honoured: the retry came no sooner than the backend asked (the
    // configured backoff is 10 ms), and a 500's retry did not wait that long.
    assert!(seen.at[4] - seen.at[3] >= Duration::from_secs(1), "{:?}", seen.at[4] - seen.at[3]);
    assert!(seen.at[1] - seen.at[0] < Duration::from_secs(1), "{:?}", seen.at[1] - seen.at[0]);
    // A Retry-After longer than the gateway waits: unavailable at once.
    fake.behave(Behaviour::RateLimited { times: 1, retry_after_secs: 3600 });
    let err = b.generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn slow_garbage_and_down_backends_fail_clearly() {
    let fake = FakeBackend::generic();
    let b = generic(&fake, |c| c.timeout = Duration::from_millis(300));
    fake.behave(Behaviour::Slow(Duration::from_secs(5)));
    let err = b.generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.to_string()),
        ("generator.timeout", "backend custom did not answer in time".into())
    );
    fake.behave(Behaviour::Garbage);
    let err = b.generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(matches!(err, BackendError::BadResponse { .. }), "{err}");
    fake.behave(Behaviour::Down);
    let err = b.generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
    assert_eq!(err.code().as_str(), "generator.unavailable");
}

/// A backend's concurrency limit: a call beyond it waits up to the queue
/// timeout for a slot, then fails as busy; a backend that refuses the
/// connection fails after its retries.
#[tokio::test]
async fn the_concurrency_limit_queues_then_refuses_and_a_closed_port_is_unavailable() {
    let fake = FakeBackend::generic();
    let b = std::sync::Arc::new(generic(&fake, |c| {
        c.max_concurrent = 1;
        c.queue_timeout = Duration::from_millis(200);
    }));
    fake.behave(Behaviour::Slow(Duration::from_millis(800)));
    let first = tokio::spawn({
        let b = b.clone();
        async move { b.generate(&job(0, 1), &Options::default()).await }
    });
    while fake.seen().calls == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = b.generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(matches!(err, BackendError::Busy { .. }), "{err}");
    assert_eq!(err.code().as_str(), "generator.unavailable");
    assert_eq!(fake.seen().calls, 1, "the second call never reached the backend");
    assert!(first.await.unwrap().is_ok(), "the first one finished");
    assert!(b.generate(&job(0, 1), &Options::default()).await.is_ok(), "a slot is free again");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = Backend::new(BackendConfig {
        backoff: Duration::from_millis(5),
        ..BackendConfig::new("gone", Kind::Generic, &format!("http://127.0.0.1:{port}"))
    })
    .unwrap();
    let err = closed.generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("backend gone"), "{err}");
}

#[tokio::test]
async fn the_circuit_breaker_fails_fast_then_probes() {
    let fake = FakeBackend::generic();
    let b = generic(&fake, |c| {
        c.retries = 0;
        c.breaker_threshold = 2;
        c.breaker_cooldown = Duration::from_millis(400);
    });
    fake.behave(Behaviour::Down);
    for _ in 0..2 {
        assert!(matches!(b.generate(&job(0, 1), &Options::default()).await, Err(BackendError::Unavailable { .. })));
    }
    let calls = fake.seen().calls;
    let err = b.generate(&job(0, 1), &Options::default()).await.unwrap_err();
    assert!(matches!(err, BackendError::CircuitOpen { .. }), "{err}");
    assert_eq!(fake.seen().calls, calls, "no call while open");
    assert!(b.breaker_open());
    fake.behave(Behaviour::Ok);
    tokio::time::sleep(Duration::from_millis(450)).await;
    b.generate(&job(0, 1), &Options::default()).await.expect("the probe goes through and closes it");
    assert!(!b.breaker_open());
}

#[test]
fn credentials_never_show_in_debug_prints() {
    let mut config = BackendConfig::new("cloud", Kind::OpenAi, "https://api.example.com");
    config.auth = Auth::Bearer("sk-very-secret".into());
    assert!(!format!("{config:?}").contains("sk-very-secret"));
}
