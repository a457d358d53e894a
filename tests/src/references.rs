//! The reference outputs of Python onnxruntime shipped in `models/references/`.

use serde::Deserialize;

/// One bundle's references.
#[derive(Debug, Deserialize)]
pub struct References {
    pub bundle: String,
    pub onnxruntime: String,
    pub cases: Vec<Case>,
}

/// One input and what Python onnxruntime made of it.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// Relative to `models/`.
    pub input: String,
    /// For sensor recordings: the first data row of the window (0 = the row after the header).
    #[serde(default)]
    pub start_row: Option<usize>,
    #[serde(default)]
    pub input_stats: Option<InputStats>,
    pub output: runtime::Output,
}

/// Statistics of the preprocessed input tensor.
#[derive(Debug, Deserialize)]
pub struct InputStats {
    pub mean: f64,
    pub std: f64,
    pub len: usize,
}

/// Loads `models/references/<bundle>.json`.
pub fn load(bundle: &str) -> References {
    let path = crate::models_dir().join("references").join(format!("{bundle}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
