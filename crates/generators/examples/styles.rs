//! Renders one output per built-in style from a photo, for the README:
//! `cargo run --release -p likeness-generators --example styles -- PHOTO OUT_DIR [SIZE] [SHOWN]`
//! renders at SIZE (default 1024) and saves at SHOWN pixels (default SIZE).
use likeness_generators::{Builtin, GenerationJob, Generator, Style};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (photo, out) = (&args[1], std::path::Path::new(&args[2]));
    let size: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let shown: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(size);
    let save = |img: &image::RgbImage, name: &str| {
        let small = image::imageops::resize(
            img,
            shown,
            shown * img.height() / img.width(),
            image::imageops::FilterType::Lanczos3,
        );
        let jpeg = likeness_media::encode(&small, likeness_media::OutputFormat::Jpeg { quality: 82 }).expect("encode");
        std::fs::write(out.join(name), jpeg).expect("write");
    };
    let bytes = std::fs::read(photo).expect("read photo");
    let reference = likeness_media::decode(&bytes, None, &Default::default()).expect("decode").pixels;
    std::fs::create_dir_all(out).expect("out dir");
    for style in Style::ALL.iter().copied() {
        let job = GenerationJob {
            prompt: "",
            style,
            references: std::slice::from_ref(&reference),
            width: size,
            height: size,
            count: 1,
            seed: 1,
        };
        let started = std::time::Instant::now();
        let img = Builtin.generate(&job).expect("generate").remove(0);
        println!("{style}: {:?}", started.elapsed());
        save(&img, &format!("{style}.jpg"));
    }
    let job = GenerationJob {
        prompt: "a lake at sunset",
        style: Style::Watercolor,
        references: &[],
        width: size,
        height: size,
        count: 1,
        seed: 1,
    };
    let img = Builtin.generate(&job).expect("generate").remove(0);
    save(&img, "scene-watercolor.jpg");
    save(&reference, "original.jpg");
}
