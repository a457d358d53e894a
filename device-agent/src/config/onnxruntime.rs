//! `[onnxruntime]`: the library, threads, providers and session settings. Each session setting is `"auto"` (the
//! default: the measured best for the model's family, see docs/execution-providers.md) or a fixed value.

use super::{Problems, empty_as_none};
use runtime::{GraphOptimization, ProviderKind, SessionOverrides};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// The directory of the optimised-model cache under `update.state_dir`.
const CACHE_SUBDIR: &str = "optimized-models";

/// `[onnxruntime]`: how sessions are built.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnnxRuntimeConfig {
    /// The ONNX Runtime shared library; unset: `$ORT_DYLIB_PATH`, else `libonnxruntime.so.1`. Not relative to
    /// the config file: a relative path is looked up beside the executable, then in the working directory, then
    /// left to `dlopen`.
    #[serde(deserialize_with = "empty_as_none")]
    pub library: Option<PathBuf>,
    /// Threads per session (`>= 1`).
    pub intra_threads: usize,
    /// ONNX Runtime's CPU memory arena.
    pub cpu_arena: Auto<bool>,
    /// Memory planned once from the first run and reused.
    pub memory_pattern: Auto<bool>,
    /// Graph rewrites when a session is built.
    pub graph_optimization: Auto<GraphOptimization>,
    /// Intra-op threads spin between operators instead of sleeping (only with `intra_threads >= 2`).
    pub intra_spinning: Auto<bool>,
    /// Keep each model's optimised graph under `update.state_dir` and build later sessions from it.
    pub optimized_model_cache: bool,
    /// When not empty, replaces every bundle's `execution.providers`, best first.
    pub providers: Vec<ProviderKind>,
    /// Refuse to fall back to CPU when a preferred accelerator fails.
    pub require: bool,
}

impl Default for OnnxRuntimeConfig {
    fn default() -> Self {
        OnnxRuntimeConfig {
            library: None,
            intra_threads: 1,
            cpu_arena: Auto::Auto,
            memory_pattern: Auto::Auto,
            graph_optimization: Auto::Auto,
            intra_spinning: Auto::Auto,
            optimized_model_cache: true,
            providers: Vec::new(),
            require: false,
        }
    }
}

impl OnnxRuntimeConfig {
    /// The session settings the config fixes; the others stay to the model's family.
    pub fn session_overrides(&self) -> SessionOverrides {
        SessionOverrides {
            cpu_arena: self.cpu_arena.value(),
            memory_pattern: self.memory_pattern.value(),
            optimization: self.graph_optimization.value(),
            intra_spinning: self.intra_spinning.value(),
        }
    }

    /// The optimised-model cache's directory: under the state directory, when there is one and the cache is on.
    pub fn cache_dir(&self, state_dir: Option<&Path>) -> Option<PathBuf> {
        state_dir.filter(|_| self.optimized_model_cache).map(|dir| dir.join(CACHE_SUBDIR))
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.intra_threads < 1 {
            problems.push("onnxruntime.intra_threads", "must be >= 1");
        }
        for (index, provider) in self.providers.iter().enumerate() {
            if self.providers[..index].contains(provider) {
                problems
                    .push(format!("onnxruntime.providers[{index}]"), format!("{} is listed twice", provider.name()));
            }
        }
    }
}

/// A setting that is `"auto"` or a value of its own type (`true`, `"all"`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auto<T> {
    /// The model family's measured default.
    #[default]
    Auto,
    /// This value for every model.
    Set(T),
}

impl<T: Copy> Auto<T> {
    /// The fixed value; `None` for `"auto"`.
    pub fn value(&self) -> Option<T> {
        match self {
            Auto::Auto => None,
            Auto::Set(value) => Some(*value),
        }
    }
}

impl<T: std::str::FromStr> std::str::FromStr for Auto<T> {
    type Err = T::Err;

    /// `auto`, or what `T` parses (command-line flags).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" { Ok(Auto::Auto) } else { text.parse().map(Auto::Set) }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Auto<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AutoVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for AutoVisitor<T> {
            type Value = Auto<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\" or a value")
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Auto<T>, E> {
                T::deserialize(value.into_deserializer()).map(Auto::Set)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Auto<T>, E> {
                if value == "auto" { Ok(Auto::Auto) } else { T::deserialize(value.into_deserializer()).map(Auto::Set) }
            }
        }
        deserializer.deserialize_any(AutoVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    const SOURCE: &str = "device_id = \"d\"\n[[sources]]\nname = \"cam\"\nmodel = \"m\"\nkind = \"mqtt_frames\"\n";

    fn parse(keys: &str) -> Result<AgentConfig, Vec<String>> {
        AgentConfig::parse(&format!("{SOURCE}[onnxruntime]\n{keys}\n"))
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    fn onnxruntime(keys: &str) -> OnnxRuntimeConfig {
        parse(keys).expect("valid").onnxruntime
    }

    #[test]
    fn session_settings_are_auto_unless_set() {
        assert_eq!(onnxruntime("").session_overrides(), SessionOverrides::default());
        let set = onnxruntime(
            "cpu_arena = false\nmemory_pattern = true\ngraph_optimization = \"basic\"\nintra_spinning = \"auto\"",
        );
        assert_eq!(
            set.session_overrides(),
            SessionOverrides {
                cpu_arena: Some(false),
                memory_pattern: Some(true),
                optimization: Some(GraphOptimization::Basic),
                intra_spinning: None,
            }
        );
    }

    #[test]
    fn a_setting_of_the_wrong_kind_is_rejected_naming_it() {
        let errors = parse("graph_optimization = \"most\"").expect_err("refused");
        assert!(errors[0].contains("most") && errors[0].contains("graph_optimization"), "{errors:?}");
        let errors = parse("cpu_arena = \"yes\"").expect_err("refused");
        assert!(errors[0].contains("cpu_arena"), "{errors:?}");
    }

    #[test]
    fn the_cache_lives_under_the_state_directory_unless_turned_off() {
        let state = Path::new("/var/lib/edge-agent");
        assert_eq!(onnxruntime("").cache_dir(Some(state)), Some(state.join("optimized-models")));
        assert_eq!(onnxruntime("").cache_dir(None), None);
        assert_eq!(onnxruntime("optimized_model_cache = false").cache_dir(Some(state)), None);
    }

    #[test]
    fn flags_parse_auto_or_a_value() {
        assert_eq!("auto".parse::<Auto<bool>>(), Ok(Auto::Auto));
        assert_eq!("false".parse::<Auto<bool>>(), Ok(Auto::Set(false)));
        assert!("off".parse::<Auto<bool>>().is_err());
    }
}
