//! Building one session: threads, settings and providers, then the model from the optimised-model cache when
//! there is a usable entry, else from the bundle (writing the entry on the way).

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::model_cache::CacheEntry;
use crate::onnx_runtime::OnnxRuntime;
use crate::provider::{self, ActiveProvider, ProviderKind};
use crate::session_settings::SessionSettings;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use std::path::Path;

/// Where a session's model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOrigin {
    /// The bundle's ONNX file; no cache entry was written (no cache, or an accelerator took the session).
    Bundle,
    /// The bundle's ONNX file, and its optimised form was written to the cache for the next start.
    BundleCached,
    /// The optimised-model cache.
    Cache,
}

impl ModelOrigin {
    /// The name `bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            ModelOrigin::Bundle => "bundle",
            ModelOrigin::BundleCached => "bundle, optimised model cached",
            ModelOrigin::Cache => "optimised-model cache",
        }
    }
}

/// A built session and what it runs on.
pub(crate) struct BuiltSession {
    pub(crate) session: Session,
    /// The cached ORT-format model the session reads its graph and weights from in place; it must outlive the
    /// session, so the engine declares it after the session (fields drop in declaration order).
    pub(crate) model_bytes: Option<Box<[u8]>>,
    pub(crate) provider: ActiveProvider,
    pub(crate) origin: ModelOrigin,
}

/// Builds the session of `bundle` with `settings`, the providers `requested` (best first) and, when `cache_dir` is
/// set and the session runs on CPU, the optimised-model cache in it.
pub(crate) fn build(
    ort: &OnnxRuntime,
    bundle: &Bundle,
    intra_threads: usize,
    settings: &SessionSettings,
    (requested, require): (&[ProviderKind], bool),
    cache_dir: Option<&Path>,
) -> Result<BuiltSession> {
    let model_path = bundle.model_path();
    let load_error = |e: ort::Error| Error::ModelLoad { path: model_path.clone(), reason: e.to_string() };
    let builder = || -> Result<(SessionBuilder, ActiveProvider)> {
        let builder = settings.apply(configured(ort, intra_threads).map_err(load_error)?)?;
        provider::register(builder, requested, require, settings.cpu_arena)
    };
    // Accelerators compile parts of the graph that an ORT-format file cannot hold, so only CPU sessions are cached.
    let (mut first, provider) = builder()?;
    // Each commit below consumes a builder with its own config entries; a fallback takes a fresh one.
    let entry = cache_dir
        .filter(|_| provider.active == ProviderKind::Cpu)
        .map(|dir| CacheEntry::new(dir, &bundle.manifest().sha256, settings.optimization));
    if let Some(entry) = &entry
        && let Some(bytes) = entry.read()
    {
        // Boxed before the session sees them: shrinking a Vec into a box may move its bytes, and the session
        // keeps pointing at them.
        let bytes = bytes.into_boxed_slice();
        match from_cache(first, &bytes) {
            Ok(session) => {
                return Ok(BuiltSession { session, model_bytes: Some(bytes), provider, origin: ModelOrigin::Cache });
            }
            Err(error) => {
                log::warn!("Optimised model {} refused, rebuilding it: {error}", entry.path().display());
                entry.remove();
                first = builder()?.0;
            }
        }
    }
    let model = bundle.read_model()?;
    if let Some(entry) = entry {
        match cache_while_building(first, &model, &entry) {
            Ok(session) => {
                return Ok(BuiltSession { session, model_bytes: None, provider, origin: ModelOrigin::BundleCached });
            }
            Err(error) => {
                log::warn!("Optimised model {} not written: {error}", entry.path().display());
                first = builder()?.0;
            }
        }
    }
    let session = first.commit_from_memory(&model).map_err(load_error)?;
    Ok(BuiltSession { session, model_bytes: None, provider, origin: ModelOrigin::Bundle })
}

/// A CPU session of `bundle` with `settings`, never cached: what `bench` times bare `Session::run` on, so that it
/// runs with exactly the engine's settings.
pub fn cpu_session(
    ort: &OnnxRuntime,
    bundle: &Bundle,
    intra_threads: usize,
    settings: &SessionSettings,
) -> Result<Session> {
    Ok(build(ort, bundle, intra_threads, settings, (&[ProviderKind::Cpu], false), None)?.session)
}

/// A builder with the engine's threading: `intra_threads` in the operator, one between operators.
pub(crate) fn configured(ort: &OnnxRuntime, intra_threads: usize) -> ort::Result<SessionBuilder> {
    Session::builder(ort.environment())?
        .with_intra_threads(intra_threads.max(1))
        .map_err(ort::Error::<()>::from)?
        .with_inter_threads(1)
        .map_err(ort::Error::<()>::from)
}

/// A session on an ORT-format model read in place (its graph and its initializers): `bytes` must outlive it.
fn from_cache(mut builder: SessionBuilder, bytes: &[u8]) -> ort::Result<Session> {
    for (key, value) in [
        ("session.load_model_format", "ORT"),
        ("session.use_ort_model_bytes_directly", "1"),
        ("session.use_ort_model_bytes_for_initializers", "1"),
    ] {
        builder = builder.with_config_entry(key, value).map_err(ort::Error::<()>::from)?;
    }
    builder.commit_from_memory(bytes)
}

/// A session on the bundle's `model`, ONNX Runtime writing the optimised graph to the cache `entry` as it builds it.
fn cache_while_building(builder: SessionBuilder, model: &[u8], entry: &CacheEntry) -> std::io::Result<Session> {
    let staged = entry.staging_path()?;
    let built = builder
        .with_optimized_model_path(&staged)
        .map_err(ort::Error::<()>::from)
        .and_then(|builder| {
            builder.with_config_entry("session.save_model_format", "ORT").map_err(ort::Error::<()>::from)
        })
        .and_then(|mut builder| builder.commit_from_memory(model));
    let stored = built.map_err(std::io::Error::other).and_then(|session| entry.store(&staged).map(|()| session));
    if stored.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    stored
}
