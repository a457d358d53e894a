#!/usr/bin/env bash
# Fetches libonnxruntime.so from the `onnxruntime` wheel on PyPI for x86_64 and aarch64 into
# third_party/onnxruntime/<arch>/. Idempotent: a library already in place is kept.
# ONNX Runtime's own build has no armv7 wheel; see cross/README.md for supplying one.
set -euo pipefail
version="${ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/third_party/onnxruntime"
for arch in "$@"; do
  lib="$dest/$arch/libonnxruntime.so.$version"
  [ -s "$lib" ] && continue
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet "onnxruntime==$version" --no-deps --only-binary=:all: \
    --platform "manylinux_2_28_$arch" --python-version 3.11 -d "$tmp"
  mkdir -p "$dest/$arch"
  python3 - "$tmp" "$lib" "$version" <<'PY'
import glob, shutil, sys, zipfile
tmp, lib, version = sys.argv[1:]
wheel = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(f"onnxruntime/capi/libonnxruntime.so.{version}") as src, open(lib + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$lib.part" "$lib"
  rm -rf "$tmp"
done
