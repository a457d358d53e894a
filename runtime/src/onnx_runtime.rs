//! Loading `libonnxruntime` at run time (`ort`'s `load-dynamic`), once per process.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// A loaded ONNX Runtime and its process-wide environment. Cheap to clone.
#[derive(Clone)]
pub struct OnnxRuntime {
    environment: ort::environment::Environment,
    library: PathBuf,
}

// ONNX Runtime allows one environment per process, even after it is dropped, so the first load is kept.
static LOADED: OnceLock<OnnxRuntime> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

impl OnnxRuntime {
    /// Loads the library at `path`. A relative path is looked up beside the executable first, then in the
    /// working directory, then handed to the dynamic loader as it is (so `LD_LIBRARY_PATH` applies). A second
    /// call returns the runtime already loaded, and fails if it names another library.
    pub fn load(path: impl AsRef<Path>) -> Result<OnnxRuntime> {
        let requested = resolve(path.as_ref());
        let _guard = LOADING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(loaded) = LOADED.get() {
            return if loaded.library == requested {
                Ok(loaded.clone())
            } else {
                Err(Error::RuntimeLibrary {
                    path: requested,
                    reason: format!("ONNX Runtime is already loaded from {}", loaded.library.display()),
                })
            };
        }
        if requested.is_absolute() && !requested.exists() {
            return Err(Error::RuntimeLibrary { path: requested, reason: "no such file".to_owned() });
        }
        // The Debug form carries dlerror's text (a missing libstdc++, a wrong architecture); Display hides it.
        let builder = ort::init_from(&requested)
            .map_err(|e| Error::RuntimeLibrary { path: requested.clone(), reason: format!("{e:?}") })?;
        let environment = builder
            .with_name("edge-agent")
            .build()
            .map_err(|e| Error::RuntimeLibrary { path: requested.clone(), reason: e.to_string() })?;
        let runtime = OnnxRuntime { environment, library: requested };
        Ok(LOADED.get_or_init(|| runtime).clone())
    }

    /// The library this runtime was loaded from.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The `ort` environment, for callers that build sessions of their own (benchmarks of bare `Session::run`).
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }
}

fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    let beside_exe = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(path)));
    match beside_exe {
        Some(candidate) if candidate.exists() => candidate,
        _ => std::path::absolute(path).ok().filter(|p| p.exists()).unwrap_or_else(|| path.to_owned()),
    }
}
