//! Inputs that failed a fuzz target (scripts/fuzz.sh), replayed through the target's own check.

#[path = "../../fuzz/checks/regressions.rs"]
mod regressions;
#[path = "../../fuzz/checks/wire_decode.rs"]
mod wire_decode;

#[test]
fn wire_decode_regressions_pass_the_check() {
    for (path, bytes) in regressions::inputs("wire_decode") {
        eprintln!("{}", path.display());
        wire_decode::check(&bytes);
    }
}
