//! `/metrics`: the operator's view, in Prometheus' text format, counting
//! what the requests before it did.

mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::Request;
use likeness_testkit::{png, FakeVision};
use serde_json::json;
use support::*;

/// A parsed exposition: each sample line (`name{labels}` → value), and each
/// family's declared type. Panics on a line the format does not allow.
fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let (mut samples, mut types) = (BTreeMap::new(), BTreeMap::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram", "summary"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "{name} declared twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(types.contains_key(name) || types.contains_key(family), "{line}: no # TYPE before it");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}: value"));
        assert!(samples.insert(series.to_string(), value).is_none(), "{series} twice");
    }
    (samples, types)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_steps_and_refusals_in_prometheus_text() {
    let app = App::new(FakeVision::new()).await;
    // Behind a tenant's key on the main listener.
    let (status, body) = app.call_as(None, "GET", "/metrics", None).await;
    assert_eq!((status, code(&body)), (401, "auth.missing"));

    let good =
        json!({"user": "u", "prompt": "a lake", "size": "256x256", "n": 2, "references": [upload(&png(40, 30))]});
    let (status, body) = app.generate(good).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.generate(json!({"user": "u", "prompt": "a lake", "size": "9x9"})).await;
    assert_eq!(status, 422);
    let (status, _) = app.call("GET", "/v1/grants/gr_nope", None).await;
    assert_eq!(status, 404);
    app.call("GET", "/nowhere", None).await;

    let resp = app
        .send(Request::get("/metrics").header("authorization", format!("Bearer {KEY}")).body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = scrape(&app).await;
    let (samples, types) = parse(&text);
    let get = |series: &str| samples.get(series).copied().unwrap_or_else(|| panic!("no {series} in\n{text}"));

    // Requests by route template (ids do not make series), status and code.
    assert_eq!(get(r#"likeness_http_requests_total{route="/v1/generations",method="POST",status="200",code=""}"#), 1.0);
    assert_eq!(
        get(
            r#"likeness_http_requests_total{route="/v1/generations",method="POST",status="422",code="request.size_out_of_range"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"likeness_http_requests_total{route="/v1/grants/{id}",method="GET",status="404",code="grant.not_found"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"likeness_http_requests_total{route="/metrics",method="GET",status="401",code="auth.missing"}"#),
        1.0
    );
    assert!(samples.keys().any(|k| k.contains(r#"route="unmatched""#) && k.contains("route.not_found")), "{text}");
    assert!(!text.contains("gr_nope"), "an id became a label");
    assert_eq!(get(r#"likeness_http_request_duration_seconds_count{route="/v1/generations"}"#), 2.0);

    // Every step of the one generation that ran to the end.
    assert_eq!(types["likeness_stage_duration_seconds"], "histogram");
    for (stage, at_least) in [
        ("decode", 1.0),
        ("vision_references", 1.0),
        ("vision_outputs", 2.0),
        ("policy", 2.0),
        ("generate", 1.0),
        ("watermark", 4.0),
        ("encode", 2.0),
        ("sign", 2.0),
        ("store", 1.0),
    ] {
        let n = get(&format!(r#"likeness_stage_duration_seconds_count{{stage="{stage}"}}"#));
        assert!(n >= at_least, "{stage}: {n} < {at_least}");
        // Buckets are cumulative and end at the count.
        let inf = get(&format!(r#"likeness_stage_duration_seconds_bucket{{stage="{stage}",le="+Inf"}}"#));
        assert_eq!(inf, n, "{stage}");
        let first = get(&format!(r#"likeness_stage_duration_seconds_bucket{{stage="{stage}",le="0.001"}}"#));
        assert!(first <= inf);
    }
    assert_eq!(get(r#"likeness_admission_rejections_total{code="server.overloaded"}"#), 0.0);
    assert_eq!(get("likeness_generations_in_progress"), 0.0);
    assert_eq!(get("likeness_resolver_uploads_in_flight"), 0.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    // What a request carried never becomes a label.
    for secret in ["a lake", KEY, "\"u\""] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}

/// Quota refusals are counted as admission rejections.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_for_load_are_counted_as_admission_rejections() {
    let setup = Setup {
        tenant: Some(|t| {
            t.quota = likeness_http::TenantQuota { requests_per_minute: Some(1), max_concurrent_generations: None }
        }),
        ..Setup::default()
    };
    let app = App::with_setup(FakeVision::new(), likeness_http::HttpConfig::default(), setup).await;
    let lake = json!({"user": "u", "prompt": "a lake", "size": "256x256"});
    assert_eq!(app.generate(lake.clone()).await.0, 200);
    let (status, body) = app.generate(lake).await;
    assert_eq!((status, code(&body)), (429, "tenant.rate_limited"));
    let (samples, _) = parse(&scrape(&app).await);
    assert_eq!(samples[r#"likeness_admission_rejections_total{code="tenant.rate_limited"}"#], 1.0);
    assert_eq!(samples[r#"likeness_admission_rejections_total{code="server.overloaded"}"#], 0.0);
}
