//! `make bench`: prints the figures the issues ask for. Never asserts times.
//!
//! 1. C2PA sign and verify of a 1 MP JPEG (in process).
//! 2. The generation pipeline's stages for one 1024x1024 output from one
//!    reference (in process): decode, vision, generate, encode, watermark;
//!    then a real `Pipeline` around an already generated output, as a
//!    request runs it (`prepare`, then `finish` with vision on the output
//!    beside the watermark): "gateway work around generation".
//! 3. `POST /v1/generations` end to end against the real binary on loopback:
//!    p50/p99 over sequential requests, then throughput with 2 clients.
//! 4. Consent on the same server (SQLite): creating and listing grants, and a
//!    256x256 generation with and without a grant to check, so the cost of
//!    the consent reads, the re-check and the receipt shows as a difference.
//! 5. The gateway's own cost around a backend that answers instantly (a
//!    loopback OpenAI Images server returning a fixed 1024x1024 PNG),
//!    through the OpenAI door, with 1, 2 and 4 clients.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use likeness_generators::{Builtin, GenerationJob, Generator, Style};
use likeness_media::{DecodeLimits, MediaType, OutputFormat};
use likeness_pipeline::{
    Generated, GenerationRequest, Moderation, Pipeline, ReferenceInput, RequestConsent, RequestContext, RequestLimits,
    Thresholds, VisionModels,
};
use likeness_provenance::{keys, AssetDescription, AssetId, Signer, Verifier};

use common::{ms, percentile, serve};

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect()
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!("{name:<44} p50 {:>10}   p99 {:>10}   (n={})", ms(p50), ms(p99), samples.len());
    p50
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // A cat: every person in the fixtures is in the shipped public-figure gallery.
    let photo = std::fs::read(root.join("fixtures/scenes/chelsea.png")).unwrap();
    let quick = std::env::args().any(|a| a == "--quick");
    let requests = if quick { 10 } else { 60 };

    println!("== C2PA, 1 MP JPEG (1024x1024, quality 90)");
    let id = keys::generate_dev_identity("bench").unwrap();
    let signer = Signer::new(id.chain_pem.as_bytes(), keys::parse_signing_key(&id.key_pem).unwrap()).unwrap();
    let reference = likeness_media::decode(&photo, None, &DecodeLimits::default()).unwrap().pixels;
    let job = GenerationJob {
        prompt: "",
        style: Style::Watercolor,
        references: std::slice::from_ref(&reference),
        width: 1024,
        height: 1024,
        count: 1,
        seed: 1,
    };
    let pixels = Builtin.generate(&job).unwrap().remove(0);
    let jpeg = likeness_media::encode(&pixels, OutputFormat::Jpeg { quality: 90 }).unwrap();
    let desc = AssetDescription {
        asset_id: AssetId::random(),
        request_id: "bench".into(),
        generator: "builtin/watercolor".into(),
        ingredient_hashes: vec![likeness_media::sha256_hex(&photo)],
        receipt_id: "bench".into(),
        soft_binding: Some(likeness_provenance::SoftBinding {
            alg: "org.likeness.wm.1".into(),
            value: "AAAAAAAAAAA=".into(),
        }),
        policy_version: "0".repeat(64),
        labels: vec!["ai_generated".into()],
    };
    let sign = report(
        "sign (includes c2pa's verify-after-sign)",
        time(200, || signer.sign(&jpeg, MediaType::Jpeg, &desc).unwrap()),
    );
    let signed = signer.sign(&jpeg, MediaType::Jpeg, &desc).unwrap();
    let verifier = Verifier::new(Some(&id.ca_cert_pem)).unwrap();
    let verify = report("verify (trusted, from memory)", time(200, || verifier.verify_bytes(signed.bytes()).unwrap()));

    println!("\n== pipeline stages, one 1024x1024 output from one reference");
    let vision = Arc::new(
        likeness_vision::Vision::load(&likeness_vision::config_for(&root.join("models"))).expect("make setup"),
    );
    let vision_ref = report("vision on the reference (451x300)", time(20, || vision.analyze(&reference).unwrap()));
    let vision_out = report("vision on the 1024x1024 output", time(20, || vision.analyze_output(&pixels).unwrap()));
    let decode = report(
        "decode reference (451x300 PNG)",
        time(50, || likeness_media::decode(&photo, None, &DecodeLimits::default()).unwrap()),
    );
    let mut gen_total = Duration::ZERO;
    for style in Style::ALL {
        let job = GenerationJob { style: *style, ..job };
        gen_total += report(
            &format!("generate builtin/{style}"),
            time(if quick { 3 } else { 10 }, || Builtin.generate(&job).unwrap()),
        );
    }
    report(
        "encode JPEG q90",
        time(30, || likeness_media::encode(&pixels, OutputFormat::Jpeg { quality: 90 }).unwrap()),
    );
    // What the pipeline does per output before signing: informed marking,
    // then encode, decode and detect to read the mark back.
    let key = likeness_watermark::Key::new([7; 32]);
    let mark = report(
        "watermark (informed) + encode + read back",
        time(10, || {
            let mut marked = pixels.clone();
            likeness_watermark::embed_informed(&mut marked, &[1; 8], &key, likeness_watermark::INFORMED_STRENGTH);
            let bytes = likeness_media::encode(&marked, OutputFormat::Jpeg { quality: 90 }).unwrap();
            let back = likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels;
            assert!(likeness_watermark::detect(&back, &key).is_some());
        }),
    );
    println!(
        "{:<44} {}",
        "  the stages one after another (p50 sum)",
        ms(decode + vision_ref + vision_out + mark + sign)
    );

    // The same work as the gateway runs it: a real pipeline (these models,
    // the shipped policy) around an already generated output, so the
    // overlap of vision on the output with its marking counts as it does
    // in a request.
    let pipeline = Pipeline::new(
        Arc::new(Builtin),
        Arc::new(signer),
        key,
        Moderation {
            vision: Ok(vision.clone() as Arc<dyn VisionModels>),
            gallery: Arc::default(),
            thresholds: Thresholds::default(),
        },
        RequestLimits::default(),
        likeness_testkit::policies(),
    );
    let request = || GenerationRequest {
        request_id: "bench".into(),
        user: "bench".into(),
        prompt: "as a watercolour".into(),
        style: Some("watercolor".into()),
        references: vec![ReferenceInput { bytes: photo.clone(), declared: Some(MediaType::Png) }],
        count: 1,
        width: 1024,
        height: 1024,
        output: OutputFormat::Jpeg { quality: 90 },
        seed: Some(1),
    };
    let consent =
        || RequestConsent { receipt_id: "bench".into(), grant_id: None, references: vec![], subjects: vec![] };
    let (mut prepare, mut finish, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let prepared = pipeline.prepare(request(), consent(), RequestContext::default()).unwrap();
        let prepared_in = t.elapsed();
        let generated = Generated::Pixels(vec![pixels.clone()]);
        let t = Instant::now();
        std::hint::black_box(pipeline.finish(prepared, generated).unwrap());
        let finished_in = t.elapsed();
        prepare.push(prepared_in);
        finish.push(finished_in);
        whole.push(prepared_in + finished_in);
    }
    println!("\n== the pipeline around generation, as a request runs it");
    let prepare = report("prepare: decode, vision on the ref., policy", prepare);
    let finish = report("finish: vision on the output | watermark, sign", finish);
    report("prepare + finish, per request", whole);
    println!("{:<44} {}", "gateway work around generation (p50 sum)", ms(prepare + finish));
    println!("{:<44} {}", "  of which vision on the reference", ms(vision_ref));
    println!("{:<44} {}", "  of which vision on the output", ms(vision_out));
    println!("{:<44} {}", "  of which the watermark", ms(mark));
    println!("{:<44} {}", "built-in generation, mean of style p50s", ms(gen_total / Style::ALL.len() as u32));
    let _ = verify;

    policy_figures(quick);

    println!("\n== POST /v1/generations end to end (release binary, loopback)");
    let (mut child, base, key, _data_dir) = serve(&root, "", &[]);
    let body = serde_json::json!({
        "user": "bench", "prompt": "as a watercolour", "size": "1024x1024", "n": 1,
        "references": [{"upload": {"data": base64::engine::general_purpose::STANDARD.encode(&photo), "mime": "image/png"}}]
    })
    .to_string();
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let send = |client: &reqwest::blocking::Client| {
        let r = client
            .post(format!("{base}/v1/generations"))
            .bearer_auth(key.trim())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().unwrap().len()
    };
    send(&client); // warm up
    report("latency, 1 reference -> 1024x1024 JPEG", time(requests, || send(&client)));

    let started = Instant::now();
    let per_client = requests / 2;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
                for _ in 0..per_client {
                    send(&c);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    println!(
        "{:<44} {:.2} requests/s ({} requests, 2 clients, no errors)",
        "throughput",
        (2 * per_client) as f64 / elapsed.as_secs_f64(),
        2 * per_client
    );

    println!("\n== Consent (same server, SQLite)");
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = client.request(method, format!("{base}{path}")).bearer_auth(key.trim());
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.text().unwrap()
    };
    let mut grant_id = String::new();
    report(
        "POST /v1/grants (10 photos)",
        time(requests, || {
            let photos: Vec<String> = (0..10).map(|i| format!("media-{i}")).collect();
            let g =
                call(reqwest::Method::POST, "/v1/grants", Some(serde_json::json!({"user": "bench", "photos": photos})));
            grant_id = serde_json::from_str::<serde_json::Value>(&g).unwrap()["id"].as_str().unwrap().to_string();
        }),
    );
    report(
        &format!("GET /v1/grants?user= ({requests} grants)"),
        time(requests, || call(reqwest::Method::GET, "/v1/grants?user=bench", None)),
    );
    let small = |grant: Option<&str>| {
        let mut b = serde_json::json!({
            "user": "bench", "prompt": "as a watercolour", "size": "256x256",
            "references": [{"upload": {"data": base64::engine::general_purpose::STANDARD.encode(&photo), "mime": "image/png"}}]
        });
        if let Some(g) = grant {
            b["grant_id"] = g.into();
        }
        b
    };
    let plain = report(
        "256x256 generation, no grant",
        time(requests, || call(reqwest::Method::POST, "/v1/generations", Some(small(None)))),
    );
    let granted = report(
        "256x256 generation, grant checked twice",
        time(requests, || call(reqwest::Method::POST, "/v1/generations", Some(small(Some(&grant_id))))),
    );
    println!("{:<44} {:.3}", "ratio (grant / no grant, p50)", granted.as_secs_f64() / plain.as_secs_f64());
    let _ = child.kill();
    let _ = child.wait();

    backend_overhead(&root, &pixels, quick);
}

/// What the gateway adds around generation: every output is decoded within
/// limits, run through vision and the post policy, watermarked and read
/// back, encoded and signed. The backend costs nothing here, so the
/// latency is the gateway's (minus the transfer, measured directly).
fn backend_overhead(root: &std::path::Path, pixels: &image::RgbImage, quick: bool) {
    use likeness_testkit::backends::{Behaviour, FakeBackend};
    println!("\n== gateway overhead around an instant backend (OpenAI door, fixed 1024x1024 PNG)");
    let png = std::sync::Arc::new(likeness_media::encode(pixels, OutputFormat::Png).unwrap());
    let fake = FakeBackend::openai("sk-bench");
    fake.behave(Behaviour::Fixed(png.clone()));
    // LIKENESS_BENCH_CONFIG: TOML added to this server's config, to compare
    // settings (e.g. "[vision]\nsessions = 1") in one run of the same build.
    let extra = std::env::var("LIKENESS_BENCH_CONFIG").unwrap_or_default();
    let config = format!(
        "{extra}\n[[backends]]\nname = \"instant\"\ntype = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"BENCH_OPENAI_KEY\"\nmodel = \"gpt-image-1\"\nmax_concurrent = 8\n",
        fake.base
    );
    let (mut child, base, key, _dir) = serve(root, &config, &[("BENCH_OPENAI_KEY", "sk-bench")]);
    let client = || reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let body = |format: &str| {
        serde_json::json!({"model": "instant", "prompt": "a lake at dawn", "size": "1024x1024", "output_format": format})
            .to_string()
    };
    let direct = client();
    let direct_body =
        serde_json::json!({"model": "gpt-image-1", "prompt": "a lake at dawn", "size": "1024x1024"}).to_string();
    let backend_alone = report(
        &format!("the backend alone ({} KB PNG as b64_json)", png.len() / 1024),
        time(if quick { 10 } else { 40 }, || {
            let r = direct
                .post(format!("{}/v1/images/generations", fake.base))
                .bearer_auth("sk-bench")
                .header("content-type", "application/json")
                .body(direct_body.clone())
                .send()
                .unwrap();
            assert!(r.status().is_success());
            r.bytes().unwrap().len()
        }),
    );
    let send = |c: &reqwest::blocking::Client, body: &str| {
        let r = c
            .post(format!("{base}/v1/images/generations"))
            .bearer_auth(&key)
            .header("x-likeness-user", "bench")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().unwrap().len()
    };
    let warm = client();
    send(&warm, &body("jpeg"));
    let per_client = if quick { 6 } else { 24 };
    let png_body = body("png");
    let png_p50 = report("1 client, output png", time(per_client, || send(&warm, &png_body)));
    println!("{:<44} {}", "  gateway overhead (p50 minus the backend)", ms(png_p50.saturating_sub(backend_alone)));
    let jpeg_body = body("jpeg");
    for clients in [1usize, 2, 4] {
        let started = Instant::now();
        let samples: Vec<Duration> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    s.spawn(|| {
                        let c = client();
                        time(per_client, || send(&c, &jpeg_body))
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let elapsed = started.elapsed();
        let n = samples.len();
        let p50 = report(&format!("{clients} client(s), output jpeg q90"), samples);
        println!(
            "{:<44} {:.2} requests/s; overhead p50 {}",
            "",
            n as f64 / elapsed.as_secs_f64(),
            ms(p50.saturating_sub(backend_alone))
        );
    }
    if let Some(mb) = common::peak_rss_mb(child.id()) {
        println!("{:<44} {mb:.0} MB", "peak resident memory (server, VmHWM)");
    }
    // Where the server's time went over all of the above, by its own
    // /metrics: mean per step and per model run (CPU time, not latency).
    let metrics = client().get(format!("{base}/metrics")).bearer_auth(&key).send().unwrap().text().unwrap();
    println!("mean time per step, from the server's /metrics (all requests above):");
    for (family, label) in [("likeness_stage_duration_seconds", "stage"), ("likeness_model_inference_seconds", "model")]
    {
        let value = |suffix: &str, name: &str| -> Option<f64> {
            let prefix = format!("{family}_{suffix}{{{label}=\"{name}\"}} ");
            metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
        };
        let names: Vec<String> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{family}_count{{{label}=\"")))
            .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
            .collect();
        for name in names {
            if let (Some(sum), Some(count)) = (value("sum", &name), value("count", &name)) {
                if count > 0.0 {
                    println!("  {:<42} {:>8.2} ms   (n={count})", format!("{label} {name}"), 1000.0 * sum / count);
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The default policy: evaluating both stages of a typical request (one
/// reference with a consenting subject's face, one output), and loading
/// the folder (what a hot reload costs).
fn policy_figures(quick: bool) {
    use likeness_policy::*;
    println!("\n== policy (the shipped default)");
    let files = likeness_testkit::shipped_policy();
    let n = if quick { 10 } else { 50 };
    report(
        "load and check the policy folder (a reload)",
        time(n, || Policy::load(&files, &LoadOptions::default()).unwrap()),
    );
    let policy = Policy::load(&files, &LoadOptions::default()).unwrap();
    let face = FaceFacts {
        label: "consenting_subject".into(),
        p_minor: 0.02,
        subject: Some(SubjectFacts { id: "sub_1".into(), ..Default::default() }),
        ..Default::default()
    };
    let image = |name: &str| ImageFacts { name: name.into(), faces: vec![face.clone()], nsfw: 0.01 };
    let pre = Input {
        references: vec![image("reference 1")],
        prompt: PromptFacts { length: 40, categories: policy.categories().matching("my friend as a watercolour", &[]) },
        consent: ConsentFacts {
            subjects: vec![SubjectFacts { id: "sub_1".into(), ..Default::default() }],
            ..Default::default()
        },
        ..Default::default()
    };
    let post = Input { stage: Stage::Post, outputs: vec![image("output 1")], ..pre.clone() };
    let n = if quick { 200 } else { 2000 };
    report(
        "policy evaluation per request (pre + post)",
        time(n, || {
            let a = policy.evaluate(&pre).outcome();
            let b = policy.evaluate(&post).outcome();
            assert!(a.failed.is_none() && b.failed.is_none());
        }),
    );
    report(
        "prompt categories (5 lists)",
        time(n, || {
            policy.categories().matching("a watercolour of my dog at the beach, s e x", &["Grace Hopper".into()])
        }),
    );
}
