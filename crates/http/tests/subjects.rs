//! Consent confirmed by the person shown, and the person's own controls:
//! in process, with the fake vision models (a photo's size says who it
//! shows) and a clock the test moves, on SQLite and on PostgreSQL.

mod support;

use likeness_consent::ConfirmationRule;
use likeness_http::{HttpConfig, SubjectsConfig};
use likeness_testkit::{png, FakeFace, FakeVision};
use serde_json::{json, Value};
use sha2::Digest as _;
use support::*;

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// Who each photo shows, by its size.
fn photo(who: &str) -> (u32, u32) {
    match who {
        "sam" => (50, 50),        // Sam's enrollment photo
        "sam-ref" => (60, 40),    // a reference showing Sam
        "sam-selfie" => (40, 60), // Sam's own photo at confirmation
        "stranger" => (70, 30),   // someone else
        "kai" => (30, 30),        // Kai's enrollment photo
        "kai-ref" => (80, 20),    // a reference showing Kai
        "two" => (90, 20),        // a reference showing Sam and Kai
        _ => unreachable!(),
    }
}

fn vision() -> FakeVision {
    let mut v = FakeVision::new();
    for (who, faces) in [
        ("sam", vec![FakeFace::adult(1)]),
        ("sam-ref", vec![FakeFace::adult(1)]),
        ("sam-selfie", vec![FakeFace::adult(1)]),
        ("stranger", vec![FakeFace::adult(2)]),
        ("kai", vec![FakeFace::adult(3)]),
        ("kai-ref", vec![FakeFace::adult(3)]),
        ("two", vec![FakeFace::adult(1), FakeFace::adult(3)]),
    ] {
        let (w, h) = photo(who);
        v = v.shows(w, h, &faces, 0.0);
    }
    v
}

fn image(who: &str) -> Value {
    let (w, h) = photo(who);
    upload(&png(w, h))
}

fn config(burst: u32) -> HttpConfig {
    HttpConfig {
        subjects: SubjectsConfig { burst, requests_per_minute: 1, ..SubjectsConfig::default() },
        ..HttpConfig::default()
    }
}

async fn app(database: Option<String>) -> App {
    App::with_setup(vision(), config(1000), Setup { database, ..Setup::default() }).await
}

async fn create(app: &App, body: Value) -> Value {
    let (status, s) = app.call("POST", "/v1/subjects", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    s
}

async fn confirm(app: &App, id: &str, body: Value) -> (u16, Value) {
    app.call_as(None, "POST", &format!("/v1/subjects/{id}/confirm"), Some(body)).await
}

fn request(subjects: &[&str], who: &str) -> Value {
    json!({"user": "u", "prompt": "x", "size": "256x256", "subjects": subjects, "references": [image(who)]})
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

async fn suite(database: Option<String>) {
    let app = app(database.clone()).await;
    let mut tokens = Vec::new();

    // A friend starts pending, with a one-time token for the app to deliver.
    let sam =
        create(&app, json!({"user": "u", "name": "Sam", "relationship": "friend", "enroll": [image("sam")]})).await;
    assert_eq!(sam["status"], "pending", "{sam}");
    assert_eq!(sam["confirmation"], json!({"required": true, "confirmed": false}));
    assert_eq!(sam["history"], json!([{"event": "created", "by": "user", "at": "2026-01-01T00:00:00Z"}]));
    assert_eq!(sam["confirmation_expires_at"], "2026-01-08T00:00:00Z", "7 days by default");
    let (sam_id, sam_token) = (str_of(&sam, "id").to_string(), str_of(&sam, "confirmation_token").to_string());
    assert!(sam_token.starts_with("lkc_") && sam_token.len() > 40, "{sam_token}");
    tokens.push(sam_token.clone());
    let kai =
        create(&app, json!({"user": "u", "name": "Kai", "relationship": "other", "enroll": [image("kai")]})).await;
    let (kai_id, kai_token) = (str_of(&kai, "id").to_string(), str_of(&kai, "confirmation_token").to_string());
    tokens.push(kai_token.clone());

    // Pending: refused, with its own code; the token is not shown again.
    let (status, body) = app.generate(request(&[&sam_id], "sam-ref")).await;
    assert_eq!((status, code(&body)), (403, "consent.subject_unconfirmed"), "{body}");
    let (_, shown) = app.call("GET", &format!("/v1/subjects/{sam_id}"), None).await;
    assert_eq!(shown["status"], "pending");
    assert!(shown.get("confirmation_token").is_none());

    // Wrong tokens, another subject's, an unknown subject: one answer.
    for (id, token) in
        [(sam_id.as_str(), kai_token.as_str()), (sam_id.as_str(), "lkc_wrong"), ("sub_nope", sam_token.as_str())]
    {
        let (status, body) = confirm(&app, id, json!({"token": token})).await;
        assert_eq!((status, code(&body)), (401, "subject.token_invalid"), "{id}: {body}");
    }
    // A photo of someone else does not confirm, and does not use the token up.
    let (status, body) = confirm(&app, &sam_id, json!({"token": sam_token, "photo": image("stranger")})).await;
    assert_eq!((status, code(&body)), (403, "subject.confirm_photo_mismatch"), "{body}");
    let (status, body) = confirm(&app, &sam_id, json!({"token": sam_token, "as": "guardian"})).await;
    assert_eq!((status, code(&body)), (422, "subject.guardian_required"), "an adult confirms for themselves: {body}");

    // Sam confirms with a photo of themselves.
    let (status, confirmed) = confirm(&app, &sam_id, json!({"token": sam_token, "photo": image("sam-selfie")})).await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["status"], "active");
    assert_eq!(
        confirmed["confirmation"],
        json!({"required": true, "confirmed": true, "subject": sam_id, "confirmed_by": "person",
               "confirmed_at": "2026-01-01T00:00:00Z", "with_photo": true})
    );
    assert!(confirmed.get("user").is_none(), "the app's user id is not the person's to see: {confirmed}");
    let personal = str_of(&confirmed, "personal_token").to_string();
    assert!(personal.starts_with("lkp_"));
    tokens.push(personal.clone());
    // Used once.
    let (status, body) = confirm(&app, &sam_id, json!({"token": sam_token})).await;
    assert_eq!((status, code(&body)), (401, "subject.token_invalid"), "{body}");

    // Now Sam consents; the receipt says who confirmed and when.
    let (status, first) = app.generate(request(&[&sam_id], "sam-ref")).await;
    assert_eq!(status, 200, "{first}");
    let receipt = &first["decision"]["consent"];
    assert_eq!(
        receipt["confirmations"],
        json!([{"subject": sam_id, "confirmed_by": "person", "confirmed_at": "2026-01-01T00:00:00Z", "with_photo": true}])
    );
    let (_, stored) = app.call("GET", &format!("/v1/receipts/{}", str_of(receipt, "id")), None).await;
    assert_eq!(stored["confirmations"], receipt["confirmations"], "{stored}");

    // Kai's link expires; the app sends a new one; the old stops working.
    app.clock.advance(WEEK_MS);
    let (status, body) = confirm(&app, &kai_id, json!({"token": kai_token})).await;
    assert_eq!((status, code(&body)), (410, "subject.confirmation_expired"), "{body}");
    let (status, fresh) = app.call("POST", &format!("/v1/subjects/{kai_id}/confirmation"), None).await;
    assert_eq!(status, 201, "{fresh}");
    let kai_token2 = str_of(&fresh, "confirmation_token").to_string();
    tokens.push(kai_token2.clone());
    let (status, body) = confirm(&app, &kai_id, json!({"token": kai_token})).await;
    assert_eq!((status, code(&body)), (401, "subject.token_invalid"), "{body}");
    let (status, kai_confirmed) = confirm(&app, &kai_id, json!({"token": kai_token2})).await;
    assert_eq!(status, 200, "{kai_confirmed}");
    let kai_personal = str_of(&kai_confirmed, "personal_token").to_string();
    tokens.push(kai_personal.clone());
    let (status, body) = app.call("POST", &format!("/v1/subjects/{sam_id}/confirmation"), None).await;
    assert_eq!((status, code(&body)), (409, "subject.already_confirmed"), "{body}");

    // Two more generations: one shows both, one shows only Kai.
    let (status, both) = app.generate(request(&[&sam_id, &kai_id], "two")).await;
    assert_eq!(status, 200, "{both}");
    let (status, kai_only) = app.generate(request(&[&sam_id, &kai_id], "kai-ref")).await;
    assert_eq!(status, 200, "{kai_only}");

    // Sam's usage: exactly the generations that showed Sam, newest first.
    let (status, usage) = app.call_as(Some(&personal), "GET", &format!("/v1/subjects/{sam_id}/usage"), None).await;
    assert_eq!(status, 200, "{usage}");
    let expect = |resps: &[&Value]| -> Value {
        resps
            .iter()
            .map(|r| {
                json!({
                    "request_id": r["id"],
                    "receipt_id": r["decision"]["consent"]["id"],
                    "outputs": r["images"].as_array().unwrap().iter()
                        .map(|i| json!({"asset_id": i["asset_id"], "manifest_id": i["manifest_id"]}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    let without_times = |u: &Value| -> Value {
        let mut u = u["uses"].clone();
        for e in u.as_array_mut().unwrap() {
            assert!(e["created_at"].as_str().unwrap().ends_with('Z'));
            e.as_object_mut().unwrap().remove("created_at");
        }
        u
    };
    assert_eq!(without_times(&usage), expect(&[&both, &first]), "{usage}");
    assert!(usage.to_string().find("\"prompt\"").is_none() && usage.to_string().find("\"data\"").is_none());
    let (_, kai_usage) = app.call_as(Some(&kai_personal), "GET", &format!("/v1/subjects/{kai_id}/usage"), None).await;
    assert_eq!(without_times(&kai_usage), expect(&[&kai_only, &both]), "{kai_usage}");
    // The app sees the same.
    let (_, by_app) = app.call("GET", &format!("/v1/subjects/{sam_id}/usage?limit=1"), None).await;
    assert_eq!(without_times(&by_app), expect(&[&both]));

    // Nothing of one subject is reachable with another's token.
    for (method, path) in [
        ("GET", format!("/v1/subjects/{kai_id}")),
        ("GET", format!("/v1/subjects/{kai_id}/usage")),
        ("POST", format!("/v1/subjects/{kai_id}/withdraw")),
        ("GET", "/v1/subjects/sub_nope".to_string()),
    ] {
        let (status, body) = app.call_as(Some(&personal), method, &path, None).await;
        assert_eq!((status, code(&body)), (401, "subject.token_invalid"), "{method} {path}: {body}");
    }
    // A personal token opens only the person's endpoints.
    let (status, body) = app.call_as(Some(&personal), "GET", "/v1/subjects?user=u", None).await;
    assert_eq!((status, code(&body)), (401, "auth.invalid_key"), "{body}");
    let (status, body) = app.call_as(Some(&personal), "DELETE", &format!("/v1/subjects/{sam_id}"), None).await;
    assert_eq!((status, code(&body)), (401, "auth.invalid_key"), "{body}");
    // Withdrawal is the person's act, not the app's.
    let (status, body) = app.call("POST", &format!("/v1/subjects/{sam_id}/withdraw"), None).await;
    assert_eq!((status, code(&body)), (401, "subject.token_invalid"), "{body}");

    // Sam sees their consent, then withdraws: embeddings gone, next request refused.
    let (status, mine) = app.call_as(Some(&personal), "GET", &format!("/v1/subjects/{sam_id}"), None).await;
    assert_eq!((status, &mine["status"], &mine["enrolled_faces"]), (200, &json!("active"), &json!(1)), "{mine}");
    let (status, gone) = app.call_as(Some(&personal), "POST", &format!("/v1/subjects/{sam_id}/withdraw"), None).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!((&gone["status"], &gone["enrolled_faces"], &gone["name"]), (&json!("withdrawn"), &json!(0), &json!("")));
    let (status, body) = app.generate(request(&[&sam_id], "sam-ref")).await;
    assert_eq!((status, code(&body)), (403, "consent.subject_withdrawn"), "{body}");
    let (_, by_app) = app.call("GET", &format!("/v1/subjects/{sam_id}"), None).await;
    assert_eq!(by_app["status"], "withdrawn");
    assert_eq!(by_app["user"], "u");
    let history: Vec<String> = by_app["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} by {}", e["event"].as_str().unwrap(), e["by"].as_str().unwrap()))
        .collect();
    assert_eq!(history, ["created by user", "confirmed by person", "withdrawn by person"]);
    // Withdrawing twice is fine; the person still sees their record and usage.
    let (status, _) = app.call_as(Some(&personal), "POST", &format!("/v1/subjects/{sam_id}/withdraw"), None).await;
    assert_eq!(status, 200);
    let (_, usage) = app.call_as(Some(&personal), "GET", &format!("/v1/subjects/{sam_id}/usage"), None).await;
    assert_eq!(usage["uses"].as_array().unwrap().len(), 2);

    // A minor's guardian confirms, and it is recorded as the guardian.
    let kid = create(
        &app,
        json!({"user": "u", "name": "K.", "relationship": "family", "minor": true, "guardian_consent": true,
               "enroll": [image("sam")]}),
    )
    .await;
    let (kid_id, kid_token) = (str_of(&kid, "id").to_string(), str_of(&kid, "confirmation_token").to_string());
    tokens.push(kid_token.clone());
    let (status, body) = confirm(&app, &kid_id, json!({"token": kid_token})).await;
    assert_eq!((status, code(&body)), (422, "subject.guardian_required"), "{body}");
    let (status, body) = confirm(&app, &kid_id, json!({"token": kid_token, "as": "guardian"})).await;
    assert_eq!((status, &body["confirmation"]["confirmed_by"]), (200, &json!("guardian")), "{body}");
    tokens.push(str_of(&body, "personal_token").to_string());

    // A self subject is the user's own word: active at once, no token.
    let me = create(&app, json!({"user": "u", "name": "Me", "relationship": "self"})).await;
    assert_eq!(me["status"], "active");
    assert_eq!(me["confirmation"]["confirmed_by"], "user");
    assert!(me.get("confirmation_token").is_none());

    // Tokens never in the database in clear; their hashes are.
    let stored = match &database {
        Some(url) => likeness_store::testing::postgres_rows_as_text(url).await.into_bytes(),
        None => {
            let mut bytes = Vec::new();
            for e in std::fs::read_dir(app.dir.path()).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with("likeness.db") {
                    bytes.extend(std::fs::read(e.path()).unwrap());
                }
            }
            bytes
        }
    };
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    for t in &tokens {
        assert!(!contains(t), "a token in clear in the database");
    }
    assert!(contains(&hex::encode(sha2::Sha256::digest(personal.as_bytes()))), "looked in the right place");
}

#[tokio::test(flavor = "multi_thread")]
async fn confirmation_on_sqlite() {
    suite(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn confirmation_on_postgres() {
    let db = likeness_store::testing::TempDatabase::for_tests().await;
    suite(Some(db.url.clone())).await;
}

/// The person's withdrawal is checked again when the generation is
/// recorded, as the app's deletion is: a request running when Sam withdraws
/// sends no image.
#[tokio::test(flavor = "multi_thread")]
async fn a_withdrawal_while_a_generation_runs_stops_it() {
    let (generator, hold) = HeldGenerator::new();
    let app = std::sync::Arc::new(App::with(Ok(vision()), config(1000), generator).await);
    let sam =
        create(&app, json!({"user": "u", "name": "Sam", "relationship": "friend", "enroll": [image("sam")]})).await;
    let id = str_of(&sam, "id").to_string();
    let (status, confirmed) = confirm(&app, &id, json!({"token": sam["confirmation_token"]})).await;
    assert_eq!(status, 200, "{confirmed}");
    let personal = str_of(&confirmed, "personal_token").to_string();
    let running = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move { app.generate(request(&[&id], "sam-ref")).await })
    };
    hold.wait_started().await;
    let (status, _) = app.call_as(Some(&personal), "POST", &format!("/v1/subjects/{id}/withdraw"), None).await;
    assert_eq!(status, 200);
    hold.release.send(()).unwrap();
    let (status, body) = running.await.unwrap();
    assert_eq!((status, code(&body)), (403, "consent.subject_withdrawn"), "{body}");
    assert!(body.get("images").is_none());
    let (_, usage) = app.call_as(Some(&personal), "GET", &format!("/v1/subjects/{id}/usage"), None).await;
    assert_eq!(usage["uses"], json!([]), "a generation that was not recorded is not a use");
}

async fn rate_limited(database: Option<String>) {
    let app = App::with_setup(vision(), config(3), Setup { database, ..Setup::default() }).await;
    let sam = create(&app, json!({"user": "u", "name": "Sam", "relationship": "friend"})).await;
    let id = str_of(&sam, "id");
    for _ in 0..3 {
        let (status, body) = confirm(&app, id, json!({"token": "lkc_guess"})).await;
        assert_eq!((status, code(&body)), (401, "subject.token_invalid"));
    }
    let (status, body) = confirm(&app, id, json!({"token": "lkc_guess"})).await;
    assert_eq!((status, code(&body)), (429, "subject.rate_limited"), "{body}");
    // Personal-token requests share the bucket; the app's key does not.
    let (status, body) = app.call_as(Some("lkp_guess"), "GET", &format!("/v1/subjects/{id}"), None).await;
    assert_eq!((status, code(&body)), (429, "subject.rate_limited"), "{body}");
    assert_eq!(app.call("GET", &format!("/v1/subjects/{id}"), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_public_subject_endpoints_are_rate_limited_on_sqlite() {
    rate_limited(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_public_subject_endpoints_are_rate_limited_on_postgres() {
    let db = likeness_store::testing::TempDatabase::for_tests().await;
    rate_limited(Some(db.url.clone())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_may_ask_for_a_photo_or_take_the_users_word() {
    // A photo with every confirmation.
    let setup = Setup {
        tenant: Some(|t: &mut likeness_http::Tenant| t.confirmation_photo_required = true),
        ..Setup::default()
    };
    let app = App::with_setup(vision(), config(1000), setup).await;
    let sam =
        create(&app, json!({"user": "u", "name": "Sam", "relationship": "friend", "enroll": [image("sam")]})).await;
    let (id, token) = (str_of(&sam, "id"), str_of(&sam, "confirmation_token"));
    let (status, body) = confirm(&app, id, json!({"token": token})).await;
    assert_eq!((status, code(&body)), (422, "subject.confirm_photo_required"), "{body}");
    let (status, body) = confirm(&app, id, json!({"token": token, "photo": image("sam-selfie")})).await;
    assert_eq!(status, 200, "{body}");

    // The user's word: an unconfirmed subject consents; the policy input
    // says it was not confirmed, so a policy may still treat it apart.
    let setup = Setup {
        tenant: Some(|t: &mut likeness_http::Tenant| t.confirmation = ConfirmationRule::Optional),
        ..Setup::default()
    };
    let app = App::with_setup(vision(), config(1000), setup).await;
    let sam =
        create(&app, json!({"user": "u", "name": "Sam", "relationship": "friend", "enroll": [image("sam")]})).await;
    assert_eq!((&sam["status"], &sam["confirmation"]["required"]), (&json!("active"), &json!(false)));
    assert!(sam["confirmation_token"].is_string(), "the person can still confirm and get their own controls");
    let (status, body) = app.generate(request(&[str_of(&sam, "id")], "sam-ref")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["decision"]["consent"].get("confirmations").is_none(), "{body}");
    let logged = app.state.store.decision(str_of(&body, "id")).await.unwrap().unwrap();
    let logged: Value = serde_json::from_str(&logged.record.body).unwrap();
    let subject = &logged["inputs"][0]["consent"]["subjects"][0];
    assert_eq!((&subject["id"], &subject["confirmed"]), (&sam["id"], &json!(false)), "{logged}");
}
