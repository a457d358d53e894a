//! `edgectl`: the operator's side of the edge agent, run on a workstation: signing keys, model packages, and
//! over-the-air pushes and rollbacks through the same MQTT link code the devices run.
#![forbid(unsafe_code)]

mod fleet;
mod keygen;
mod pack;
mod push;
mod retrain;
mod rollout;
mod sign;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "edgectl",
    version,
    about = "Operate edge inference agents: keys, model packages, updates, retraining evidence."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make an Ed25519 key pair for signing model packages.
    Keygen(keygen::KeygenArgs),
    /// Pack, sign and push model packages (over-the-air updates).
    #[command(subcommand)]
    Model(ModelCommand),
    /// Many devices at once: list them (online or not, versions, models, updates, alerts, health), or simulate them.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Pause, resume, abort or show a group's rollout (`model push --group --wave-rate|--ramp`).
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Fetch the inputs a device kept when a drift alert was raised, ready for labelling.
    #[command(subcommand)]
    Retrain(RetrainCommand),
    /// Print the completion script for a shell.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write the pages of every command into a directory.
    Man {
        /// Write `edgectl.1`, `edgectl-model-push.1`... here instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Make a single-file package of a bundle directory, with golden self-test vectors.
    Pack(pack::PackArgs),
    /// Sign a package's manifest with a private key.
    Sign(sign::SignArgs),
    /// Deliver a package over MQTT to a device or a group and wait for the outcome.
    Push(Box<push::PushArgs>),
    /// Ask a device to return to its previous model and wait for the outcome.
    Rollback(Box<push::RollbackArgs>),
}

#[derive(Subcommand)]
enum FleetCommand {
    /// List the devices from their retained messages, as a table or JSON lines; --watch follows the changes.
    List(Box<fleet::ListArgs>),
    /// Run N simulated devices (MQTT sessions, health, predictions, the real update machine) to load-test a broker
    /// and a rollout.
    Simulate(Box<fleet::simulate::SimulateArgs>),
}

#[derive(Subcommand)]
enum RetrainCommand {
    /// Ask a device (signed) for a retraining candidate's samples and write them, with candidate.json and a
    /// labels.csv template, into a directory.
    Fetch(Box<retrain::FetchArgs>),
    /// Show a device's retraining candidate announcements.
    List(Box<retrain::ListArgs>),
}

/// The ONNX Runtime library to record golden vectors with: the explicit path, else `ORT_DYLIB_PATH`, else the
/// packaged name.
fn ort_library(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_owned)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so.1"))
}

fn completions(shell: clap_complete::Shell, out: &mut impl Write) {
    clap_complete::generate(shell, &mut Cli::command(), "edgectl", out);
}

/// The man page of `edgectl` on standard output, or the pages of every command in `out_dir`.
fn man(out_dir: Option<&Path>) -> std::io::Result<()> {
    match out_dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => keygen::main(&args),
        Command::Model(ModelCommand::Pack(args)) => pack::main(&args),
        Command::Model(ModelCommand::Sign(args)) => sign::main(&args),
        Command::Model(ModelCommand::Push(args)) => push::main(&args),
        Command::Model(ModelCommand::Rollback(args)) => push::rollback(&args),
        Command::Fleet(FleetCommand::List(args)) => fleet::list(&args),
        Command::Rollout(command) => rollout::main(&command),
        Command::Fleet(FleetCommand::Simulate(args)) => fleet::simulate::main(&args),
        Command::Retrain(RetrainCommand::Fetch(args)) => retrain::fetch(&args),
        Command::Retrain(RetrainCommand::List(args)) => retrain::list(&args),
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
        let commands = ["keygen", "model", "model__subcmd__pack", "model__subcmd__sign", "model__subcmd__push"];
        let retrain = ["retrain", "retrain__subcmd__fetch", "retrain__subcmd__list"];
        let fleet = ["fleet", "fleet__subcmd__list", "fleet__subcmd__simulate", "rollout"];
        let others = ["model__subcmd__rollback", "completions", "man"];
        for name in commands.into_iter().chain(others).chain(retrain).chain(fleet) {
            assert!(
                script.contains(&format!("cmd=\"edgectl__subcmd__{name}\"")),
                "{name} missing from the completions"
            );
        }
    }

    #[test]
    fn man_pages_name_every_subcommand() {
        let dir = tempfile::tempdir().expect("temp dir");
        man(Some(dir.path())).expect("written");
        let page =
            |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (main, model) = (page("edgectl.1"), page("edgectl-model.1"));
        for name in ["keygen", "model", "fleet", "rollout", "retrain", "completions", "man"] {
            assert!(main.contains(&format!("edgectl\\-{name}(1)")), "{name} missing from edgectl.1");
            assert!(page(&format!("edgectl-{name}.1")).contains(".TH edgectl-"), "edgectl-{name}.1");
        }
        let retrain = page("edgectl-retrain.1");
        for name in ["fetch", "list"] {
            assert!(retrain.contains(&format!("retrain\\-{name}(1)")), "{name} missing from edgectl-retrain.1");
            assert!(page(&format!("edgectl-retrain-{name}.1")).contains("\\-\\-device"), "edgectl-retrain-{name}.1");
        }
        assert!(page("edgectl-fleet.1").contains("fleet\\-simulate(1)"), "simulate missing from edgectl-fleet.1");
        let simulate = page("edgectl-fleet-simulate.1");
        for flag in ["\\-\\-devices", "\\-\\-fail\\-self\\-test\\-every", "\\-\\-trusted\\-key", "\\-\\-json"] {
            assert!(simulate.contains(flag), "{flag} missing from edgectl-fleet-simulate.1");
        }
        for name in ["pack", "sign", "push", "rollback"] {
            assert!(model.contains(&format!("model\\-{name}(1)")), "{name} missing from edgectl-model.1");
            assert!(
                page(&format!("edgectl-model-{name}.1")).contains("\\-\\-"),
                "edgectl-model-{name}.1 has its options"
            );
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
