#!/usr/bin/env bash
# Fuzzes the code that reads untrusted bytes (fuzz/README.md lists the targets), each target for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#
# Needs a nightly toolchain and cargo-fuzz (both installed if missing). Each target's corpus grows under
# fuzz/corpus/<target> (not committed), started from the real inputs in fuzz/seeds/<target>. A crashing input
# is copied to fuzz/regressions/<target>/, which the crate that crashed reads in its ordinary tests; the script
# then exits 1. Prints each target's runs, executions per second and coverage at the end; the whole output of
# the last run of each target is in fuzz/logs/<target>.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
seconds="${1:-60}"
shift || true

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz

# The largest input worth trying per target: a manifest or a message is a few KiB, a sensor window of 6 x 100
# values about 6 KiB of JSON, a frame or a package tens of KiB (larger ones only slow the search down).
declare -A max_len=([manifest]=8192 [wire_decode]=4096 [sensor_window]=16384 [update_messages]=2048
    [image_decode]=65536 [package]=32768)
# Release build, with debug assertions and overflow checks, under AddressSanitizer (the decoders' SIMD code is
# unsafe); the same flags for build and run, so that the run does not rebuild.
flags=(--release --debug-assertions --sanitizer address)
# The package target writes and fsyncs a few files per input: in memory where possible.
[ -w /dev/shm ] && export TMPDIR=/dev/shm

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
cargo +nightly fuzz build "${flags[@]}"

logs=logs # fuzz/logs/<target>: libFuzzer's output of the last run
mkdir -p "$logs"
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "== $target: ${seconds} s"
    # -timeout: an input that takes seconds is a finding too (a hang on hostile input).
    if ! cargo +nightly fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len="${max_len[$target]:-4096}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$logs/$target" 2>&1; then
        failed+=("$target")
        tail -n 40 "$logs/$target"
        mkdir -p "regressions/$target"
        for artifact in "artifacts/$target"/*; do
            [ -f "$artifact" ] && cp "$artifact" "regressions/$target/" && echo "kept $artifact in regressions/$target/"
        done
    fi
done

printf '\n%-16s %10s %8s %8s %8s\n' target runs exec/s cov ft
for target in "${targets[@]}"; do
    stat() { grep -o "stat::$1: *[0-9]*" "$logs/$target" | grep -o '[0-9]*$' || echo '?'; }
    coverage="$(grep -E '^#[0-9]+.*cov: ' "$logs/$target" | tail -n 1)"
    printf '%-16s %10s %8s %8s %8s\n' "$target" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
        "$(grep -o 'cov: [0-9]*' <<<"$coverage" | grep -o '[0-9]*' || echo '?')" \
        "$(grep -o 'ft: [0-9]*' <<<"$coverage" | grep -o '[0-9]*' || echo '?')"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]} (inputs in fuzz/regressions/; add them to the crate's regression tests)" >&2
    exit 1
fi
