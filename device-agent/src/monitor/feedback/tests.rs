use super::*;
use std::collections::HashMap;

const LABELS: [&str; 4] = ["walking", "running", "sitting", "standing"];

fn config(remember: usize, window: usize) -> FeedbackConfig {
    FeedbackConfig { remember, window, ..FeedbackConfig::default() }
}

fn classifier(remember: usize, window: usize) -> FeedbackJoin {
    FeedbackJoin::new(&config(remember, window), LABELS.map(str::to_owned).to_vec())
}

fn label(seq: u64, label: &str) -> Feedback {
    Feedback { seq, label: Some(label.to_owned()), anomalous: None }
}

/// Labelled, correct, accuracy, and per class: precision, recall, support.
type Expected = (u32, u32, Option<f32>, Vec<(Option<f32>, Option<f32>, u32)>);

/// The same join computed directly from every prediction and every piece of feedback, without rings.
#[derive(Default)]
struct Offline {
    predictions: HashMap<u64, u32>,
    newest: u64,
    /// Labelled pairs in the order they were first joined: (seq, predicted, truth).
    pairs: Vec<(u64, u32, u32)>,
    late: u64,
    unknown: u64,
}

impl Offline {
    fn truth(&mut self, seq: u64, truth: Option<u32>, remember: u64, window: usize) {
        let Some(truth) = truth else { return self.unknown += 1 };
        match self.predictions.get(&seq) {
            Some(_) | None if seq + remember <= self.newest => self.late += 1,
            None => self.unknown += 1,
            Some(&predicted) => match self.pairs.iter().position(|pair| pair.0 == seq) {
                None => self.pairs.push((seq, predicted, truth)),
                Some(index) if index + window >= self.pairs.len() => self.pairs[index].2 = truth,
                Some(_) => {}
            },
        }
    }

    /// What the report must say over the last `window` pairs.
    fn report(&self, window: usize, classes: usize) -> Expected {
        let ratio = |a: usize, b: usize| (b > 0).then(|| (a as f64 / b as f64) as f32);
        let last = &self.pairs[self.pairs.len().saturating_sub(window)..];
        let correct = last.iter().filter(|pair| pair.1 == pair.2).count();
        let per_class = (0..classes as u32)
            .map(|class| {
                let hits = last.iter().filter(|pair| pair.1 == class && pair.2 == class).count();
                let predicted = last.iter().filter(|pair| pair.1 == class).count();
                let actual = last.iter().filter(|pair| pair.2 == class).count();
                (ratio(hits, predicted), ratio(hits, actual), actual as u32)
            })
            .collect();
        (last.len() as u32, correct as u32, ratio(correct, last.len()), per_class)
    }
}

#[test]
fn accuracy_precision_and_recall_equal_a_direct_computation_on_random_data() {
    for (seed, remember, window) in [(1, 64, 16), (2, 10, 100), (3, 1, 1), (4, 200, 37)] {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut join = classifier(remember, window);
        let mut offline = Offline::default();
        let mut seq = 0u64;
        for step in 0..5_000 {
            if rng.u8(..) < 140 {
                // Some inputs are never predicted (dropped or failed): their seq is skipped.
                seq += rng.u64(1..=2);
                let predicted = rng.u32(0..LABELS.len() as u32);
                join.predicted(seq, Predicted::Class { index: predicted });
                offline.predictions.insert(seq, predicted);
                offline.newest = seq;
            } else {
                // Mostly recent seqs, some older than the ring, some ahead, some repeated or mislabelled.
                let asked = seq.saturating_sub(rng.u64(0..remember as u64 * 2 + 3)) + u64::from(rng.u8(..) < 8);
                let truth = rng.u32(0..LABELS.len() as u32 + 1);
                let name = LABELS.get(truth as usize).copied().unwrap_or("flying");
                let _ = join.truth(&label(asked, name));
                offline.truth(asked, (truth < LABELS.len() as u32).then_some(truth), remember as u64, window);
            }
            if step % 97 == 0 || step == 4_999 {
                let report = join.report();
                let (labelled, correct, accuracy, per_class) = offline.report(window, LABELS.len());
                assert_eq!((report.labelled, report.correct, report.accuracy), (labelled, correct, accuracy));
                let classes: Vec<_> =
                    report.classes.iter().map(|class| (class.precision, class.recall, class.support)).collect();
                assert_eq!(classes, per_class, "seed {seed}, step {step}");
                assert_eq!(report.matched_total, offline.pairs.len() as u64);
                assert_eq!((report.late_total, report.unknown_total), (offline.late, offline.unknown));
            }
        }
        assert!(offline.pairs.len() > window * 3, "the window wrapped around (seed {seed})");
        assert!(offline.late > 0 && offline.unknown > 0, "late and unknown feedback happened (seed {seed})");
    }
}

#[test]
fn late_unknown_and_repeated_feedback() {
    let mut join = classifier(4, 10);
    for seq in 0..10 {
        join.predicted(seq, Predicted::Class { index: 0 });
    }
    assert_eq!(join.truth(&label(5, "walking")), Err(Unmatched::Late), "the ring holds 6..=9");
    assert_eq!(join.truth(&label(6, "walking")), Ok(()));
    assert!(matches!(join.truth(&label(10, "walking")), Err(Unmatched::Unknown(_))), "not predicted yet");
    assert!(matches!(join.truth(&label(7, "flying")), Err(Unmatched::Unknown(_))), "no such label");
    let anomaly_verdict = Feedback { seq: 7, label: None, anomalous: Some(true) };
    assert!(matches!(join.truth(&anomaly_verdict), Err(Unmatched::Unknown(_))), "a classifier needs a label");
    // A correction replaces the earlier truth and is counted once.
    assert_eq!(join.truth(&label(6, "running")), Ok(()));
    join.invalid();
    let report = join.report();
    assert_eq!((report.labelled, report.correct, report.accuracy), (1, 0, Some(0.0)));
    assert_eq!((report.matched_total, report.late_total, report.unknown_total, report.invalid_total), (1, 1, 3, 1));
    assert_eq!(report.classes[1].support, 1, "running");
    assert_eq!(report.classes[0].support, 0, "walking no more");
    assert_eq!((report.classes[0].precision, report.classes[0].recall), (Some(0.0), None));
}

#[test]
fn anomaly_models_take_the_anomalous_flag() {
    let mut join = FeedbackJoin::new(&config(100, 100), Vec::new());
    join.predicted(1, Predicted::Anomaly { anomalous: true });
    join.predicted(2, Predicted::Anomaly { anomalous: false });
    join.predicted(3, Predicted::Anomaly { anomalous: false });
    let verdict = |seq, anomalous| Feedback { seq, label: None, anomalous: Some(anomalous) };
    assert_eq!(join.truth(&verdict(1, true)), Ok(()));
    assert_eq!(join.truth(&verdict(2, true)), Ok(()));
    assert_eq!(join.truth(&verdict(3, false)), Ok(()));
    assert!(matches!(join.truth(&label(3, "anomalous")), Err(Unmatched::Unknown(_))));
    let report = join.report();
    assert_eq!((report.labelled, report.correct), (3, 2));
    let classes: Vec<_> = report.classes.iter().map(|c| (c.label.as_str(), c.precision, c.recall, c.support)).collect();
    assert_eq!(classes, [("normal", Some(0.5), Some(1.0), 1), ("anomalous", Some(1.0), Some(0.5), 2)]);
}

#[test]
fn nothing_labelled_reports_no_accuracy() {
    let report = classifier(8, 8).report();
    assert_eq!((report.labelled, report.accuracy), (0, None));
    assert!(report.classes.iter().all(|class| class.precision.is_none() && class.recall.is_none()));
    assert_eq!(report.classes.len(), LABELS.len());
}
