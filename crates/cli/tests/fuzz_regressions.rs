//! Every input the fuzz targets found or were seeded with
//! (`fuzz/regressions/<target>/`), run through the same function as the
//! target (`likeness_http::fuzzing`): a finding, once fixed, stays fixed.

use std::path::Path;

/// A fuzz target's name and the function it runs.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_kept_fuzz_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let targets: [Target; 4] = [
        ("decode", likeness_http::fuzzing::decode_image),
        ("verify", likeness_http::fuzzing::verify_file),
        ("generation_body", likeness_http::fuzzing::generation_body),
        ("policy", likeness_http::fuzzing::policy_file),
    ];
    let mut failures = Vec::new();
    let mut ran = 0;
    for (target, run) in targets {
        let mut files: Vec<_> = std::fs::read_dir(root.join(target)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(!files.is_empty(), "no inputs kept for {target}");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(format!("{target}: {}", file.display()));
            }
            ran += 1;
        }
    }
    assert!(failures.is_empty(), "inputs that still fail:\n{}", failures.join("\n"));
    assert!(ran >= 16, "{ran} inputs");
}
