//! The monitor evaluated on the shipped data (issue 12, "tests that must pass"): no alert on a stream where
//! nothing changed, every shift of the raw inputs detected within a bound and cleared after it ends, and the
//! drift state the same size however long it runs.
//!
//! Feature vectors come from the real pipelines ([`pool`]); a stream draws them at random from the half of the
//! inputs the profile was not built from ([`simulate`]). The environment sizes the run: `DRIFT_EVAL_WINDOWS`
//! (evaluated windows per false-alarm run, default 1000), `DRIFT_EVAL_REPEATS` (runs per shift, default 2),
//! `DRIFT_EVAL_FRAMES` (augmented frames, default 240). `scripts/drift-eval.sh` runs it at 10,000 windows and
//! prints the tables that docs/operations.md quotes.

mod pool;
mod shift;
mod simulate;

use crate::config::MonitorConfig;
use pool::{Pool, frame_pool, sensor_pool};
use runtime::OnnxRuntime;
use shift::{FrameShift, SensorShift};
use simulate::{SHIFT_INPUTS, Simulation, false_alarms, shift_run};
use std::sync::OnceLock;

/// The sensor shifts, each on the first channel where it concerns one.
const SENSOR_SHIFTS: [SensorShift; 4] = [
    SensorShift::Gain { channel: 0, factor: 1.5 },
    SensorShift::Offset { channel: 0, stds: 1.0 },
    SensorShift::Noise { stds: 0.25 },
    SensorShift::Stuck { channel: 0 },
];

const FRAME_SHIFTS: [FrameShift; 3] = [FrameShift::Brightness(40), FrameShift::Blur(0.01), FrameShift::Noise(20.0)];

/// The image classifier's false alarms allowed per 10,000 windows: its reference is 120 crops of seven pictures
/// in CI (500 in `scripts/drift-eval.sh`), a lumpy distribution whose two halves differ by more than windows of one
/// sensor recording do, and its predicted class spreads over 1000 categories.
const IMAGE_FALSE_ALARMS_PER_10K: f64 = 200.0;

/// The `[[monitors]]` defaults: what is evaluated.
fn defaults() -> MonitorConfig {
    MonitorConfig::default()
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Every model's pool, computed once per test process.
fn pools() -> &'static [Pool] {
    static POOLS: OnceLock<Vec<Pool>> = OnceLock::new();
    POOLS.get_or_init(|| {
        let ort = OnnxRuntime::load(crate::ort_library(None)).expect("ONNX Runtime loads ($ORT_DYLIB_PATH)");
        let frames = setting("DRIFT_EVAL_FRAMES", 240) as usize;
        vec![
            sensor_pool(&ort, "activity-classifier", "activity.csv", 1, &SENSOR_SHIFTS, 1),
            sensor_pool(&ort, "vibration-anomaly", "vibration.csv", 1, &SENSOR_SHIFTS, 2),
            frame_pool(&ort, frames, &FRAME_SHIFTS, 3),
        ]
    })
}

#[test]
fn no_alert_is_raised_while_nothing_changes() {
    let windows = setting("DRIFT_EVAL_WINDOWS", 1000);
    println!("\nfalse alarms, {windows} windows per model");
    println!(
        "{:<22}{:>10}{:>8}{:>9}{:>8}{:>9}  subjects",
        "model", "reference", "stream", "windows", "alerts", "per 10k"
    );
    let mut failures = Vec::new();
    for (index, pool) in pools().iter().enumerate() {
        let run = false_alarms(pool, &defaults(), windows, 100 + index as u64);
        let mut subjects: Vec<&str> = run.raised.iter().map(|alert| alert.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        println!(
            "{:<22}{:>10}{:>8}{:>9}{:>8}{:>9.1}  {}",
            pool.bundle,
            pool.reference_inputs,
            pool.stream.len(),
            run.windows,
            run.raised.len(),
            run.per_10k_windows(),
            subjects.join(" ")
        );
        let allowed = if pool.bundle == "image-classifier" { IMAGE_FALSE_ALARMS_PER_10K } else { 0.0 };
        if run.per_10k_windows() > allowed {
            failures.push((pool.bundle, run.raised));
        }
    }
    assert!(failures.is_empty(), "alerts raised while nothing changed: {failures:#?}");
}

#[test]
fn every_shift_is_raised_within_the_bound_and_clears_after_it_ends() {
    let repeats = setting("DRIFT_EVAL_REPEATS", 2);
    let config = defaults();
    // A shift the statistics see in a window of shifted inputs only is raised, at the latest, at the
    // `raise_after`-th evaluation after the window last held an unshifted input: `window + raise_after *
    // stride` inputs after it starts. Clearing mirrors it.
    let (window, stride) = (config.window as u64, config.stride as u64);
    let raise_bound = window + u64::from(config.raise_after) * stride;
    let clear_bound = window + u64::from(config.clear_after) * stride;
    println!(
        "\nshifts, {repeats} runs each, {SHIFT_INPUTS} inputs long; window {window}, stride {stride}, raise after {}, \
         clear after {}; delays in inputs (windows), median and max",
        config.raise_after, config.clear_after
    );
    println!("{:<22}{:<40}{:>20}{:>20}  first alert", "model", "shift", "detected", "cleared");
    let mut failures = Vec::new();
    for (index, pool) in pools().iter().enumerate() {
        for (shift, shifted) in pool.shifted.iter().enumerate() {
            let runs: Vec<_> = (0..repeats)
                .map(|run| shift_run(pool, &config, shift, 1000 * index as u64 + 100 * shift as u64 + run))
                .collect();
            let detected: Vec<_> =
                runs.iter().filter_map(|run| run.detected.as_ref().map(|(delay, _)| *delay)).collect();
            let cleared: Vec<_> = runs.iter().filter_map(|run| run.cleared).collect();
            let first = runs.iter().find_map(|run| run.detected.as_ref()).map_or(String::from("-"), |(_, alert)| {
                format!("{:?} {} {} {:.3}", alert.kind, alert.subject, alert.statistic, alert.value)
            });
            println!(
                "{:<22}{:<40}{:>20}{:>20}  {first}",
                pool.bundle,
                shifted.name,
                summary(&detected),
                summary(&cleared)
            );
            for run in &runs {
                let late = |delay: Option<simulate::Delay>, bound| delay.is_none_or(|delay| delay.inputs > bound);
                // Clearing is judged where unshifted windows read good: a run with a false alarm before the
                // shift (the other test bounds how often) may keep re-raising it after the shift ends.
                if late(run.detected.as_ref().map(|(delay, _)| *delay), raise_bound)
                    || (run.before == 0 && late(run.cleared, clear_bound))
                {
                    failures.push(format!("{} {}: {run:?}", pool.bundle, shifted.name));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "shifts not raised within {raise_bound} inputs or not cleared within {clear_bound}: {failures:#?}"
    );
}

/// The median and largest delay of some runs: `inputs (windows)`.
fn summary(delays: &[simulate::Delay]) -> String {
    if delays.is_empty() {
        return "never".to_owned();
    }
    let mut sorted = delays.to_vec();
    sorted.sort_by_key(|delay| delay.inputs);
    let (median, max) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
    format!("{} ({}) / {} ({})", median.inputs, median.windows, max.inputs, max.windows)
}

#[test]
fn the_drift_state_is_the_same_size_after_100000_inputs_as_after_the_first_window() {
    let pool = &pools()[0];
    let mut simulation = Simulation::new(pool, &defaults(), 7);
    let window = simulation.config().window;
    // The first window's inputs are replayed last, so that both evaluations see the same window and the alert
    // machine holds the same tracks: any difference is growth.
    let mut random = fastrand::Rng::with_seed(7);
    let first: Vec<Vec<f32>> = (0..window).map(|_| pool.stream[random.usize(0..pool.stream.len())].clone()).collect();
    first.iter().for_each(|features| simulation.observe(features.clone()));
    assert_eq!(simulation.windows(), 1);
    let after_first_window = simulation.state_bytes();
    while simulation.inputs() < 100_000 - window as u64 {
        simulation.step(None);
    }
    first.iter().for_each(|features| simulation.observe(features.clone()));
    assert_eq!(simulation.inputs(), 100_000);
    assert_eq!(simulation.windows_counted(), simulation.windows(), "the last input completed a window");
    assert_eq!(simulation.state_bytes(), after_first_window, "the monitor's state grew");
    println!("\nthe monitor's state: {after_first_window} bytes after the first window and after 100,000 inputs");
    assert!(after_first_window > 0);
}
