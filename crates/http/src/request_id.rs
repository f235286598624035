//! Request ids: one per request, in the response header, the body of a
//! generation and every log line.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

tokio::task_local! {
    /// The request id of the request being handled, so an error body can
    /// carry it wherever the error is made.
    static CURRENT: String;
}

/// The id of the request this task is handling, if any.
pub(crate) fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

pub(crate) async fn request_id(mut req: Request, next: Next) -> Response {
    let id = format!("req_{}", uuid::Uuid::now_v7().simple());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let mut resp = CURRENT.scope(id.clone(), next.run(req).instrument(span.clone())).await;
    tracing::info!(parent: &span, status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "done");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
