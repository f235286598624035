//! Renders one output per built-in style from a photo, for the README:
//! `cargo run --release -p likeness-generators --example styles -- PHOTO OUT_DIR [SIZE]`
use likeness_generators::{Builtin, GenerationJob, Generator, Style};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (photo, out) = (&args[1], std::path::Path::new(&args[2]));
    let size: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(384);
    let bytes = std::fs::read(photo).expect("read photo");
    let reference = likeness_media::decode(&bytes, None, &Default::default()).expect("decode").pixels;
    std::fs::create_dir_all(out).expect("out dir");
    for style in Style::ALL.iter().copied() {
        let job = GenerationJob { prompt: "", style, references: std::slice::from_ref(&reference), width: size, height: size, count: 1, seed: 1 };
        let started = std::time::Instant::now();
        let img = Builtin.generate(&job).expect("generate").remove(0);
        let jpeg = likeness_media::encode(&img, likeness_media::OutputFormat::Jpeg { quality: 80 }).expect("encode");
        std::fs::write(out.join(format!("{style}.jpg")), jpeg).expect("write");
        println!("{style}: {:?}", started.elapsed());
    }
    let job = GenerationJob { prompt: "a lake at sunset", style: Style::Watercolor, references: &[], width: size, height: size, count: 1, seed: 1 };
    let img = Builtin.generate(&job).expect("generate").remove(0);
    std::fs::write(out.join("scene-watercolor.jpg"), likeness_media::encode(&img, likeness_media::OutputFormat::Jpeg { quality: 80 }).unwrap()).unwrap();
}
