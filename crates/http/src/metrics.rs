//! `/metrics`: the operator's view in Prometheus' text format (0.0.4).
//! Requests by route and outcome, latency per route and per step of the
//! request path, model inference time, backend errors, admission
//! rejections and the load on the public resolver. Counters only: no
//! request content, no tenant or user ids (labels stay few and bounded:
//! route templates, statuses, registry codes, step, model and backend names).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use likeness_codes::{ErrorCode, Reason};
use likeness_pipeline::timing::{Histogram, Snapshot, Step, BUCKETS};

use crate::state::AppState;

/// The registry code of a failed response, set where the error becomes a
/// response, so the counters can tell refusals apart.
#[derive(Debug, Clone)]
pub(crate) struct ErrorReason(pub Reason);

/// Refusals that mean "too much load", not "bad request".
const ADMISSION: [ErrorCode; 6] = [
    ErrorCode::ServerOverloaded,
    ErrorCode::TenantRateLimited,
    ErrorCode::TenantConcurrencyExceeded,
    ErrorCode::ResolverRateLimited,
    ErrorCode::ResolverBusy,
    ErrorCode::SubjectRateLimited,
];

#[derive(Default)]
pub struct Metrics {
    /// (route, method, status, code) → count; code is empty on success.
    requests: Mutex<BTreeMap<(String, String, u16, String), u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
    in_flight: AtomicI64,
    /// (backend, code) → count.
    backend_errors: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    pub(crate) fn backend_error(&self, backend: &str, code: &str) {
        *self.backend_errors.lock().unwrap().entry((backend.to_string(), code.to_string())).or_default() += 1;
    }

    fn finished(&self, route: &str, method: &str, status: u16, code: Option<&Reason>, elapsed: std::time::Duration) {
        let code = code.map(|c| c.to_string()).unwrap_or_default();
        *self.requests.lock().unwrap().entry((route.to_string(), method.to_string(), status, code)).or_default() += 1;
        let histogram = self.latency.lock().unwrap().entry(route.to_string()).or_default().clone();
        histogram.record(elapsed);
    }
}

/// Counts every request by the route it matched (its template, so ids do
/// not make new series), method, status and error code.
pub(crate) async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = req.method().as_str().to_string();
    let metrics = &state.metrics;
    metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    let code = resp.extensions().get::<ErrorReason>().map(|r| &r.0);
    metrics.finished(&route, &method, resp.status().as_u16(), code, started.elapsed());
    resp
}

pub(crate) async fn render(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = exposition(&state).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

fn exposition(state: &AppState) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    family(&mut out, "likeness_build_info", "gauge", "The gateway's version.");
    let _ = writeln!(out, "likeness_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

    family(
        &mut out,
        "likeness_http_requests_total",
        "counter",
        "Requests by route template, method, status and error code.",
    );
    for ((route, method, status, code), n) in m.requests.lock().unwrap().iter() {
        let labels = format!("route=\"{}\",method=\"{method}\",status=\"{status}\",code=\"{code}\"", escape(route));
        let _ = writeln!(out, "likeness_http_requests_total{{{labels}}} {n}");
    }
    family(&mut out, "likeness_http_requests_in_flight", "gauge", "Requests being handled.");
    let _ = writeln!(out, "likeness_http_requests_in_flight {}", m.in_flight.load(Ordering::Relaxed));
    family(&mut out, "likeness_http_request_duration_seconds", "histogram", "Time to answer, by route template.");
    for (route, h) in m.latency.lock().unwrap().iter() {
        histogram(
            &mut out,
            "likeness_http_request_duration_seconds",
            &format!("route=\"{}\"", escape(route)),
            &h.snapshot(),
        );
    }

    family(
        &mut out,
        "likeness_admission_rejections_total",
        "counter",
        "Requests refused for load: overload, quotas, rate limits.",
    );
    let mut rejections: BTreeMap<&str, u64> = ADMISSION.iter().map(|c| (c.as_str(), 0)).collect();
    for ((_, _, _, code), n) in m.requests.lock().unwrap().iter() {
        if let Some(count) = rejections.get_mut(code.as_str()) {
            *count += n;
        }
    }
    for (code, n) in rejections {
        let _ = writeln!(out, "likeness_admission_rejections_total{{code=\"{code}\"}} {n}");
    }

    family(&mut out, "likeness_stage_duration_seconds", "histogram", "Time in each step of the request path.");
    let times = state.pipeline.step_times();
    for step in Step::ALL {
        histogram(
            &mut out,
            "likeness_stage_duration_seconds",
            &format!("stage=\"{}\"", step.as_str()),
            &times.snapshot(step),
        );
    }

    family(&mut out, "likeness_model_inference_seconds", "summary", "Time in each vision model's runs.");
    if let Ok(vision) = &state.pipeline.moderation().vision {
        for t in vision.inference_times() {
            let _ = writeln!(out, "likeness_model_inference_seconds_sum{{model=\"{}\"}} {}", t.task, t.seconds);
            let _ = writeln!(out, "likeness_model_inference_seconds_count{{model=\"{}\"}} {}", t.task, t.runs);
        }
    }

    family(
        &mut out,
        "likeness_backend_errors_total",
        "counter",
        "Generator backend failures by backend and error code.",
    );
    for ((backend, code), n) in m.backend_errors.lock().unwrap().iter() {
        let _ = writeln!(out, "likeness_backend_errors_total{{backend=\"{}\",code=\"{code}\"}} {n}", escape(backend));
    }

    let (busy, places) = state.admission.load();
    family(
        &mut out,
        "likeness_generations_in_progress",
        "gauge",
        "Generations admitted: running or waiting for a CPU slot.",
    );
    let _ = writeln!(out, "likeness_generations_in_progress {places}");
    family(&mut out, "likeness_cpu_slots_busy", "gauge", "CPU slots running vision, generation or marking.");
    let _ = writeln!(out, "likeness_cpu_slots_busy {busy}");
    let resolver = &state.config.resolver;
    family(&mut out, "likeness_resolver_uploads_in_flight", "gauge", "Public resolver uploads being received.");
    let uploads = resolver.max_uploads_in_flight.max(1).saturating_sub(state.uploads.available_permits());
    let _ = writeln!(out, "likeness_resolver_uploads_in_flight {uploads}");
    family(&mut out, "likeness_resolver_detections_in_flight", "gauge", "Public resolver images being read.");
    let detections = resolver.max_concurrent_detections.max(1).saturating_sub(state.detections.available_permits());
    let _ = writeln!(out, "likeness_resolver_detections_in_flight {detections}");

    if let Some(rss) = resident_bytes() {
        family(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, s: &Snapshot) {
    for (bound, count) in BUCKETS.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).zip(&s.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", s.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", s.count);
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// This process' resident memory, from /proc (Linux only).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
