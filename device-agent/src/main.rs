//! `device-agent`: runs camera and sensor frames through ONNX Runtime and reports predictions and health
//! over MQTT. `run` is the daemon; `infer` tries a bundle on files; `bench` measures it; `model profile` stores
//! a bundle's reference profile for monitoring.

mod app;
mod bench;
mod camera_bench;
mod clock;
mod conditions;
mod config;
mod health;
mod infer;
mod kept_files;
mod model_import;
mod model_profile;
mod monitor;
mod mqtt;
mod outbox;
mod prepare;
#[cfg(feature = "prometheus")]
mod prometheus;
mod queue;
mod shutdown;
mod snapshot;
mod sources;
mod spool;
mod state_dir;
mod supervisor;
mod update;
mod worker;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use runtime::ProviderKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The agent's version, as published in status and health.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit status for an invalid configuration (sysexits' EX_USAGE), as linkerd and most daemons use.
const EXIT_CONFIG: u8 = 64;
/// Exit status when some inputs of `infer` were rejected (EX_DATAERR).
const EXIT_BAD_INPUT: u8 = 65;

#[derive(Parser)]
#[command(name = "device-agent", version, about = "Edge inference agent: ONNX Runtime in, MQTT out.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent with a config file until SIGTERM or SIGINT.
    Run {
        /// The agent's TOML config.
        #[arg(long, short)]
        config: PathBuf,
        /// Validate the config (and load every bundle) and exit: 0 if valid, 64 if not.
        #[arg(long)]
        check: bool,
    },
    /// Run a bundle on image files or sensor recordings and print one JSON line per input: exactly the payload
    /// the agent would publish (a prediction, or an error event).
    Infer(InferArgs),
    /// Measure a bundle: frames/s, per-stage latency and peak RSS, next to bare `Session::run`.
    Bench(BenchArgs),
    /// Prepare a model bundle for the device.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Measure the spool on this machine's storage: append cost per fsync policy, bytes written per record,
    /// replay rate.
    SpoolBench(spool::bench::SpoolBenchArgs),
    /// Measure a camera frame's decode (H.264 or JPEG) and preprocess into the bundle's input, one thread;
    /// prints one JSON line.
    CameraBench(camera_bench::CameraBenchArgs),
    /// Print the completion script for a shell.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write the pages of every command into a directory.
    Man {
        /// Write `device-agent.1`, `device-agent-run.1`... here instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Run a bundle over validation inputs and store its reference profile for drift monitoring
    /// (`profile.json`, listed in the manifest's `profile` key and `[checksums]`).
    Profile(model_profile::ProfileArgs),
    /// Write a bundle skeleton from an MLflow model saved with the `onnx` flavour: the model copied, a manifest
    /// whose input and output sections come from the signature and the graph, TODO comments for the rest.
    Import(model_import::ImportArgs),
}

/// What `infer` and `bench` share: the bundle and how to run it.
#[derive(Args, Clone)]
struct ModelArgs {
    /// The model bundle directory.
    #[arg(long, short)]
    model: PathBuf,
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH, else libonnxruntime.so.1 beside the executable or on
    /// the loader's path).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Execution providers to try, best first (default: the bundle's).
    #[arg(long, value_delimiter = ',', value_parser = parse_provider)]
    providers: Option<Vec<ProviderKind>>,
    /// Refuse to fall back to CPU.
    #[arg(long)]
    require: bool,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Image files, or CSV recordings for sensor models.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(Args)]
struct InferArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Samples between window starts for sensor recordings (default: the window length).
    #[arg(long)]
    stride: Option<usize>,
    /// Device id written into the payloads.
    #[arg(long, default_value = "local")]
    device_id: String,
    /// Source name written into the payloads.
    #[arg(long, default_value = "infer")]
    source: String,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Seconds to run each of the three measurements (with `--monitor`: each side of each round).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Measure the cost of model monitoring instead: the pipeline with and without the monitor, in interleaved
    /// rounds.
    #[arg(long)]
    monitor: bool,
    /// Rounds of `--monitor`.
    #[arg(long, default_value_t = 10, requires = "monitor")]
    rounds: usize,
    #[command(flatten)]
    session: bench::SessionArgs,
}

fn parse_provider(name: &str) -> Result<ProviderKind, String> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| format!("unknown execution provider {name:?}"))
}

/// The ONNX Runtime library to load: the explicit path, else `ORT_DYLIB_PATH`, else the packaged name.
fn ort_library(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_owned)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so.1"))
}

fn completions(shell: clap_complete::Shell, out: &mut impl std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "device-agent", out);
}

/// The man page of `device-agent` on standard output, or the pages of every command in `out_dir`.
fn man(out_dir: Option<&Path>) -> std::io::Result<()> {
    match out_dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // A panicking thread would leave the agent half-alive; abort so the supervisor restarts it whole.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, check } => app::main(&config, check),
        Command::Infer(args) => infer::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Model(ModelCommand::Profile(args)) => model_profile::main(&args),
        Command::Model(ModelCommand::Import(args)) => model_import::main(&args),
        Command::SpoolBench(args) => spool::bench::main(args),
        Command::CameraBench(args) => camera_bench::main(args),
        Command::Completions { shell } => {
            completions(shell, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => {
            man(out_dir.as_deref()).map(|()| ExitCode::SUCCESS).context("writing the man pages")
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            log::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_every_subcommand() {
        let mut script = Vec::new();
        completions(clap_complete::Shell::Bash, &mut script);
        let script = String::from_utf8(script).expect("UTF-8");
        for name in ["run", "infer", "bench", "model", "completions", "man"] {
            assert!(script.contains(&format!("cmd=\"device__agent__subcmd__{name}\"")), "{name} missing");
        }
    }

    #[test]
    fn man_pages_name_every_subcommand() {
        let dir = tempfile::tempdir().expect("temp dir");
        man(Some(dir.path())).expect("written");
        let page =
            |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let main = page("device-agent.1");
        for name in ["run", "infer", "bench", "model", "completions", "man"] {
            assert!(main.contains(&format!("device\\-agent\\-{name}(1)")), "{name} missing from device-agent.1");
            assert!(page(&format!("device-agent-{name}.1")).contains(".TH device-agent-"), "device-agent-{name}.1");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
