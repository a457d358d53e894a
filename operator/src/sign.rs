//! `edgectl model sign`: signs a package's manifest in place.

use anyhow::Context;
use packaging::SigningKey;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct SignArgs {
    /// The package (`<name>-<version>.bundle`); replaced by the signed one, any earlier signature dropped.
    package: PathBuf,
    /// The private key file (from `edgectl keygen`).
    #[arg(long)]
    key: PathBuf,
}

pub fn main(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let key = SigningKey::read(&args.key).with_context(|| format!("reading the private key {}", args.key.display()))?;
    packaging::package::sign_package(&args.package, &key)
        .with_context(|| format!("signing {}", args.package.display()))?;
    log::info!("signed {}", args.package.display());
    println!("{}", key.public_key());
    Ok(ExitCode::SUCCESS)
}
