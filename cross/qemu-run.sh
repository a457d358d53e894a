#!/usr/bin/env bash
# Runs an aarch64 or armv7 Linux binary here under qemu-user: the cargo runner for those targets
# (.cargo/config.toml) and what the tests and scripts use to start the ARM agent.
#
#   cross/qemu-run.sh BINARY [ARGS...]
#
# - Picks qemu-aarch64 or qemu-arm from the binary's ELF header.
# - Runs it with `-L` on a sysroot overlay (target/qemu-<arch>-root, rebuilt when missing): the cross
#   toolchain's libraries (glibc, libstdc++) plus a fake ARM /proc/cpuinfo. qemu 7.2 shows the guest the host's
#   x86 /proc/cpuinfo, and ONNX Runtime's CPU detection then crashes (SIGSEGV) on aarch64; qemu resolves absolute
#   paths under the -L prefix first, so the overlay's cpuinfo wins. Real boards need none of this.
# - Sets ORT_DYLIB_PATH to the ONNX Runtime for that architecture: $EDGE_ORT_AARCH64 / $EDGE_ORT_ARMV7 when set
#   (set and empty: none), else third_party/onnxruntime/<arch>/libonnxruntime.so.* (scripts/fetch-onnxruntime.sh
#   aarch64; for armv7 put your own build there). An x86_64 ORT_DYLIB_PATH inherited from the host could never
#   load in the guest, so it is always replaced; with no ARM library it is unset and the agent says what is missing.
# - QEMU_CPU overrides the emulated CPU (default cortex-a72, a Raspberry Pi 4; cortex-a15 for armv7).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${1:?usage: cross/qemu-run.sh BINARY [ARGS...]}"
shift
machine="$(od -An -t u2 -j 18 -N 2 "$binary" | tr -d ' ')"
case "$machine" in
  183) arch=aarch64; qemu=qemu-aarch64; sysroot=/usr/aarch64-linux-gnu; cpu="${QEMU_CPU:-cortex-a72}"
       ort_var=EDGE_ORT_AARCH64; implementer=0x41; part=0xd08; features="fp asimd evtstrm crc32 cpuid"; cpu_arch=8 ;;
  40)  arch=armv7; qemu=qemu-arm; sysroot=/usr/arm-linux-gnueabihf; cpu="${QEMU_CPU:-cortex-a15}"
       ort_var=EDGE_ORT_ARMV7; implementer=0x41; part=0xc0f; features="half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt lpae evtstrm"; cpu_arch=7 ;;
  *)   echo "cross/qemu-run.sh: $binary is not an aarch64 or armv7 ELF binary (e_machine=$machine)" >&2; exit 2 ;;
esac
command -v "$qemu" >/dev/null || { echo "cross/qemu-run.sh: $qemu is missing: run cross/setup.sh" >&2; exit 2; }
[ -d "$sysroot/lib" ] || { echo "cross/qemu-run.sh: $sysroot is missing: run cross/setup.sh" >&2; exit 2; }

qroot="${CARGO_TARGET_DIR:-$root/target}/qemu-$arch-root"
if [ ! -s "$qroot/proc/cpuinfo" ] || [ ! -e "$qroot/lib" ]; then
  mkdir -p "$qroot/proc"
  ln -sfn "$sysroot/lib" "$qroot/lib"
  tmp="$qroot/proc/cpuinfo.$$"
  : > "$tmp"
  for i in 0 1 2 3; do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: %s\nCPU architecture: %s\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' \
      "$i" "$features" "$implementer" "$cpu_arch" "$part" >> "$tmp"
  done
  mv "$tmp" "$qroot/proc/cpuinfo"
fi

if [ -n "${!ort_var+set}" ]; then
  lib="${!ort_var}"   # set and empty: no library on purpose (to see what the agent says without one)
else
  lib="$(ls "$root/third_party/onnxruntime/$arch"/libonnxruntime.so* 2>/dev/null | head -n1 || true)"
fi
if [ -n "$lib" ]; then export ORT_DYLIB_PATH="$lib"; else unset ORT_DYLIB_PATH; fi
exec "$qemu" -cpu "$cpu" -L "$qroot" "$binary" "$@"
