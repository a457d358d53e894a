//! `edgectl model pack`: a bundle directory as one signed-able file, with golden self-test vectors
//! recorded here so that a device can tell that the model computes on it what it computed on this machine.

use anyhow::{Context, bail};
use packaging::{SelfTest, SelfTestInput};
use runtime::manifest::{InputSpec, is_package_path};
use runtime::recording::{self, WindowShape};
use runtime::{Bundle, EngineOptions, OnnxRuntime, Pipeline, ProviderKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the golden vectors and their image inputs go in a package.
const SELF_TEST_FILE: &str = "selftest.json";
const SELF_TEST_DIR: &str = "selftest";

#[derive(clap::Args)]
pub struct PackArgs {
    /// The bundle directory (left as it is).
    bundle: PathBuf,
    /// The package to write (default: `<name>-<version>.bundle` in the current directory).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Record golden vectors from these inputs: image files for image models (copied into the package as
    /// `selftest/<file name>`), CSV recordings for sensor models (their first window, inline). Without it, the
    /// bundle's own `self_test` is kept.
    #[arg(long = "self-test", num_args = 1.., value_name = "INPUT")]
    self_test: Vec<PathBuf>,
    /// libonnxruntime to record the vectors with (default: $ORT_DYLIB_PATH, else libonnxruntime.so.1 beside
    /// the executable or on the loader's path).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Samples between windows of a recording: every window of each recording becomes a vector, not only the
    /// first.
    #[arg(long)]
    stride: Option<usize>,
}

pub fn main(args: &PackArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::load(&args.bundle).with_context(|| format!("loading bundle {}", args.bundle.display()))?;
    let manifest = bundle.manifest();
    let out =
        args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-{}.bundle", manifest.name, manifest.version)));
    let (info, cases) = if args.self_test.is_empty() {
        let self_test = SelfTest::of_bundle(&bundle)?;
        if self_test.is_none() {
            log::warn!(
                "{} has no golden self-test vectors, and devices refuse such updates: pass --self-test",
                args.bundle.display()
            );
        }
        let info = packaging::package::pack(&args.bundle, &out, None)?;
        (info, self_test.map_or(0, |test| test.cases.len()))
    } else {
        // Removed when dropped; a leftover would only cost space in the temporary directory.
        let staging =
            tempfile::Builder::new().prefix("edgectl-pack-").tempdir().context("creating a staging directory")?;
        pack_with_self_test(args, &bundle, staging.path(), &out)?
    };
    println!(
        "{} {} -> {}: {} bytes, sha256 {}, {cases} self-test case{}, {}",
        info.manifest.name,
        info.manifest.version,
        out.display(),
        info.size,
        info.sha256,
        if cases == 1 { "" } else { "s" },
        if info.signature.is_some() { "signed" } else { "unsigned" },
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies the bundle into `staging` with new golden vectors recorded from the inputs, and packs that.
fn pack_with_self_test(
    args: &PackArgs,
    bundle: &Bundle,
    staging: &Path,
    out: &Path,
) -> anyhow::Result<(packaging::PackageInfo, usize)> {
    let mut manifest = bundle.manifest().clone();
    copy_bundle(bundle.dir(), staging, manifest.self_test.as_deref(), out)?;
    let inputs = self_test_inputs(args, &manifest.input, staging)?;
    // The old checksums may list the vectors being replaced; `pack` computes them afresh. The profile's stays:
    // a bundle loads only with its profile listed.
    manifest.checksums.retain(|path, _| manifest.profile.as_ref() == Some(path));
    manifest.self_test = None;
    write_manifest(staging, &manifest)?;

    let staged = Bundle::load(staging).context("loading the staged bundle")?;
    let ort = OnnxRuntime::load(crate::ort_library(args.onnxruntime.as_deref()))?;
    let options = EngineOptions { providers: Some(vec![ProviderKind::Cpu]), ..EngineOptions::default() };
    let mut pipeline = Pipeline::new(&ort, &staged, &options)?;
    let self_test = SelfTest::record(&staged, inputs, &mut pipeline).context("recording the golden vectors")?;
    std::fs::write(staging.join(SELF_TEST_FILE), self_test.to_json()).context("writing selftest.json")?;
    manifest.self_test = Some(SELF_TEST_FILE.to_owned());
    write_manifest(staging, &manifest)?;

    // What the device will run: the vectors as read back from the file, on this machine first.
    let staged = Bundle::load(staging).context("loading the staged bundle with its vectors")?;
    let reread = SelfTest::of_bundle(&staged)?.context("the staged bundle lost its vectors")?;
    reread
        .run(&staged, &mut pipeline)
        .context("the recorded vectors do not pass here (is the model deterministic?)")?;
    let info = packaging::package::pack(staging, out, None)?;
    Ok((info, reread.cases.len()))
}

/// The self-test inputs of `args`, image files copied into `staging/selftest/`.
fn self_test_inputs(args: &PackArgs, input: &InputSpec, staging: &Path) -> anyhow::Result<Vec<SelfTestInput>> {
    let mut inputs = Vec::new();
    match input {
        InputSpec::Image(_) => {
            anyhow::ensure!(args.stride.is_none(), "--stride applies to the recordings of sensor models only");
            let dir = staging.join(SELF_TEST_DIR);
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for path in &args.self_test {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if !is_package_path(&name) {
                    bail!("{}: a self-test image needs a file name of [A-Za-z0-9._-] only", path.display());
                }
                let target = dir.join(&name);
                if target.exists() {
                    bail!("{}: two self-test images are named {name}", path.display());
                }
                std::fs::copy(path, &target).with_context(|| format!("copying {}", path.display()))?;
                inputs.push(SelfTestInput::Image(format!("{SELF_TEST_DIR}/{name}")));
            }
        }
        InputSpec::Sensor(spec) => {
            let shape =
                WindowShape { channels: spec.channels, window: spec.window, channel_names: spec.channel_names.clone() };
            let (stride, max) = match args.stride {
                Some(0) => bail!("--stride must be at least 1"),
                Some(stride) => (stride, usize::MAX),
                None => (spec.window, 1),
            };
            for path in &args.self_test {
                let windows = recording::read_windows(path, &shape, stride, max)
                    .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
                if windows.is_empty() {
                    bail!("{}: fewer than {} samples, not one window", path.display(), spec.window);
                }
                inputs.extend(
                    windows.into_iter().map(|w| SelfTestInput::Sensor { channels: w.channels, values: w.values }),
                );
            }
        }
    }
    Ok(inputs)
}

/// Copies the files of the bundle in `from` into `to`, except the golden vectors being replaced (`self_test`
/// and `selftest/`), any signature, and the package being written (`out`, an earlier one of which may lie
/// there). Subdirectories are copied one level deep, as packages hold them.
fn copy_bundle(from: &Path, to: &Path, self_test: Option<&str>, out: &Path) -> anyhow::Result<()> {
    let out = std::fs::canonicalize(out).ok();
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let replaced = name == SELF_TEST_DIR || Some(name.as_str()) == self_test || name == runtime::SIGNATURE_FILE;
        if replaced || (out.is_some() && std::fs::canonicalize(&path).ok() == out) {
            continue;
        }
        let target = to.join(&name);
        if path.is_dir() {
            std::fs::create_dir(&target).with_context(|| format!("creating {}", target.display()))?;
            for inner in std::fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))? {
                let inner = inner?.path();
                if inner.is_dir() {
                    bail!("{}: packages hold files at most two levels deep", inner.display());
                }
                let inner_target = target.join(inner.file_name().unwrap_or_default());
                std::fs::copy(&inner, &inner_target).with_context(|| format!("copying {}", inner.display()))?;
            }
        } else {
            std::fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn write_manifest(dir: &Path, manifest: &runtime::Manifest) -> anyhow::Result<()> {
    let text = manifest.to_toml().map_err(|message| anyhow::anyhow!("writing the manifest: {message}"))?;
    let path = dir.join(runtime::MANIFEST_FILE);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
