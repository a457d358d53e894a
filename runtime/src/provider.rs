//! Execution providers: the preference list, tried best first with `error_on_failure`, so the provider that
//! really took the session is known and reported instead of ONNX Runtime's silent fallback to CPU.

use crate::error::{Error, Result};
use ort::ep::{self, ExecutionProviderDispatch};
use ort::session::builder::SessionBuilder;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An execution provider a bundle or the agent's config may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// Each variant is the ONNX Runtime execution provider of the same name.
#[allow(missing_docs)]
pub enum ProviderKind {
    Cpu,
    Cuda,
    Tensorrt,
    Openvino,
    Xnnpack,
    Qnn,
    Rknpu,
    Nnapi,
    Acl,
    Armnn,
    Coreml,
    Vsinpu,
    Migraphx,
    Rocm,
    Onednn,
    Cann,
    Directml,
}

impl ProviderKind {
    /// The config name (`cuda`, `tensorrt`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Cpu => "cpu",
            ProviderKind::Cuda => "cuda",
            ProviderKind::Tensorrt => "tensorrt",
            ProviderKind::Openvino => "openvino",
            ProviderKind::Xnnpack => "xnnpack",
            ProviderKind::Qnn => "qnn",
            ProviderKind::Rknpu => "rknpu",
            ProviderKind::Nnapi => "nnapi",
            ProviderKind::Acl => "acl",
            ProviderKind::Armnn => "armnn",
            ProviderKind::Coreml => "coreml",
            ProviderKind::Vsinpu => "vsinpu",
            ProviderKind::Migraphx => "migraphx",
            ProviderKind::Rocm => "rocm",
            ProviderKind::Onednn => "onednn",
            ProviderKind::Cann => "cann",
            ProviderKind::Directml => "directml",
        }
    }

    /// The provider's registration with ONNX Runtime's defaults, failing loudly.
    fn dispatch(self, cpu_arena: bool) -> ExecutionProviderDispatch {
        let dispatch = match self {
            ProviderKind::Cpu => ep::CPU::default().with_arena_allocator(cpu_arena).build(),
            ProviderKind::Cuda => ep::CUDA::default().build(),
            ProviderKind::Tensorrt => ep::TensorRT::default().build(),
            ProviderKind::Openvino => ep::OpenVINO::default().build(),
            ProviderKind::Xnnpack => ep::XNNPACK::default().build(),
            ProviderKind::Qnn => ep::QNN::default().build(),
            ProviderKind::Rknpu => ep::RKNPU::default().build(),
            ProviderKind::Nnapi => ep::NNAPI::default().build(),
            ProviderKind::Acl => ep::ACL::default().build(),
            // ONNX Runtime 1.2x dropped Arm NN; older vendor builds still carry it, so it stays selectable.
            #[allow(deprecated)]
            ProviderKind::Armnn => ep::ArmNN::default().build(),
            ProviderKind::Coreml => ep::CoreML::default().build(),
            ProviderKind::Vsinpu => ep::VSINPU.build(),
            ProviderKind::Migraphx => ep::MIGraphX::default().build(),
            ProviderKind::Rocm => ep::ROCm::default().build(),
            ProviderKind::Onednn => ep::OneDNN::default().build(),
            ProviderKind::Cann => ep::CANN::default().build(),
            ProviderKind::Directml => ep::DirectML::default().build(),
        };
        dispatch.error_on_failure()
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of provider selection for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveProvider {
    /// The preference list, best first, as asked for.
    pub requested: Vec<ProviderKind>,
    /// The provider that took the session (CPU runs whatever it does not support).
    pub active: ProviderKind,
    /// Providers that were tried and refused, with ONNX Runtime's reason.
    pub refused: Vec<(ProviderKind, String)>,
}

impl ActiveProvider {
    /// True when an accelerator was asked for but the session runs on CPU.
    pub fn fell_back_to_cpu(&self) -> bool {
        self.active == ProviderKind::Cpu && self.requested.iter().any(|p| *p != ProviderKind::Cpu)
    }
}

/// Registers the first provider of `requested` that ONNX Runtime accepts, then CPU as the fallback for
/// unsupported nodes. With `require`, refuses to end up on CPU unless CPU itself was asked for.
pub(crate) fn register(
    mut builder: SessionBuilder,
    requested: &[ProviderKind],
    require: bool,
    cpu_arena: bool,
) -> Result<(SessionBuilder, ActiveProvider)> {
    let mut refused = Vec::new();
    let mut active = None;
    for &kind in requested {
        if kind == ProviderKind::Cpu {
            active = Some(ProviderKind::Cpu);
            break;
        }
        match builder.with_execution_providers([kind.dispatch(cpu_arena)]) {
            Ok(next) => {
                builder = next;
                active = Some(kind);
                break;
            }
            Err(e) => {
                log::warn!("Execution provider {kind} refused; trying the next one. error={e}");
                refused.push((kind, e.to_string()));
                builder = e.recover();
            }
        }
    }
    let active = match active {
        Some(kind) => kind,
        None if require => {
            let names: Vec<&str> = requested.iter().map(|p| p.name()).collect();
            return Err(Error::ProviderRequired { requested: names.join(", ") });
        }
        None => ProviderKind::Cpu,
    };
    // CPU always comes last so nodes the accelerator cannot take still run, with the configured arena.
    let builder = builder
        .with_execution_providers([ProviderKind::Cpu.dispatch(cpu_arena)])
        .map_err(|e| Error::Provider { provider: "cpu", reason: e.to_string() })?;
    Ok((builder, ActiveProvider { requested: requested.to_vec(), active, refused }))
}
