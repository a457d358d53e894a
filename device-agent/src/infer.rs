//! `device-agent infer`: the agent's own source, prepare thread, worker and outbox code, run once over files,
//! with the payloads printed instead of published.

use crate::clock::SystemClock;
use crate::config::DEFAULT_MAX_FILE_BYTES;
use crate::mqtt::QoS;
use crate::outbox::{Outbox, OutboxQos, OutboxSettings, PayloadLimit, Publish};
use crate::shutdown::Shutdown;
use crate::sources::Feed;
use crate::sources::images::{self, FileSet, ImageFiles};
use crate::sources::recording::{self, Recording};
use crate::spool::Class;
use crate::supervisor::Busy;
use crate::{EXIT_BAD_INPUT, InferArgs, health::SourceStats, prepare, worker};
use anyhow::Context;
use protocol::wire::{Format, Topics};
use runtime::manifest::InputSpec;
use runtime::recording::WindowShape;
use runtime::{Bundle, EngineOptions, OnnxRuntime, Pipeline};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Prints each payload as one line on standard output.
struct StdoutLines {
    errors: AtomicU64,
}

impl Publish for StdoutLines {
    fn publish(&self, class: Class, _topic: String, _qos: QoS, payload: Vec<u8>) -> Result<(), String> {
        if class == Class::Errors {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut out = std::io::stdout().lock();
        // A write fails when standard output is gone (a closed pipe): nothing more can go there.
        out.write_all(&payload).and_then(|()| out.write_all(b"\n")).map_err(|error| error.to_string())
    }
}

pub fn main(args: InferArgs) -> anyhow::Result<ExitCode> {
    let model = &args.model;
    let ort = OnnxRuntime::load(crate::ort_library(model.onnxruntime.as_deref()))?;
    let bundle = Bundle::load(&model.model).with_context(|| format!("loading bundle {}", model.model.display()))?;
    let options = EngineOptions {
        providers: model.providers.clone(),
        require: model.require,
        intra_threads: model.threads,
        ..EngineOptions::default()
    };
    let pipeline = Pipeline::new(&ort, &bundle, &options)?;
    let printer = Arc::new(StdoutLines { errors: AtomicU64::new(0) });
    let settings = OutboxSettings {
        device: args.device_id.as_str().into(),
        topics: Arc::new(Topics::new(format!("devices/{}", args.device_id))),
        format: Format::Json,
        qos: OutboxQos { predictions: QoS::AtLeastOnce, errors: QoS::AtLeastOnce },
        link: printer.clone(),
        payload_limit: Arc::new(|_| PayloadLimit::none()),
    };
    let stats = Arc::new(SourceStats::new(&args.source));
    let outbox = Outbox::new(&settings, &args.source, stats);
    let (feed, queue) = Feed::fifo(outbox.clone(), 4, Arc::new(SystemClock));
    let shutdown = Shutdown::default();
    let input = bundle.manifest().input.clone();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            match &input {
                InputSpec::Image(_) => {
                    let files = ImageFiles {
                        files: FileSet::List(model.inputs.clone()),
                        rate_fps: f64::INFINITY,
                        looping: false,
                        max_file_bytes: DEFAULT_MAX_FILE_BYTES,
                    };
                    images::run(files, &feed, &shutdown);
                }
                InputSpec::Sensor(spec) => {
                    let shape = WindowShape {
                        channels: spec.channels,
                        window: spec.window,
                        channel_names: spec.channel_names.clone(),
                    };
                    for path in &model.inputs {
                        let replay = Recording {
                            path: path.clone(),
                            rate_hz: 0.0,
                            stride: args.stride.unwrap_or(spec.window),
                            looping: false,
                        };
                        recording::run(&replay, &shape, &feed, &shutdown);
                    }
                }
            }
            feed.close();
        });
        let (prepare_ends, worker_ends) = prepare::channels();
        let preparer = pipeline.preparer();
        let max_batch = worker::batch_limit(&pipeline, false);
        scope.spawn(move || prepare::run(preparer, max_batch, false, queue, prepare_ends));
        let busy = Busy::new(Arc::new(SystemClock));
        worker::run(worker::Serving::new(pipeline), worker_ends, &outbox, &busy, None, None);
    });
    Ok(if printer.errors.load(Ordering::Relaxed) == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_BAD_INPUT) })
}
