//! The inputs kept in `fuzz/regressions/<target>/`: each once failed the fuzz target's check (scripts/fuzz.sh
//! copies them there), and the tests of the crate at fault replay them through the same check.

use std::path::PathBuf;

/// Every kept input of `target`, with its path; panics if there is none, so that a test never passes on an
/// empty directory.
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    inputs.sort();
    inputs
}
