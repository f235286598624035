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

#[test]
fn a_key_file_others_can_read_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (code, out, err) = likeness(&["keys", "init", "--dir", keys.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!keys.join("ca.key").exists(), "the development CA's key is dropped");
    let key = keys.join("signer.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[signing]\nchain = {:?}\nkey = {:?}\n", keys.join("signer-chain.pem"), key.display().to_string()),
    )
    .unwrap();
    let (code, stderr) = serve(&dir.path().join("data"), Some(&config), false);
    assert_ne!(code, 0);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}
