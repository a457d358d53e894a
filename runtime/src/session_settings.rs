//! ONNX Runtime's session settings (CPU arena, memory patterns, graph optimisation, intra-op spinning) and their
//! defaults per model family, chosen by measurement with `device-agent bench` (figures in
//! docs/execution-providers.md).

use crate::error::{Error, Result};
use crate::manifest::{InputSpec, Manifest, OutputSpec};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How much ONNX Runtime rewrites the graph when it builds the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphOptimization {
    /// The graph as it is.
    Disable,
    /// Constant folding and redundant-node elimination.
    Basic,
    /// Basic plus fusions.
    Extended,
    /// Extended plus layout optimisations (NCHWc), specific to the CPU the session runs on.
    All,
}

impl GraphOptimization {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            GraphOptimization::Disable => "disable",
            GraphOptimization::Basic => "basic",
            GraphOptimization::Extended => "extended",
            GraphOptimization::All => "all",
        }
    }

    fn level(self) -> GraphOptimizationLevel {
        match self {
            GraphOptimization::Disable => GraphOptimizationLevel::Disable,
            GraphOptimization::Basic => GraphOptimizationLevel::Level1,
            GraphOptimization::Extended => GraphOptimizationLevel::Level2,
            GraphOptimization::All => GraphOptimizationLevel::All,
        }
    }
}

impl std::str::FromStr for GraphOptimization {
    type Err = String;

    /// The config name (`disable`, `basic`, `extended`, `all`).
    fn from_str(name: &str) -> std::result::Result<Self, String> {
        [GraphOptimization::Disable, GraphOptimization::Basic, GraphOptimization::Extended, GraphOptimization::All]
            .into_iter()
            .find(|level| level.name() == name)
            .ok_or_else(|| format!("unknown graph optimisation level {name:?} (disable, basic, extended or all)"))
    }
}

/// The model families whose session defaults were measured separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// An image input and a classification, anomaly or raw output.
    ImageClassifier,
    /// An image input and a detection output (CenterFace, YOLOv8).
    Detector,
    /// A sensor-window input.
    Sensor,
}

impl ModelFamily {
    /// The family of a bundle, from its manifest's input kind and output decoder.
    pub fn of(manifest: &Manifest) -> ModelFamily {
        match (&manifest.input, &manifest.output) {
            (InputSpec::Sensor(_), _) => ModelFamily::Sensor,
            (
                InputSpec::Image(_),
                OutputSpec::Centerface(_) | OutputSpec::Yolov8(_) | OutputSpec::Ssd(_) | OutputSpec::Dbnet(_),
            ) => ModelFamily::Detector,
            (InputSpec::Image(_), _) => ModelFamily::ImageClassifier,
        }
    }

    /// The name printed by `bench` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            ModelFamily::ImageClassifier => "image classifier",
            ModelFamily::Detector => "detector",
            ModelFamily::Sensor => "sensor model",
        }
    }
}

/// The settings one session is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionSettings {
    /// ONNX Runtime's CPU memory arena: it keeps its high-water mark, which with fixed input shapes is reached on
    /// the first run and bounded by the model.
    pub cpu_arena: bool,
    /// Plans the activations' memory once from the first run and reuses the plan (fixed shapes only).
    pub memory_pattern: bool,
    /// Graph rewrites applied when the session is built.
    pub optimization: GraphOptimization,
    /// Intra-op pool threads spin between operators instead of sleeping: lower latency, more CPU time. Moot with
    /// one intra-op thread, which runs on the caller's thread.
    pub intra_spinning: bool,
}

impl SessionSettings {
    /// ONNX Runtime's own defaults: the "honest limit" `bench` measures bare `Session::run` with.
    pub const ORT_DEFAULTS: SessionSettings = SessionSettings {
        cpu_arena: true,
        memory_pattern: true,
        optimization: GraphOptimization::All,
        intra_spinning: true,
    };

    /// The measured best for `family` (docs/execution-providers.md has the figures). Level `all` everywhere
    /// (`extended` and `basic` cost the image models 1.8-2.2x the CPU time); spinning off (it buys little and burns
    /// CPU time, measured with 2 threads); the arena for image models: the detector runs 1.5x the CPU time
    /// without it, and the classifier 1.4x under the packaged unit's `MALLOC_TRIM_THRESHOLD_` (glibc hands its
    /// per-run buffers back and faults them in again); sensor models run the same either way. The detector's
    /// memory pattern costs 43 MB of peak RSS for no speed.
    pub fn measured_default(family: ModelFamily) -> SessionSettings {
        let detector = family == ModelFamily::Detector;
        SessionSettings {
            cpu_arena: family != ModelFamily::Sensor,
            memory_pattern: !detector,
            optimization: GraphOptimization::All,
            intra_spinning: false,
        }
    }

    /// `builder` with these settings, except the arena, which goes with the CPU provider's registration.
    pub(crate) fn apply(&self, builder: SessionBuilder) -> Result<SessionBuilder> {
        let setting = |e: ort::Error| Error::Provider { provider: "cpu", reason: e.to_string() };
        builder
            .with_memory_pattern(self.memory_pattern)
            .map_err(|e| setting(e.into()))?
            .with_optimization_level(self.optimization.level())
            .map_err(|e| setting(e.into()))?
            .with_intra_op_spinning(self.intra_spinning)
            .map_err(|e| setting(e.into()))
    }
}

impl fmt::Display for SessionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "cpu_arena {}, memory_pattern {}, graph_optimization {}, intra_spinning {}",
            on(self.cpu_arena),
            on(self.memory_pattern),
            self.optimization.name(),
            on(self.intra_spinning)
        )
    }
}

/// Settings chosen by the user; `None` takes the family's measured default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionOverrides {
    /// See [`SessionSettings::cpu_arena`].
    pub cpu_arena: Option<bool>,
    /// See [`SessionSettings::memory_pattern`].
    pub memory_pattern: Option<bool>,
    /// See [`SessionSettings::optimization`].
    pub optimization: Option<GraphOptimization>,
    /// See [`SessionSettings::intra_spinning`].
    pub intra_spinning: Option<bool>,
}

impl SessionOverrides {
    /// Every setting fixed to `settings`.
    pub fn all(settings: SessionSettings) -> SessionOverrides {
        SessionOverrides {
            cpu_arena: Some(settings.cpu_arena),
            memory_pattern: Some(settings.memory_pattern),
            optimization: Some(settings.optimization),
            intra_spinning: Some(settings.intra_spinning),
        }
    }

    /// The settings for a model of `family`.
    pub fn resolve(&self, family: ModelFamily) -> SessionSettings {
        let default = SessionSettings::measured_default(family);
        SessionSettings {
            cpu_arena: self.cpu_arena.unwrap_or(default.cpu_arena),
            memory_pattern: self.memory_pattern.unwrap_or(default.memory_pattern),
            optimization: self.optimization.unwrap_or(default.optimization),
            intra_spinning: self.intra_spinning.unwrap_or(default.intra_spinning),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bundle;
    use std::path::Path;

    fn family(model: &str) -> ModelFamily {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models").join(model);
        ModelFamily::of(Bundle::load(dir).expect("shipped bundle").manifest())
    }

    #[test]
    fn the_shipped_bundles_fall_into_their_families() {
        assert_eq!(family("image-classifier"), ModelFamily::ImageClassifier);
        assert_eq!(family("face-detector"), ModelFamily::Detector);
        assert_eq!(family("activity-classifier"), ModelFamily::Sensor);
        assert_eq!(family("vibration-anomaly"), ModelFamily::Sensor);
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let overrides = SessionOverrides { cpu_arena: Some(false), ..SessionOverrides::default() };
        for family in [ModelFamily::ImageClassifier, ModelFamily::Detector, ModelFamily::Sensor] {
            let resolved = overrides.resolve(family);
            assert_eq!(resolved, SessionSettings { cpu_arena: false, ..SessionSettings::measured_default(family) });
        }
        let fixed = SessionOverrides::all(SessionSettings::ORT_DEFAULTS);
        assert_eq!(fixed.resolve(ModelFamily::Sensor), SessionSettings::ORT_DEFAULTS);
    }

    #[test]
    fn settings_print_as_the_config_names_them() {
        assert_eq!(
            SessionSettings::ORT_DEFAULTS.to_string(),
            "cpu_arena on, memory_pattern on, graph_optimization all, intra_spinning on"
        );
    }
}
