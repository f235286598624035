//! Backends configured the way an operator does it: `[[backends]]` in the
//! config file, credentials in the environment, the ComfyUI template the
//! README ships. Through the real binary, against loopback servers that
//! speak each protocol.

mod support;

use std::process::Command;

use base64::Engine as _;
use likeness_testkit::backends::FakeBackend;
use serde_json::{json, Value};
use support::*;

const KEY: &str = "sk-test-4f1c9e";

fn config(openai: &FakeBackend, comfy: &FakeBackend) -> String {
    format!(
        r#"
[[backends]]
name = "openai"
type = "openai"
base_url = "{}"
api_key_env = "LIKENESS_TEST_OPENAI_KEY"
model = "gpt-image-1"

[[backends]]
name = "comfy"
type = "comfyui"
base_url = "{}"
workflow = "img2img.json"
timeout_secs = 30
"#,
        openai.base, comfy.base
    )
}

fn save_images(resp: &Value, dir: &std::path::Path, name: &str) -> Vec<String> {
    let images = resp["images"].as_array().unwrap_or_else(|| panic!("{resp}"));
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let path = dir.join(format!("{name}-{i}.jpg"));
            std::fs::write(&path, B64.decode(img["data"].as_str().unwrap()).unwrap()).unwrap();
            path.display().to_string()
        })
        .collect()
}

#[test]
fn configured_backends_generate_checked_signed_images_that_name_them() {
    let (openai, comfy) = (FakeBackend::openai(KEY), FakeBackend::comfyui());
    let template = std::fs::read(workspace_root().join("docs/comfyui/img2img.json")).unwrap();
    let server = Server::start_env(
        &config(&openai, &comfy),
        &[("img2img.json", &template)],
        &[("LIKENESS_TEST_OPENAI_KEY", KEY)],
    );
    let out = tempfile::tempdir().unwrap();
    let cat = fixture_bytes("scenes/chelsea.png");

    let (status, resp) =
        server.generate(&json!({"user": "u1", "prompt": "a lake at dawn", "backend": "openai", "size": "256x256"}));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(openai.seen().authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let mut files = save_images(&resp, out.path(), "openai");

    let (status, resp) = server.generate(&json!({
        "user": "u1", "prompt": "my cat as a watercolour", "backend": "comfy", "size": "256x256", "n": 2,
        "references": [upload(&cat, "image/png")]
    }));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["images"].as_array().unwrap().len(), 2);
    assert_eq!(comfy.seen().last_json["13"]["inputs"]["amount"], 2, "the shipped template was filled");
    files.extend(save_images(&resp, out.path(), "comfy"));

    let ca = server.ca_pem();
    let mut args = vec!["--trust", ca.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let (code, verified) = likeness_verify(&args);
    assert_eq!(code, 0, "{verified:?}");
    let generators: Vec<&str> = verified.iter().map(|v| v["likeness"]["generator"].as_str().unwrap()).collect();
    assert_eq!(generators, ["openai/gpt-image-1", "comfyui/img2img", "comfyui/img2img"]);
    assert!(verified.iter().all(|v| v["state"] == "trusted"), "{verified:?}");

    // The OpenAI door maps `model` to the configured backend.
    let r = Server::client()
        .post(format!("{}/v1/images/generations", server.base))
        .bearer_auth(&server.api_key)
        .header("x-likeness-user", "u1")
        .json(&json!({"model": "openai", "prompt": "a lighthouse", "size": "256x256"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(openai.seen().last_json["model"], "gpt-image-1");

    // The backend's key never reaches the logs.
    let logs = std::fs::read_to_string(server.log.path()).unwrap();
    assert!(!logs.contains(KEY), "the API key was logged");
}

#[test]
fn a_backend_whose_credentials_are_missing_stops_the_start_with_a_clear_error() {
    let (openai, comfy) = (FakeBackend::openai(KEY), FakeBackend::comfyui());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, self::config(&openai, &comfy)).unwrap();
    let run = Command::new(bin())
        .current_dir(workspace_root())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("--policies")
        .arg(workspace_root().join("policies"))
        .env_remove("LIKENESS_TEST_OPENAI_KEY")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("backend openai: environment variable LIKENESS_TEST_OPENAI_KEY is not set"), "{stderr}");
}

/// A client that hangs up while ComfyUI works: the gateway notices, and the
/// running prompt is interrupted, not left to burn the GPU.
#[test]
fn a_client_that_hangs_up_cancels_the_comfyui_run() {
    let (openai, comfy) = (FakeBackend::openai(KEY), FakeBackend::comfyui());
    comfy.comfy_run_polls(100_000);
    let template = std::fs::read(workspace_root().join("docs/comfyui/img2img.json")).unwrap();
    let server = Server::start_env(
        &config(&openai, &comfy),
        &[("img2img.json", &template)],
        &[("LIKENESS_TEST_OPENAI_KEY", KEY)],
    );
    let impatient = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(2)).build().unwrap();
    let cat = fixture_bytes("scenes/chelsea.png");
    let body = json!({"user": "u1", "prompt": "my cat", "backend": "comfy", "size": "256x256",
                      "references": [upload(&cat, "image/png")]});
    let r = impatient.post(format!("{}/v1/generations", server.base)).bearer_auth(&server.api_key).json(&body).send();
    assert!(r.is_err_and(|e| e.is_timeout()), "the client gave up");
    let mut interrupts = vec![];
    for _ in 0..100 {
        interrupts = comfy.seen().interrupts;
        if !interrupts.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(interrupts.len(), 1, "{:?}", comfy.seen());
    assert!(interrupts[0]["prompt_id"].is_string());
    assert!(server.healthy());
}

/// SIGTERM drains: the listener closes at once, a generation waiting on a
/// slow backend still gets its signed images, then the process exits.
#[test]
fn sigterm_lets_a_running_generation_finish_then_exits() {
    let (openai, comfy) = (FakeBackend::openai(KEY), FakeBackend::comfyui());
    openai.behave(likeness_testkit::backends::Behaviour::Slow(std::time::Duration::from_secs(2)));
    let template = std::fs::read(workspace_root().join("docs/comfyui/img2img.json")).unwrap();
    let mut server = Server::start_env(
        &config(&openai, &comfy),
        &[("img2img.json", &template)],
        &[("LIKENESS_TEST_OPENAI_KEY", KEY)],
    );
    let running = {
        let (base, key) = (server.base.clone(), server.api_key.clone());
        std::thread::spawn(move || {
            let resp = Server::client()
                .post(format!("{base}/v1/generations"))
                .bearer_auth(key)
                .json(&json!({"user": "u1", "prompt": "a lake", "backend": "openai", "size": "256x256"}))
                .send()
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().unwrap())
        })
    };
    // Once the backend has the request, stop the gateway.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while openai.seen().calls == 0 {
        assert!(std::time::Instant::now() < deadline, "the backend never got the request");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.terminate();
    let (status, resp) = running.join().unwrap();
    assert_eq!(status, 200, "the request in flight finished: {resp}");
    assert!(resp["images"][0]["manifest_id"].is_string());
    let exited = server.wait_exit(std::time::Duration::from_secs(60)).expect("the gateway did not exit after draining");
    assert!(exited.success(), "{exited:?}");
    assert!(std::net::TcpStream::connect(server.base.trim_start_matches("http://")).is_err(), "still listening");
}
