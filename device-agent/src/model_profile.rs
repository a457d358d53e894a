//! `device-agent model profile`: runs a bundle over its validation inputs with monitoring on and stores the
//! reference profile the monitor compares a device's inputs and outputs with (`profile.json`, listed with its
//! sha256 in the manifest's `[checksums]`, so that a package's signature covers it).

use crate::config::DEFAULT_MAX_FILE_BYTES;
use crate::sources::images::read_at_most;
use anyhow::{Context, bail};
use runtime::manifest::InputSpec;
use runtime::monitor::{FeatureKind, PROFILE_FILE, Profile, ProfileBuilder};
use runtime::recording::{self, WindowShape};
use runtime::{Bundle, EngineOptions, Input, Manifest, OnnxRuntime, Pipeline};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Fewer inputs than this give quantiles too unstable to test against: with 20, each decile bin holds two.
pub const MIN_INPUTS: usize = 20;

#[derive(clap::Args)]
pub struct ProfileArgs {
    /// The model bundle directory; `profile.json` is written into it and its manifest updated.
    bundle: PathBuf,
    /// Validation inputs: image files, or CSV recordings for sensor models (each window is one input).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Samples between window starts for sensor recordings (default: the window length).
    #[arg(long)]
    stride: Option<usize>,
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH, else libonnxruntime.so.1 beside the executable or on
    /// the loader's path).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn main(args: &ProfileArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::load(&args.bundle).with_context(|| format!("loading bundle {}", args.bundle.display()))?;
    let inputs = read_inputs(args, &bundle.manifest().input)?;
    if inputs.len() < MIN_INPUTS {
        bail!(
            "{} inputs; a profile needs at least {MIN_INPUTS} for stable quantiles (for recordings, a smaller \
             --stride gives more windows)",
            inputs.len()
        );
    }
    let ort = OnnxRuntime::load(crate::ort_library(args.onnxruntime.as_deref()))?;
    let options = EngineOptions { intra_threads: args.threads, ..EngineOptions::default() };
    let mut pipeline = Pipeline::new(&ort, &bundle, &options)?;
    pipeline.enable_monitoring();
    let mut builder = ProfileBuilder::new(pipeline.feature_specs());
    for (origin, input) in &inputs {
        pipeline
            .infer(input)
            .with_context(|| format!("{origin} does not infer; a profile takes only inputs that do"))?;
        builder.add(pipeline.features().context("monitoring gave no features")?);
    }
    let profile = builder.build()?;
    let file = bundle.manifest().profile.clone().unwrap_or_else(|| PROFILE_FILE.to_owned());
    let json = profile.to_json();
    let manifest_path = args.bundle.join(runtime::MANIFEST_FILE);
    let text =
        std::fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let edited = with_profile(&text, bundle.manifest(), &file, &packaging::hex_sha256(json.as_bytes()))
        .with_context(|| format!("updating {}", manifest_path.display()))?;
    write_replacing(&args.bundle.join(&file), json.as_bytes())?;
    write_replacing(&manifest_path, edited.as_bytes())?;
    Bundle::load(&args.bundle).context("the profiled bundle does not load back")?;
    print_summary(&profile, &args.bundle.join(&file), json.len());
    if args.bundle.join(runtime::SIGNATURE_FILE).exists() {
        log::warn!("{} no longer matches the manifest", args.bundle.join(runtime::SIGNATURE_FILE).display());
    }
    println!(
        "The manifest's [checksums] now list {file}: pack and sign the bundle again for devices that check \
         signatures (`edgectl model pack {}`, then `edgectl model sign <package> --key <private key>`).",
        args.bundle.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The inputs, each named for messages: image files as `infer` reads them, every window of each recording.
fn read_inputs(args: &ProfileArgs, input: &InputSpec) -> anyhow::Result<Vec<(String, Input)>> {
    let mut inputs = Vec::new();
    match input {
        InputSpec::Image(_) => {
            anyhow::ensure!(args.stride.is_none(), "--stride applies to the recordings of sensor models only");
            for path in &args.inputs {
                let bytes = read_at_most(path, DEFAULT_MAX_FILE_BYTES)
                    .with_context(|| format!("reading {}", path.display()))?
                    .with_context(|| format!("{} is larger than {DEFAULT_MAX_FILE_BYTES} bytes", path.display()))?;
                inputs.push((path.display().to_string(), Input::Image(bytes)));
            }
        }
        InputSpec::Sensor(spec) => {
            let shape =
                WindowShape { channels: spec.channels, window: spec.window, channel_names: spec.channel_names.clone() };
            let stride = args.stride.unwrap_or(spec.window);
            anyhow::ensure!(stride > 0, "--stride must be at least 1");
            for path in &args.inputs {
                let windows = recording::read_windows(path, &shape, stride, usize::MAX)
                    .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
                inputs.extend(windows.into_iter().enumerate().map(|(index, window)| {
                    (
                        format!("{} window {index} (from sample {})", path.display(), index * stride),
                        Input::Sensor(window),
                    )
                }));
            }
        }
    }
    Ok(inputs)
}

/// `manifest.toml` text with `profile = "<file>"` and `[checksums]` entry `"<file>" = "<sha256>"` set, every
/// other line as it was. A line edit rather than a TOML editor linked into the agent for this one command: the
/// result is parsed and must equal `manifest` with just those two changes, so a manifest the edit does not
/// understand is refused, never damaged.
fn with_profile(text: &str, manifest: &Manifest, file: &str, sha256: &str) -> anyhow::Result<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let is_header = |line: &str| line.trim_start().starts_with('[');
    let key_is = |line: &str, key: &str| {
        line.split_once('=').is_some_and(|(name, _)| name.trim().trim_matches('"') == key && !is_header(line))
    };
    let first_table = lines.iter().position(|line| is_header(line)).unwrap_or(lines.len());
    let profile_line = format!("profile = \"{file}\"");
    match lines[..first_table].iter().position(|line| key_is(line, "profile")) {
        Some(at) => lines[at] = profile_line,
        None => lines.insert(first_table, profile_line),
    }
    let checksum_line = format!("\"{file}\" = \"{sha256}\"");
    match lines.iter().position(|line| line.trim() == "[checksums]") {
        Some(header) => {
            let end =
                lines[header + 1..].iter().position(|line| is_header(line)).map_or(lines.len(), |i| header + 1 + i);
            match lines[header + 1..end].iter().position(|line| key_is(line, file)) {
                Some(at) => lines[header + 1 + at] = checksum_line,
                None => lines.insert(header + 1, checksum_line),
            }
        }
        None => lines.extend([String::new(), "[checksums]".to_owned(), checksum_line]),
    }
    let edited = lines.join("\n") + "\n";
    let mut expected = manifest.clone();
    expected.profile = Some(file.to_owned());
    expected.checksums.insert(file.to_owned(), sha256.to_owned());
    match Manifest::parse(&edited) {
        Ok(parsed) if parsed == expected => Ok(edited),
        Ok(_) => bail!("the edit would change more than `profile` and its checksum; set them by hand"),
        Err(message) => bail!("the edited manifest does not parse ({message}); set `profile` and its checksum by hand"),
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a reader sees the old or the new file.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut temp, bytes).with_context(|| format!("writing {}", path.display()))?;
    temp.persist(path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn print_summary(profile: &Profile, path: &Path, bytes: usize) {
    println!("{}: {} features from {} inputs, {bytes} bytes", path.display(), profile.features.len(), profile.size);
    for feature in &profile.features {
        let bins = match feature.kind {
            FeatureKind::Continuous => format!("{} bins", feature.proportions.len()),
            FeatureKind::Categorical { categories } => format!("{categories} categories"),
        };
        println!("  {:<20} mean {:>12.4}  std {:>12.4}  {bins}", feature.name, feature.mean, feature.std);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_text() -> String {
        std::fs::read_to_string("../models/activity-classifier/manifest.toml").expect("shipped manifest")
    }

    #[test]
    fn the_edit_adds_the_key_and_the_checksum_and_keeps_every_other_line() {
        let text = format!("# Comments stay.\n{}", manifest_text());
        let manifest = Manifest::parse(&text).expect("manifest");
        let sha = "ab".repeat(32);
        let edited = with_profile(&text, &manifest, "profile.json", &sha).expect("edited");
        let parsed = Manifest::parse(&edited).expect("parses");
        assert_eq!(parsed.profile.as_deref(), Some("profile.json"));
        assert_eq!(parsed.checksums["profile.json"], sha);
        let added: Vec<&str> = edited.lines().filter(|line| !text.lines().any(|old| old == *line)).collect();
        assert_eq!(added, ["profile = \"profile.json\"", "[checksums]", &format!("\"profile.json\" = \"{sha}\"")]);
        assert!(edited.starts_with("# Comments stay.\n"));

        // Profiling again replaces both lines in place.
        let again = with_profile(&edited, &parsed, "profile.json", &"cd".repeat(32)).expect("edited again");
        assert_eq!(again.lines().count(), edited.lines().count());
        assert_eq!(Manifest::parse(&again).expect("parses").checksums["profile.json"], "cd".repeat(32));
    }

    #[test]
    fn the_edit_keeps_other_checksums() {
        let sha = "ef".repeat(32);
        let text = format!("{}\n[checksums]\n\"labels.txt\" = \"{sha}\"\n", manifest_text().trim_end());
        let manifest = Manifest::parse(&text).expect("manifest");
        let edited = with_profile(&text, &manifest, "profile.json", &"ab".repeat(32)).expect("edited");
        let parsed = Manifest::parse(&edited).expect("parses");
        assert_eq!(parsed.checksums.len(), 2);
        assert_eq!(parsed.checksums["labels.txt"], sha);
    }

    #[test]
    fn a_manifest_the_edit_does_not_understand_is_refused() {
        // `checksums` as an inline table: the appended `[checksums]` would define it twice.
        let text = manifest_text().replacen("task =", "checksums = {}\ntask =", 1);
        let manifest = Manifest::parse(&text).expect("manifest");
        let err = with_profile(&text, &manifest, "profile.json", &"ab".repeat(32)).expect_err("refused");
        assert!(err.to_string().contains("by hand"), "{err}");
    }
}
