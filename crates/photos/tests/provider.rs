//! The library source against a real HTTP provider on loopback, which serves
//! photos only to the right bearer token.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use likeness_photos::{AccessToken, LibraryConfig, LibraryItem, PhotoError, PhotoLibrary};

const TOKEN: &str = "ya29.test-token";
const PHOTO: &[u8] = b"\xff\xd8 pretend these are JPEG bytes \xff\xd9";

#[derive(Clone)]
struct Elsewhere(String);

async fn media(State(elsewhere): State<Elsewhere>, Path(item): Path<String>, headers: HeaderMap) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(id) = item.strip_suffix("=d") else { return StatusCode::BAD_REQUEST.into_response() };
    match id {
        "p1" => ([("content-type", "image/jpeg")], PHOTO).into_response(),
        "forbidden" => StatusCode::FORBIDDEN.into_response(),
        "broken" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "moved" => (StatusCode::FOUND, [("location", "/media/p1=d")]).into_response(),
        "loop" => (StatusCode::FOUND, [("location", "/media/loop=d")]).into_response(),
        "away" => (StatusCode::FOUND, [("location", format!("{}/media/p1=d", elsewhere.0))]).into_response(),
        "huge" => vec![0u8; 4096].into_response(),
        "huge-chunked" => {
            // No Content-Length: the limit must hold while streaming.
            let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1024]));
            Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            PHOTO.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

/// The provider's API: a media item by id, with the baseUrl of its bytes.
async fn media_item(Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let base_url = match id.as_str() {
        "gone" => return StatusCode::NOT_FOUND.into_response(),
        "liar" => {
            return axum::Json(serde_json::json!({ "id": "someone-else", "baseUrl": "http://x/y" })).into_response()
        }
        "offsite" => "http://127.0.0.2:9/media/p1".to_string(),
        _ => format!("http://{host}/media/{id}"),
    };
    axum::Json(serde_json::json!({ "id": id, "baseUrl": base_url, "mimeType": "image/jpeg" })).into_response()
}

/// Album search, two pages: "p1" is on the second.
async fn search(headers: HeaderMap, axum::Json(q): axum::Json<serde_json::Value>) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let page = match (q["albumId"].as_str(), q["pageToken"].as_str()) {
        (Some("trip"), None) => {
            serde_json::json!({ "mediaItems": [{ "id": "a" }, { "id": "b" }], "nextPageToken": "2" })
        }
        (Some("trip"), Some("2")) => serde_json::json!({ "mediaItems": [{ "id": "p1" }] }),
        _ => serde_json::json!({}),
    };
    axum::Json(page).into_response()
}

async fn provider(elsewhere: &str) -> String {
    let app = axum::Router::new()
        .route("/media/{item}", get(media))
        .route("/v1/mediaItems/{id}", get(media_item))
        .route("/v1/mediaItems:search", post(search))
        .with_state(Elsewhere(elsewhere.into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("127.0.0.1:{}", addr.port())
}

fn item(host: &str, id: &str, token: &str) -> LibraryItem {
    LibraryItem {
        media_item_id: id.into(),
        base_url: format!("http://{host}/media/{id}"),
        access_token: AccessToken::new(token.into()),
    }
}

#[tokio::test]
async fn fetches_within_bounds_and_names_each_failure() {
    let other = provider("http://127.0.0.1:9").await;
    let host = provider(&format!("http://{other}")).await;
    let lib = PhotoLibrary::new(LibraryConfig {
        allow_hosts: vec![host.clone(), other.clone()],
        max_bytes: 2048,
        timeout: Duration::from_secs(1),
        api_base: Some(format!("http://{host}")),
    })
    .unwrap();

    let got = lib.fetch(&item(&host, "p1", TOKEN)).await.unwrap();
    assert_eq!(got.bytes, PHOTO);
    assert_eq!(got.content_type.as_deref(), Some("image/jpeg"));
    // A redirect on the same origin is followed, with the token.
    assert_eq!(lib.fetch(&item(&host, "moved", TOKEN)).await.unwrap().bytes, PHOTO);

    let cases = [
        ("p1", "wrong-token", PhotoError::Unauthorized { status: 401 }),
        ("forbidden", TOKEN, PhotoError::Unauthorized { status: 403 }),
        ("gone", TOKEN, PhotoError::NotFound { status: 404 }),
        ("broken", TOKEN, PhotoError::Unavailable("HTTP 500".into())),
        ("huge", TOKEN, PhotoError::TooLarge { limit: 2048 }),
        ("huge-chunked", TOKEN, PhotoError::TooLarge { limit: 2048 }),
        ("away", TOKEN, PhotoError::RedirectElsewhere { to: "127.0.0.1".into() }),
        ("loop", TOKEN, PhotoError::Unavailable("more than 3 redirects".into())),
        ("slow", TOKEN, PhotoError::Unavailable("no complete answer within 1 s".into())),
    ];
    for (id, token, expect) in cases {
        assert_eq!(lib.fetch(&item(&host, id, token)).await.unwrap_err(), expect, "{id}");
    }

    // The app's base_url must be the provider's for that media item: a grant
    // for one photo cannot fetch another.
    let mut swapped = item(&host, "p1", TOKEN);
    swapped.base_url = format!("http://{host}/media/huge");
    assert_eq!(lib.fetch(&swapped).await.unwrap_err(), PhotoError::BaseUrlMismatch);
    let mut unstated = item(&host, "p1", TOKEN);
    unstated.base_url.clear();
    assert_eq!(lib.fetch(&unstated).await.unwrap().bytes, PHOTO, "without a base_url, the provider's is used");
    assert!(matches!(lib.fetch(&item(&host, "liar", TOKEN)).await.unwrap_err(), PhotoError::BadAnswer(_)));
    // A download host off the list is never contacted, even when the
    // provider's API points there.
    let mut offsite = item(&host, "offsite", TOKEN);
    offsite.base_url.clear();
    assert_eq!(lib.fetch(&offsite).await.unwrap_err(), PhotoError::HostNotAllowed { host: "127.0.0.2:9".into() });

    // Album membership, asked of the provider, across pages.
    let token = AccessToken::new(TOKEN.into());
    assert!(lib.album_contains("trip", "p1", &token).await.unwrap());
    assert!(!lib.album_contains("trip", "p9", &token).await.unwrap());
    assert!(!lib.album_contains("work", "p1", &token).await.unwrap());
    let wrong = AccessToken::new("nope".into());
    assert_eq!(lib.album_contains("trip", "p1", &wrong).await.unwrap_err(), PhotoError::Unauthorized { status: 401 });

    // Without a provider API nothing is fetched.
    let unconfigured =
        PhotoLibrary::new(LibraryConfig { allow_hosts: vec![host.clone(), other], ..LibraryConfig::default() })
            .unwrap();
    assert_eq!(unconfigured.fetch(&item(&host, "p1", TOKEN)).await.unwrap_err(), PhotoError::NotConfigured);

    // A refused connection is "unavailable", and says nothing of the token.
    let closed =
        PhotoLibrary::new(LibraryConfig { api_base: Some("http://127.0.0.1:9".into()), ..LibraryConfig::default() })
            .unwrap();
    let err = closed.fetch(&item("127.0.0.1:9", "p1", TOKEN)).await.unwrap_err();
    assert!(matches!(&err, PhotoError::Unavailable(m) if m.starts_with("could not connect")), "{err}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));

    // Several at once, answers in order.
    let all = lib.fetch_all(&[item(&host, "p1", TOKEN), item(&host, "gone", TOKEN)]).await;
    assert!(all[0].is_ok() && all[1].is_err());
}
