//! The engine: one ONNX Runtime session for one bundle, checked against its manifest when it is built.
//! `Session::run` takes `&mut self`, so each worker thread owns its own engine.
//!
//! Outputs are not copied where their shapes stay put: after the first run, the engine allocates one tensor
//! per output the decoder reads, at the shape that run gave, and has every later run write into them
//! (ONNX Runtime's pre-allocated outputs); the decoder reads them in place. A run that refuses them (an
//! output whose shape varies with the input, as a `raw` model's may) is retried copying, and the engine
//! copies from then on. With a prepared input ([`Engine::run_prepared`]) a run makes no Rust allocation;
//! ONNX Runtime's own (C++) allocations are its business.

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::manifest::{InputDtype, InputSpec, OutputSpec};
use crate::onnx_runtime::OnnxRuntime;
use crate::provider::{ActiveProvider, ProviderKind};
use crate::session_build::{self, ModelOrigin};
use crate::session_settings::{ModelFamily, SessionOverrides, SessionSettings};
use crate::tensor::{InputBuffer, InputTensor, OutputTensor, Outputs, output_dtype};
use ort::memory::Allocator;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session, SessionOutputs};
use ort::value::{
    DynValueRef, PrimitiveTensorElementType, Shape, Tensor, TensorElementType, TensorRef, Value, ValueType,
    ValueTypeMarker,
};
use protocol::TensorDtype;
use std::path::{Path, PathBuf};

/// How a session is built; the agent's config fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Overrides the bundle's provider preferences when set.
    pub providers: Option<Vec<ProviderKind>>,
    /// Refuse to run on CPU when the preferred accelerators are all unavailable.
    pub require: bool,
    /// Threads ONNX Runtime may use inside one operator.
    pub intra_threads: usize,
    /// ONNX Runtime's session settings; unset ones take the model family's measured default.
    pub session: SessionOverrides,
    /// The optimised-model cache's directory; `None`: every session is built from the bundle's ONNX file.
    pub optimized_model_cache: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            providers: None,
            require: false,
            intra_threads: 1,
            session: SessionOverrides::default(),
            optimized_model_cache: None,
        }
    }
}

/// A session ready to run, with reusable output buffers.
pub struct Engine {
    session: Session,
    input_name: String,
    /// The input's shape in a run: the manifest's, less the batch axis where the graph has none.
    input_shape: Vec<i64>,
    outputs: Outputs,
    provider: ActiveProvider,
    settings: SessionSettings,
    origin: ModelOrigin,
    /// Runs that compute the outputs the decoder reads, to be copied out.
    copying: RunOptions<HasSelectedOutputs>,
    binding: OutputBinding,
    /// The class labels: the bundle's, or those of the model's metadata.
    labels: Vec<String>,
    /// The cached model the session reads in place; declared after `session` so that it is dropped after it.
    _model_bytes: Option<Box<[u8]>>,
}

/// Whether runs write the outputs into tensors allocated once.
enum OutputBinding {
    /// Not yet: the first run gives the shapes.
    Untried,
    Bound(RunOptions<HasSelectedOutputs>),
    /// A run refused them (or they could not be made), or the graph takes batches: copy.
    Refused,
}

impl Engine {
    /// Builds the session for `bundle` and checks the manifest against the graph.
    pub fn new(ort: &OnnxRuntime, bundle: &Bundle, options: &EngineOptions) -> Result<Engine> {
        let model_path = bundle.model_path();
        let manifest = bundle.manifest();
        let settings = options.session.resolve(ModelFamily::of(manifest));
        let requested = options.providers.as_deref().unwrap_or(&manifest.execution.providers);
        let built = session_build::build(
            ort,
            bundle,
            options.intra_threads,
            &settings,
            (requested, options.require),
            options.optimized_model_cache.as_deref(),
        )?;
        let session = built.session;
        let input_shape = check_input(&model_path, &session, &manifest.input)?;
        let labels = match &manifest.labels_metadata {
            Some(key) => metadata_labels(&model_path, &session, key, manifest.labels_verbatim)?,
            None => bundle.labels().to_vec(),
        };
        let output_names = check_outputs(&model_path, &session, &manifest.output, labels.len())?;
        let copying = select_outputs(&output_names, |selector, _| Ok(selector))
            .map_err(|e| Error::ModelLoad { path: model_path.clone(), reason: e.to_string() })?;
        let outputs = Outputs {
            tensors: output_names.into_iter().map(|name| OutputTensor::new(name, Vec::new(), Vec::new())).collect(),
        };
        let mut engine = Engine {
            session,
            input_name: manifest.input.tensor().to_owned(),
            input_shape,
            outputs,
            provider: built.provider,
            settings,
            origin: built.origin,
            copying,
            binding: OutputBinding::Untried,
            labels,
            _model_bytes: built.model_bytes,
        };
        // A batch changes the outputs' first dimension from run to run, and an input sized per frame their
        // height and width: tensors of one shape cannot take them. The pre-allocated tensors are f32: outputs of
        // other types are converted as they are copied.
        let sized_per_frame = matches!(&manifest.input, InputSpec::Image(image) if image.dynamic_size.is_some());
        if engine.takes_batches() || sized_per_frame || !engine.outputs_are_f32() {
            engine.binding = OutputBinding::Refused;
        }
        Ok(engine)
    }

    /// The class labels in output order (possibly empty): the bundle's `labels` or `labels_file`, or the value of its
    /// `labels_metadata` key in the model's metadata.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Whether every output the decoder reads is a tensor of f32.
    fn outputs_are_f32(&self) -> bool {
        self.outputs.tensors.iter().all(|tensor| {
            self.session.outputs().iter().any(|o| {
                o.name() == tensor.name()
                    && tensor_type(o.dtype()).is_some_and(|(ty, _)| ty == TensorElementType::Float32)
            })
        })
    }

    /// Runs the model on `input` (laid out as the manifest says) and returns its outputs. The input
    /// is passed as a view, not copied; [`Engine::run_prepared`] also saves making that view.
    pub fn run(&mut self, input: InputTensor<'_>) -> Result<&Outputs> {
        let shape = &self.input_shape;
        let value = match input {
            InputTensor::F32(data) => tensor_view(shape, data)?,
            InputTensor::U8(data) => tensor_view(shape, data)?,
            InputTensor::F16(data) => tensor_view(shape, data)?,
            InputTensor::I8(data) => tensor_view(shape, data)?,
            InputTensor::I32(data) => tensor_view(shape, data)?,
            InputTensor::I64(data) => tensor_view(shape, data)?,
        };
        self.run_value(&value)
    }

    /// Runs the model on a prepared input tensor, which ONNX Runtime reads in place. The buffer has a batch
    /// axis; for a graph without one, a view of it without is made for the run.
    pub(crate) fn run_prepared(&mut self, input: &InputBuffer) -> Result<&Outputs> {
        if input.shape().len() != self.input_shape.len() {
            return self.run(input.view());
        }
        self.run_value(&input.value())
    }

    /// Whether the graph takes any number of inputs stacked along the first dimension of its input and returns
    /// them along the first dimension of every output the decoder reads: both are dynamic.
    pub fn takes_batches(&self) -> bool {
        let dynamic_first =
            |value: &ValueType| tensor_type(value).is_some_and(|(_, shape)| shape.first().is_some_and(|d| *d < 0));
        let input = self.session.inputs().iter().any(|i| i.name() == self.input_name && dynamic_first(i.dtype()));
        let outputs =
            self.outputs.tensors.iter().all(|tensor| {
                self.session.outputs().iter().any(|o| o.name() == tensor.name() && dynamic_first(o.dtype()))
            });
        input && outputs && !self.outputs.tensors.is_empty()
    }

    /// Runs the model once on `batch` `f32` inputs stacked in `input`, for a graph that [takes
    /// batches](Engine::takes_batches); each output holds the batch's results along its first dimension.
    pub fn run_batch(&mut self, input: &[f32], batch: usize) -> Result<&Outputs> {
        let dims = std::iter::once(batch as i64).chain(self.input_shape.iter().skip(1).copied());
        let value = TensorRef::from_array_view((Shape::new(dims), input)).map_err(inference_error)?.into_dyn();
        let inputs = ort::inputs![self.input_name.as_str() => value];
        let results = self.session.run_with_options(inputs, &self.copying).map_err(inference_error)?;
        copy_outputs(&results, &mut self.outputs)?;
        drop(results);
        Ok(&self.outputs)
    }

    fn run_value<T: ValueTypeMarker + ?Sized>(&mut self, input: &Value<T>) -> Result<&Outputs> {
        if let OutputBinding::Bound(options) = &self.binding {
            let taken = self.session.run_with_options(ort::inputs![input], options).map(|mut results| {
                // The first bound run hands out the values it wrote into; later ones write into the same.
                self.outputs
                    .tensors
                    .iter_mut()
                    .filter(|tensor| !tensor.is_bound())
                    .all(|tensor| results.remove(tensor.name()).map(|value| tensor.bind(value)).is_some())
            });
            if let Ok(true) = taken {
                return Ok(&self.outputs);
            }
            // An output's shape changed, so the tensors no longer fit: copy from now on.
            self.binding = OutputBinding::Refused;
        }
        let results = self.session.run_with_options(ort::inputs![input], &self.copying).map_err(inference_error)?;
        copy_outputs(&results, &mut self.outputs)?;
        drop(results);
        if let OutputBinding::Untried = self.binding {
            self.binding = self.bind_outputs().map_or(OutputBinding::Refused, OutputBinding::Bound);
        }
        Ok(&self.outputs)
    }

    /// Run options that have each output written into a tensor allocated now, of the shape the last run gave.
    fn bind_outputs(&self) -> ort::Result<RunOptions<HasSelectedOutputs>> {
        let names: Vec<String> = self.outputs.tensors.iter().map(|tensor| tensor.name().to_owned()).collect();
        select_outputs(&names, |selector, name| {
            let tensor = self.outputs.get(name).map_err(|e| ort::Error::new(e.to_string()))?;
            let value = Tensor::<f32>::new(&Allocator::default(), tensor.shape().to_vec())?;
            Ok(selector.preallocate(name, value))
        })
    }

    /// The provider selection for this session.
    pub fn provider(&self) -> &ActiveProvider {
        &self.provider
    }

    /// The settings the session was built with.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Where the session's model came from.
    pub fn origin(&self) -> ModelOrigin {
        self.origin
    }
}

/// Copies the outputs the decoder reads out of a run's results into the reused buffers.
fn copy_outputs(results: &SessionOutputs<'_>, outputs: &mut Outputs) -> Result<()> {
    for tensor in &mut outputs.tensors {
        let value = results.get(tensor.name()).ok_or_else(|| Error::Output {
            tensor: tensor.name().to_owned(),
            reason: "missing from the run's outputs".to_owned(),
        })?;
        tensor.copy_from(value)?;
    }
    Ok(())
}

/// Run options that compute only `names`, each output's selection passed through `each` (to pre-allocate it).
fn select_outputs(
    names: &[String],
    each: impl Fn(OutputSelector, &str) -> ort::Result<OutputSelector>,
) -> ort::Result<RunOptions<HasSelectedOutputs>> {
    let mut selector = OutputSelector::no_default();
    for name in names {
        selector = each(selector.with(name.as_str()), name)?;
    }
    Ok(RunOptions::new()?.with_outputs(selector))
}

/// `data` as an ONNX Runtime value of `shape`, without copying it.
fn tensor_view<'a, T: PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
    shape: &[i64],
    data: &'a [T],
) -> Result<DynValueRef<'a>> {
    let shape = Shape::new(shape.iter().copied());
    Ok(TensorRef::from_array_view((shape, data)).map_err(inference_error)?.into_dyn())
}

fn inference_error(e: ort::Error) -> Error {
    Error::Inference { reason: e.to_string() }
}

/// Element type and shape of a graph input or output.
type TensorInfo<'a> = (TensorElementType, &'a [i64]);

fn tensor_type(value: &ValueType) -> Option<TensorInfo<'_>> {
    match value {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape)),
        _ => None,
    }
}

fn mismatch(path: &Path, what: impl Into<String>, manifest: impl Into<String>, graph: impl Into<String>) -> Error {
    Error::ManifestMismatch { path: path.to_owned(), what: what.into(), manifest: manifest.into(), graph: graph.into() }
}

/// Checks the graph's input against the manifest's and returns the shape to run it with: the manifest's (batch of
/// one), less the batch axis for an image model whose graph input has none (rank 3, or `input.batch_axis =
/// false`). A graph that gives no rank is taken at the manifest's word.
fn check_input(path: &Path, session: &Session, spec: &InputSpec) -> Result<Vec<i64>> {
    let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    let Some(outlet) = session.inputs().iter().find(|i| i.name() == spec.tensor()) else {
        return Err(mismatch(path, "input tensor name", format!("{:?}", spec.tensor()), format!("{names:?}")));
    };
    if names.len() != 1 {
        return Err(mismatch(path, "number of inputs", "1", format!("{} ({names:?})", names.len())));
    }
    let (ty, graph_shape) = tensor_type(outlet.dtype())
        .ok_or_else(|| mismatch(path, format!("input {:?} type", spec.tensor()), "a tensor", "not a tensor"))?;
    let (want_ty, want_shape): (TensorElementType, Vec<usize>) = match spec {
        InputSpec::Image(image) => {
            let batch_axis = image.batch_axis.unwrap_or(graph_shape.len() != 3);
            let shape = image.shape();
            (element_type(image.dtype), if batch_axis { shape.to_vec() } else { shape[1..].to_vec() })
        }
        InputSpec::Sensor(sensor) => (TensorElementType::Float32, sensor.shape().to_vec()),
    };
    if ty != want_ty {
        return Err(mismatch(
            path,
            format!("input {:?} element type", spec.tensor()),
            format!("{want_ty:?}"),
            format!("{ty:?}"),
        ));
    }
    if !graph_shape.is_empty() {
        check_dims(path, &format!("input {:?} shape", spec.tensor()), &want_shape, graph_shape)?;
    }
    Ok(want_shape.into_iter().map(|d| d as i64).collect())
}

fn element_type(dtype: InputDtype) -> TensorElementType {
    match dtype {
        InputDtype::F32 => TensorElementType::Float32,
        InputDtype::U8 => TensorElementType::Uint8,
        InputDtype::F16 => TensorElementType::Float16,
        InputDtype::I8 => TensorElementType::Int8,
        InputDtype::I32 => TensorElementType::Int32,
        InputDtype::I64 => TensorElementType::Int64,
    }
}

/// Fixed graph dimensions must equal the manifest's; dynamic ones (-1) take whatever the manifest says.
fn check_dims(path: &Path, what: &str, want: &[usize], graph: &[i64]) -> Result<()> {
    let agrees = want.len() == graph.len() && want.iter().zip(graph).all(|(w, g)| *g < 0 || *g as usize == *w);
    if agrees { Ok(()) } else { Err(mismatch(path, what, format!("{want:?}"), format!("{graph:?}"))) }
}

/// Checks the outputs the decoder reads and returns the names the engine must extract, in graph order.
fn check_outputs(path: &Path, session: &Session, spec: &OutputSpec, labels: usize) -> Result<Vec<String>> {
    let graph: Vec<(&str, Option<TensorInfo<'_>>)> =
        session.outputs().iter().map(|o| (o.name(), tensor_type(o.dtype()))).collect();
    let names: Vec<&str> = graph.iter().map(|(name, _)| *name).collect();
    let wanted = spec.tensors();
    let wanted: Vec<&str> = if wanted.is_empty() { names.clone() } else { wanted };
    let mut selected = Vec::new();
    for name in &wanted {
        let Some((_, info)) = graph.iter().find(|(graph_name, _)| graph_name == name) else {
            return Err(mismatch(path, "output tensor name", format!("{name:?}"), format!("{names:?}")));
        };
        let Some((ty, shape)) = info else {
            return Err(mismatch(path, format!("output {name:?} type"), "a tensor", "not a tensor"));
        };
        let readable = output_dtype(*ty).filter(|dtype| reads_type(spec, name, *dtype));
        if readable.is_none() {
            let want = if matches!(spec, OutputSpec::Raw(_)) {
                "a numeric or bool type"
            } else if is_label_output(spec, name) {
                "an integer type"
            } else {
                "a floating-point type (float32, float16 or float64)"
            };
            return Err(mismatch(path, format!("output {name:?} element type"), want, format!("{ty:?}")));
        }
        check_output_shape(path, name, spec, shape, labels)?;
        selected.push((*name).to_owned());
    }
    Ok(selected)
}

/// Whether the decoder of `spec` reads output `name` of element type `dtype`: `raw` reads any, the anomaly decoder's
/// label output integers, every other output floats.
fn reads_type(spec: &OutputSpec, name: &str, dtype: TensorDtype) -> bool {
    match spec {
        OutputSpec::Raw(_) => true,
        _ if is_label_output(spec, name) => !dtype.is_float() && dtype != TensorDtype::Bool,
        _ => dtype.is_float(),
    }
}

fn is_label_output(spec: &OutputSpec, name: &str) -> bool {
    matches!(spec, OutputSpec::Anomaly(anomaly) if anomaly.label_tensor.as_deref() == Some(name))
}

/// The labels in the model's metadata under `key`, as [`crate::labels::from_metadata`] reads them.
fn metadata_labels(path: &Path, session: &Session, key: &str, verbatim: bool) -> Result<Vec<String>> {
    let what = || format!("`labels_metadata` key {key:?}");
    let metadata = session.metadata().map_err(|e| mismatch(path, what(), "labels", e.to_string()))?;
    let Some(value) = metadata.custom(key) else {
        let keys = metadata.custom_keys().unwrap_or_default();
        return Err(mismatch(path, what(), "labels", format!("no such metadata key (keys: {keys:?})")));
    };
    crate::labels::from_metadata(&value, verbatim).map_err(|reason| mismatch(path, what(), "labels", reason))
}

fn check_output_shape(path: &Path, name: &str, spec: &OutputSpec, shape: &[i64], labels: usize) -> Result<()> {
    let what = format!("output {name:?} shape");
    let fixed = |i: usize| shape.get(i).copied().filter(|d| *d >= 0);
    match spec {
        OutputSpec::Classification(_) => {
            if !(1..=2).contains(&shape.len()) {
                return Err(mismatch(path, what, "[classes] or [1, classes]", format!("{shape:?}")));
            }
            match fixed(shape.len() - 1) {
                Some(classes) if labels > 0 && classes as usize != labels => Err(mismatch(
                    path,
                    format!("output {name:?} classes"),
                    format!("{labels} labels"),
                    format!("{classes}"),
                )),
                _ => Ok(()),
            }
        }
        OutputSpec::Centerface(face) => {
            let channels = if name == face.heatmap {
                1
            } else if name == face.landmarks {
                10
            } else {
                2
            };
            if shape.len() != 4 || fixed(1).is_some_and(|c| c != channels) {
                return Err(mismatch(path, what, format!("[1, {channels}, h, w]"), format!("{shape:?}")));
            }
            Ok(())
        }
        OutputSpec::Yolov8(yolo) if yolo.protos.as_deref() == Some(name) => {
            if shape.len() != 4 {
                return Err(mismatch(path, what, "[1, coefficients, h, w]", format!("{shape:?}")));
            }
            Ok(())
        }
        OutputSpec::Yolov8(yolo) => {
            if shape.len() != 3 {
                return Err(mismatch(path, what, "[1, 4 + classes, anchors]", format!("{shape:?}")));
            }
            // With protos the coefficient rows come on top; their number is the protos' to say at run time.
            let keypoint_rows = 3 * yolo.keypoints;
            match fixed(1) {
                Some(rows) if labels > 0 && yolo.protos.is_none() && rows as usize != 4 + labels + keypoint_rows => {
                    Err(mismatch(
                        path,
                        format!("output {name:?} rows"),
                        format!("4 + {labels} labels + {keypoint_rows} keypoint values"),
                        format!("{rows}"),
                    ))
                }
                _ => Ok(()),
            }
        }
        OutputSpec::Ssd(ssd) => {
            let (expected, ranks): (&str, &[usize]) = if name == ssd.boxes {
                ("[1, boxes, 4]", &[2, 3])
            } else if ssd.count.as_deref() == Some(name) {
                ("one value", &[1, 2])
            } else if name == ssd.scores && ssd.classes.is_none() {
                ("[1, boxes, classes]", &[2, 3])
            } else {
                ("[1, boxes]", &[1, 2])
            };
            if !ranks.contains(&shape.len()) || (name == ssd.boxes && fixed(shape.len() - 1).is_some_and(|d| d != 4)) {
                return Err(mismatch(path, what, expected, format!("{shape:?}")));
            }
            Ok(())
        }
        OutputSpec::Segmentation(_) => {
            if shape.len() != 4 {
                return Err(mismatch(path, what, "[1, classes, h, w]", format!("{shape:?}")));
            }
            Ok(())
        }
        OutputSpec::Anomaly(_) => {
            if shape.iter().all(|d| *d >= 0) && shape.iter().product::<i64>() != 1 {
                return Err(mismatch(path, what, "one value", format!("{shape:?}")));
            }
            Ok(())
        }
        OutputSpec::Raw(_) => Ok(()),
        OutputSpec::Dbnet(_) => {
            if shape.len() != 4 || fixed(1).is_some_and(|c| c != 1) {
                return Err(mismatch(path, what, "[1, 1, h, w]", format!("{shape:?}")));
            }
            Ok(())
        }
        OutputSpec::Ctc(ctc) => {
            if shape.len() != 3 {
                return Err(mismatch(path, what, "[1, steps, classes]", format!("{shape:?}")));
            }
            // The blank comes first and the optional space last; the labels are the classes between.
            let classes = labels + 1 + usize::from(ctc.use_space_char);
            match fixed(2) {
                Some(got) if labels > 0 && got as usize != classes => Err(mismatch(
                    path,
                    format!("output {name:?} classes"),
                    format!("{classes} (blank, {labels} labels{})", if ctc.use_space_char { ", space" } else { "" }),
                    format!("{got}"),
                )),
                _ => Ok(()),
            }
        }
    }
}
