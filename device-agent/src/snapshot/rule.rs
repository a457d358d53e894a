//! When a prediction is worth a snapshot: a detection or class with a label of the set and a high enough score,
//! or an anomaly.

use crate::config::SnapshotConfig;
use runtime::{BoundingBox, Output};

/// The rule of one source's `[[snapshots]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Empty: any label.
    labels: Vec<String>,
    min_score: f32,
    /// `None`: only outputs flagged anomalous match.
    min_anomaly_score: Option<f32>,
}

impl Rule {
    pub fn new(config: &SnapshotConfig) -> Rule {
        Rule { labels: config.labels.clone(), min_score: config.min_score, min_anomaly_score: config.min_anomaly_score }
    }

    /// `None` when `output` does not match; else the boxes of the matching detections (none for classes and
    /// anomalies), to draw on the snapshot. Raw outputs never match.
    pub fn matches(&self, output: &Output) -> Option<Vec<BoundingBox>> {
        match output {
            Output::Detection { detections } => {
                let boxes: Vec<BoundingBox> = detections
                    .iter()
                    .filter(|detection| self.scores(&detection.label, detection.score))
                    .map(|detection| detection.bbox)
                    .collect();
                (!boxes.is_empty()).then_some(boxes)
            }
            Output::Classification { classes } => {
                classes.iter().any(|class| self.scores(&class.label, class.score)).then(Vec::new)
            }
            Output::Anomaly { score, anomalous, .. } => {
                let above = self.min_anomaly_score.is_some_and(|min| *score >= min);
                (*anomalous || above).then(Vec::new)
            }
            Output::Raw { .. } | Output::Segmentation { .. } | Output::Text { .. } => None,
        }
    }

    fn scores(&self, label: &str, score: f32) -> bool {
        score >= self.min_score && (self.labels.is_empty() || self.labels.iter().any(|wanted| wanted == label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{ClassScore, Detection};

    fn rule(labels: &[&str], min_score: f32, min_anomaly_score: Option<f32>) -> Rule {
        Rule { labels: labels.iter().map(|label| label.to_string()).collect(), min_score, min_anomaly_score }
    }

    fn detection(label: &str, score: f32, x_min: f32) -> Detection {
        let bbox = BoundingBox { x_min, y_min: 0.0, x_max: x_min + 10.0, y_max: 10.0 };
        Detection {
            class_index: 0,
            label: label.into(),
            score,
            bbox,
            landmarks: Vec::new(),
            polygon: Vec::new(),
            keypoints: Vec::new(),
            mask: None,
            stages: Vec::new(),
        }
    }

    #[test]
    fn detections_match_by_label_and_score_and_give_their_boxes() {
        let output = Output::Detection {
            detections: vec![detection("face", 0.9, 0.0), detection("face", 0.4, 20.0), detection("cat", 0.95, 40.0)],
        };
        let boxes = rule(&["face"], 0.5, None).matches(&output).expect("a face above 0.5");
        assert_eq!(boxes.iter().map(|bbox| bbox.x_min).collect::<Vec<_>>(), [0.0]);
        let boxes = rule(&[], 0.5, None).matches(&output).expect("any label");
        assert_eq!(boxes.iter().map(|bbox| bbox.x_min).collect::<Vec<_>>(), [0.0, 40.0]);
        assert_eq!(rule(&["face"], 0.95, None).matches(&output), None);
        assert_eq!(rule(&["dog"], 0.0, None).matches(&output), None);
        assert_eq!(rule(&[], 0.0, None).matches(&Output::Detection { detections: Vec::new() }), None);
    }

    #[test]
    fn classes_match_by_label_and_score() {
        let classes = vec![
            ClassScore { index: 1, label: "tabby".into(), score: 0.7 },
            ClassScore { index: 2, label: "tiger".into(), score: 0.2 },
        ];
        let output = Output::Classification { classes };
        assert_eq!(rule(&["tabby"], 0.6, None).matches(&output), Some(Vec::new()));
        assert_eq!(rule(&["tiger"], 0.6, None).matches(&output), None);
        assert_eq!(rule(&[], 0.7, None).matches(&output), Some(Vec::new()));
        assert_eq!(rule(&[], 0.71, None).matches(&output), None);
    }

    #[test]
    fn anomalies_match_when_flagged_or_above_the_score() {
        let anomaly =
            |score, anomalous| Output::Anomaly { score, threshold: 0.5, anomalous, label: None, label_anomalous: None };
        assert_eq!(rule(&[], 0.5, None).matches(&anomaly(0.9, true)), Some(Vec::new()));
        assert_eq!(rule(&[], 0.5, None).matches(&anomaly(0.4, false)), None);
        assert_eq!(rule(&[], 0.5, Some(0.3)).matches(&anomaly(0.4, false)), Some(Vec::new()));
        assert_eq!(rule(&[], 0.5, Some(0.45)).matches(&anomaly(0.4, false)), None);
    }

    #[test]
    fn raw_outputs_never_match() {
        assert_eq!(rule(&[], 0.0, Some(0.0)).matches(&Output::Raw { tensors: Vec::new() }), None);
    }
}
