//! Shared helpers for the end-to-end tests: the real `likeness` binary, a
//! real server on an ephemeral loopback port, and the independent C2PA
//! reference reader (c2pa-python, installed by `make setup-test`).
#![allow(dead_code)]

pub mod provider;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_likeness")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("fixtures").join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// A gateway process; killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: tempfile::TempDir,
    pub api_key: String,
    /// The server's stderr (its logs), outside the data dir.
    pub log: tempfile::NamedTempFile,
    config: String,
    extra: Vec<String>,
    log_filter: String,
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with_config("")
    }

    /// Starts `likeness serve` with a TOML config (may be empty).
    pub fn start_with_config(config: &str) -> Server {
        Server::start_with(config, &[])
    }

    /// With a config and extra `serve` flags.
    pub fn start_with(config: &str, extra: &[&str]) -> Server {
        Server::start_logging(config, extra, "warn")
    }

    /// With a log filter (`LIKENESS_LOG`), logs captured in `log`.
    pub fn start_logging(config: &str, extra: &[&str], log_filter: &str) -> Server {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Server::start_in(tempfile::tempdir().unwrap(), config.to_string(), extra, log_filter.to_string(), vec![])
    }

    /// With a config and environment variables (a backend's credentials).
    /// `files` are written next to the config first (a workflow template).
    pub fn start_env(config: &str, files: &[(&str, &[u8])], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Server::start_in(dir, config.to_string(), vec![], "warn".into(), env)
    }

    /// Stops this server and starts another on the same data dir and flags.
    pub fn restart(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        let (config, extra, filter, env) = (
            std::mem::take(&mut self.config),
            std::mem::take(&mut self.extra),
            std::mem::take(&mut self.log_filter),
            std::mem::take(&mut self.env),
        );
        Server::start_in(data_dir, config, extra, filter, env)
    }

    fn start_in(
        data_dir: tempfile::TempDir,
        config: String,
        extra: Vec<String>,
        log_filter: String,
        env: Vec<(String, String)>,
    ) -> Server {
        let log = tempfile::NamedTempFile::new().unwrap();
        let config_path = data_dir.path().join("test-config.toml");
        std::fs::write(&config_path, &config).unwrap();
        // The shipped policy, unless the test brings its own.
        let policies = if extra.iter().any(|a| a == "--policies") {
            vec![]
        } else {
            vec!["--policies".to_string(), workspace_root().join("policies").display().to_string()]
        };
        let mut child = Command::new(bin())
            .current_dir(workspace_root())
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .arg("--config")
            .arg(&config_path)
            .args(&policies)
            .args(&extra)
            .env("LIKENESS_LOG", &log_filter)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start likeness serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_string();
        let api_key = std::fs::read_to_string(data_dir.path().join("dev-api-key")).unwrap().trim().to_string();
        Server { child, base, data_dir, api_key, log, config, extra, log_filter, env }
    }

    /// Any API call with the tenant's key: (status, JSON body or Null).
    pub fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
        self.call_as(Some(&self.api_key), method, path, body)
    }

    /// The same with another bearer token (a personal token), or none.
    pub fn call_as(
        &self,
        bearer: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = Server::client().request(method, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, if text.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.data_dir.path().join("keys/ca.pem")
    }

    pub fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
    }

    pub fn generate(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let resp = Server::client()
            .post(format!("{}/v1/generations", self.base))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap())
    }

    /// Sends the process SIGTERM (what a service manager does to stop it).
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits up to `patience` for the process to exit: its status, if it did.
    pub fn wait_exit(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + patience;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn healthy(&self) -> bool {
        Server::client().get(format!("{}/healthz", self.base)).send().is_ok_and(|r| r.status().is_success())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn upload(bytes: &[u8], mime: &str) -> serde_json::Value {
    serde_json::json!({ "upload": { "data": B64.encode(bytes), "mime": mime } })
}

/// Runs `likeness ARGS...`: (exit code, stdout, stderr).
pub fn likeness(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).current_dir(workspace_root()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs `likeness verify --json` and returns (exit code, one object per file).
pub fn likeness_verify(args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let (code, stdout, _) = likeness(&[&["verify", "--json"], args].concat());
    let lines =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect();
    (code, lines)
}

/// The Python interpreter of the venv that holds c2pa-python. The tests need
/// it: run `make setup-test`, or point LIKENESS_C2PA_PYTHON at one.
pub fn reference_python() -> PathBuf {
    if let Ok(p) = std::env::var("LIKENESS_C2PA_PYTHON") {
        // Relative paths are taken from the workspace root, not the crate dir.
        return workspace_root().join(p);
    }
    let p = workspace_root().join(".cache/c2pa-python/bin/python");
    assert!(
        p.exists(),
        "the C2PA reference reader is missing: run `make setup-test` (installs c2pa-python into .cache/) \
         or set LIKENESS_C2PA_PYTHON"
    );
    p
}

fn reference_tool() -> PathBuf {
    workspace_root().join("tests/reference/c2pa_reference.py")
}

/// Reads files with c2pa-python: one object per file with `state` and `failures`.
pub fn reference_read(files: &[&Path], anchors: Option<&Path>) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(reference_python());
    cmd.arg(reference_tool()).arg("read");
    if let Some(a) = anchors {
        cmd.arg("--anchors").arg(a);
    }
    cmd.args(files);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "reference reader failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Has c2pa-python sign files with its own ES256 identity: foreign-valid.jpg,
/// foreign-tampered.jpg, foreign-remote.jpg and foreign-ca.pem in `dir`.
pub fn make_foreign_files(source: &Path, dir: &Path) {
    let out = Command::new(reference_python())
        .arg(reference_tool())
        .args(["make-foreign", "--source"])
        .arg(source)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "make-foreign failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Flips one bit in the middle of a JPEG's entropy-coded data or a PNG's
/// IDAT data: the pixels change, the manifest does not.
pub fn flip_image_byte(bytes: &mut [u8]) {
    let start = if bytes.starts_with(&[0xFF, 0xD8]) {
        let sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]).expect("JPEG has SOS");
        sos + 2 + u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]) as usize
    } else {
        let idat = bytes.windows(4).position(|w| w == b"IDAT").expect("PNG has IDAT");
        idat + 4
    };
    let len = if bytes.starts_with(&[0xFF, 0xD8]) {
        bytes.len() - 2 - start
    } else {
        let idat = start - 4;
        u32::from_be_bytes(bytes[idat - 4..idat].try_into().unwrap()) as usize
    };
    let mut i = start + len / 2;
    // Avoid creating or breaking a JPEG marker (0xFF).
    while bytes[i] == 0xFF || bytes[i - 1] == 0xFF || bytes[i] ^ 1 == 0xFF {
        i += 1;
    }
    bytes[i] ^= 1;
}

/// The shipped gallery minus Obama, written to `dir`.
pub fn gallery_without_obama(dir: &std::path::Path) -> std::path::PathBuf {
    gallery_without(dir, &["obama"])
}

/// The shipped gallery minus `ids`, written to `dir`: those people are
/// private persons to the gateway.
pub fn gallery_without(dir: &std::path::Path, ids: &[&str]) -> std::path::PathBuf {
    let mut g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(workspace_root().join("models/gallery.example.json")).unwrap()).unwrap();
    g["entries"].as_array_mut().unwrap().retain(|e| !ids.iter().any(|id| e["id"] == *id));
    let path = dir.join("gallery.json");
    std::fs::write(&path, serde_json::to_vec(&g).unwrap()).unwrap();
    path
}

/// A copy of the shipped `policies/` folder in `dir`, with `edit` applied
/// to `default.yaml`: a policy of the test's own for `serve --policies`.
pub fn policy_dir(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let from = workspace_root().join("policies");
    let to = dir.join("policies");
    for sub in ["", "categories", "tests"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let default = to.join("default.yaml");
    std::fs::write(&default, edit(std::fs::read_to_string(&default).unwrap())).unwrap();
    to
}
