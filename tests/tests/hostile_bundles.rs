//! Hostile bundles: a manifest that names a file outside its directory (by `..`, an absolute path or a symbolic
//! link), a symbolic-link loop, or a value of the wrong type is refused by `run --check` with exit status 64 and a
//! message naming the manifest and the key; the same bundles are refused by `Bundle::load`.

use integration_tests::agent::agent_binary;
use integration_tests::fixtures::edited_bundle;
use integration_tests::{models_dir, ort_library};
use std::os::unix::fs::symlink;
use std::path::Path;

/// `run --check` on an agent with one image source serving `bundle`: its exit status and standard error.
fn check(bundle: &Path) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"127.0.0.1\"\n[[sources]]\nname = \"front\"\nkind = \"images\"\n\
         model = \"{}\"\npath = \"{}\"\n",
        bundle.display(),
        models_dir().join("frames").display()
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let output = std::process::Command::new(agent_binary())
        .args(["run", "--check", "--config"])
        .arg(&path)
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Asserts that `bundle` is refused by `run --check` (exit 64) and by `Bundle::load`, both naming the manifest
/// and every text of `expected`.
fn assert_refused(bundle: &Path, expected: &[&str]) {
    let (status, stderr) = check(bundle);
    assert_eq!(status, Some(64), "{stderr}");
    let manifest = bundle.join("manifest.toml");
    assert!(stderr.contains(&manifest.display().to_string()), "the manifest is not named:\n{stderr}");
    let loaded = runtime::Bundle::load(bundle).expect_err("refused").to_string();
    for text in expected {
        assert!(stderr.contains(text), "{text:?} missing:\n{stderr}");
        assert!(loaded.contains(text), "{text:?} missing:\n{loaded}");
    }
}

#[test]
fn a_model_path_out_of_the_bundle_is_refused() {
    for path in ["../image-classifier/model.onnx", "/tmp/model.onnx"] {
        let bundle =
            edited_bundle("image-classifier", |m| m.replace("model = \"model.onnx\"", &format!("model = {path:?}")));
        assert_refused(bundle.path(), &[&format!("`model` {path:?} is not a plain relative path within the bundle")]);
    }
}

#[test]
fn a_symbolic_link_out_of_the_bundle_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let bundle = edited_bundle("image-classifier", |m| m.to_owned());
    // The link points at a byte-identical copy, so only where it points is wrong.
    let target = outside.path().join("model.onnx");
    std::fs::rename(bundle.path().join("model.onnx"), &target).unwrap();
    symlink(&target, bundle.path().join("model.onnx")).unwrap();
    assert_refused(bundle.path(), &["`model` \"model.onnx\" resolves to", "outside the bundle directory"]);

    // A link that stays inside the bundle is fine.
    let inside = edited_bundle("image-classifier", |m| m.to_owned());
    std::fs::rename(inside.path().join("model.onnx"), inside.path().join("weights.onnx")).unwrap();
    symlink("weights.onnx", inside.path().join("model.onnx")).unwrap();
    runtime::Bundle::load(inside.path()).expect("a link inside the bundle loads");
}

#[test]
fn a_symbolic_link_loop_is_refused() {
    let bundle = edited_bundle("image-classifier", |m| m.to_owned());
    std::fs::remove_file(bundle.path().join("labels.txt")).unwrap();
    symlink("loop.txt", bundle.path().join("labels.txt")).unwrap();
    symlink("labels.txt", bundle.path().join("loop.txt")).unwrap();
    assert_refused(bundle.path(), &["`labels_file` \"labels.txt\" cannot be resolved"]);
}

#[test]
fn a_value_of_the_wrong_type_is_refused_naming_its_key() {
    let bundle = edited_bundle("image-classifier", |m| m.replace("width = 224", "width = \"wide\""));
    assert_refused(bundle.path(), &["`input.width`: invalid type: string \"wide\""]);
    let bundle = edited_bundle("image-classifier", |m| m.replace("top_k = 5", "top_k = -1"));
    assert_refused(bundle.path(), &["`output.top_k`"]);
}
