//! `device-agent bench`: the agent's pipeline against bare `Session::run` on the same model, threads and
//! arena setting, each for a fixed time. Bare runs first so that peak RSS reads as "session alone", then
//! "session plus the agent's stages". `--monitor` measures the monitor's cost instead ([`monitor_cost`]).

mod monitor_cost;

use crate::BenchArgs;
use crate::health::{nearest_rank, system};
use anyhow::{Context, bail};
use ort::session::Session;
use ort::value::{Shape, TensorRef};
use runtime::manifest::InputSpec;
use runtime::preprocess::{ImagePreprocessor, SensorPreprocessor};
use runtime::{
    Bundle, EngineOptions, Input, InputTensor, OnnxRuntime, Pipeline, ProviderKind, SensorWindow, StageTimings,
};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Latency samples kept per measurement. Frames past it still count towards frames/s; the cap keeps the samples'
/// own memory (at most 1.6 MB) out of the peak-RSS figures, which otherwise grow with `--seconds` on fast models.
const MAX_SAMPLES: usize = 100_000;

/// Runs before each measurement that are not counted: first-run allocations, page faults, thread pool start-up.
const WARM_UP_RUNS: usize = 3;

/// Frames run in one measurement and how long they took, wall clock.
struct Measured<T> {
    frames: u64,
    elapsed: Duration,
    samples: Vec<T>,
}

impl<T> Measured<T> {
    fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let model = &args.model;
    let ort = OnnxRuntime::load(crate::ort_library(model.onnxruntime.as_deref()))?;
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
        cpu_arena: false,
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

    reset_peak_rss();
    let bare = bare_session_run(&ort, &bundle, threads, &inputs, budget)?;
    let bare_peak_rss = system::peak_rss_bytes();

    // The bare session is dropped; restart the high-water mark so the second figure is this measurement's own.
    reset_peak_rss();
    let mut pipeline = Pipeline::new(&ort, &bundle, &options)?;
    if pipeline.provider().active != ProviderKind::Cpu {
        eprintln!("note: the pipeline runs on {}, the bare baseline on CPU", pipeline.provider().active);
    }
    for input in inputs.iter().cycle().take(WARM_UP_RUNS) {
        pipeline.infer(input)?;
    }
    let mut agent = Measured { frames: 0, elapsed: Duration::ZERO, samples: Vec::<StageTimings>::new() };
    let started = Instant::now();
    for input in inputs.iter().cycle() {
        let (_, timings) = pipeline.infer(input)?;
        agent.frames += 1;
        if agent.samples.len() < MAX_SAMPLES {
            agent.samples.push(timings);
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    agent.elapsed = started.elapsed();
    let agent_peak_rss = system::peak_rss_bytes();
    let stages = &agent.samples;

    let identity = pipeline.identity();
    println!(
        "model {} {} ({}), provider {}, intra_threads {}, {} input(s), {:.1} s per measurement",
        identity.name,
        identity.version,
        &identity.sha256[..12],
        pipeline.provider().active,
        threads,
        inputs.len(),
        args.seconds
    );
    // Both from wall clock over the whole measurement, loop overhead included on both sides.
    let agent_fps = agent.fps();
    let bare_fps = bare.fps();
    println!("{:<22}{:>10}{:>10}{:>10}", "", "frames/s", "p50 ms", "p99 ms");
    let row = |name: &str, fps: Option<f64>, mut samples: Vec<u32>| {
        samples.sort_unstable();
        let fps = fps.map(|f| format!("{f:.1}")).unwrap_or_default();
        println!("{name:<22}{fps:>10}{:>10.3}{:>10.3}", percentile_ms(&samples, 50), percentile_ms(&samples, 99));
    };
    row("bare Session::run", Some(bare_fps), bare.samples.clone());
    row("agent pipeline", Some(agent_fps), stages.iter().map(StageTimings::total_us).collect());
    row("  decode", None, stages.iter().map(|t| t.decode_us).collect());
    row("  preprocess", None, stages.iter().map(|t| t.preprocess_us).collect());
    row("  inference", None, stages.iter().map(|t| t.inference_us).collect());
    row("  postprocess", None, stages.iter().map(|t| t.postprocess_us).collect());
    let mut inference: Vec<u32> = stages.iter().map(|t| t.inference_us).collect();
    inference.sort_unstable();
    let mut bare_sorted = bare.samples;
    bare_sorted.sort_unstable();
    println!(
        "ratio agent/bare: frames/s {:.3}, inference p50 {:.3}",
        agent_fps / bare_fps,
        percentile_ms(&inference, 50) / percentile_ms(&bare_sorted, 50).max(1e-9)
    );
    let mb = |b: Option<u64>| b.map(|b| format!("{:.1} MB", b as f64 / 1e6)).unwrap_or_else(|| "n/a".to_owned());
    println!("peak RSS: bare session {}, the agent's pipeline {}", mb(bare_peak_rss), mb(agent_peak_rss));
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

/// Times bare `Session::run` with the engine's session settings, cycling over every input like the pipeline
/// does (each preprocessed once, beforehand). A sample covers the run and freeing its outputs, as the engine's
/// inference stage does; the engine's stage also copies the outputs out, which bare runs do not.
fn bare_session_run(
    ort: &OnnxRuntime,
    bundle: &Bundle,
    threads: usize,
    inputs: &[Input],
    budget: Duration,
) -> anyhow::Result<Measured<u32>> {
    let manifest = bundle.manifest();
    let tensors = inputs.iter().map(|input| preprocess_once(bundle, input)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut session = Session::builder(ort.environment())?
        .with_intra_threads(threads)
        .map_err(ort::Error::<()>::from)?
        .with_inter_threads(1)
        .map_err(ort::Error::<()>::from)?
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
        .map_err(ort::Error::<()>::from)?
        .commit_from_memory(bundle.model_bytes())?;
    let name = manifest.input.tensor().to_owned();
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
    let mut measured = Measured { frames: 0, elapsed: Duration::ZERO, samples: Vec::new() };
    let started = Instant::now();
    for tensor in tensors.iter().cycle() {
        let run_started = Instant::now();
        run(tensor)?;
        measured.frames += 1;
        if measured.samples.len() < MAX_SAMPLES {
            measured.samples.push(u32::try_from(run_started.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    measured.elapsed = started.elapsed();
    Ok(measured)
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
