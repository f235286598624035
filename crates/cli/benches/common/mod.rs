//! What the benchmarks share: starting the release binary, and percentiles.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Starts the release binary with `config` (written next to its data) and
/// the environment given; answers its base URL and API key.
pub fn serve(
    root: &std::path::Path,
    config: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, String, String, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().unwrap();
    let config_path = data_dir.path().join("bench.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_likeness"))
        .current_dir(root)
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .arg("--config")
        .arg(&config_path)
        .arg("--policies")
        .arg(root.join("policies"))
        .env("LIKENESS_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap().to_string();
    let key = std::fs::read_to_string(data_dir.path().join("dev-api-key")).unwrap().trim().to_string();
    (child, base, key, data_dir)
}

/// A process' peak resident memory (VmHWM) in MB, from /proc (Linux).
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}
