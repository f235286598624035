//! The listener: hyper's HTTP/1 connections with the limits an open port
//! needs, which `axum::serve` does not set. A client that sends headers
//! slowly (or nothing at all on a kept-alive connection) is dropped after
//! `header_read_timeout`; connections past `max_connections` are closed as
//! they arrive rather than queued; on shutdown the listener closes, requests
//! in flight get `drain_timeout` to finish, and the rest are cut.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// The listener's limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a client may take to send a request's headers, counted from
    /// when the connection is ready for one: also how long an idle
    /// kept-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// How long requests in flight may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// How long a generation's body may take to arrive once admitted (it
    /// holds a place among the generations while it does).
    pub body_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = config.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // The client's address, for the per-address limits.
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let app = app.clone();
            async move {
                Ok::<_, Infallible>(app.oneshot(req.map(axum::body::Body::new)).await.unwrap_or_else(|e| match e {}))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            deadline_secs = config.drain_timeout.as_secs(),
            "requests still running at the drain deadline were cut"
        );
    }
    Ok(())
}
