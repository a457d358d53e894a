//! `device-agent run`: the whole topology in one place.
//!
//! ```text
//! source-<name> ──(latest slot | FIFO)──> prepare-<name> ──(2 buffers)──> worker-<name> ──append──> spool (disk)
//! mqtt (inbound frames/windows) ──────────^  [decode, preprocess]   [run, postprocess]  health ──append──^   │
//!                                               broker <── mqtt <──tracked publish── spool-forwarder
//! ```
//! Threads are plain and named; every queue is bounded with the policy written in [`crate::queue`] and
//! [`crate::prepare`], the spool by its byte budgets ([`crate::spool`]). The main thread is the
//! [supervisor](crate::supervisor) (stuck inferences, systemd's watchdog). SIGTERM or SIGINT stops the sources,
//! lets the prepare threads and workers drain their queues, lets the forwarder send (bounded) what the spool
//! holds, publishes `offline` and waits (bounded) for the broker to acknowledge what was queued; what is left
//! stays in the spool for the next start. An unusable state directory or spool does not stop the agent
//! ([`crate::state_dir`], [`crate::conditions`]).

use crate::clock::{Clock, SystemClock};
use crate::conditions::{AGENT, Condition, Conditions};
use crate::config::{AgentConfig, MjpegMode, SourceConfig, UpdateConfig};
use crate::health::{HealthReporter, Metrics};
use crate::monitor::{self, MonitorSettings, MonitorTap, MonitorTopics, MqttMonitorLink, evidence};
use crate::mqtt::{self, MqttHandle, QoS, Route};
use crate::outbox::{Outbox, OutboxQos, OutboxSettings, PayloadLimit, Publish};
use crate::prepare;
use crate::shutdown::Shutdown;
use crate::snapshot::{Publisher, Snapshots};
use crate::sources::directory::WatchedDir;
use crate::sources::http_mjpeg::{self, HttpUrl, MjpegCamera};
use crate::sources::images::{self, FileSet, ImageFiles};
use crate::sources::recording::{self, Recording};
use crate::sources::rtsp;
use crate::sources::v4l2::{self, LinuxDevice, V4l2Spec};
use crate::sources::{Feed, stdin};
use crate::spool::{self, Class, Spool, SpoolError, forwarder};
use crate::state_dir::StateDir;
use crate::supervisor::{Busy, Supervisor, SupervisorParts, Watchdog, WatchedWorker};
use crate::update::{self, ConfiguredCascade, ModelSlots, ServedModel, UpdateQos, Updater, UpdaterParts, WorkerLink};
use crate::worker::{JobQueue, Serving};
use crate::{EXIT_CONFIG, worker};
use anyhow::{Context, anyhow};
use protocol::error::{ErrorKind, ErrorStage};
use protocol::update::{Membership, UpdateTopics};
use protocol::wire;
use runtime::manifest::{InputSpec, SensorInputSpec};
use runtime::recording::WindowShape;
use runtime::{Bundle, EngineOptions, ModelIdentity, OnnxRuntime, Pipeline};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a clean shutdown waits for the broker to acknowledge queued messages.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The MQTT link thread counts as wedged after this long without an event (at least; see [`link_stall`]).
const MIN_LINK_STALL: Duration = Duration::from_secs(120);

/// Starts a source's reader thread; `None` for a thread that is not joined at shutdown.
type Starter = Box<dyn FnOnce() -> anyhow::Result<Option<JoinHandle<()>>>>;

/// A source whose bundle loaded and whose pipeline is built.
struct ReadySource {
    config: SourceConfig,
    bundle: Bundle,
    pipeline: Pipeline,
    /// The cascade its config gives, which updates keep.
    cascade: Option<ConfiguredCascade>,
}

pub fn main(config_path: &Path, check: bool) -> anyhow::Result<ExitCode> {
    let config = match AgentConfig::load(config_path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("Invalid configuration {}:\n{errors}", config_path.display());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let ort = match OnnxRuntime::load(crate::ort_library(config.onnxruntime.library.as_deref())) {
        Ok(ort) => ort,
        Err(error) if check => {
            eprintln!("{error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(error) => return Err(error.into()),
    };
    // `--check` loads the configured bundles only: opening the slots may roll back or clean up, which is the
    // running agent's business.
    let mut state = match config.update.as_ref().and_then(|update| update.state_dir.clone()) {
        Some(state_dir) if !check => {
            let factories = config.sources.iter().map(|source| source.model().to_owned()).collect();
            Some(StateDir::open(state_dir, factories).context("opening update.state_dir")?)
        }
        _ => None,
    };
    let (ready, mut failed) = prepare_sources(&config, &ort, state.as_mut().and_then(StateDir::slots_mut));
    if check {
        if let Err(error) = mqtt::check(&config) {
            failed.push(("mqtt".to_owned(), error));
        }
        for (name, error) in &failed {
            eprintln!("{name}: {error:#}");
        }
        for source in &ready {
            let provider = source.pipeline.provider();
            println!(
                "source {}: {} {} on {}",
                source.config.name(),
                source.bundle.manifest().name,
                source.bundle.manifest().version,
                provider.active
            );
        }
        if failed.is_empty() {
            println!("configuration {} is valid", config_path.display());
            return Ok(ExitCode::SUCCESS);
        }
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    for (name, error) in &failed {
        log::error!(source = name.as_str(); "Source cannot start: {error:#}.");
    }
    if ready.is_empty() {
        return Err(anyhow!("no source could start"));
    }
    run(config, ort, ready, failed, state)
}

/// Loads every source's bundle and builds its pipeline; a source that cannot start is set aside with its
/// reason, so one bad bundle does not stop the others. With updates on, a source tries its model's active
/// slot first, then the previous one, then the bundle its config names.
fn prepare_sources(
    config: &AgentConfig,
    ort: &OnnxRuntime,
    mut slots: Option<&mut ModelSlots>,
) -> (Vec<ReadySource>, Vec<(String, anyhow::Error)>) {
    let mut options = engine_options(config);
    // The cache is the state directory's: not written by `--check`, nor while the directory is unusable.
    if slots.is_none() {
        options.optimized_model_cache = None;
    }
    let mut ready = Vec::new();
    let mut failed = Vec::new();
    for (index, source) in config.sources.iter().enumerate() {
        let cascade = source
            .cascade()
            .map(|spec| ConfiguredCascade { spec: spec.clone(), key: format!("sources[{index}].cascade") });
        let candidates = match slots.as_deref_mut().map(|slots| slots.candidates(source.model())) {
            Some(Ok(candidates)) => candidates,
            Some(Err(error)) => {
                log::error!(source = source.name(); "Model slots unreadable, starting the configured bundle: {error}.");
                vec![source.model().to_owned()]
            }
            None => vec![source.model().to_owned()],
        };
        let mut errors = Vec::new();
        let loaded = candidates.iter().find_map(|dir| {
            load_source(source, cascade.as_ref(), dir, ort, &options).map_err(|error| errors.push(error)).ok()
        });
        match loaded {
            Some((bundle, pipeline)) => {
                if let Some(error) = errors.first() {
                    log::error!(source = source.name(); "The newest model did not load, an older one serves: {error:#}.");
                }
                ready.push(ReadySource { config: source.clone(), bundle, pipeline, cascade });
            }
            None => {
                let error = errors.into_iter().next().unwrap_or_else(|| anyhow!("no bundle to load"));
                failed.push((source.name().to_owned(), error));
            }
        }
    }
    (ready, failed)
}

/// Loads `source` with the bundle in `dir`, and the cascade its config gives, if any.
fn load_source(
    source: &SourceConfig,
    cascade: Option<&ConfiguredCascade>,
    dir: &Path,
    ort: &OnnxRuntime,
    options: &EngineOptions,
) -> anyhow::Result<(Bundle, Pipeline)> {
    let bundle = Bundle::load(dir).with_context(|| format!("loading bundle {}", dir.display()))?;
    check_input_kind(source, &bundle)?;
    let mut pipeline = Pipeline::new(ort, &bundle, options)?;
    if let Some(cascade) = cascade {
        cascade.attach(&mut pipeline, ort, &bundle, options)?;
    }
    if let Some(limits) = source.image_limits() {
        pipeline.set_image_limits(limits);
    }
    Ok((bundle, pipeline))
}

fn engine_options(config: &AgentConfig) -> EngineOptions {
    EngineOptions {
        providers: (!config.onnxruntime.providers.is_empty()).then(|| config.onnxruntime.providers.clone()),
        require: config.onnxruntime.require,
        intra_threads: config.onnxruntime.intra_threads,
        session: config.onnxruntime.session_overrides(),
        optimized_model_cache: config
            .onnxruntime
            .cache_dir(config.update.as_ref().and_then(|update| update.state_dir.as_deref())),
    }
}

fn check_input_kind(source: &SourceConfig, bundle: &Bundle) -> anyhow::Result<()> {
    let wants_image = source.takes_images();
    let is_image = matches!(bundle.manifest().input, InputSpec::Image(_));
    if wants_image != is_image {
        let model = if is_image { "an image" } else { "a sensor" };
        return Err(anyhow!("source kind `{}` cannot feed {model} model ({})", source.kind(), bundle.manifest().name));
    }
    Ok(())
}

fn sensor_spec(bundle: &Bundle) -> Option<&SensorInputSpec> {
    match &bundle.manifest().input {
        InputSpec::Sensor(spec) => Some(spec),
        InputSpec::Image(_) => None,
    }
}

fn run(
    config: AgentConfig,
    ort: OnnxRuntime,
    ready: Vec<ReadySource>,
    failed: Vec<(String, anyhow::Error)>,
    state: Option<StateDir>,
) -> anyhow::Result<ExitCode> {
    let topics = Arc::new(config.topics());
    // The outboxes append to the spool (or publish through the link's handle); the link's thread starts once
    // the routes (which need the feeds, which need the outboxes) exist.
    let (link, pending_link) = mqtt::connect(&config)?;
    let spool = Spool::open(&config.spool).map(Arc::new);
    let output: Arc<dyn Publish> = match &spool {
        Ok(spool) => spool.clone(),
        Err(_) => Arc::new(link.clone()),
    };
    let settings = OutboxSettings {
        device: config.device_id.as_str().into(),
        topics: topics.clone(),
        format: config.mqtt.format,
        qos: OutboxQos {
            predictions: mqtt::qos(config.mqtt.qos.predictions),
            errors: mqtt::qos(config.mqtt.qos.errors),
        },
        link: output,
        payload_limit: {
            let (max_packet_bytes, large, format) =
                (config.mqtt.max_packet_bytes, config.large_payloads.clone(), config.mqtt.format);
            Arc::new(move |source| PayloadLimit::new(max_packet_bytes, &large, source, format))
        },
    };
    let metrics = Arc::new(Metrics::new());
    let shutdown = Arc::new(Shutdown::default());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let conditions = Arc::new(Conditions::new(settings.clone(), clock.clone()));
    let spool = spool_or_condition(spool, &conditions);
    let snapshots = |source: &str| start_snapshots(&config, &link, &metrics, source);
    let monitor = |source: &ReadySource| start_monitor(&config, &link, &metrics, &clock, source);
    let Workers { mut routes, feeds, workers, readers, updatable, watched } =
        start_workers(ready, &settings, &metrics, &clock, &shutdown, &snapshots, &monitor)?;

    let update_events = config.update.as_ref().map(|update| {
        let groups: Vec<UpdateTopics> = update.settings.groups.iter().map(|group| UpdateTopics::group(group)).collect();
        let (update_routes, events) = update::routes(&own_update_topics(&config), &groups);
        routes.extend(update_routes);
        events
    });
    let oversize_hook = mqtt::oversize_hook(&config, link.clone(), metrics.clone());
    let pending_link = match &spool {
        Some(spool) => pending_link.on_outcome(forwarder::observer(spool.clone())),
        None => pending_link,
    };
    let mqtt_thread = pending_link.on_oversized(oversize_hook).start(routes)?;
    let forwarder = spool.clone().map(|spool| start_forwarder(&config, spool, &link)).transpose()?;
    let updater = match (&config.update, state, update_events) {
        (Some(update), Some(state), Some(events)) => {
            let pending = PendingUpdater { update: update.clone(), updatable, events, ort };
            Some(start_updater(&config, pending, state, &link, &conditions, shutdown.clone())?)
        }
        _ => None,
    };
    for (name, error) in &failed {
        report_start_failure(&config, &settings, &metrics, name, error);
    }
    let (health_stop, health_stopped) = std::sync::mpsc::channel();
    #[cfg_attr(not(feature = "prometheus"), expect(unused_mut, reason = "only /metrics takes from the reporter"))]
    let mut reporter = HealthReporter::new(&config, metrics, link.clone(), conditions.clone(), spool);
    #[cfg(feature = "prometheus")]
    let exporter = crate::prometheus::start(&config, &mut reporter);
    let health = reporter.spawn(health_stopped)?;
    let mut source_threads = Vec::new();
    for reader in readers {
        source_threads.extend(reader()?);
    }
    trigger_on_signal(shutdown.clone())?;
    log::info!(device = config.device_id.as_str(), sources = feeds.len(); "Agent running.");

    let supervisor = Supervisor::new(SupervisorParts {
        watchdog: Watchdog::from_env(),
        limits: config.supervision.stuck_limits(),
        workers: watched,
        link: link.clone(),
        link_stall: link_stall(&config),
        conditions,
        disk: config
            .update
            .as_ref()
            .and_then(|update| update.state_dir.clone())
            .map(|dir| (dir, config.supervision.retry())),
    });
    supervisor.run(&shutdown);
    log::info!("Shutting down: draining sources and workers.");
    let running = Running {
        updater,
        source_threads,
        feeds,
        workers,
        health_stop,
        health,
        #[cfg(feature = "prometheus")]
        exporter,
        forwarder,
        link,
        mqtt_thread,
    };
    running.stop();
    log::info!("Agent stopped.");
    Ok(ExitCode::SUCCESS)
}

/// How long the MQTT link thread may handle nothing before it counts as wedged: connected, it handles a
/// keep-alive ping every `keep_alive_secs`; disconnected, an attempt every backoff (at most 10 s).
fn link_stall(config: &AgentConfig) -> Duration {
    Duration::from_secs(config.mqtt.keep_alive_secs.saturating_mul(3)).max(MIN_LINK_STALL)
}

/// The data path of every source, started: its feed, its worker thread, its inbound route (MQTT sources),
/// the reader to start once the link is up (file sources), and what the updater and the supervisor need of
/// its worker.
struct Workers {
    routes: Vec<Route>,
    feeds: Vec<Arc<Feed>>,
    workers: Vec<JoinHandle<()>>,
    readers: Vec<Starter>,
    updatable: Vec<UpdatableWorker>,
    watched: Vec<WatchedWorker>,
}

/// A worker the updater may hand a new model, and the model it serves.
struct UpdatableWorker {
    running: ModelIdentity,
    link: WorkerLink,
}

/// Builds each source's feed and outbox and starts its worker.
fn start_workers(
    ready: Vec<ReadySource>,
    settings: &OutboxSettings,
    metrics: &Metrics,
    clock: &Arc<dyn Clock>,
    shutdown: &Arc<Shutdown>,
    start_snapshots: &dyn Fn(&str) -> anyhow::Result<Option<Snapshots>>,
    start_monitor: &dyn Fn(&ReadySource) -> anyhow::Result<Option<StartedMonitor>>,
) -> anyhow::Result<Workers> {
    let mut routes = Vec::new();
    let mut feeds = Vec::new();
    let mut workers = Vec::new();
    let mut readers: Vec<Starter> = Vec::new();
    let mut updatable = Vec::new();
    let mut watched = Vec::new();

    for source in ready {
        let name = source.config.name().to_owned();
        let provider = source.pipeline.provider();
        if provider.fell_back_to_cpu() {
            log::warn!(source = name.as_str(); "No preferred accelerator could be registered; running on CPU: {:?}.", provider.refused);
        }
        let stats = metrics.register(&name);
        let outbox = match source.config.batch() {
            Some(limits) => Outbox::batched(settings, &name, stats.clone(), limits)
                .with_context(|| format!("starting thread batch-{name}"))?,
            None => Outbox::new(settings, &name, stats.clone()),
        };
        let (feed, queue): (Arc<Feed>, JobQueue) = match &source.config {
            SourceConfig::Csv(c) => Feed::fifo(outbox.clone(), c.queue, clock.clone()),
            SourceConfig::Stdin(c) => Feed::fifo(outbox.clone(), c.queue, clock.clone()),
            SourceConfig::MqttSensor(c) => Feed::fifo(outbox.clone(), c.queue, clock.clone()),
            // Every image source is camera-like: the newest frame wins.
            _ => Feed::camera(outbox.clone(), clock.clone()),
        };
        if let Some(topic) = source.config.inbound_topic(&settings.topics) {
            routes.push(inbound_route(&source.config, topic, feed.clone()));
        }
        if let Some(reader) = reader(&source, feed.clone(), shutdown.clone(), metrics)? {
            readers.push(reader);
        }
        let monitor = start_monitor(&source)?.map(|(tap, feedback)| {
            routes.extend(feedback);
            tap
        });
        let serving = Serving::new(source.pipeline);
        updatable.push(UpdatableWorker {
            running: source.bundle.identity(),
            link: WorkerLink {
                source: name.clone(),
                control: queue.control(),
                provider: serving.pipeline.provider().active.name().to_owned(),
                takes_images: matches!(source.bundle.manifest().input, InputSpec::Image(_)),
                cascade: source.cascade.clone(),
            },
        });
        let busy = Arc::new(Busy::new(clock.clone()));
        watched.push(WatchedWorker { source: name.clone(), busy: busy.clone(), stats });
        let snapshots = start_snapshots(&name)?;
        let (prepare_ends, worker_ends) = prepare::channels();
        let preparer = serving.pipeline.preparer();
        let monitored = monitor.is_some();
        let max_batch = worker::batch_limit(&serving.pipeline, monitored);
        // Joined before the worker: it ends first, once the source's queue is closed and drained.
        workers.push(spawn_named(format!("prepare-{name}"), move || {
            prepare::run(preparer, max_batch, monitored, queue, prepare_ends)
        })?);
        workers.push(spawn_named(format!("worker-{name}"), move || {
            worker::run(serving, worker_ends, &outbox, &busy, snapshots, monitor);
        })?);
        feeds.push(feed);
    }
    Ok(Workers { routes, feeds, workers, readers, updatable, watched })
}

/// Starts the snapshot thread of `source` when a `[[snapshots]]` entry names it. Snapshots are published
/// straight to the link, not through the spool: a retained picture is worth sending only while it is recent.
fn start_snapshots(
    config: &AgentConfig,
    link: &MqttHandle,
    metrics: &Metrics,
    source: &str,
) -> anyhow::Result<Option<Snapshots>> {
    let Some(snapshot) = config.snapshots.iter().find(|snapshot| snapshot.source == source) else {
        return Ok(None);
    };
    let publisher = snapshot.publish.then(|| Publisher {
        link: link.clone(),
        topic: config.topics().snapshots(source),
        qos: mqtt::qos(config.mqtt.qos.predictions),
    });
    let stats = metrics.register_snapshots(source);
    let snapshots = Snapshots::start(snapshot, &config.device_id, publisher, stats)
        .with_context(|| format!("starting thread snapshot-{source}"))?;
    Ok(Some(snapshots))
}

/// A source's monitor: the tap its worker observes through, and the route of its feedback topic.
type StartedMonitor = (MonitorTap, Option<Route>);

/// Starts the `monitor-<source>` thread when a `[[monitors]]` entry names `source`, with the route of its
/// feedback topic when it takes feedback. Like snapshots, monitor messages go straight to the link.
fn start_monitor(
    config: &AgentConfig,
    link: &MqttHandle,
    metrics: &Metrics,
    clock: &Arc<dyn Clock>,
    ready: &ReadySource,
) -> anyhow::Result<Option<StartedMonitor>> {
    let source = ready.config.name();
    let Some(monitor) = config.monitors.iter().find(|monitor| monitor.source == source) else {
        return Ok(None);
    };
    let topics = config.topics();
    let settings = MonitorSettings {
        device: config.device_id.clone(),
        config: monitor.clone(),
        topics: MonitorTopics::of(&topics, source),
        format: config.mqtt.format,
        evidence_dir: monitor.evidence.as_ref().and_then(|evidence| evidence.directory(config.update.as_ref())),
        channel_names: sensor_spec(&ready.bundle).map(|spec| spec.channel_names.clone()).unwrap_or_default(),
        link: Box::new(MqttMonitorLink { link: link.clone(), qos: mqtt::qos(config.mqtt.qos.predictions) }),
        clock: clock.clone(),
        stats: metrics.register_monitor(source),
    };
    let (tap, sender) = monitor::start(settings).with_context(|| format!("starting thread monitor-{source}"))?;
    let feedback = monitor
        .feedback
        .is_some()
        .then(|| monitor::feedback_route(topics.feedback(source), config.mqtt.format, sender));
    Ok(Some((tap, feedback)))
}

/// The spool, or `None` when it could not open: the `spool_failing` condition is raised (logged, an error event,
/// in health), messages go straight to the link's in-memory queue, which an outage or a restart loses, and
/// health reports `spool: null`.
fn spool_or_condition(spool: Result<Arc<Spool>, SpoolError>, conditions: &Conditions) -> Option<Arc<Spool>> {
    match spool {
        Ok(spool) => Some(spool),
        Err(error) => {
            let detail = format!("{error}; messages go straight to the MQTT link and an outage loses them");
            conditions.raise(Condition::SpoolFailing, AGENT, &detail);
            None
        }
    }
}

/// Starts the `spool-forwarder` thread, with half the link's queue in flight at most (room for the rest).
fn start_forwarder(config: &AgentConfig, spool: Arc<Spool>, link: &MqttHandle) -> anyhow::Result<forwarder::Running> {
    let window = config.mqtt.queue_capacity / 2;
    let forwarder = spool::forwarder::Forwarder::new(
        spool,
        Arc::new(link.clone()),
        window,
        config.spool.replay_rate,
        config.spool.fsync_interval(),
    );
    let forwarder = if config.health.retain { forwarder.retain_live(Class::Health) } else { forwarder };
    forwarder.spawn().context("starting thread spool-forwarder")
}

/// What the updater is started with, besides the slots.
struct PendingUpdater {
    update: UpdateConfig,
    updatable: Vec<UpdatableWorker>,
    events: update::Inbox,
    ort: OnnxRuntime,
}

/// Starts the `update` thread. With the state directory unusable, the thread first waits until it works (the
/// sources serve meanwhile); the updater starts then, and announces the device's groups.
fn start_updater(
    config: &AgentConfig,
    pending: PendingUpdater,
    state: StateDir,
    link: &MqttHandle,
    conditions: &Arc<Conditions>,
    shutdown: Arc<Shutdown>,
) -> anyhow::Result<JoinHandle<()>> {
    let PendingUpdater { update, updatable, events, ort } = pending;
    let updater_link = link.clone();
    let parts = move |slots: ModelSlots, config: &AgentConfig| UpdaterParts {
        device: config.device_id.clone(),
        topics: config.topics(),
        own: own_update_topics(config),
        format: config.mqtt.format,
        qos: UpdateQos { status: mqtt::qos(config.mqtt.qos.status), errors: mqtt::qos(config.mqtt.qos.errors) },
        max_packet_bytes: config.mqtt.max_packet_bytes,
        ort,
        options: engine_options(config),
        models: served_models(slots, updatable),
        evidence_dirs: evidence::fetch::evidence_dirs(config),
        link: updater_link,
        config: update,
    };
    let state = match state {
        StateDir::Usable(slots) => {
            announce_membership(link, config);
            let updater = Updater::new(parts(slots, config))?;
            return spawn_named("update".into(), move || updater.run(events, shutdown));
        }
        unusable @ StateDir::Unusable { .. } => unusable,
    };
    let (config, conditions, retry) = (config.clone(), conditions.clone(), config.supervision.retry());
    let link = link.clone();
    spawn_named("update".into(), move || {
        let Some(slots) = state.wait_usable(&conditions, retry, &shutdown) else { return };
        announce_membership(&link, &config);
        match Updater::new(parts(slots, &config)) {
            Ok(updater) => updater.run(events, shutdown),
            Err(error) => log::error!("Updates cannot start: {error:#}."),
        }
    })
}

/// The threads of a running agent, stopped in data-flow order once `shutdown` is triggered: the updater and
/// the sources, then the workers once they have drained their queues, then health, then the spool's forwarder
/// once it has sent what it holds, then the MQTT link after the broker has acknowledged what was queued.
struct Running {
    updater: Option<JoinHandle<()>>,
    source_threads: Vec<JoinHandle<()>>,
    feeds: Vec<Arc<Feed>>,
    workers: Vec<JoinHandle<()>>,
    health_stop: std::sync::mpsc::Sender<()>,
    health: JoinHandle<()>,
    /// `/metrics`, stopped after health (it serves health's last report until then).
    #[cfg(feature = "prometheus")]
    exporter: Option<crate::prometheus::Exporter>,
    forwarder: Option<forwarder::Running>,
    link: MqttHandle,
    mqtt_thread: JoinHandle<()>,
}

impl Running {
    fn stop(self) {
        if let Some(updater) = self.updater {
            let _ = updater.join();
        }
        for thread in self.source_threads {
            let _ = thread.join();
        }
        for feed in &self.feeds {
            feed.close();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
        let _ = self.health_stop.send(());
        let _ = self.health.join();
        #[cfg(feature = "prometheus")]
        if let Some(exporter) = self.exporter {
            exporter.stop();
        }
        if let Some(forwarder) = self.forwarder {
            forwarder.stop(Instant::now() + DRAIN_TIMEOUT);
        }
        let report = self.link.shutdown(DRAIN_TIMEOUT);
        if report.unacked > 0 {
            log::warn!(unacked = report.unacked; "Broker did not acknowledge every message before shutdown.");
        }
        if report.closed {
            let _ = self.mqtt_thread.join();
        }
    }
}

/// The models the sources serve, each with its slot store and its workers, for the updater. A model without
/// slots (its factory bundle's manifest did not parse) takes no updates.
fn served_models(slots: ModelSlots, updatable: Vec<UpdatableWorker>) -> Vec<ServedModel> {
    let mut stores = slots.into_stores();
    let mut served: Vec<ServedModel> = Vec::new();
    for worker in updatable {
        if let Some(model) = served.iter_mut().find(|model| model.name == worker.running.name) {
            model.workers.push(worker.link);
        } else if let Some((store, recovery)) = stores.remove(&worker.running.name) {
            let name = worker.running.name.clone();
            served.push(ServedModel { name, store, recovery, running: worker.running, workers: vec![worker.link] });
        }
    }
    served
}

fn own_update_topics(config: &AgentConfig) -> UpdateTopics {
    UpdateTopics::device(config.topics().prefix())
}

/// Retained membership messages, so that `model push --group` finds this device.
fn announce_membership(link: &MqttHandle, config: &AgentConfig) {
    let Some(update) = &config.update else { return };
    let membership = Membership { device: config.device_id.clone(), prefix: config.topics().prefix().to_owned() };
    let Ok(payload) = serde_json::to_vec(&membership) else { return };
    for group in &update.settings.groups {
        let topic = UpdateTopics::group(group).member(&config.device_id);
        // Kept: a broker failed over to, or a cluster node, may not have it.
        if let Err(e) = link.retain_on_connect(&topic, QoS::AtLeastOnce, payload.clone()) {
            log::warn!(group = group.as_str(); "Group membership not published: {e}.");
        }
    }
}

/// The thread that reads a file-backed source or a camera, started once the MQTT link is up. `None` for MQTT sources.
fn reader(
    source: &ReadySource,
    feed: Arc<Feed>,
    shutdown: Arc<Shutdown>,
    metrics: &Metrics,
) -> anyhow::Result<Option<Starter>> {
    let name = format!("source-{}", source.config.name());
    let sensor = sensor_spec(&source.bundle).cloned();
    Ok(match &source.config {
        SourceConfig::Images(c) => {
            let files = match (&c.path, c.watch) {
                (Some(dir), true) => FileSet::Watch(WatchedDir::start(dir.clone())),
                (Some(path), false) if path.is_dir() => FileSet::Directory(path.clone()),
                (Some(path), false) => FileSet::List(vec![path.clone()]),
                (None, _) => FileSet::List(c.files.clone()),
            };
            let spec = ImageFiles { files, rate_fps: c.rate_fps, looping: c.repeat, max_file_bytes: c.max_file_bytes };
            Some(Box::new(move || spawn_named(name, move || images::run(spec, &feed, &shutdown)).map(Some)))
        }
        SourceConfig::Csv(c) => {
            let Some(sensor) = sensor else { return Ok(None) };
            let replay = Recording {
                path: c.path.clone().unwrap_or_default(),
                rate_hz: c.rate_hz,
                stride: c.stride.map_or(sensor.window, |s| s as usize),
                looping: c.repeat,
            };
            let shape =
                WindowShape { channels: sensor.channels, window: sensor.window, channel_names: sensor.channel_names };
            Some(Box::new(move || {
                spawn_named(name, move || recording::run(&replay, &shape, &feed, &shutdown)).map(Some)
            }))
        }
        SourceConfig::Stdin(c) => {
            let Some(sensor) = sensor else { return Ok(None) };
            let stride = c.stride.map_or(sensor.window, |s| s as usize);
            // Not joined at shutdown: a read from a terminal cannot be interrupted, and the process exits anyway.
            Some(Box::new(move || {
                spawn_named(name, move || stdin::run(sensor.channels, sensor.window, stride, &feed, &shutdown))?;
                Ok(None)
            }))
        }
        SourceConfig::V4l2(c) => {
            let (spec, stats) = (V4l2Spec::new(c), metrics.register_camera(&c.name));
            Some(Box::new(move || {
                spawn_named(name, move || v4l2::run(&spec, LinuxDevice::open, &feed, &stats, &shutdown)).map(Some)
            }))
        }
        SourceConfig::HttpMjpeg(c) => {
            let camera = MjpegCamera {
                name: c.name.clone(),
                // Validated with the config.
                url: HttpUrl::parse(&c.url).map_err(|error| anyhow::anyhow!("source {}: url: {error}", c.name))?,
                origin: c.url.clone(),
                mode: match c.mode {
                    MjpegMode::Stream => http_mjpeg::Mode::Stream,
                    MjpegMode::Snapshot => http_mjpeg::Mode::Snapshot { rate_fps: c.snapshot_rate_fps() },
                },
                credentials_file: c.credentials_file.clone(),
                watchdog: Duration::from_secs(c.watchdog_secs),
                max_part_bytes: usize::try_from(c.max_part_bytes).unwrap_or(usize::MAX),
            };
            let stats = metrics.register_camera(&c.name);
            Some(Box::new(move || {
                spawn_named(name, move || http_mjpeg::run(camera, &feed, &stats, &shutdown)).map(Some)
            }))
        }
        SourceConfig::Rtsp(c) => {
            let camera = rtsp::RtspCamera::new(c)?;
            let stats = metrics.register_camera(&c.name);
            Some(Box::new(move || spawn_named(name, move || rtsp::run(camera, &feed, &stats, &shutdown)).map(Some)))
        }
        SourceConfig::MqttFrames(_) | SourceConfig::MqttSensor(_) => None,
    })
}

/// Inbound MQTT payloads go straight into the source's feed, on the MQTT thread (never blocking it).
fn inbound_route(source: &SourceConfig, topic: String, feed: Arc<Feed>) -> Route {
    let origin = topic.clone();
    let sink: Box<dyn mqtt::Sink> = match source {
        SourceConfig::MqttSensor(c) => {
            let encoding = c.encoding;
            Box::new(move |_topic: &str, payload: &[u8]| match wire::decode_sensor_window(encoding, payload) {
                Ok(window) => feed.window_now(origin.clone(), sensor_window(window)),
                Err(e) => feed.error(&origin, ErrorKind::Malformed, &e.to_string()),
            })
        }
        _ => Box::new(move |_topic: &str, payload: &[u8]| feed.frame(origin.clone(), payload.to_vec())),
    };
    Route { topic, sink }
}

/// A source whose bundle could not be loaded is reported once on its errors topic (stage `load`) and stays in
/// health, with no model and its error counted, so that a subscriber arriving later still sees it is down.
fn report_start_failure(
    config: &AgentConfig,
    settings: &OutboxSettings,
    metrics: &Metrics,
    name: &str,
    error: &anyhow::Error,
) {
    let kind = error.downcast_ref::<runtime::Error>().map_or(ErrorKind::Load, runtime::Error::kind);
    let stats = metrics.register(name);
    stats.error(kind);
    stats.set_providers(Vec::new(), "none".to_owned());
    let outbox = Outbox::new(settings, name, stats);
    let event = outbox.error_message(0, &config_model(config, name), ErrorStage::Load, kind, &format!("{error:#}"));
    if let Ok(payload) = wire::encode(settings.format, &event) {
        let _ = settings.link.publish(Class::Errors, settings.topics.errors(name), settings.qos.errors, payload);
    }
}

fn config_model(config: &AgentConfig, name: &str) -> String {
    config.sources.iter().find(|s| s.name() == name).map(|s| s.model().display().to_string()).unwrap_or_default()
}

fn spawn_named(name: String, body: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.clone()).spawn(body).with_context(|| format!("starting thread {name}"))
}

/// Triggers `shutdown` on SIGTERM or SIGINT, from a `signals` thread (not joined: the process exits anyway).
fn trigger_on_signal(shutdown: Arc<Shutdown>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .context("installing signal handlers")?;
    spawn_named("signals".into(), move || {
        if signals.forever().next().is_some() {
            shutdown.trigger();
        }
    })?;
    Ok(())
}

/// An inbound window as the runtime takes it.
fn sensor_window(window: wire::SensorWindowMsg) -> runtime::SensorWindow {
    // u32 always fits the usize of the 32- and 64-bit targets the agent builds for.
    runtime::SensorWindow { channels: window.channels as usize, values: window.values }
}
