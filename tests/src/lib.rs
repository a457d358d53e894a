//! Helpers for the integration tests: a real Mosquitto on a loopback ephemeral port, an MQTT subscriber, the
//! agent binary as a child process, the agent's OCI image under podman, and the paths of the shipped models and
//! references.

pub mod agent;
pub mod broker;
pub mod container;
pub mod fixtures;
pub mod fleet;
pub mod json_child;
pub mod nats;
pub mod profile;
pub mod references;
pub mod subscriber;
pub mod update;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `models/` of the repository.
pub fn models_dir() -> PathBuf {
    repo_root().join("models")
}

/// The ONNX Runtime library the tests load: `ORT_DYLIB_PATH`, else the one `scripts/fetch-onnxruntime.sh`
/// puts under `third_party/`.
pub fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1"))
}

/// The process-wide ONNX Runtime (one environment per process).
pub fn onnx_runtime() -> runtime::OnnxRuntime {
    runtime::OnnxRuntime::load(ort_library()).expect("ONNX Runtime loads; run scripts/setup.sh first")
}

/// Asks `child` to stop with SIGTERM, as systemd does; an already-ended child is not an error here.
pub fn sigterm(child: &std::process::Child) {
    let _ = rustix::process::kill_process(rustix::process::Pid::from_child(child), rustix::process::Signal::TERM);
}
