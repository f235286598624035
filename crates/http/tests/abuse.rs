//! The public surface under abuse: per-address limits that one IPv6 host
//! cannot multiply and a proxy cannot collapse, readiness that tells the
//! public nothing more than ready or not.

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use likeness_http::{HttpConfig, ResolverConfig};
use likeness_testkit::FakeVision;
use serde_json::json;
use support::*;

async fn gateway(trusted_proxies: &[&str]) -> App {
    let config = HttpConfig {
        resolver: ResolverConfig { requests_per_minute: 1, burst: 2, ..ResolverConfig::default() },
        trusted_proxies: trusted_proxies.iter().map(|p| p.parse().unwrap()).collect(),
        ..HttpConfig::default()
    };
    App::with_setup(FakeVision::new(), config, Setup::default()).await
}

/// A public resolver call from `peer`, with forwarding headers: its status.
async fn call(app: &App, peer: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = Request::get("/services/supportedAlgorithms");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    app.send(req).await.status().as_u16()
}

/// Spends `from`'s burst of 2, then checks the next is refused.
async fn exhaust(app: &App, peer: &str, headers: &[(&str, &str)]) {
    assert_eq!(call(app, peer, headers).await, 200);
    assert_eq!(call(app, peer, headers).await, 200);
    assert_eq!(call(app, peer, headers).await, 429, "{peer} {headers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_ipv6_host_gets_one_bucket_per_64() {
    let app = gateway(&[]).await;
    exhaust(&app, "[2001:db8:1:2::1]:5000", &[]).await;
    // Any other address of the same /64 is the same client.
    assert_eq!(call(&app, "[2001:db8:1:2:ffff:ffff:ffff:fffe]:5001", &[]).await, 429);
    // The next /64 is someone else; so is an IPv4 client.
    assert_eq!(call(&app, "[2001:db8:1:3::1]:5000", &[]).await, 200);
    assert_eq!(call(&app, "192.0.2.1:5000", &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    // Untrusted: a client cannot dodge its limit by naming another address.
    let app = gateway(&[]).await;
    exhaust(&app, "198.51.100.1:1000", &[("x-forwarded-for", "1.1.1.1")]).await;
    assert_eq!(call(&app, "198.51.100.1:1000", &[("x-forwarded-for", "2.2.2.2")]).await, 429);
    assert_eq!(call(&app, "198.51.100.1:1000", &[("forwarded", "for=3.3.3.3")]).await, 429);

    // Behind our proxy, its clients are told apart, and one client cannot
    // reset its bucket by prepending an address of its own choosing.
    let app = gateway(&["10.0.0.0/8"]).await;
    exhaust(&app, "10.0.0.2:443", &[("x-forwarded-for", "203.0.113.5")]).await;
    assert_eq!(call(&app, "10.0.0.3:443", &[("x-forwarded-for", "9.9.9.9, 203.0.113.5")]).await, 429);
    assert_eq!(call(&app, "10.0.0.2:443", &[("forwarded", "for=203.0.113.5;proto=https")]).await, 429);
    assert_eq!(call(&app, "10.0.0.2:443", &[("x-forwarded-for", "203.0.113.6")]).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_in_public_is_ready_or_not() {
    let app = gateway(&[]).await;
    let (status, body) = json(app.send(Request::get("/readyz").body(Body::empty()).unwrap()).await).await;
    assert_eq!((status, body), (200, json!({"ready": true})));
    // A wrong key is the public.
    let req = Request::get("/readyz").header("authorization", "Bearer lk_wrong").body(Body::empty()).unwrap();
    let (_, body) = json(app.send(req).await).await;
    assert_eq!(body, json!({"ready": true}));
    let (_, body) = app.call("GET", "/readyz", None).await;
    assert!(body["checks"]["signing"]["signer"].is_string(), "{body}");
}

/// A tenant's quotas hold before its body is read: a second generation at
/// once, or more requests than its minute allows, are turned away.
#[tokio::test(flavor = "multi_thread")]
async fn tenant_quotas_hold_before_the_body_is_read() {
    use std::sync::Arc;
    let (generator, hold) = HeldGenerator::new();
    let policies = likeness_testkit::policies();
    let setup = Setup {
        tenant: Some(|t: &mut likeness_http::Tenant| {
            t.quota = likeness_http::TenantQuota { requests_per_minute: Some(3), max_concurrent_generations: Some(1) }
        }),
        ..Setup::default()
    };
    let app = Arc::new(App::build_with(Ok(FakeVision::new()), HttpConfig::default(), generator, policies, setup).await);
    let body = json!({"user": "u", "prompt": "x", "size": "256x256"});
    let running = {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move { app.generate(body).await })
    };
    hold.wait_started().await;
    // While one runs, another is refused at once, whatever its body.
    let (status, resp) = app.call("POST", "/v1/generations", Some(json!({"not": "even valid"}))).await;
    assert_eq!((status, code(&resp)), (429, "tenant.concurrency_exceeded"), "{resp}");
    let (status, resp) = app.call("POST", "/v1/images/generations", Some(json!({"prompt": "x"}))).await;
    assert_eq!(status, 429, "the OpenAI door counts too: {resp}");
    hold.release.send(()).unwrap();
    assert_eq!(running.await.unwrap().0, 200);
    // Three requests this minute are spent: the fourth waits.
    let req = Request::post("/v1/generations")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.send(req).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let (_, resp) = json(resp).await;
    assert_eq!(code(&resp), "tenant.rate_limited", "{resp}");
}

/// A body that sends its first bytes and then nothing, as a slow or hostile
/// client does.
struct Stalled(bool);

impl axum::body::HttpBody for Stalled {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(axum::body::Bytes::from_static(
                b"{\"user\": \"u\", ",
            )))))
        }
    }
}

/// Large generation bodies are read only into one of the gateway's bounded
/// places, each within the body timeout: clients that start 40 MiB bodies
/// and stall hold no more than those places, the next request is refused
/// before its body is read, and the places come back when the stalled
/// bodies time out.
#[tokio::test(flavor = "multi_thread")]
async fn generation_bodies_are_read_only_into_admitted_places_in_bounded_time() {
    use std::sync::Arc;
    let config = HttpConfig {
        max_concurrent_generations: 1,
        max_pending_generations: 2,
        server: likeness_http::ServerConfig { body_timeout: std::time::Duration::from_secs(1), ..Default::default() },
        ..HttpConfig::default()
    };
    let app = Arc::new(App::with_setup(FakeVision::new(), config, Setup::default()).await);
    let stalled: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let req = Request::post("/v1/generations")
                    .header("authorization", format!("Bearer {KEY}"))
                    .header("content-type", "application/json")
                    .header("content-length", (40 << 20).to_string())
                    .body(Body::new(Stalled(false)))
                    .unwrap();
                json(app.send(req).await).await
            })
        })
        .collect();
    // Both are admitted and waiting for their bodies.
    while !scrape(&app).await.lines().any(|l| l == "likeness_generations_in_progress 2") {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let lake = json!({"user": "u", "prompt": "a lake", "size": "256x256"});
    let (status, body) = app.generate(lake.clone()).await;
    assert_eq!((status, code(&body)), (503, "server.overloaded"), "{body}");
    for s in stalled {
        let (status, body) = s.await.unwrap();
        assert_eq!((status, code(&body)), (408, "request.body_timeout"), "{body}");
    }
    let (status, body) = app.generate(lake).await;
    assert_eq!(status, 200, "the places came back: {body}");
}
