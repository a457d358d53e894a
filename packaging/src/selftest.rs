//! Golden self-test vectors (`selftest.json`): inputs and the outputs the bundle gave for them when it was
//! packed. A device runs them on a new model before it serves, so a model that loads but computes something
//! else (another ONNX Runtime, another preprocessing) is caught before it publishes a single prediction.
//!
//! ```json
//! {"atol": 0.001, "rtol": 0.01,
//!  "cases": [{"input": {"image": "selftest/cat.jpg"}, "expected": {"classification": {"classes": [...]}}},
//!            {"input": {"sensor": {"channels": 6, "values": [...]}}, "expected": {...}}]}
//! ```

use crate::error::{Error, Result};
use runtime::manifest::is_package_path;
use runtime::{Bundle, Input, Output, Pipeline, SensorWindow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Absolute tolerance `model pack` records.
pub const DEFAULT_ATOL: f64 = 1e-3;
/// Relative tolerance `model pack` records.
pub const DEFAULT_RTOL: f64 = 1e-2;

/// The golden vectors of a bundle and how closely numbers must match them: `|actual - expected| <= atol +
/// rtol * |expected|`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTest {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance, a share of the expected value.
    pub rtol: f64,
    /// The vectors, run in order.
    pub cases: Vec<SelfTestCase>,
}

/// One input and the output expected for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTestCase {
    /// What goes into the pipeline.
    pub input: SelfTestInput,
    /// The [`runtime::Output`] as JSON, compared structurally with the actual one.
    pub expected: Value,
}

/// The input of a golden vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SelfTestInput {
    /// An encoded image, by its path in the bundle (conventionally `selftest/<file name>`).
    Image(String),
    /// A sensor window, inline: `channels` values per sample, time-major.
    Sensor {
        /// Values per sample.
        channels: usize,
        /// The samples, time-major.
        values: Vec<f32>,
    },
}

impl SelfTestInput {
    /// The pipeline input, reading an image from `bundle_dir`.
    fn load(&self, bundle_dir: &Path) -> std::result::Result<Input, String> {
        match self {
            SelfTestInput::Image(path) => {
                let path = bundle_dir.join(path);
                std::fs::read(&path).map(Input::Image).map_err(|e| format!("cannot read {}: {e}", path.display()))
            }
            SelfTestInput::Sensor { channels, values } => {
                Ok(Input::Sensor(SensorWindow { channels: *channels, values: values.clone() }))
            }
        }
    }

    /// Names the input in messages.
    fn describe(&self) -> String {
        match self {
            SelfTestInput::Image(path) => format!("image {path}"),
            SelfTestInput::Sensor { channels, values } => {
                format!("sensor window of {} x {channels}", values.len().checked_div(*channels).unwrap_or(0))
            }
        }
    }
}

impl SelfTest {
    /// Parses `selftest.json` text and checks its rules: finite, non-negative tolerances, and image paths that
    /// stay inside the bundle.
    pub fn parse(text: &str) -> std::result::Result<SelfTest, String> {
        let self_test: SelfTest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (name, value) in [("atol", self_test.atol), ("rtol", self_test.rtol)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("`{name}` must be finite and not negative, got {value}"));
            }
        }
        for (index, case) in self_test.cases.iter().enumerate() {
            if let SelfTestInput::Image(path) = &case.input
                && !is_package_path(path)
            {
                return Err(format!(
                    "cases[{index}].input.image {path:?} is not a plain relative path within the bundle"
                ));
            }
        }
        Ok(self_test)
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<SelfTest> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        SelfTest::parse(&text).map_err(|message| Error::SelfTestFile { path: path.to_owned(), message })
    }

    /// The golden vectors of `bundle`, when its manifest names a `self_test` file.
    pub fn of_bundle(bundle: &Bundle) -> Result<Option<SelfTest>> {
        bundle.manifest().self_test.as_ref().map(|file| SelfTest::read(&bundle.dir().join(file))).transpose()
    }

    /// The `selftest.json` text.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string(self).expect("a self-test serialises to JSON");
        text.push('\n');
        text
    }

    /// Runs every input through `pipeline` and records its output as the expected one, with the default
    /// tolerances. Image inputs are read from `bundle`'s directory.
    pub fn record(bundle: &Bundle, inputs: Vec<SelfTestInput>, pipeline: &mut Pipeline) -> Result<SelfTest> {
        let mut cases = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.into_iter().enumerate() {
            let output = infer(bundle, &input, index, pipeline)?;
            // Through text, so that numbers are the shortest decimals of the f32s and read back exactly as
            // they are held here (a direct `to_value` holds 17-digit f64s that do not).
            let text = serde_json::to_string(&output).expect("an output serialises to JSON");
            let expected = serde_json::from_str(&text).expect("JSON reads back");
            cases.push(SelfTestCase { input, expected });
        }
        Ok(SelfTest { atol: DEFAULT_ATOL, rtol: DEFAULT_RTOL, cases })
    }

    /// Runs every case through `pipeline` (built from `bundle`) and fails on the first input the pipeline
    /// refuses or the first output that differs from the expected one beyond the tolerances. The bundle's
    /// checksums are assumed to have been verified (by [`Bundle::load`]).
    pub fn run(&self, bundle: &Bundle, pipeline: &mut Pipeline) -> Result<()> {
        if self.cases.is_empty() {
            return Err(Error::SelfTest { case: 0, message: "no golden vectors".to_owned() });
        }
        if *pipeline.identity() != bundle.identity() {
            return Err(Error::SelfTest {
                case: 0,
                message: format!(
                    "the pipeline runs {:?}, not the bundle's {:?}",
                    pipeline.identity(),
                    bundle.identity()
                ),
            });
        }
        for (index, case) in self.cases.iter().enumerate() {
            let output = infer(bundle, &case.input, index, pipeline)?;
            let actual = serde_json::to_value(&output).expect("an output serialises to JSON");
            let mut path = format!("cases[{index}]");
            compare(&actual, &case.expected, &mut path, self.atol, self.rtol)
                .map_err(|message| Error::SelfTest { case: index, message })?;
        }
        Ok(())
    }
}

fn infer(bundle: &Bundle, input: &SelfTestInput, index: usize, pipeline: &mut Pipeline) -> Result<Output> {
    let fail = |message: String| Error::SelfTest {
        case: index,
        message: format!("cases[{index}] ({}): {message}", input.describe()),
    };
    let input = input.load(bundle.dir()).map_err(fail)?;
    pipeline.infer(&input).map(|(output, _timings)| output).map_err(|e| fail(e.to_string()))
}

/// Compares `actual` with `expected` structurally; the error names the JSON path (`path` on entry) of the first
/// difference as `<path>: <actual> vs <expected>`.
fn compare(
    actual: &Value,
    expected: &Value,
    path: &mut String,
    atol: f64,
    rtol: f64,
) -> std::result::Result<(), String> {
    let differs = |path: &str| format!("{path}: {} vs {} (actual vs expected)", brief(actual), brief(expected));
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap_or(f64::NAN), e.as_f64().unwrap_or(f64::NAN));
            let allowed = atol + rtol * e.abs();
            // Written so that NaN on either side is a difference.
            if (a - e).abs() <= allowed {
                Ok(())
            } else {
                Err(format!("{path}: {a} vs {e} (actual vs expected; allowed difference {allowed:.2e})"))
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!("{path}: {} items vs {} (actual vs expected)", a.len(), e.len()));
            }
            for (index, (a, e)) in a.iter().zip(e).enumerate() {
                let length = path.len();
                path.push_str(&format!("[{index}]"));
                compare(a, e, path, atol, rtol)?;
                path.truncate(length);
            }
            Ok(())
        }
        (Value::Object(a), Value::Object(e)) => {
            if a.keys().ne(e.keys()) {
                let (a, e): (Vec<&String>, Vec<&String>) = (a.keys().collect(), e.keys().collect());
                return Err(format!("{path}: keys {a:?} vs {e:?} (actual vs expected)"));
            }
            for (key, e) in e {
                let length = path.len();
                path.push('.');
                path.push_str(key);
                compare(&a[key], e, path, atol, rtol)?;
                path.truncate(length);
            }
            Ok(())
        }
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) | (Value::Null, Value::Null) => {
            if actual == expected {
                Ok(())
            } else {
                Err(differs(path))
            }
        }
        _ => Err(differs(path)),
    }
}

/// A JSON value for a message, cut short.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use runtime::{EngineOptions, OnnxRuntime};
    use serde_json::json;

    /// The ONNX Runtime of the tests: `ORT_DYLIB_PATH`, else the one `scripts/fetch-onnxruntime.sh` fetches.
    pub(crate) fn onnx_runtime() -> OnnxRuntime {
        let library = std::env::var_os("ORT_DYLIB_PATH").map(std::path::PathBuf::from).unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1")
        });
        OnnxRuntime::load(library).expect("ONNX Runtime loads; run scripts/fetch-onnxruntime.sh x86_64")
    }

    /// The first `window` rows of the activity recording, time-major.
    fn activity_window(start: usize) -> SelfTestInput {
        let csv =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/recordings/activity.csv"))
                .unwrap();
        let values = csv
            .lines()
            .skip(1 + start)
            .take(100)
            .flat_map(|line| line.split(',').map(|v| v.parse::<f32>().unwrap()).collect::<Vec<_>>())
            .collect();
        SelfTestInput::Sensor { channels: 6, values }
    }

    #[test]
    fn recorded_vectors_pass_and_a_changed_expectation_fails_with_its_path() {
        let bundle = Bundle::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/activity-classifier")).unwrap();
        let mut pipeline = Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default()).unwrap();
        let self_test =
            SelfTest::record(&bundle, vec![activity_window(0), activity_window(300)], &mut pipeline).unwrap();
        assert_eq!(self_test.cases.len(), 2);
        assert!(self_test.cases[0].expected["classification"]["classes"].as_array().is_some_and(|c| c.len() == 4));
        let reread = SelfTest::parse(&self_test.to_json()).unwrap();
        reread.run(&bundle, &mut pipeline).unwrap();

        let mut changed = reread.clone();
        let score = &mut changed.cases[1].expected["classification"]["classes"][1]["score"];
        *score = json!(score.as_f64().unwrap() + 0.2);
        let error = changed.run(&bundle, &mut pipeline).unwrap_err();
        assert_eq!(error.kind().as_str(), "self_test");
        assert!(matches!(error, Error::SelfTest { case: 1, .. }), "{error}");
        assert!(error.to_string().contains("cases[1].classification.classes[1].score: "), "{error}");

        let mut wrong_shape = reread.clone();
        wrong_shape.cases[0].input = SelfTestInput::Sensor { channels: 6, values: vec![0.0; 60] };
        let error = wrong_shape.run(&bundle, &mut pipeline).unwrap_err();
        assert!(
            error.to_string().contains("cases[0] (sensor window of 10 x 6): sensor window is 10 samples"),
            "{error}"
        );

        let empty = SelfTest { cases: Vec::new(), ..reread };
        assert!(empty.run(&bundle, &mut pipeline).unwrap_err().to_string().contains("no golden vectors"));
    }

    fn check(actual: Value, expected: Value) -> std::result::Result<(), String> {
        compare(&actual, &expected, &mut "cases[0]".to_owned(), DEFAULT_ATOL, DEFAULT_RTOL)
    }

    #[test]
    fn numbers_match_within_the_tolerances() {
        let expected = json!({"classification": {"classes": [{"index": 2, "label": "walking", "score": 0.64}]}});
        check(
            json!({"classification": {"classes": [{"index": 2, "label": "walking", "score": 0.647}]}}),
            expected.clone(),
        )
        .unwrap();
        let err =
            check(json!({"classification": {"classes": [{"index": 2, "label": "walking", "score": 0.51}]}}), expected)
                .unwrap_err();
        assert!(err.starts_with("cases[0].classification.classes[0].score: 0.51 vs 0.64"), "{err}");
    }

    #[test]
    fn structure_must_be_the_same() {
        let classes = |labels: &[&str]| {
            let classes: Vec<Value> = labels.iter().map(|l| json!({"label": l, "score": 0.5})).collect();
            json!({"classification": {"classes": classes}})
        };
        let err = check(classes(&["a"]), classes(&["a", "b"])).unwrap_err();
        assert!(err.starts_with("cases[0].classification.classes: 1 items vs 2"), "{err}");
        let err = check(classes(&["a", "c"]), classes(&["a", "b"])).unwrap_err();
        assert!(err.starts_with("cases[0].classification.classes[1].label: \"c\" vs \"b\""), "{err}");
        let err = check(json!({"anomaly": {"score": 1.0}}), classes(&["a"])).unwrap_err();
        assert!(err.starts_with("cases[0]: keys [\"anomaly\"] vs [\"classification\"]"), "{err}");
        let err = check(json!({"anomalous": true}), json!({"anomalous": false})).unwrap_err();
        assert!(err.starts_with("cases[0].anomalous: true vs false"), "{err}");
        assert!(check(json!({"score": null}), json!({"score": 0.5})).is_err(), "NaN (null) is not a number");
    }

    #[test]
    fn the_file_format_round_trips_and_is_checked() {
        let self_test = SelfTest {
            atol: DEFAULT_ATOL,
            rtol: DEFAULT_RTOL,
            cases: vec![
                SelfTestCase {
                    input: SelfTestInput::Image("selftest/cat.jpg".into()),
                    expected: json!({"raw": {"tensors": []}}),
                },
                SelfTestCase {
                    input: SelfTestInput::Sensor { channels: 2, values: vec![0.1, -2.5, 3.0, 1e-7] },
                    expected: json!({"anomaly": {"score": 0.25, "threshold": 1.0, "anomalous": false}}),
                },
            ],
        };
        let text = self_test.to_json();
        assert!(text.contains(r#"{"image":"selftest/cat.jpg"}"#), "{text}");
        assert!(text.contains(r#"{"sensor":{"channels":2,"values":[0.1,-2.5,3.0,1e-7]}}"#), "{text}");
        assert_eq!(SelfTest::parse(&text).unwrap(), self_test);
        let escaping = text.replace("selftest/cat.jpg", "../cat.jpg");
        assert!(SelfTest::parse(&escaping).unwrap_err().contains("cases[0].input.image"));
        assert!(SelfTest::parse(&text.replace("\"atol\"", "\"tol\"")).is_err());
        assert!(SelfTest::parse(&text.replace("0.001", "-0.001")).unwrap_err().contains("atol"));
    }
}
