//! The C2PA soft-binding algorithm list entry in docs/ stays in step with
//! the code and carries what the list's schema requires.

#[test]
fn the_algorithm_list_entry_matches_the_code_and_the_schema() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/watermark/softbinding-entry.json");
    let entry: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(entry["alg"], likeness_watermark::ALG);
    assert_eq!(entry["type"], "watermark");
    assert!(entry["identifier"].is_u64());
    // Exactly one of decoded and encoded media types.
    assert_eq!(entry["decodedMediaTypes"], serde_json::json!(["image"]));
    assert!(entry.get("encodedMediaTypes").is_none());
    for field in ["description", "dateEntered", "contact", "informationalUrl"] {
        assert!(entry["entryMetadata"][field].as_str().is_some_and(|v| !v.is_empty()), "entryMetadata.{field}");
    }
    let alg = entry["alg"].as_str().unwrap();
    assert!(alg.split('.').count() >= 3 && alg.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
}
