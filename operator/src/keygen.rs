//! `edgectl keygen`: an Ed25519 key pair for signing model packages.

use anyhow::Context;
use packaging::SigningKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Base path of the key files: writes `<base>.key` (private, mode 0600) and `<base>.pub`.
    #[arg(long)]
    out: PathBuf,
    /// Replace key files that already exist.
    #[arg(long)]
    force: bool,
}

pub fn main(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let private = with_suffix(&args.out, ".key");
    let public = with_suffix(&args.out, ".pub");
    for path in [&private, &public] {
        if path.exists() {
            anyhow::ensure!(args.force, "{} already exists; pass --force to replace it", path.display());
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let key = SigningKey::generate()?;
    key.write(&private).with_context(|| format!("writing the private key {}", private.display()))?;
    key.public_key().write(&public).with_context(|| format!("writing the public key {}", public.display()))?;
    log::info!("wrote {} and {}", private.display(), public.display());
    println!("{}", key.public_key());
    Ok(ExitCode::SUCCESS)
}

/// `base` with `suffix` appended to its file name (`keys/ops` -> `keys/ops.key`, even when `base` has a dot).
fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
