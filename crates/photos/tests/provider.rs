//! The library source against a real HTTP provider on loopback, which serves
//! photos only to the right bearer token.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

async fn provider(elsewhere: &str) -> String {
    let app = axum::Router::new().route("/media/{item}", get(media)).with_state(Elsewhere(elsewhere.into()));
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

    // A host off the list is never contacted.
    let strict = PhotoLibrary::new(LibraryConfig { allow_hosts: vec![other], ..LibraryConfig::default() }).unwrap();
    let err = strict.fetch(&item(&host, "p1", TOKEN)).await.unwrap_err();
    assert_eq!(err, PhotoError::HostNotAllowed { host: host.clone() });

    // A refused connection is "unavailable", and says nothing of the token.
    let closed =
        PhotoLibrary::new(LibraryConfig { allow_hosts: vec!["127.0.0.1:9".into()], ..LibraryConfig::default() })
            .unwrap();
    let err = closed.fetch(&item("127.0.0.1:9", "p1", TOKEN)).await.unwrap_err();
    assert!(matches!(&err, PhotoError::Unavailable(m) if m.starts_with("could not connect")), "{err}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));

    // Several at once, answers in order.
    let all = lib.fetch_all(&[item(&host, "p1", TOKEN), item(&host, "gone", TOKEN)]).await;
    assert!(all[0].is_ok() && all[1].is_err());
}
