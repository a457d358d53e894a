//! `device-agent bench`: the agent's pipeline against bare `Session::run` on the same model, threads and session
//! settings, and against bare `Session::run` with ONNX Runtime's own defaults (the honest limit), each for a fixed
//! time: frames/s, latency, CPU time per frame and peak RSS, plus the startup to the first prediction and the
//! pipeline's RSS broken down by phase ([`rss`]). The pipeline runs first, in a fresh process, so that its
//! breakdown and peak are its own; the bare sessions follow. `--monitor` measures the monitor's cost instead
//! ([`monitor_cost`]).

mod monitor_cost;
mod rss;

use crate::BenchArgs;
use crate::config::Auto;
use crate::health::{nearest_rank, system};
use anyhow::{Context, bail};
use clap::Args;
use ort::session::Session;
use ort::value::{Shape, TensorRef};
use rss::RssSnapshot;
use runtime::manifest::InputSpec;
use runtime::preprocess::{ImagePreprocessor, SensorPreprocessor};
use runtime::{
    Bundle, EngineOptions, GraphOptimization, Input, InputTensor, ModelFamily, OnnxRuntime, Pipeline, ProviderKind,
    SensorWindow, SessionOverrides, SessionSettings, StageTimings,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Latency samples kept per measurement. Frames past it still count towards frames/s; the cap keeps the samples'
/// own memory (at most 1.6 MB) out of the peak-RSS figures, which otherwise grow with `--seconds` on fast models.
const MAX_SAMPLES: usize = 100_000;

/// Runs before each measurement that are not counted: first-run allocations, page faults, thread pool start-up.
const WARM_UP_RUNS: usize = 3;

/// The session settings of `bench` (and of the agent's `[onnxruntime]` section): each `auto` (the model family's
/// measured default) or a value.
#[derive(Args, Clone)]
pub struct SessionArgs {
    /// ONNX Runtime's CPU memory arena: auto, true or false.
    #[arg(long, default_value = "auto")]
    cpu_arena: Auto<bool>,
    /// Memory patterns: auto, true or false.
    #[arg(long, default_value = "auto")]
    memory_pattern: Auto<bool>,
    /// Graph optimisation: auto, disable, basic, extended or all.
    #[arg(long, default_value = "auto")]
    graph_optimization: Auto<GraphOptimization>,
    /// Intra-op spinning (with --threads >= 2): auto, true or false.
    #[arg(long, default_value = "auto")]
    intra_spinning: Auto<bool>,
    /// The optimised-model cache's directory (default: none, the session is built from the bundle).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl SessionArgs {
    fn overrides(&self) -> SessionOverrides {
        SessionOverrides {
            cpu_arena: self.cpu_arena.value(),
            memory_pattern: self.memory_pattern.value(),
            optimization: self.graph_optimization.value(),
            intra_spinning: self.intra_spinning.value(),
        }
    }
}

/// Frames run in one measurement, how long they took (wall clock) and the process's CPU time meanwhile.
struct Measured<T> {
    frames: u64,
    elapsed: Duration,
    cpu: Duration,
    samples: Vec<T>,
    peak_rss: Option<u64>,
}

impl<T> Measured<T> {
    fn new() -> Measured<T> {
        Measured { frames: 0, elapsed: Duration::ZERO, cpu: Duration::ZERO, samples: Vec::new(), peak_rss: None }
    }

    fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn cpu_us_per_frame(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.frames.max(1) as f64
    }

    /// Runs `frame` until `budget` has passed, keeping what it returns as samples.
    fn run(budget: Duration, mut frame: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<Measured<T>> {
        reset_peak_rss();
        let mut measured = Measured::new();
        let cpu_before = system::cpu_time().unwrap_or_default();
        let started = Instant::now();
        loop {
            let sample = frame()?;
            measured.frames += 1;
            if measured.samples.len() < MAX_SAMPLES {
                measured.samples.push(sample);
            }
            if started.elapsed() >= budget {
                break;
            }
        }
        measured.elapsed = started.elapsed();
        measured.cpu = system::cpu_time().unwrap_or_default().saturating_sub(cpu_before);
        measured.peak_rss = system::peak_rss_bytes();
        Ok(measured)
    }
}

pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let process_started = Instant::now();
    let rss_start = RssSnapshot::take();
    let model = &args.model;
    let ort = OnnxRuntime::load(crate::ort_library(model.onnxruntime.as_deref()))?;
    let ort_loaded = process_started.elapsed();
    let rss_loaded = RssSnapshot::take();
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    let budget = Duration::from_secs_f64(args.seconds);
    // The engine runs at least one intra-op thread; 0 would hand the bare session ONNX Runtime's default (all cores).
    let threads = model.threads.max(1);
    let options = EngineOptions {
        providers: model.providers.clone(),
        require: model.require,
        intra_threads: threads,
        session: args.session.overrides(),
        optimized_model_cache: args.session.cache_dir.clone(),
    };
    if args.monitor {
        if args.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        monitor_cost::main(&ort, &model.model, &model.inputs, &options, budget, args.rounds)?;
        return Ok(ExitCode::SUCCESS);
    }
    let bundle = Bundle::load(&model.model).with_context(|| format!("loading bundle {}", model.model.display()))?;
    let inputs = load_inputs(&bundle, &model.inputs)?;

    let build_started = Instant::now();
    let mut pipeline = Pipeline::new(&ort, &bundle, &options)?;
    let built = build_started.elapsed();
    let rss_built = RssSnapshot::take();
    let first_started = Instant::now();
    pipeline.infer(&inputs[0])?;
    let first_prediction = first_started.elapsed();
    let to_first_prediction = process_started.elapsed();
    if pipeline.provider().active != ProviderKind::Cpu {
        eprintln!("note: the pipeline runs on {}, the bare baselines on CPU", pipeline.provider().active);
    }
    for input in inputs.iter().cycle().take(WARM_UP_RUNS) {
        pipeline.infer(input)?;
    }
    let rss_warm = RssSnapshot::take();
    let mut next = inputs.iter().cycle();
    let agent = Measured::run(budget, || {
        let input = next.next().context("no inputs")?;
        Ok(pipeline.infer(input)?.1)
    })?;
    let (settings, origin) = pipeline.session();
    let settings = *settings;
    let identity = pipeline.identity().clone();
    drop(pipeline);

    let bare = bare_session_run(&ort, &bundle, threads, &settings, &inputs, budget)?;
    let ort_defaults = bare_session_run(&ort, &bundle, threads, &SessionSettings::ORT_DEFAULTS, &inputs, budget)?;

    println!(
        "model {} {} ({}, {}), intra_threads {}, {} input(s), {:.1} s per measurement",
        identity.name,
        identity.version,
        &identity.sha256[..12],
        ModelFamily::of(bundle.manifest()).name(),
        threads,
        inputs.len(),
        args.seconds
    );
    println!("agent and bare:   {settings}");
    println!("bare ORT default: {}", SessionSettings::ORT_DEFAULTS);
    println!(
        "startup: ONNX Runtime loaded {:.3} s, session built in {:.3} s (model from the {}), first prediction {:.3} s; \
         {:.3} s from start to the first prediction",
        ort_loaded.as_secs_f64(),
        built.as_secs_f64(),
        origin.name(),
        first_prediction.as_secs_f64(),
        to_first_prediction.as_secs_f64()
    );
    // Frames/s from wall clock over the whole measurement, loop overhead included on every side.
    println!("{:<24}{:>10}{:>10}{:>10}{:>12}{:>12}", "", "frames/s", "p50 ms", "p99 ms", "CPU µs/fr", "peak RSS");
    let mb = |b: Option<u64>| b.map(|b| format!("{:.1} MB", b as f64 / 1e6)).unwrap_or_else(|| "n/a".to_owned());
    let row = |name: &str, measured: Option<(f64, f64, Option<u64>)>, mut samples: Vec<u32>| {
        samples.sort_unstable();
        let (fps, cpu, rss) = match measured {
            Some((fps, cpu, rss)) => (format!("{fps:.1}"), format!("{cpu:.1}"), mb(rss)),
            None => Default::default(),
        };
        println!(
            "{name:<24}{fps:>10}{:>10.3}{:>10.3}{cpu:>12}{rss:>12}",
            percentile_ms(&samples, 50),
            percentile_ms(&samples, 99)
        );
    };
    let stages = &agent.samples;
    let summary = |m: &Measured<u32>| Some((m.fps(), m.cpu_us_per_frame(), m.peak_rss));
    row("bare, ORT defaults", summary(&ort_defaults), ort_defaults.samples.clone());
    row("bare, agent's settings", summary(&bare), bare.samples.clone());
    let agent_summary = Some((agent.fps(), agent.cpu_us_per_frame(), agent.peak_rss));
    row("agent pipeline", agent_summary, stages.iter().map(StageTimings::total_us).collect());
    row("  decode", None, stages.iter().map(|t| t.decode_us).collect());
    row("  preprocess", None, stages.iter().map(|t| t.preprocess_us).collect());
    row("  inference", None, stages.iter().map(|t| t.inference_us).collect());
    row("  postprocess", None, stages.iter().map(|t| t.postprocess_us).collect());
    let mut inference: Vec<u32> = stages.iter().map(|t| t.inference_us).collect();
    inference.sort_unstable();
    let mut bare_sorted = bare.samples.clone();
    bare_sorted.sort_unstable();
    println!(
        "ratio agent/bare: frames/s {:.3} (÷ bare with ORT defaults {:.3}), inference p50 {:.3}",
        agent.fps() / bare.fps(),
        agent.fps() / ort_defaults.fps(),
        percentile_ms(&inference, 50) / percentile_ms(&bare_sorted, 50).max(1e-9)
    );
    println!("(the bare rows run after the pipeline is dropped: their peak RSS is the process's, the pipeline's freed");
    println!(" memory that the allocator kept included)");
    rss::print_breakdown(rss_start, rss_loaded, rss_built, rss_warm);
    Ok(ExitCode::SUCCESS)
}

/// Reads every input once: image files as bytes, recordings as their first window.
fn load_inputs(bundle: &Bundle, paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        inputs.push(match &bundle.manifest().input {
            InputSpec::Image(_) => Input::Image(bytes),
            InputSpec::Sensor(spec) => Input::Sensor(first_window(&bytes, spec.channels, spec.window)?),
        });
    }
    if inputs.is_empty() {
        bail!("no inputs");
    }
    Ok(inputs)
}

fn first_window(csv: &[u8], channels: usize, window: usize) -> anyhow::Result<SensorWindow> {
    let text = std::str::from_utf8(csv)?;
    let mut values = Vec::with_capacity(channels * window);
    let mut sample = Vec::with_capacity(channels);
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()).take(window) {
        runtime::recording::parse_sample(line, channels, &mut sample).map_err(anyhow::Error::msg)?;
        values.extend_from_slice(&sample);
    }
    Ok(SensorWindow { channels, values })
}

/// Times bare `Session::run` on a CPU session with `settings`, cycling over every input like the pipeline does
/// (each preprocessed once, beforehand). A sample covers the run and freeing its outputs, as the engine's inference
/// stage does; the engine's stage also copies the outputs out, which bare runs do not.
fn bare_session_run(
    ort: &OnnxRuntime,
    bundle: &Bundle,
    threads: usize,
    settings: &SessionSettings,
    inputs: &[Input],
    budget: Duration,
) -> anyhow::Result<Measured<u32>> {
    let tensors = inputs.iter().map(|input| preprocess_once(bundle, input)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut session: Session = runtime::cpu_session(ort, bundle, threads, settings)?;
    let name = bundle.manifest().input.tensor().to_owned();
    let mut run = |(f32_data, u8_data, shape): &(Vec<f32>, Vec<u8>, Vec<usize>)| -> anyhow::Result<()> {
        let shape = Shape::new(shape.iter().map(|d| *d as i64));
        let value = if u8_data.is_empty() {
            TensorRef::from_array_view((shape, f32_data.as_slice()))?.into_dyn()
        } else {
            TensorRef::from_array_view((shape, u8_data.as_slice()))?.into_dyn()
        };
        drop(session.run(ort::inputs![name.as_str() => value])?);
        Ok(())
    };
    for tensor in tensors.iter().cycle().take(WARM_UP_RUNS) {
        run(tensor)?;
    }
    let mut next = tensors.iter().cycle();
    Measured::run(budget, || {
        let run_started = Instant::now();
        run(next.next().context("no inputs")?)?;
        Ok(u32::try_from(run_started.elapsed().as_micros()).unwrap_or(u32::MAX))
    })
}

/// One input preprocessed for the bare session: f32 data, or u8 data, and the shape.
fn preprocess_once(bundle: &Bundle, input: &Input) -> anyhow::Result<(Vec<f32>, Vec<u8>, Vec<usize>)> {
    let manifest = bundle.manifest();
    Ok(match (&manifest.input, input) {
        (InputSpec::Image(spec), Input::Image(bytes)) => {
            let mut pre = ImagePreprocessor::new(spec);
            pre.decode(bytes)?;
            pre.prepare()?;
            match pre.tensor() {
                InputTensor::F32(data) => (data.to_vec(), Vec::new(), spec.shape().to_vec()),
                InputTensor::U8(data) => (Vec::new(), data.to_vec(), spec.shape().to_vec()),
                _ => bail!("the bare-session comparison takes f32 and u8 image inputs only, not {}", spec.dtype.name()),
            }
        }
        (InputSpec::Sensor(spec), Input::Sensor(window)) => {
            let mut pre = SensorPreprocessor::new(spec);
            pre.prepare(window)?;
            (pre.tensor().to_vec(), Vec::new(), spec.shape().to_vec())
        }
        _ => bail!("the input does not match the model's input kind"),
    })
}

/// Restarts this process's peak-RSS high-water mark (`VmHWM`) at the current RSS (Linux 4.0+; a no-op elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A nearest-rank percentile of sorted microseconds, in milliseconds: the definition health reports use.
fn percentile_ms(sorted_us: &[u32], percent: usize) -> f64 {
    f64::from(nearest_rank(sorted_us, percent)) / 1000.0
}
