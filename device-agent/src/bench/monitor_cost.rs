//! `device-agent bench --monitor`: what model monitoring costs. Two pipelines of the same bundle run the same
//! inputs on the same threads, one bare and one as a monitored worker runs it (features computed, handed to the
//! real monitor tap and `monitor-<source>` thread, which keeps the drift windows, evaluates them and publishes to
//! a link that discards), in interleaved rounds so that the machine's noise lands on both sides.
//!
//! A bundle without a reference profile is profiled on the inputs first (in a temporary copy), so that drift is
//! evaluated as on a profiled device.

use crate::clock::SystemClock;
use crate::config::MonitorConfig;
use crate::health::system::SystemSampler;
use crate::monitor::{self, MonitorLink, MonitorSettings, MonitorStats, MonitorTopics};
use crate::queue::Job;
use crate::worker::Serving;
use anyhow::{Context, bail};
use runtime::manifest::InputSpec;
use runtime::monitor::{PROFILE_FILE, ProfileBuilder};
use runtime::recording::{WindowShape, read_windows};
use runtime::{Bundle, EngineOptions, Input, OnnxRuntime, Pipeline, StageTimings};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Source name of the monitored side.
const SOURCE: &str = "bench";
/// Samples between the starts of two sensor windows: a recording gives many distinct inputs.
const SENSOR_STRIDE: usize = 10;

/// What the monitor publishes goes nowhere: the cost measured is the device's, not a broker's.
struct Discard;

impl MonitorLink for Discard {
    fn publish(&self, _topic: &str, _retain: bool, _payload: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// One round of one side: frames/s and the mean postprocess time (feature extraction included when monitored).
struct Round {
    fps: f64,
    postprocess_us: f64,
}

/// Measures `bundle_dir` on `paths` with and without monitoring: `rounds` rounds of `round` per side.
pub fn main(
    ort: &OnnxRuntime,
    bundle_dir: &Path,
    paths: &[PathBuf],
    options: &EngineOptions,
    round: Duration,
    rounds: usize,
) -> anyhow::Result<()> {
    let bundle = Bundle::load(bundle_dir).with_context(|| format!("loading bundle {}", bundle_dir.display()))?;
    let jobs: Vec<Job> = inputs(&bundle, paths)?
        .into_iter()
        .enumerate()
        .map(|(seq, input)| Job { seq: seq as u64, captured_at_ms: 0, origin: String::new(), input })
        .collect();
    let mut bare = Pipeline::new(ort, &bundle, options)?;
    // Kept until the end: the profiled copy's files.
    let profiled = match bundle.profile() {
        Some(_) => None,
        None => Some(profiled_copy(ort, &bundle, options, &jobs)?),
    };
    let monitored_bundle = match &profiled {
        Some(dir) => Bundle::load(dir.path()).context("loading the profiled copy")?,
        None => bundle,
    };
    let mut serving = Serving::new(Pipeline::new(ort, &monitored_bundle, options)?);
    let stats = Arc::new(MonitorStats::default());
    let config = MonitorConfig { source: SOURCE.to_owned(), ..MonitorConfig::default() };
    let (window, stride) = (config.window, config.stride);
    let (mut tap, _feedback) = monitor::start(MonitorSettings {
        device: SOURCE.to_owned(),
        config,
        topics: MonitorTopics::of(&protocol::wire::Topics::new(SOURCE), SOURCE),
        format: protocol::wire::Format::Json,
        evidence_dir: None,
        channel_names: Vec::new(),
        link: Box::new(Discard),
        clock: Arc::new(SystemClock),
        stats: stats.clone(),
    })?;
    tap.serve(&mut serving);

    let mut run_bare = |job: &Job| bare.infer(&job.input).map(|(_, timings)| timings);
    let mut run_monitored = |job: &Job| {
        let (output, timings) = serving.pipeline.infer(&job.input)?;
        tap.inferred(job, serving.pipeline.features(), &output, &timings);
        Ok::<_, runtime::Error>(timings)
    };
    for job in jobs.iter().cycle().take(window) {
        run_bare(job)?;
        run_monitored(job)?;
    }
    let mut sampler = SystemSampler::new();
    let rss_start = sampler.sample().rss_bytes;
    let (mut off, mut on) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for index in 0..rounds {
        // Alternate which side goes first, so that neither always follows the other.
        if index % 2 == 0 {
            off.push(measure(&jobs, round, &mut run_bare)?);
            on.push(measure(&jobs, round, &mut run_monitored)?);
        } else {
            on.push(measure(&jobs, round, &mut run_monitored)?);
            off.push(measure(&jobs, round, &mut run_bare)?);
        }
    }
    let rss_end = sampler.sample().rss_bytes;
    tap.finish();

    let health = stats.health(SOURCE);
    println!(
        "model {}, {} input(s), {rounds} interleaved rounds of {:.1} s per side, intra_threads {}; monitor window \
         {window}, stride {stride}",
        serving.pipeline.identity().name,
        jobs.len(),
        round.as_secs_f64(),
        options.intra_threads
    );
    println!("{:<18}{:>12}{:>10}{:>10}{:>18}", "", "frames/s", "min", "max", "postprocess µs");
    let row = |name: &str, rounds: &[Round]| {
        let fps = sorted(rounds.iter().map(|round| round.fps));
        let post = sorted(rounds.iter().map(|round| round.postprocess_us));
        println!("{name:<18}{:>12.1}{:>10.1}{:>10.1}{:>18.1}", median(&fps), fps[0], fps[fps.len() - 1], median(&post));
    };
    row("monitoring off", &off);
    row("monitoring on", &on);
    let ratios = sorted(off.iter().zip(&on).map(|(off, on)| on.fps / off.fps));
    println!(
        "frames/s on/off per round: median {:.3} (min {:.3}, max {:.3})",
        median(&ratios),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let extraction = median(&sorted(off.iter().zip(&on).map(|(off, on)| on.postprocess_us - off.postprocess_us)));
    println!("feature extraction: {extraction:.1} µs per frame (postprocess on minus off, median over rounds)");
    println!(
        "monitor: {} observed, {} dropped, {} windows evaluated; RSS {:.1} MB at the first round, {:.1} MB after the \
         last",
        health.observed,
        health.dropped,
        health.windows_evaluated,
        rss_start as f64 / 1e6,
        rss_end as f64 / 1e6
    );
    Ok(())
}

/// Runs `jobs` in a cycle for `duration`.
fn measure(
    jobs: &[Job],
    duration: Duration,
    run: &mut impl FnMut(&Job) -> Result<StageTimings, runtime::Error>,
) -> anyhow::Result<Round> {
    let (mut frames, mut postprocess_us) = (0u64, 0u64);
    let started = Instant::now();
    for job in jobs.iter().cycle() {
        postprocess_us += u64::from(run(job)?.postprocess_us);
        frames += 1;
        if started.elapsed() >= duration {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok(Round { fps: frames as f64 / elapsed, postprocess_us: postprocess_us as f64 / frames.max(1) as f64 })
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Image files as their bytes; recordings as every window, [`SENSOR_STRIDE`] samples apart.
fn inputs(bundle: &Bundle, paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        match &bundle.manifest().input {
            InputSpec::Image(_) => {
                inputs.push(Input::Image(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?))
            }
            InputSpec::Sensor(spec) => {
                let shape = WindowShape {
                    channels: spec.channels,
                    window: spec.window,
                    channel_names: spec.channel_names.clone(),
                };
                let windows = read_windows(path, &shape, SENSOR_STRIDE, usize::MAX).map_err(anyhow::Error::msg)?;
                inputs.extend(windows.into_iter().map(Input::Sensor));
            }
        }
    }
    if inputs.is_empty() {
        bail!("no inputs");
    }
    Ok(inputs)
}

/// A copy of `bundle` with a profile of `jobs` (listed in its manifest and `[checksums]`, as a profiled bundle).
fn profiled_copy(
    ort: &OnnxRuntime,
    bundle: &Bundle,
    options: &EngineOptions,
    jobs: &[Job],
) -> anyhow::Result<tempfile::TempDir> {
    let mut pipeline = Pipeline::new(ort, bundle, options)?;
    pipeline.enable_monitoring();
    let mut builder = ProfileBuilder::new(pipeline.feature_specs());
    for job in jobs {
        pipeline.infer(&job.input)?;
        builder.add(pipeline.features().context("monitoring is on")?);
    }
    let profile = builder.build()?.to_json();
    let copy = tempfile::tempdir()?;
    for entry in std::fs::read_dir(bundle.dir())? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().context("a file name")?;
            std::fs::copy(&path, copy.path().join(name))?;
        }
    }
    let manifest_path = copy.path().join(runtime::MANIFEST_FILE);
    let manifest = std::fs::read_to_string(&manifest_path)?;
    let checksum = format!("\"{PROFILE_FILE}\" = \"{}\"\n", packaging::hex_sha256(profile.as_bytes()));
    // A top-level key goes before the first table; the checksum into `[checksums]`, made if missing.
    let mut manifest = format!("profile = \"{PROFILE_FILE}\"\n{manifest}");
    match manifest.find("[checksums]\n") {
        Some(at) => manifest.insert_str(at + "[checksums]\n".len(), &checksum),
        None => manifest.push_str(&format!("\n[checksums]\n{checksum}")),
    }
    std::fs::write(&manifest_path, manifest)?;
    std::fs::write(copy.path().join(PROFILE_FILE), profile)?;
    Ok(copy)
}
