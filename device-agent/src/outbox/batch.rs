//! A source's waiting predictions, published together as one [`PredictionBatch`] (`[sources.batch]`).
//!
//! A batch is published by whoever fills or ends it, under the lock that guards it, so batches leave in `seq`
//! order:
//! - the worker, when `max_predictions` wait, or when a prediction of another model (a swap) or provider arrives;
//! - the `batch-<source>` thread, when the oldest waiting prediction is `max_delay_ms` old, so a slow source's
//!   predictions still leave while the worker sleeps on its queue;
//! - [`Batcher::finish`], when the worker finishes (shutdown), which also stops that thread.
//!
//! Nothing is dropped here: a batch the spool or the link refuses counts every prediction in it as unpublished. A
//! batch too large for one MQTT packet is halved until its parts fit; a single prediction that does not is
//! handed to [`Refuse`].

use super::Sender;
use crate::clock::unix_time_ms as now_ms;
use crate::config::BatchConfig;
use crate::mqtt::QoS;
use crate::spool::Class;
use protocol::ModelIdentity;
use protocol::wire::{self, BatchedPrediction, Format, PredictionBatch};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

/// Reports one prediction, encoded as the payload, as too large for a packet of its own.
pub type Refuse = Box<dyn Fn(&BatchedPrediction, &[u8]) + Send + Sync>;

/// The batch being filled and the thread that publishes it when it has waited long enough.
pub struct Batcher {
    pending: Mutex<Pending>,
    /// Wakes the `batch-<source>` thread: a batch began, or the source finished.
    wake: Condvar,
    limits: BatchConfig,
    sender: Sender,
    topic: String,
    qos: QoS,
    format: Format,
    refuse: Refuse,
    timer: Mutex<Option<JoinHandle<()>>>,
}

struct Pending {
    /// Its `predictions` are those waiting; the rest is reused from batch to batch.
    batch: PredictionBatch,
    /// When the oldest waiting prediction was added.
    since: Instant,
    finished: bool,
}

/// What a batcher publishes with, besides the [`Sender`].
pub struct BatchTarget {
    pub device: String,
    pub source: String,
    pub topic: String,
    pub qos: QoS,
    pub format: Format,
}

impl Batcher {
    /// A batcher for one source, with its `batch-<source>` thread started.
    pub fn start(
        limits: BatchConfig,
        target: BatchTarget,
        sender: Sender,
        refuse: Refuse,
    ) -> std::io::Result<Arc<Batcher>> {
        let batch = PredictionBatch {
            device: target.device,
            source: target.source.clone(),
            published_at_ms: 0,
            model: ModelIdentity { name: String::new(), version: String::new(), sha256: String::new() },
            provider: String::new(),
            predictions: Vec::with_capacity(limits.max_predictions),
        };
        let batcher = Arc::new(Batcher {
            pending: Mutex::new(Pending { batch, since: Instant::now(), finished: false }),
            wake: Condvar::new(),
            limits,
            sender,
            topic: target.topic,
            qos: target.qos,
            format: target.format,
            refuse,
            timer: Mutex::new(None),
        });
        let timer = {
            let batcher = batcher.clone();
            std::thread::Builder::new().name(format!("batch-{}", target.source)).spawn(move || batcher.run_timer())?
        };
        *batcher.timer.lock().unwrap_or_else(PoisonError::into_inner) = Some(timer);
        Ok(batcher)
    }

    /// Adds a prediction of `model` on `provider`; publishes the batch when it is full.
    pub fn add(&self, model: &ModelIdentity, provider: &str, prediction: BatchedPrediction) {
        let mut pending = self.lock();
        let batch = &pending.batch;
        let other_model = batch.model != *model || batch.provider != provider;
        if other_model && !batch.predictions.is_empty() {
            self.publish(&mut pending);
        }
        if pending.batch.predictions.is_empty() {
            if pending.batch.model != *model {
                pending.batch.model = model.clone();
            }
            if pending.batch.provider != provider {
                pending.batch.provider = provider.to_owned();
            }
            pending.since = Instant::now();
            self.wake.notify_one();
        }
        pending.batch.predictions.push(prediction);
        // After finish there is no timer left to wait for.
        if pending.batch.predictions.len() >= self.limits.max_predictions || pending.finished {
            self.publish(&mut pending);
        }
    }

    /// Publishes what waits and stops the timer thread.
    pub fn finish(&self) {
        {
            let mut pending = self.lock();
            self.publish(&mut pending);
            pending.finished = true;
            self.wake.notify_one();
        }
        let timer = self.timer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(timer) = timer {
            let _ = timer.join();
        }
    }

    fn run_timer(&self) {
        let mut pending = self.lock();
        while !pending.finished {
            if pending.batch.predictions.is_empty() {
                pending = self.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let due = pending.since + self.limits.max_delay();
            let now = Instant::now();
            if now >= due {
                self.publish(&mut pending);
            } else {
                pending = self.wake.wait_timeout(pending, due - now).unwrap_or_else(PoisonError::into_inner).0;
            }
        }
    }

    /// Hands the waiting predictions over as one message, under the lock so that batches leave in order.
    fn publish(&self, pending: &mut Pending) {
        let count = pending.batch.predictions.len() as u64;
        if count == 0 {
            return;
        }
        pending.batch.published_at_ms = now_ms();
        self.publish_fitting(&mut pending.batch);
        pending.batch.predictions.clear();
    }

    /// Hands `batch` over as one message, or as halves (recursively) when it is too large for one packet.
    fn publish_fitting(&self, batch: &mut PredictionBatch) {
        let count = batch.predictions.len();
        let payload = wire::encode(self.format, batch);
        match &payload {
            Ok(bytes) if !self.sender.limit.fits(&self.topic, self.qos, bytes.len()) => {
                if count == 1 {
                    (self.refuse)(&batch.predictions[0], bytes);
                    return;
                }
                let second = batch.predictions.split_off(count / 2);
                self.publish_fitting(batch);
                batch.predictions = second;
                self.publish_fitting(batch);
            }
            _ => self.sender.send(Class::Predictions, self.topic.clone(), self.qos, payload, count as u64),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LargePayloadsConfig;
    use crate::health::Metrics;
    use crate::mqtt::publish_packet_bytes;
    use crate::outbox::{PayloadLimit, Publish};
    use protocol::wire::Prediction;
    use protocol::{Output, StageTimings};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Long enough never to pass on a working batcher; a lost message fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// A link that passes on what it takes, or refuses everything.
    struct Link {
        taken: Mutex<mpsc::Sender<Vec<u8>>>,
        refuse: bool,
    }

    impl Publish for Link {
        fn publish(&self, class: Class, topic: String, _qos: QoS, payload: Vec<u8>) -> Result<(), String> {
            assert_eq!((class, topic.as_str()), (Class::Predictions, "d/predictions/wrist"));
            if self.refuse {
                return Err("queue full".into());
            }
            let _ = self.taken.lock().expect("link").send(payload);
            Ok(())
        }
    }

    struct Harness {
        batcher: Arc<Batcher>,
        published: mpsc::Receiver<Vec<u8>>,
        /// The seqs of the predictions refused as too large.
        refused: mpsc::Receiver<u64>,
        metrics: Metrics,
    }

    impl Harness {
        fn new(max_predictions: usize, max_delay_ms: u64, refuse: bool) -> Harness {
            Harness::limited(max_predictions, max_delay_ms, refuse, PayloadLimit::none())
        }

        fn limited(max_predictions: usize, max_delay_ms: u64, refuse: bool, limit: PayloadLimit) -> Harness {
            let (taken, published) = mpsc::channel();
            let (too_large, refused) = mpsc::channel();
            let metrics = Metrics::new();
            let sender = Sender {
                source: "wrist".into(),
                link: Arc::new(Link { taken: Mutex::new(taken), refuse }),
                stats: metrics.register("wrist"),
                limit: Arc::new(limit),
            };
            let too_large = Mutex::new(too_large);
            let refuse_oversized: Refuse = Box::new(move |prediction, _| {
                let _ = too_large.lock().expect("refused").send(prediction.seq);
            });
            let target = BatchTarget {
                device: "d".into(),
                source: "wrist".into(),
                topic: "d/predictions/wrist".into(),
                qos: QoS::AtLeastOnce,
                format: Format::Json,
            };
            let limits = BatchConfig { max_predictions, max_delay_ms };
            let batcher = Batcher::start(limits, target, sender, refuse_oversized).expect("starts");
            Harness { batcher, published, refused, metrics }
        }

        fn add(&self, model: &str, seqs: std::ops::Range<u64>) {
            let model = ModelIdentity { name: model.into(), version: "1".into(), sha256: "ab".into() };
            for seq in seqs {
                let output = Output::Anomaly {
                    score: seq as f32,
                    threshold: 1.0,
                    anomalous: false,
                    label: None,
                    label_anomalous: None,
                };
                let timings = StageTimings::default();
                let prediction = BatchedPrediction {
                    seq,
                    captured_at_ms: seq,
                    output,
                    latency_us: timings,
                    total_us: 0,
                    input: None,
                };
                self.batcher.add(&model, "cpu", prediction);
            }
        }

        /// The next published batch, as the predictions it carries.
        fn next(&self) -> PredictionBatch {
            let payload = self.published.recv_timeout(PATIENCE).expect("a batch was published");
            wire::decode(Format::Json, &payload).expect("a batch")
        }

        fn nothing_more(&self) {
            assert!(self.published.try_recv().is_err(), "no other message");
        }

        fn unpublished(&self) -> u64 {
            self.metrics.snapshot()[0].predictions_unpublished
        }
    }

    fn seqs(batch: &PredictionBatch) -> Vec<u64> {
        batch.predictions.iter().map(|prediction| prediction.seq).collect()
    }

    #[test]
    fn a_full_batch_leaves_at_once_and_finish_publishes_the_rest() {
        // A delay no test run reaches: only the count and finish publish here.
        let harness = Harness::new(3, 60_000, false);
        harness.add("m", 0..7);
        assert_eq!(seqs(&harness.next()), [0, 1, 2]);
        assert_eq!(seqs(&harness.next()), [3, 4, 5]);
        harness.nothing_more();
        harness.batcher.finish();
        let last = harness.next();
        assert_eq!(seqs(&last), [6]);
        assert_eq!((last.device.as_str(), last.source.as_str(), last.provider.as_str()), ("d", "wrist", "cpu"));
        let expanded: Vec<Prediction> = last.into_predictions();
        assert_eq!(expanded[0].model.name, "m");
        harness.nothing_more();
        assert_eq!(harness.unpublished(), 0);
    }

    #[test]
    fn a_batch_leaves_when_its_oldest_prediction_is_max_delay_old() {
        let harness = Harness::new(1000, 20, false);
        harness.add("m", 0..2);
        // Nobody adds or finishes: the timer thread publishes (in one batch, or two if this thread was descheduled
        // for longer than the delay between the two adds).
        let mut published = seqs(&harness.next());
        if published.len() < 2 {
            published.extend(seqs(&harness.next()));
        }
        assert_eq!(published, [0, 1]);
        harness.add("m", 2..3);
        assert_eq!(seqs(&harness.next()), [2]);
        harness.batcher.finish();
        harness.nothing_more();
    }

    #[test]
    fn a_new_model_ends_the_batch_of_the_old_one() {
        let harness = Harness::new(1000, 60_000, false);
        harness.add("old", 0..2);
        harness.add("new", 2..3);
        let old = harness.next();
        assert_eq!((old.model.name.as_str(), seqs(&old)), ("old", vec![0, 1]));
        harness.batcher.finish();
        let new = harness.next();
        assert_eq!((new.model.name.as_str(), seqs(&new)), ("new", vec![2]));
    }

    #[test]
    fn a_refused_batch_counts_each_of_its_predictions_as_unpublished() {
        let harness = Harness::new(4, 60_000, true);
        harness.add("m", 0..6);
        assert_eq!(harness.unpublished(), 4);
        harness.batcher.finish();
        assert_eq!(harness.unpublished(), 6);
    }

    #[test]
    fn a_batch_too_large_for_a_packet_is_halved_and_a_lone_oversized_prediction_refused() {
        // The limit fits two of the harness's predictions, not four.
        let probe = Harness::new(2, 60_000, false);
        probe.add("m", 0..2);
        let two = probe.published.recv_timeout(PATIENCE).expect("a batch of two");
        let limit = publish_packet_bytes("d/predictions/wrist", QoS::AtLeastOnce, two.len() + 20);
        let limit = PayloadLimit::new(limit, &LargePayloadsConfig::default(), "wrist", Format::Json);
        let harness = Harness::limited(4, 60_000, false, limit);
        harness.add("m", 0..4);
        assert_eq!(seqs(&harness.next()), vec![0, 1]);
        assert_eq!(seqs(&harness.next()), vec![2, 3]);

        let model = ModelIdentity { name: "m".into(), version: "1".into(), sha256: "ab".into() };
        let tensor = protocol::RawTensor {
            name: "big".into(),
            shape: vec![4096],
            data: vec![0.5; 4096],
            dtype: protocol::TensorDtype::Float32,
            integers: Vec::new(),
        };
        let big = BatchedPrediction {
            seq: 9,
            captured_at_ms: 9,
            output: Output::Raw { tensors: vec![tensor] },
            latency_us: StageTimings::default(),
            total_us: 0,
            input: None,
        };
        harness.batcher.add(&model, "cpu", big);
        harness.add("m", 10..13);
        assert_eq!(harness.refused.recv_timeout(PATIENCE), Ok(9));
        assert_eq!(seqs(&harness.next()), vec![10]);
        assert_eq!(seqs(&harness.next()), vec![11, 12]);
        assert_eq!(harness.unpublished(), 0, "refused, not unpublished: the refusal reports it");
    }
}
