//! The listener under abuse, over real loopback sockets: clients that send
//! headers slowly or not at all are dropped, connections past the cap are
//! closed, and anonymous uploads to the resolver cannot hold memory open.
//! Waits are bounded generously: a test fails when the server never acts,
//! not when it is slow.

mod support;

use std::time::Duration;

use likeness_http::{HttpConfig, ResolverConfig, ServerConfig};
use likeness_testkit::FakeVision;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway listening on loopback; stops when the sender is dropped.
struct Listening {
    addr: std::net::SocketAddr,
    _app: App,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn listen(server: ServerConfig, resolver: ResolverConfig) -> Listening {
    let config = HttpConfig { server, resolver, ..HttpConfig::default() };
    let app = App::with_setup(FakeVision::new(), config, Setup::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(likeness_http::serve(listener, app.state.clone(), async move {
        let _ = stopped.await;
    }));
    Listening { addr, _app: app, _stop: stop }
}

const PATIENCE: Duration = Duration::from_secs(20);

/// Whether the server closed the connection (EOF or reset) before `PATIENCE`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an error response before the close
            Err(_) => return false,
        }
    }
}

/// Sends raw bytes, reads until the server closes: the response text.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_headers_and_idle_connections_are_dropped() {
    let server = ServerConfig { header_read_timeout: Duration::from_secs(1), ..ServerConfig::default() };
    let gw = listen(server, ResolverConfig::default()).await;
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        }
        held.push(s);
    }
    // A kept-alive connection that goes quiet after one request.
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    held.push(kept);
    for (i, s) in held.iter_mut().enumerate() {
        assert!(closed_by_server(s).await, "connection {i} is still open");
    }
    assert!(exchange(gw.addr, HEALTH).await.starts_with("HTTP/1.1 200"), "still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_are_closed_as_they_arrive() {
    let server = ServerConfig { max_connections: 3, ..ServerConfig::default() };
    let gw = listen(server, ResolverConfig::default()).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // Let the server accept them.
    assert!(tokio::time::timeout(Duration::from_millis(300), open[0].read(&mut [0u8; 1])).await.is_err(), "open");
    let mut fourth = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_by_server(&mut fourth).await, "a fourth connection was kept");
    drop(open.pop());
    let mut served = false;
    for _ in 0..50 {
        if exchange(gw.addr, HEALTH).await.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a freed slot serves again");
}

fn upload_head(length: usize) -> Vec<u8> {
    format!(
        "POST /matches/byContent HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn resolver_uploads_cannot_hold_memory_open() {
    let resolver = ResolverConfig {
        max_uploads_in_flight: 2,
        upload_timeout: Duration::from_secs(2),
        ..ResolverConfig::default()
    };
    let gw = listen(ServerConfig::default(), resolver).await;

    // Larger than decoding accepts: refused on the headers, nothing read.
    let answer = exchange(gw.addr, &upload_head(30 * 1024 * 1024)).await;
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("resolver.image_too_large"), "{answer}");

    // Two uploads held one byte short take both places; a third is turned
    // away at once, before its body is read.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(&upload_head(1000)).await.unwrap();
        s.write_all(&[0u8; 999]).await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = upload_head(1000);
    third.extend([0u8; 1000]);
    let answer = exchange(gw.addr, &third).await;
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("resolver.busy"), "{answer}");

    // The held ones are cut at the upload deadline.
    for s in &mut slow {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out)).await;
        let answer = String::from_utf8_lossy(&out);
        assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("request.body_timeout"), "{answer}");
    }
    // And the places are free again: a whole (if not an image) upload is read.
    let mut whole = upload_head(4);
    whole.extend(b"abcd");
    let answer = exchange(gw.addr, &whole).await;
    assert!(
        answer.contains("resolver.unsupported_media_type") || answer.contains("resolver.image_corrupt"),
        "{answer}"
    );
}
