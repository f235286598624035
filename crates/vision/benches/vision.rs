//! `cargo bench -p likeness-vision`: model load time, milliseconds per stage
//! for a ~1 MP photo with one face, and the whole step's throughput with 2
//! threads. Prints figures; asserts nothing about time.

use std::time::{Duration, Instant};

use likeness_vision::{aligned_chip, Vision, VisionConfig, AGE_TEMPLATE, EMBEDDING_TEMPLATE};

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect()
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = VisionConfig { models_dir: root.join("models"), sessions: 2, ..VisionConfig::default() };
    let t = Instant::now();
    let vision = Vision::load(&config).expect("run `make setup` first");
    println!(
        "model load, 4 models x 2 sessions, first (with ONNX Runtime start)  {:>8.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let t = Instant::now();
    drop(Vision::load(&config).unwrap());
    println!(
        "model load again (hash checks + sessions)                          {:>8.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let bytes = std::fs::read(root.join("fixtures/faces/obama.jpg")).unwrap();
    let img = likeness_media::decode(&bytes, None, &Default::default()).unwrap().pixels;
    println!(
        "\nper stage, {}x{} ({:.2} MP) photo with one face, p50 of 30:",
        img.width(),
        img.height(),
        (img.width() * img.height()) as f64 / 1e6
    );
    let faces = vision.detect(&img).unwrap();
    assert_eq!(faces.len(), 1);
    let rows = [
        ("face detection (all turns: 640 px upright, 384 turned)", p50(time(30, || vision.detect(&img).unwrap()))),
        (
            "alignment (two chips)",
            p50(time(30, || {
                (
                    aligned_chip(&img, &faces[0].landmarks, &AGE_TEMPLATE, 64),
                    aligned_chip(&img, &faces[0].landmarks, &EMBEDDING_TEMPLATE, 150),
                )
            })),
        ),
        ("age (incl. its alignment)", p50(time(30, || vision.ages(&img, &faces).unwrap()))),
        ("embedding (incl. its alignment)", p50(time(30, || vision.embeddings(&img, &faces).unwrap()))),
        ("NSFW", p50(time(30, || vision.nsfw(&img).unwrap()))),
        ("whole analysis", p50(time(30, || vision.analyze(&img).unwrap()))),
    ];
    for (name, ms) in rows {
        println!("  {name:<40} {ms:>8.2} ms");
    }

    let per_thread = 40;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..per_thread {
                    vision.analyze(&img).unwrap();
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "\nthroughput, 2 threads, whole analysis: {:.1} images/s ({} images)",
        (2 * per_thread) as f64 / secs,
        2 * per_thread
    );
}
