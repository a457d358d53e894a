//! `manifest.toml` as a bundle or an update package carries it, through the parser and the checks the loader
//! relies on, then written back as `edgectl model pack` writes it.

use runtime::Manifest;
use runtime::manifest::{InputSpec, is_package_path};

/// Panics where the product breaks a rule on `data`.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(manifest) = Manifest::parse(text) else { return };
    // What the pipeline and the package reader derive from an accepted manifest.
    match &manifest.input {
        InputSpec::Image(spec) => drop(spec.shape()),
        InputSpec::Sensor(spec) => drop(spec.shape()),
    }
    drop(manifest.output.tensors());
    is_package_path(&manifest.model);
    // `to_toml` refuses (never panics on) a manifest that does not read back the same, such as a NaN mean.
    if let Ok(written) = manifest.to_toml() {
        assert!(Manifest::parse(&written).is_ok(), "the written manifest does not parse:\n{written}");
    }
}
