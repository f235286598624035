//! Faults the gateway must survive without a restart: the database gone in
//! the middle of a request, or locked by another process. Requests fail
//! closed with a clear error, a request's records (receipt, manifests, soft
//! bindings, decision) commit together or not at all, and the next request
//! after the fault works. Backends that are down, slow or flapping are in
//! `backends.rs` and the backends crate's `protocols.rs`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use likeness_store::testing::{record_counts, SqliteLock, TempDatabase};
use likeness_testkit::FakeVision;
use serde_json::json;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP relay to PostgreSQL that the test can cut (every connection
/// closed, new ones refused) and restore: the server stopping and coming
/// back, as the gateway sees it, without stopping the server other tests use.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn to(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                open2.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { addr, up, open }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn lake() -> serde_json::Value {
    json!({"user": "u", "prompt": "a lake", "size": "256x256", "n": 2})
}

/// One generation, with `meanwhile` done while the generator holds it.
async fn held_generation(app: &Arc<App>, hold: &Hold, meanwhile: impl FnOnce()) -> (u16, serde_json::Value) {
    let running = tokio::spawn({
        let app = app.clone();
        async move { app.generate(lake()).await }
    });
    hold.wait_started().await;
    meanwhile();
    hold.release.send(()).unwrap();
    running.await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_going_away_mid_request_fails_closed_leaves_nothing_and_recovers() {
    let db = TempDatabase::for_tests().await;
    let (prefix, rest) = db.url.split_once("://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let relay = Relay::to(host.to_string()).await;
    let through_relay = format!("{prefix}://{}/{path}", relay.addr);
    let (generator, hold) = HeldGenerator::new();
    let setup = Setup { database: Some(through_relay), ..Setup::default() };
    let app = Arc::new(
        App::build_with(
            Ok(FakeVision::new()),
            likeness_http::HttpConfig::default(),
            generator,
            likeness_testkit::policies(),
            setup,
        )
        .await,
    );

    let (status, body) = held_generation(&app, &hold, || {}).await;
    assert_eq!(status, 200, "{body}");
    let before = record_counts(&db.url).await;

    // The database goes away while a generation runs: it fails closed,
    // naming its request, and no image leaves.
    let (status, body) = held_generation(&app, &hold, || relay.cut()).await;
    assert_eq!((status, code(&body)), (503, "storage.unavailable"), "{body}");
    assert!(body.get("images").is_none() && body["error"]["request_id"].is_string(), "{body}");
    assert_eq!(record_counts(&db.url).await, before, "a failed request left records behind");
    let (status, ready) = app.call_as(None, "GET", "/readyz", None).await;
    assert_eq!((status, &ready), (503, &json!({"ready": false})));

    // It comes back: the next request works, without a restart.
    relay.restore();
    let (status, body) = held_generation(&app, &hold, || {}).await;
    assert_eq!(status, 200, "{body}");
    let after = record_counts(&db.url).await;
    for ((table, b), (_, a)) in before.iter().zip(&after) {
        assert!(a > b, "{table}: the request after recovery was not recorded");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // past /readyz's cached check
    let (status, _) = app.call_as(None, "GET", "/readyz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_file_locked_by_another_process_fails_closed_then_recovers() {
    let app = App::new(FakeVision::new()).await;
    let file = app.dir.path().join("likeness.db").display().to_string();
    let (status, body) = app.generate(lake()).await;
    assert_eq!(status, 200, "{body}");
    let before = record_counts(&file).await;

    let lock = SqliteLock::take(&file).await;
    let (status, body) = app.generate(lake()).await;
    assert_eq!((status, code(&body)), (503, "storage.unavailable"), "{body}");
    assert!(body.get("images").is_none());
    lock.release().await;
    assert_eq!(record_counts(&file).await, before, "a failed request left records behind");

    let (status, body) = app.generate(lake()).await;
    assert_eq!(status, 200, "{body}");
    assert!(record_counts(&file).await[0].1 > before[0].1);
}
