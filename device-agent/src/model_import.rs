//! `device-agent model import`: turns an MLflow model saved with the `onnx` flavour into a bundle skeleton. The
//! `MLmodel` file names the ONNX file (`flavors.onnx.data`) and may carry a signature (`signature.inputs` and
//! `signature.outputs`, JSON lists in YAML strings); the graph gives the element types and shapes. The skeleton's
//! input and output sections come from both, with TODO comments where only the user can choose (decoder,
//! thresholds, normalisation, licence); once completed, `run --check`, `infer` or `edgectl model pack` validate it.

use anyhow::{Context, bail};
use ort::session::Session;
use ort::value::ValueType;
use runtime::{MANIFEST_FILE, Manifest, OnnxRuntime};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use yaml_rust2::{Yaml, YamlLoader};

/// The file MLflow describes a saved model in.
const MLMODEL_FILE: &str = "MLmodel";
/// The model's file name in the bundle.
const MODEL_FILE: &str = "model.onnx";

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The MLflow model directory (holding `MLmodel`), saved with the `onnx` flavour.
    model: PathBuf,
    /// The bundle directory to write (default: the model directory's name with `-bundle`, beside it); must not
    /// exist or be empty.
    #[arg(long)]
    out: Option<PathBuf>,
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH, else libonnxruntime.so.1 beside the executable or on
    /// the loader's path).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
}

pub fn main(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let ort = OnnxRuntime::load(crate::ort_library(args.onnxruntime.as_deref()))?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => default_out(&args.model)?,
    };
    let manifest = import(&ort, &args.model, &out)?;
    let written = out.join(MANIFEST_FILE);
    match Manifest::parse(&manifest) {
        Ok(_) => {
            eprintln!("wrote {}; complete its TODOs, then check it with `infer` or `run --check`", written.display())
        }
        Err(problems) => eprintln!("wrote {}; complete its TODOs ({problems})", written.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `<model dir>-bundle` beside the model directory.
fn default_out(model: &Path) -> anyhow::Result<PathBuf> {
    let name = model.file_name().with_context(|| format!("{}: name the MLflow model directory", model.display()))?;
    Ok(model.with_file_name(format!("{}-bundle", name.to_string_lossy())))
}

/// Writes the skeleton of the MLflow model in `dir` into `out` (the model copied, `manifest.toml`); returns the
/// manifest text.
pub fn import(ort: &OnnxRuntime, dir: &Path, out: &Path) -> anyhow::Result<String> {
    let mlmodel = MlModel::read(dir)?;
    let graph = Graph::read(ort, &mlmodel.model_path)?;
    mlmodel.check_signature(&graph)?;
    if out.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{}: the bundle directory exists and is not empty", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let model = out.join(MODEL_FILE);
    std::fs::copy(&mlmodel.model_path, &model)
        .with_context(|| format!("copying {} to {}", mlmodel.model_path.display(), model.display()))?;
    let bytes = std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
    let name = bundle_name(dir);
    let manifest = skeleton(&name, &mlmodel, &graph, &packaging::hex_sha256(&bytes));
    std::fs::write(out.join(MANIFEST_FILE), &manifest).with_context(|| format!("writing {}", out.display()))?;
    Ok(manifest)
}

/// What the skeleton takes from `MLmodel`.
struct MlModel {
    /// `MLmodel`, for messages.
    file: PathBuf,
    /// `flavors.onnx.data`, resolved inside the model directory.
    model_path: PathBuf,
    /// `flavors.onnx.data` as written.
    data: String,
    inputs: Vec<SignatureTensor>,
    outputs: Vec<SignatureTensor>,
    mlflow_version: Option<String>,
    model_uuid: Option<String>,
}

/// One tensor of an MLflow signature; column signatures have no element type or shape.
#[derive(Debug, PartialEq)]
struct SignatureTensor {
    name: Option<String>,
    /// `float32`, `int64`... (`type` for a column).
    dtype: String,
    shape: Option<Vec<i64>>,
}

impl MlModel {
    fn read(dir: &Path) -> anyhow::Result<MlModel> {
        let file = dir.join(MLMODEL_FILE);
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        MlModel::parse(&file, &text, dir)
    }

    fn parse(file: &Path, text: &str, dir: &Path) -> anyhow::Result<MlModel> {
        let shown = file.display();
        let docs = YamlLoader::load_from_str(text).with_context(|| format!("{shown}: not YAML"))?;
        let Some(doc) = docs.first().filter(|doc| doc.as_hash().is_some()) else {
            bail!("{shown}: not a YAML mapping");
        };
        let flavors = &doc["flavors"];
        let onnx = &flavors["onnx"];
        if onnx.is_badvalue() {
            let names: Vec<&str> = flavors.as_hash().into_iter().flatten().filter_map(|(k, _)| k.as_str()).collect();
            bail!(
                "{shown}: `flavors.onnx` is missing: the model was not saved with the onnx flavour \
                 (flavours: {names:?})"
            );
        }
        let data =
            onnx["data"].as_str().with_context(|| format!("{shown}: `flavors.onnx.data` must name the ONNX file"))?;
        let model_path = inside(dir, data).with_context(|| format!("{shown}: `flavors.onnx.data` {data:?}"))?;
        let signature = &doc["signature"];
        Ok(MlModel {
            file: file.to_owned(),
            model_path,
            data: data.to_owned(),
            inputs: signature_tensors(file, "signature.inputs", &signature["inputs"])?,
            outputs: signature_tensors(file, "signature.outputs", &signature["outputs"])?,
            mlflow_version: doc["mlflow_version"].as_str().map(str::to_owned),
            model_uuid: doc["model_uuid"].as_str().map(str::to_owned),
        })
    }

    /// Every named tensor of the signature is one of the graph's.
    fn check_signature(&self, graph: &Graph) -> anyhow::Result<()> {
        for (key, signature, tensors) in
            [("signature.inputs", &self.inputs, &graph.inputs), ("signature.outputs", &self.outputs, &graph.outputs)]
        {
            for name in signature.iter().filter_map(|tensor| tensor.name.as_deref()) {
                if !tensors.iter().any(|tensor| tensor.name == name) {
                    let names: Vec<&str> = tensors.iter().map(|tensor| tensor.name.as_str()).collect();
                    bail!("{}: `{key}` names {name:?}, the graph has {names:?}", self.file.display());
                }
            }
        }
        Ok(())
    }
}

/// `relative` joined to `dir`, refused unless it is a relative path that stays inside `dir`, symbolic links
/// resolved, and names an existing file.
fn inside(dir: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(relative);
    if !path.components().all(|component| matches!(component, Component::Normal(_))) {
        bail!("is not a plain relative path inside the model directory");
    }
    let resolved = dir.join(path).canonicalize().context("cannot be resolved")?;
    let dir = dir.canonicalize().with_context(|| format!("{} cannot be resolved", dir.display()))?;
    if !resolved.starts_with(&dir) {
        bail!("leads outside the model directory (to {})", resolved.display());
    }
    if !resolved.is_file() {
        bail!("is not a file");
    }
    Ok(resolved)
}

/// A signature list: a JSON list in a YAML string, or absent (`null`, no key).
fn signature_tensors(file: &Path, key: &str, value: &Yaml) -> anyhow::Result<Vec<SignatureTensor>> {
    let shown = file.display();
    let json = match value {
        Yaml::BadValue | Yaml::Null => return Ok(Vec::new()),
        Yaml::String(json) => json,
        _ => bail!("{shown}: `{key}` must be a JSON list in a string"),
    };
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(json).with_context(|| format!("{shown}: `{key}` is not a JSON list"))?;
    entries
        .iter()
        .map(|entry| {
            let spec = &entry["tensor-spec"];
            let dtype = spec["dtype"].as_str().or_else(|| entry["type"].as_str());
            let dtype = dtype.with_context(|| format!("{shown}: `{key}`: {entry} has no type"))?;
            let shape =
                spec["shape"].as_array().map(|dims| dims.iter().filter_map(serde_json::Value::as_i64).collect());
            Ok(SignatureTensor { name: entry["name"].as_str().map(str::to_owned), dtype: dtype.to_owned(), shape })
        })
        .collect()
}

/// The graph's inputs and outputs and its metadata keys.
struct Graph {
    inputs: Vec<GraphTensor>,
    outputs: Vec<GraphTensor>,
    metadata_keys: Vec<String>,
}

struct GraphTensor {
    name: String,
    /// ONNX Runtime's name of the element type (`f32`, `i64`...), or the value's kind when it is not a tensor.
    dtype: String,
    /// -1 for a dynamic dimension.
    shape: Vec<i64>,
}

impl Graph {
    fn read(ort: &OnnxRuntime, model: &Path) -> anyhow::Result<Graph> {
        let session = Session::builder(ort.environment())
            .and_then(|mut builder| builder.commit_from_file(model))
            .with_context(|| format!("{}: ONNX Runtime cannot load it", model.display()))?;
        let tensor = |name: &str, value: &ValueType| match value {
            ValueType::Tensor { ty, shape, .. } => {
                GraphTensor { name: name.to_owned(), dtype: ty.to_string(), shape: shape.to_vec() }
            }
            other => GraphTensor { name: name.to_owned(), dtype: other.to_string(), shape: Vec::new() },
        };
        let metadata_keys = session.metadata().and_then(|metadata| metadata.custom_keys()).unwrap_or_default();
        Ok(Graph {
            inputs: session.inputs().iter().map(|input| tensor(input.name(), input.dtype())).collect(),
            outputs: session.outputs().iter().map(|output| tensor(output.name(), output.dtype())).collect(),
            metadata_keys,
        })
    }
}

/// A bundle name from the model directory's name: lower case, runs of other characters as `-`.
fn bundle_name(dir: &Path) -> String {
    let name = dir.canonicalize().ok().and_then(|dir| dir.file_name().map(|name| name.to_string_lossy().into_owned()));
    let name = name.unwrap_or_default().to_lowercase();
    let name: Vec<&str> = name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|part| !part.is_empty()).collect();
    if name.is_empty() { "imported-model".to_owned() } else { name.join("-") }
}

/// `name: dtype shape` of each tensor, for comments.
fn describe(tensors: &[GraphTensor]) -> String {
    let each: Vec<String> = tensors.iter().map(|t| format!("{} {} {:?}", t.name, t.dtype, t.shape)).collect();
    each.join(", ")
}

/// A fixed dimension as a manifest value, or 0 with a TODO to replace it.
fn dim(shape: &[i64], index: usize) -> (i64, &'static str) {
    match shape.get(index) {
        Some(d) if *d > 0 => (*d, ""),
        _ => (0, "  # TODO: dynamic in the graph; give the size to feed"),
    }
}

/// The manifest text: input and output sections from the graph and the signature, TODOs for the rest.
fn skeleton(name: &str, mlmodel: &MlModel, graph: &Graph, sha256: &str) -> String {
    let mut text = String::new();
    let origin = format!(
        "Imported by device-agent model import from the MLflow model {} (MLflow {}, onnx flavour, {})",
        mlmodel.model_uuid.as_deref().unwrap_or("without uuid"),
        mlmodel.mlflow_version.as_deref().unwrap_or("of unknown version"),
        mlmodel.data,
    );
    // `writeln!` into a String cannot fail.
    let _ = writeln!(text, "name = {name:?}\nversion = \"0.1.0\"");
    let _ = writeln!(text, "# TODO: the task of the decoder chosen below (classification, detection, anomaly or raw).");
    let _ = writeln!(text, "task = \"raw\"\nmodel = \"{MODEL_FILE}\"\nsha256 = \"{sha256}\"");
    let _ = writeln!(text, "# TODO: the weights' SPDX licence, such as: license = \"Apache-2.0\"");
    let _ = writeln!(text, "provenance = {origin:?}");
    if !graph.metadata_keys.is_empty() {
        let _ = writeln!(
            text,
            "# The model's metadata has the keys {:?}; if one holds the class labels: labels_metadata = \"<key>\"",
            graph.metadata_keys
        );
    }
    text.push('\n');
    write_input(&mut text, mlmodel, graph);
    text.push('\n');
    write_output(&mut text, mlmodel, graph);
    text.push_str("\n[execution]\nproviders = [\"cpu\"]\n");
    text
}

fn write_input(text: &mut String, mlmodel: &MlModel, graph: &Graph) {
    let _ = writeln!(text, "[input]\n# The graph's inputs: {}", describe(&graph.inputs));
    write_signature(text, &mlmodel.inputs);
    let Some(input) = graph.inputs.first() else {
        let _ = writeln!(text, "# TODO: the graph has no input");
        return;
    };
    if graph.inputs.len() > 1 {
        let _ = writeln!(text, "# TODO: the runtime feeds one input; this skeleton feeds the first");
    }
    let shape = &input.shape;
    if shape.len() == 4 {
        let channels_first = matches!(shape[1], 1 | 3);
        let (layout, channels, height, width) = if channels_first { ("nchw", 1, 2, 3) } else { ("nhwc", 3, 1, 2) };
        let ((width, width_todo), (height, height_todo)) = (dim(shape, width), dim(shape, height));
        let _ = writeln!(text, "kind = \"image\"\ntensor = {:?}\nlayout = \"{layout}\"", input.name);
        let _ = writeln!(text, "width = {width}{width_todo}\nheight = {height}{height_todo}");
        let color = if shape.get(channels) == Some(&1) { "gray" } else { "rgb" };
        let _ = writeln!(text, "# TODO: the channel order the model was trained with (rgb, bgr or gray).");
        let _ = writeln!(text, "color = \"{color}\"");
        if input.dtype == "u8" {
            let _ = writeln!(text, "dtype = \"u8\"");
        } else {
            let _ = writeln!(text, "# TODO: the normalisation the model was trained with: pixel * scale, minus mean,");
            let _ = writeln!(
                text,
                "# divided by std (per channel).\nscale = 0.00392156862745098\nmean = [0.0]\nstd = [1.0]"
            );
        }
        let _ = writeln!(text, "# TODO: how frames of other sizes are fitted (stretch, letterbox, center_crop).");
        let _ = writeln!(text, "resize = \"stretch\"");
    } else {
        let ((channels, channels_todo), (window, window_todo)) = (dim(shape, 1), dim(shape, 2));
        let _ = writeln!(text, "kind = \"sensor\"\ntensor = {:?}", input.name);
        if shape.len() != 3 {
            let _ =
                writeln!(text, "# TODO: the runtime feeds windows [1, channels, window]; this input has another rank");
        }
        let _ = writeln!(text, "# TODO: channels_first reads the graph's shape as [N, channels, window];");
        let _ = writeln!(text, "# channels_last as [N, window, channels] (then swap the two below).");
        let _ = writeln!(text, "layout = \"channels_first\"");
        let _ = writeln!(text, "channels = {channels}{channels_todo}\nwindow = {window}{window_todo}");
        let _ = writeln!(
            text,
            "# TODO: the per-channel standardisation, if the graph does not do it: mean = [...], std = [...]"
        );
    }
}

fn write_output(text: &mut String, mlmodel: &MlModel, graph: &Graph) {
    let _ = writeln!(text, "[output]\n# The graph's outputs: {}", describe(&graph.outputs));
    write_signature(text, &mlmodel.outputs);
    let _ = writeln!(text, "# TODO: choose the decoder (and `task` above); `raw` publishes every output as it is.");
    let _ = writeln!(text, "# classification: tensor = \"<scores>\", softmax = \"auto\", top_k = 5");
    let _ =
        writeln!(text, "# anomaly: tensor = \"<score>\", threshold = <value>, direction = \"higher\" or \"lower\",");
    let _ = writeln!(text, "#   label_tensor = \"<integer label output>\", anomalous_label = -1");
    let _ = writeln!(text, "# yolov8, centerface: see docs/bundle-format.md");
    let _ = writeln!(text, "decoder = \"raw\"");
}

fn write_signature(text: &mut String, tensors: &[SignatureTensor]) {
    if tensors.is_empty() {
        return;
    }
    let each: Vec<String> = tensors
        .iter()
        .map(|t| {
            let shape = t.shape.as_ref().map(|shape| format!(" {shape:?}")).unwrap_or_default();
            format!("{} {}{shape}", t.name.as_deref().unwrap_or("(unnamed)"), t.dtype)
        })
        .collect();
    let _ = writeln!(text, "# The MLflow signature's: {}", each.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testing/mlflow-isolation-forest")
    }

    fn ort() -> OnnxRuntime {
        OnnxRuntime::load(crate::ort_library(None)).expect("ONNX Runtime loads ($ORT_DYLIB_PATH)")
    }

    /// The shipped MLflow model's directory with its `MLmodel` replaced by `mlmodel`.
    fn with_mlmodel(mlmodel: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(shipped().join("model.onnx"), dir.path().join("model.onnx")).expect("copied");
        std::fs::write(dir.path().join(MLMODEL_FILE), mlmodel).expect("written");
        dir
    }

    fn import_error(dir: &Path) -> String {
        let out = tempfile::tempdir().expect("temp dir");
        format!("{:#}", import(&ort(), dir, out.path()).expect_err("refused"))
    }

    #[test]
    fn imports_a_model_saved_by_mlflow_into_a_skeleton_that_loads_and_runs_once_completed() {
        let out = tempfile::tempdir().expect("temp dir");
        let bundle = out.path().join("bundle");
        let manifest = import(&ort(), &shipped(), &bundle).expect("imports");
        let model = std::fs::read(bundle.join(MODEL_FILE)).expect("model copied");
        assert_eq!(model, std::fs::read(shipped().join("model.onnx")).expect("original"));
        assert!(manifest.contains(&format!("sha256 = \"{}\"", packaging::hex_sha256(&model))), "{manifest}");
        assert!(manifest.contains("name = \"mlflow-isolation-forest\""), "{manifest}");
        assert!(manifest.contains("MLflow 3.18.0, onnx flavour, model.onnx"), "{manifest}");
        assert!(manifest.contains("# The MLflow signature's: window float32 [-1, 3, 50]"), "{manifest}");
        assert!(manifest.contains("# The graph's outputs: label i64 [-1, 1], scores f32 [-1, 1]"), "{manifest}");
        assert!(manifest.contains("# TODO: choose the decoder"), "{manifest}");
        // As written, the skeleton is a valid raw bundle: a sensor window [1, 3, 50].
        let parsed = Manifest::parse(&manifest).expect("the skeleton parses");
        let runtime::manifest::InputSpec::Sensor(input) = &parsed.input else { panic!("sensor input expected") };
        assert_eq!((input.tensor.as_str(), input.channels, input.window), ("window", 3, 50));
        assert!(matches!(parsed.output, runtime::manifest::OutputSpec::Raw(_)));

        // Completed as the IsolationForest's bundle is, it flags the windows as scikit-learn does.
        let output = "decoder = \"anomaly\"\ntensor = \"scores\"\nthreshold = 0.0\ndirection = \"lower\"\n\
                      label_tensor = \"label\"\n";
        let completed = manifest.replace("task = \"raw\"", "task = \"anomaly\"").replace("decoder = \"raw\"\n", output);
        std::fs::write(bundle.join(MANIFEST_FILE), completed).expect("completed");
        let loaded = runtime::Bundle::load(&bundle).expect("loads");
        let mut pipeline = runtime::Pipeline::new(&ort(), &loaded, &runtime::EngineOptions::default()).expect("builds");
        let references: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(shipped().join("../../references/vibration-isolation-forest.json")).unwrap(),
        )
        .unwrap();
        let recording = std::fs::read_to_string(shipped().join("../../recordings/vibration.csv")).unwrap();
        let rows: Vec<Vec<f32>> = recording
            .lines()
            .skip(1)
            .map(|line| line.split(',').map(|v| v.trim().parse().unwrap()).collect())
            .collect();
        let cases = references["cases"].as_array().unwrap();
        for case in cases {
            let start = case["start_row"].as_u64().unwrap() as usize;
            let values = rows[start..start + 50].iter().flatten().copied().collect();
            let input = runtime::Input::Sensor(runtime::SensorWindow { channels: 3, values });
            let (output, _) = pipeline.infer(&input).expect("runs");
            let runtime::Output::Anomaly { anomalous, label, .. } = output else { panic!("anomaly expected") };
            let want = &case["output"]["anomaly"];
            assert_eq!((anomalous, label), (want["anomalous"].as_bool().unwrap(), want["label"].as_i64()));
        }
    }

    #[test]
    fn refuses_a_bundle_directory_that_is_not_empty() {
        let out = tempfile::tempdir().expect("temp dir");
        std::fs::write(out.path().join("x"), "").unwrap();
        let err = import(&ort(), &shipped(), out.path()).expect_err("refused");
        assert!(format!("{err:#}").contains("exists and is not empty"), "{err:#}");
    }

    #[test]
    fn hostile_mlmodel_files_are_refused_naming_the_file_and_the_key() {
        let missing = tempfile::tempdir().expect("temp dir");
        let err = import_error(missing.path());
        assert!(err.contains(&format!("reading {}", missing.path().join("MLmodel").display())), "{err}");

        let cases = [
            ("flavors: [unclosed", "MLmodel: not YAML"),
            ("- a list", "MLmodel: not a YAML mapping"),
            ("flavors:\n  python_function:\n    data: model.onnx\n", "`flavors.onnx` is missing"),
            ("flavors:\n  onnx:\n    code: null\n", "`flavors.onnx.data` must name the ONNX file"),
            ("flavors:\n  onnx:\n    data: ../model.onnx\n", "`flavors.onnx.data` \"../model.onnx\": is not a plain"),
            ("flavors:\n  onnx:\n    data: /etc/passwd\n", "`flavors.onnx.data` \"/etc/passwd\": is not a plain"),
            ("flavors:\n  onnx:\n    data: absent.onnx\n", "`flavors.onnx.data` \"absent.onnx\": cannot be resolved"),
            (
                "flavors:\n  onnx:\n    data: model.onnx\nsignature:\n  inputs: '[{\"name\": \"x\"'\n",
                "`signature.inputs` is not a JSON list",
            ),
            (
                "flavors:\n  onnx:\n    data: model.onnx\nsignature:\n  \
                 inputs: '[{\"name\": \"x\", \"type\": \"double\"}]'\n",
                "`signature.inputs` names \"x\", the graph has [\"window\"]",
            ),
        ];
        for (mlmodel, want) in cases {
            let dir = with_mlmodel(mlmodel);
            let err = import_error(dir.path());
            assert!(err.contains(want), "{mlmodel}: {err}");
            if want.starts_with('`') {
                assert!(err.contains(&dir.path().join("MLmodel").display().to_string()), "{err}");
            }
        }
    }

    #[test]
    fn a_symbolic_link_out_of_the_model_directory_is_refused() {
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::copy(shipped().join("model.onnx"), outside.path().join("model.onnx")).expect("copied");
        let dir = with_mlmodel("flavors:\n  onnx:\n    data: link.onnx\n");
        std::os::unix::fs::symlink(outside.path().join("model.onnx"), dir.path().join("link.onnx")).expect("link");
        let err = import_error(dir.path());
        assert!(err.contains("`flavors.onnx.data` \"link.onnx\": leads outside the model directory"), "{err}");
    }
}
