//! Postprocessing: turns a run's output tensors into an [`Output`] as the manifest's `output.decoder` says.
//!
//! A [`Decoder`] is built once per pipeline and keeps its scratch buffers, so decoding a frame allocates only
//! the result. Detection decoders work in model-input pixels and map the survivors back to the source image
//! with the preprocessor's [`Geometry`].

mod anomaly;
mod centerface;
mod classify;
mod ctc;
mod dbnet;
mod mask;
mod nms;
mod raw;
mod segmentation;
mod shape;
mod ssd;
mod yolov8;

pub use classify::{apply_softmax, is_distribution, softmax, top_k};
pub use nms::{Candidate, Suppression, non_max_suppression};

use crate::error::{Error, Result};
use crate::manifest::{AnomalySpec, CtcSpec, OutputSpec, RawSpec};
use crate::preprocess::Geometry;
use crate::tensor::{OutputTensor, Outputs};
use centerface::CenterFaceDecoder;
use classify::ClassificationDecoder;
use dbnet::DbnetDecoder;
use protocol::Output;
use segmentation::SegmentationDecoder;
use ssd::SsdDecoder;
use yolov8::Yolov8Decoder;

/// Decodes the outputs of one model, as its manifest's `output` section says.
#[derive(Debug)]
pub struct Decoder {
    kind: DecoderKind,
    labels: Vec<String>,
    /// The outputs the decoder reads (empty: all of them), checked for NaN and infinity before decoding.
    reads: Vec<String>,
    /// The model's image input size, for normalised boxes and masks.
    input: Option<InputSize>,
}

/// The width and height of a model's image input, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSize {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

#[derive(Debug)]
enum DecoderKind {
    Classification(ClassificationDecoder),
    CenterFace(CenterFaceDecoder),
    Yolov8(Yolov8Decoder),
    Anomaly(AnomalySpec),
    Raw(RawSpec),
    Ssd(SsdDecoder),
    Segmentation(SegmentationDecoder),
    Dbnet(DbnetDecoder),
    Ctc(CtcSpec),
}

impl Decoder {
    /// A decoder for `spec`; `labels` name the classes in output order (may be empty: indices are used).
    pub fn new(spec: &OutputSpec, labels: Vec<String>) -> Self {
        let kind = match spec {
            OutputSpec::Classification(spec) => DecoderKind::Classification(ClassificationDecoder::new(spec)),
            OutputSpec::Centerface(spec) => DecoderKind::CenterFace(CenterFaceDecoder::new(spec)),
            OutputSpec::Yolov8(spec) => DecoderKind::Yolov8(Yolov8Decoder::new(spec)),
            OutputSpec::Anomaly(spec) => DecoderKind::Anomaly(spec.clone()),
            OutputSpec::Raw(spec) => DecoderKind::Raw(spec.clone()),
            OutputSpec::Ssd(spec) => DecoderKind::Ssd(SsdDecoder::new(spec)),
            OutputSpec::Segmentation(spec) => DecoderKind::Segmentation(SegmentationDecoder::new(spec)),
            OutputSpec::Dbnet(spec) => DecoderKind::Dbnet(DbnetDecoder::new(spec)),
            OutputSpec::Ctc(spec) => DecoderKind::Ctc(spec.clone()),
        };
        let reads = spec.tensors().into_iter().map(str::to_owned).collect();
        Decoder { kind, labels, reads, input: None }
    }

    /// The decoder for a model whose image input is `input`: normalised SSD boxes and masks need it.
    pub fn with_input_size(mut self, input: InputSize) -> Self {
        self.input = Some(input);
        self
    }

    /// The class labels in output order (possibly empty).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Decodes one run's `outputs`. Detection decoders need the `geometry` of the preprocessed image to put
    /// boxes in source pixels, and refuse to decode without it; the others ignore it.
    /// Any NaN or infinity in an output the decoder reads is an [`Error::NonFiniteOutput`]: a broken model must
    /// not turn into a published prediction (a NaN would be softmaxed, compared away or serialised as `null`).
    pub fn decode(&mut self, outputs: &Outputs, geometry: Option<&Geometry>) -> Result<Output> {
        for tensor in &outputs.tensors {
            if self.reads.is_empty() || self.reads.iter().any(|read| read == tensor.name()) {
                check_finite(tensor)?;
            }
        }
        match &mut self.kind {
            DecoderKind::Classification(decoder) => decoder.decode(outputs, &self.labels),
            DecoderKind::CenterFace(decoder) => {
                let geometry = geometry.ok_or_else(|| missing_geometry(decoder.tensor()))?;
                decoder.decode(outputs, &self.labels, geometry)
            }
            DecoderKind::Yolov8(decoder) => {
                let geometry = geometry.ok_or_else(|| missing_geometry(decoder.tensor()))?;
                decoder.decode(outputs, &self.labels, geometry, self.input)
            }
            DecoderKind::Anomaly(spec) => anomaly::decode(spec, outputs),
            DecoderKind::Raw(spec) => raw::decode(spec, outputs),
            DecoderKind::Ssd(decoder) => {
                let geometry = geometry.ok_or_else(|| missing_geometry(decoder.tensor()))?;
                decoder.decode(outputs, &self.labels, geometry, self.input)
            }
            DecoderKind::Segmentation(decoder) => {
                let geometry = geometry.ok_or_else(|| missing_geometry(decoder.tensor()))?;
                decoder.decode(outputs, &self.labels, geometry, self.input)
            }
            DecoderKind::Dbnet(decoder) => {
                let geometry = geometry.ok_or_else(|| missing_geometry(decoder.tensor()))?;
                decoder.decode(outputs, &self.labels, geometry)
            }
            DecoderKind::Ctc(spec) => ctc::decode(spec, outputs, &self.labels),
        }
    }
}

/// The first NaN or infinity in `tensor`, as an error: one linear pass per output and run (microseconds even for
/// CenterFace's maps), after which the decoders may assume finite values.
fn check_finite(tensor: &OutputTensor) -> Result<()> {
    match tensor.data().iter().position(|value| !value.is_finite()) {
        None => Ok(()),
        Some(index) => {
            Err(Error::NonFiniteOutput { tensor: tensor.name().to_owned(), index, value: tensor.data()[index] })
        }
    }
}

fn missing_geometry(tensor: &str) -> crate::Error {
    shape::output_error(tensor, "detection decoding needs the image geometry of the preprocessing step (image input)")
}

/// The label of class `index`: `labels[index]`, or the index itself when the bundle names no such class.
fn label_for(labels: &[String], index: usize) -> String {
    labels.get(index).cloned().unwrap_or_else(|| index.to_string())
}

/// `index` as the `u32` an [`Output`] carries.
fn class_index(tensor: &str, index: usize) -> Result<u32> {
    u32::try_from(index).map_err(|_| shape::output_error(tensor, format!("class index {index} does not fit a u32")))
}

/// Shared by the decoder tests.
#[cfg(test)]
mod test_support {
    use crate::preprocess::Geometry;
    use protocol::{BoundingBox, Point};

    /// A geometry where `model = source * scale + offset` on both axes.
    pub(super) fn geometry(
        source_width: u32,
        source_height: u32,
        scale: f32,
        offset_x: f32,
        offset_y: f32,
    ) -> Geometry {
        Geometry { source_width, source_height, scale_x: scale, scale_y: scale, offset_x, offset_y }
    }

    pub(super) fn assert_box_near(got: &BoundingBox, want: [f32; 4]) {
        let got_corners = [got.x_min, got.y_min, got.x_max, got.y_max];
        assert!(got_corners.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-3), "got {got:?}, want {want:?}");
    }

    pub(super) fn assert_point_near(got: &Point, want: [f32; 2]) {
        assert!((got.x - want[0]).abs() < 1e-3 && (got.y - want[1]).abs() < 1e-3, "got {got:?}, want {want:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CenterFaceSpec, Yolov8Spec};

    #[test]
    fn detection_decoders_refuse_to_run_without_geometry() {
        let centerface = OutputSpec::Centerface(CenterFaceSpec {
            heatmap: "heat".to_owned(),
            scale: "scale".to_owned(),
            offset: "offset".to_owned(),
            landmarks: "lms".to_owned(),
            score_threshold: 0.5,
            iou_threshold: 0.3,
            max_detections: 10,
        });
        let yolo = OutputSpec::Yolov8(Yolov8Spec {
            tensor: "output0".to_owned(),
            score_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 10,
            keypoints: 0,
            protos: None,
            agnostic_nms: false,
            max_mask_runs: 4096,
        });
        for (spec, tensor) in [(centerface, "heat"), (yolo, "output0")] {
            let err = Decoder::new(&spec, vec![]).decode(&Outputs::default(), None).unwrap_err();
            let names_geometry = matches!(&err, crate::Error::Output { tensor: t, reason }
                if t == tensor && reason.contains("geometry"));
            assert!(names_geometry, "{err}");
        }
    }

    fn tensor(name: &str, shape: &[i64], data: Vec<f32>) -> OutputTensor {
        OutputTensor::new(name.to_owned(), shape.to_vec(), data)
    }

    fn assert_non_finite(result: Result<Output>, want_tensor: &str, want_index: usize, want_nan: bool) {
        let err = result.unwrap_err();
        assert_eq!((err.kind().as_str(), err.stage().as_str()), ("non_finite_output", "postprocess"), "{err}");
        assert!(!err.is_input_error());
        let Error::NonFiniteOutput { tensor, index, value } = &err else { panic!("NonFiniteOutput expected: {err}") };
        assert_eq!((tensor.as_str(), *index), (want_tensor, want_index), "{err}");
        assert_eq!(value.is_nan(), want_nan, "{err}");
        assert!(!value.is_finite());
        assert!(err.to_string().contains(want_tensor), "{err}");
    }

    #[test]
    fn every_decoder_refuses_nan_and_infinity_in_what_it_reads() {
        let geometry = test_support::geometry(8, 8, 1.0, 0.0, 0.0);
        let labels = || vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];

        // Classification: a NaN or an infinity would otherwise be softmaxed (into NaN or a certain 1.0).
        let classify = OutputSpec::Classification(crate::manifest::ClassificationSpec {
            tensor: "logits".to_owned(),
            softmax: crate::manifest::SoftmaxMode::Auto,
            top_k: 3,
        });
        let mut decoder = Decoder::new(&classify, labels());
        let cases = [
            (vec![0.1, f32::NAN, 0.3], 1, true),
            (vec![f32::INFINITY, 0.0, 0.0], 0, false),
            (vec![0.0, 0.0, f32::NEG_INFINITY], 2, false),
        ];
        for (data, index, nan) in cases {
            let outputs = Outputs { tensors: vec![tensor("logits", &[1, 3], data)] };
            assert_non_finite(decoder.decode(&outputs, None), "logits", index, nan);
        }
        // The same decoder still decodes finite logits afterwards.
        let finite = Outputs { tensors: vec![tensor("logits", &[1, 3], vec![0.0, 2.0, 1.0])] };
        assert!(decoder.decode(&finite, None).is_ok());

        // CenterFace: a NaN in a landmark map is refused even where no cell is hot.
        let centerface = OutputSpec::Centerface(CenterFaceSpec {
            heatmap: "heat".to_owned(),
            scale: "scale".to_owned(),
            offset: "offset".to_owned(),
            landmarks: "lms".to_owned(),
            score_threshold: 0.5,
            iou_threshold: 0.3,
            max_detections: 10,
        });
        let mut landmarks = vec![0.0; 10 * 4];
        landmarks[37] = f32::NAN;
        let outputs = Outputs {
            tensors: vec![
                tensor("heat", &[1, 1, 2, 2], vec![0.0; 4]),
                tensor("scale", &[1, 2, 2, 2], vec![0.0; 8]),
                tensor("offset", &[1, 2, 2, 2], vec![0.0; 8]),
                tensor("lms", &[1, 10, 2, 2], landmarks),
            ],
        };
        assert_non_finite(Decoder::new(&centerface, vec![]).decode(&outputs, Some(&geometry)), "lms", 37, true);

        // YOLOv8: an infinite box coordinate.
        let yolo = OutputSpec::Yolov8(Yolov8Spec {
            tensor: "output0".to_owned(),
            score_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 10,
            keypoints: 0,
            protos: None,
            agnostic_nms: false,
            max_mask_runs: 4096,
        });
        let outputs = Outputs { tensors: vec![tensor("output0", &[1, 5, 1], vec![1.0, 1.0, f32::INFINITY, 2.0, 0.9])] };
        assert_non_finite(Decoder::new(&yolo, vec![]).decode(&outputs, Some(&geometry)), "output0", 2, false);

        // Anomaly: an infinite score would otherwise be published as anomalous.
        let anomaly = OutputSpec::Anomaly(AnomalySpec {
            tensor: "score".to_owned(),
            threshold: 0.5,
            direction: crate::manifest::AnomalyDirection::Higher,
            label_tensor: None,
            anomalous_label: None,
        });
        let outputs = Outputs { tensors: vec![tensor("score", &[1], vec![f32::INFINITY])] };
        assert_non_finite(Decoder::new(&anomaly, vec![]).decode(&outputs, None), "score", 0, false);

        // Raw: serde_json would write NaN as null.
        let outputs =
            Outputs { tensors: vec![tensor("a", &[2], vec![1.0, 2.0]), tensor("b", &[3], vec![0.0, 0.0, f32::NAN])] };
        let raw_all = OutputSpec::Raw(RawSpec { tensors: vec![] });
        assert_non_finite(Decoder::new(&raw_all, vec![]).decode(&outputs, None), "b", 2, true);
        let raw_listed = OutputSpec::Raw(RawSpec { tensors: vec!["b".to_owned()] });
        assert_non_finite(Decoder::new(&raw_listed, vec![]).decode(&outputs, None), "b", 2, true);
    }

    #[test]
    fn outputs_the_decoder_does_not_read_are_not_checked() {
        let outputs =
            Outputs { tensors: vec![tensor("logits", &[2], vec![1.0, 0.0]), tensor("debug", &[1], vec![f32::NAN])] };
        let raw = OutputSpec::Raw(RawSpec { tensors: vec!["logits".to_owned()] });
        assert!(Decoder::new(&raw, vec![]).decode(&outputs, None).is_ok());
        let classify = OutputSpec::Classification(crate::manifest::ClassificationSpec {
            tensor: "logits".to_owned(),
            softmax: crate::manifest::SoftmaxMode::Always,
            top_k: 1,
        });
        assert!(Decoder::new(&classify, vec![]).decode(&outputs, None).is_ok());
    }

    #[test]
    fn dispatches_on_the_spec() {
        let outputs = Outputs { tensors: vec![OutputTensor::new("y", vec![1, 2], vec![0.25, 0.75])] };
        let classify = OutputSpec::Classification(crate::manifest::ClassificationSpec {
            tensor: "y".to_owned(),
            softmax: crate::manifest::SoftmaxMode::Auto,
            top_k: 1,
        });
        let output = Decoder::new(&classify, vec!["a".to_owned(), "b".to_owned()]).decode(&outputs, None).unwrap();
        assert_eq!(
            output,
            Output::Classification {
                classes: vec![protocol::ClassScore { index: 1, label: "b".to_owned(), score: 0.75 }]
            }
        );
        let raw = OutputSpec::Raw(RawSpec { tensors: vec![] });
        let Output::Raw { tensors } = Decoder::new(&raw, vec![]).decode(&outputs, None).unwrap() else {
            panic!("raw expected")
        };
        assert_eq!(tensors.len(), 1);
        let anomaly = OutputSpec::Anomaly(AnomalySpec {
            tensor: "y".to_owned(),
            threshold: 0.5,
            direction: crate::manifest::AnomalyDirection::Lower,
            label_tensor: None,
            anomalous_label: None,
        });
        assert!(Decoder::new(&anomaly, vec![]).decode(&outputs, None).is_err());
    }
}
