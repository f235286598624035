//! `/openapi.json` against the real routes: every route the code declares
//! is described, every described operation is served (not the fallback),
//! and what it answers to a probe is a status the description lists.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::Request;
use likeness_testkit::FakeVision;
use serde_json::Value;
use support::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (path, method) of every `.route("…", get(…).post(…))` in the crate's source.
fn declared_routes() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices(".route(\"") {
                let rest = &text[at + 8..];
                let (route, rest) = rest.split_once('"').unwrap();
                // The handlers: up to the parenthesis that closes `.route(`.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .unwrap()
                    .0;
                let handlers = &rest[..end];
                for m in METHODS {
                    let called = handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                        i == 0
                            || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric() && handlers.as_bytes()[i - 1] != b'_'
                    });
                    if called {
                        found.insert((route.to_string(), m.to_string()));
                    }
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_description_matches_the_routes() {
    let app = App::new(FakeVision::new()).await;
    let (status, spec) = app.call_as(None, "GET", "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    let described: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| METHODS.contains(&m.as_str()))
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    let declared = declared_routes();
    assert!(declared.len() > 20, "the route scan found only {declared:?}");
    let undocumented: Vec<_> = declared.difference(&described).collect();
    let unserved: Vec<_> = described.difference(&declared).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/openapi.json: {undocumented:?}");
    assert!(unserved.is_empty(), "described but not routed: {unserved:?}");

    // Each operation, probed with the tenant's key and an empty JSON body,
    // is served by its handler and answers a status it documents.
    let mut failures = Vec::new();
    for (path, method) in &described {
        let uri = path.replace("{id}", "x_unknown");
        let mut req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header("authorization", format!("Bearer {KEY}"));
        let body = if method == "get" || method == "delete" {
            Body::empty()
        } else {
            req = req.header("content-type", "application/json");
            Body::from("{}")
        };
        let (status, answer) = json_or_text(app.send(req.body(body).unwrap()).await).await;
        if matches!(code(&answer), "route.not_found" | "route.method_not_allowed") {
            failures.push(format!("{method} {uri}: not routed ({status})"));
            continue;
        }
        let responses = &spec["paths"][path][method]["responses"];
        if responses.get(status.to_string()).is_none() && responses.get("default").is_none() {
            failures.push(format!("{method} {path}: answered {status} {answer}, not among {:?}", keys(responses)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn keys(v: &Value) -> Vec<&String> {
    v.as_object().map(|o| o.keys().collect()).unwrap_or_default()
}

async fn json_or_text(resp: axum::http::Response<Body>) -> (u16, Value) {
    use http_body_util::BodyExt as _;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
