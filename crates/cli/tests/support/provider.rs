//! A photo-library provider on loopback, in the manner of Google Photos:
//! `GET /v1/mediaItems/{id}` describes a media item (its `baseUrl`),
//! `POST /v1/mediaItems:search` lists an album, and `GET /media/{id}=d`
//! returns the original bytes; all only with the user's bearer token. Media
//! ids map to fixture files; album `trip` holds `coffee`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub const TOKEN: &str = "ya29.a0-test-access-token-for-alice";

pub struct Provider {
    /// `127.0.0.1:PORT`, for `--allow-photo-host`.
    pub host: String,
    served: Arc<AtomicUsize>,
    _thread: std::thread::JoinHandle<()>,
}

impl Provider {
    pub fn start() -> Provider {
        let served = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let counter = served.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/media/{item}", axum::routing::get(media))
                    .route("/v1/mediaItems/{id}", axum::routing::get(media_item))
                    .route("/v1/mediaItems:search", axum::routing::post(search))
                    .with_state(counter);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let port = rx.recv().unwrap();
        Provider { host: format!("127.0.0.1:{port}"), served, _thread: thread }
    }

    /// A library reference to `id` with `token`.
    pub fn item(&self, id: &str, token: &str) -> serde_json::Value {
        serde_json::json!({ "library": {
            "media_item_id": id, "base_url": format!("http://{}/media/{id}", self.host), "access_token": token
        } })
    }

    /// `--photo-api` for the gateway.
    pub fn api(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Photos handed out so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Media ids and the fixtures behind them.
pub fn fixture_for(id: &str) -> Option<&'static str> {
    Some(match id {
        "cat" => "scenes/chelsea.png",
        "coffee" => "scenes/coffee.png",
        "rocket" => "scenes/rocket.jpg",
        "barack" => "faces/obama2.jpg",
        "grace" => "faces/grace_hopper.jpg",
        _ => return None,
    })
}

async fn media(State(served): State<Arc<AtomicUsize>>, Path(item): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(file) = item.strip_suffix("=d").and_then(fixture_for) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bytes = std::fs::read(super::fixture(file)).unwrap();
    served.fetch_add(1, Ordering::SeqCst);
    let mime = if file.ends_with(".png") { "image/png" } else { "image/jpeg" };
    ([("content-type", mime)], bytes).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn media_item(Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if fixture_for(&id).is_none() && id != "missing" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    axum::Json(serde_json::json!({ "id": id, "baseUrl": format!("http://{host}/media/{id}") })).into_response()
}

async fn search(headers: HeaderMap, axum::Json(q): axum::Json<serde_json::Value>) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let items = if q["albumId"] == "trip" { serde_json::json!([{ "id": "coffee" }]) } else { serde_json::json!([]) };
    axum::Json(serde_json::json!({ "mediaItems": items })).into_response()
}
