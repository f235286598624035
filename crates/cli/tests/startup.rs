//! What stops `serve` at start: no signing identity without `--dev`, and a
//! key file others can read. A production gateway never signs with a
//! development CA, or with a key that is not a secret, by accident.

mod support;

use std::process::Command;

use support::*;

/// Runs `serve` until it exits (these starts must fail): (exit code, stderr).
fn serve(data_dir: &std::path::Path, config: Option<&std::path::Path>, dev: bool) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.current_dir(workspace_root());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir);
    if dev {
        cmd.arg("--dev");
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("--policies").arg(workspace_root().join("policies"));
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn without_a_signing_identity_serve_needs_dev() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = serve(dir.path(), None, false);
    assert_ne!(code, 0);
    assert!(stderr.contains("no signing identity configured") && stderr.contains("--dev"), "{stderr}");
    assert!(!dir.path().join("keys/signer.key").exists(), "nothing was made");
}

/// A signing identity made by `keys init` in `dir/keys`: its folder and the
/// `[signing]` section naming it.
fn signing_identity(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let keys = dir.join("keys");
    let (code, out, err) = likeness(&["keys", "init", "--dir", keys.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let section = format!(
        "[signing]\nchain = {:?}\nkey = {:?}\n",
        keys.join("signer-chain.pem").display().to_string(),
        keys.join("signer.key").display().to_string()
    );
    (keys, section)
}

#[test]
fn a_key_file_others_can_read_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (keys, signing) = signing_identity(dir.path());
    assert!(!keys.join("ca.key").exists(), "the development CA's key is dropped");
    std::fs::set_permissions(keys.join("signer.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, signing).unwrap();
    let (code, stderr) = serve(&dir.path().join("data"), Some(&config), false);
    assert_ne!(code, 0);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

/// A gateway started with another embedding key than the one its subjects
/// were sealed with stops at once, saying which key it needs.
#[test]
fn another_embedding_key_stops_the_start() {
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let gallery = gallery_without_obama(dir.path());
    let server = Server::start_with("", &["--gallery", gallery.to_str().unwrap()]);
    let photo = upload(&fixture_bytes("faces/obama.jpg"), "image/jpeg");
    let (status, s) = server.call(
        "POST",
        "/v1/subjects",
        Some(&json!({"user": "u", "name": "B.", "relationship": "self", "enroll": [photo]})),
    );
    assert_eq!(status, 201, "{s}");
    let mut server = server.restart();
    assert!(server.healthy(), "the same key starts");
    // Keep the data dir when the server goes.
    let data = std::mem::replace(&mut server.data_dir, tempfile::tempdir().unwrap());
    drop(server);
    let key = data.path().join("keys/embedding.key");
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = std::process::Command::new(bin())
        .current_dir(workspace_root())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--gallery", gallery.to_str().unwrap()])
        .arg("--policies")
        .arg(workspace_root().join("policies"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("the embedding key does not open the stored face embeddings"), "{stderr}");
}

/// A production gateway names its provider in every manifest: without
/// `[provenance] provider_name` (and without `--dev`) it does not start.
#[test]
fn without_a_provider_name_serve_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, signing) = signing_identity(dir.path());
    let config = dir.path().join("config.toml");
    for extra in ["", "[provenance]\nprovider_name = \"  \"\n"] {
        std::fs::write(&config, format!("{signing}{extra}")).unwrap();
        let (code, stderr) = serve(&dir.path().join("data"), Some(&config), false);
        assert_ne!(code, 0);
        assert!(stderr.contains("[provenance] provider_name"), "{stderr}");
    }
}
