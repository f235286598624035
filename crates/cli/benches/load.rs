//! `make load`: the gateway under a steady load for a minute, with the
//! built-in generator, against the release binary on loopback.
//!
//! 1. Capacity: 2 clients back to back for a few seconds (closed loop).
//! 2. The run: requests arrive at a fixed rate (open loop, 90% of that
//!    capacity unless `LIKENESS_LOAD_RATE` says otherwise) for
//!    `LIKENESS_LOAD_SECS` (60). Latency counts from when a request was
//!    due, not when a free client sent it, so a stall shows as latency
//!    instead of hiding as fewer requests (coordinated omission).
//!
//! Prints p50/p95/p99, throughput, errors by status and the server's peak
//! resident memory. Each request: one 451x300 reference, one 1024x1024 JPEG.
//! Never asserts anything about time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{ms, percentile, serve};

fn env_number(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let photo = std::fs::read(root.join("fixtures/scenes/chelsea.png")).unwrap();
    let body = serde_json::json!({
        "user": "load", "prompt": "my cat as a watercolour", "size": "1024x1024", "output_format": "jpeg",
        "references": [{"upload": {"data": base64::engine::general_purpose::STANDARD.encode(&photo), "mime": "image/png"}}]
    })
    .to_string();
    let seconds = env_number("LIKENESS_LOAD_SECS").unwrap_or(60.0);
    let (mut child, base, key, _dir) = serve(&root, "", &[]);
    let client = || reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let send = |c: &reqwest::blocking::Client| -> Result<(), u16> {
        let r = c
            .post(format!("{base}/v1/generations"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .map_err(|_| 0u16)?;
        let status = r.status().as_u16();
        let _ = r.bytes();
        if status == 200 {
            Ok(())
        } else {
            Err(status)
        }
    };
    send(&client()).expect("a first generation");

    println!("== capacity: 2 clients back to back");
    let probe = Duration::from_secs_f64((seconds / 6.0).clamp(5.0, 15.0));
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let c = client();
                while started.elapsed() < probe {
                    if send(&c).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let capacity = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{:<44} {capacity:.2} requests/s", "closed loop");

    let rate = env_number("LIKENESS_LOAD_RATE").unwrap_or(0.9 * capacity).max(0.1);
    println!("\n== steady load: {rate:.2} requests/s for {seconds:.0} s (open loop)");
    let total = (rate * seconds).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::with_capacity(total));
    let errors = Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let started = Instant::now();
    // Enough senders that a slow answer never delays the next due request.
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let c = client();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = started + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    match send(&c) {
                        Ok(()) => samples.lock().unwrap().push(due.elapsed()),
                        Err(status) => *errors.lock().unwrap().entry(status).or_default() += 1,
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let mut samples = samples.into_inner().unwrap();
    let errors = errors.into_inner().unwrap();
    let failed: usize = errors.values().sum();
    if !samples.is_empty() {
        let (p50, p95, p99) =
            (percentile(&mut samples, 0.5), percentile(&mut samples, 0.95), percentile(&mut samples, 0.99));
        println!("{:<44} p50 {}   p95 {}   p99 {}", "latency (from when due)", ms(p50), ms(p95), ms(p99));
    }
    println!(
        "{:<44} {:.2} requests/s ({} answered, {} errors{})",
        "throughput",
        samples.len() as f64 / elapsed.as_secs_f64(),
        samples.len(),
        failed,
        if errors.is_empty() {
            String::new()
        } else {
            format!(": {}", errors.iter().map(|(s, n)| format!("{n} x {s}")).collect::<Vec<_>>().join(", "))
        }
    );
    if let Some(mb) = common::peak_rss_mb(child.id()) {
        println!("{:<44} {mb:.0} MB", "peak resident memory (server, VmHWM)");
    }
    let _ = child.kill();
    let _ = child.wait();
}
