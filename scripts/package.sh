#!/usr/bin/env bash
# Builds the flashable packages of the agent, and the operator's tool apart: a Debian package and a plain tarball
# of each per architecture.
#
#   scripts/package.sh [amd64] [arm64] [armhf]      (default: amd64 arm64)
#
# Output, in target/package/ (or $CARGO_TARGET_DIR/package/):
#   edge-agent_<version>_<arch>.deb     installs /usr/lib/edge-agent/{device-agent,libonnxruntime.so.1},
#                                        /usr/bin/device-agent, /etc/edge-agent/agent.toml (conffile), the systemd
#                                        unit, and the starter bundle (copied to /var/lib/edge-agent/models/ by postinst)
#   edge-agent-<version>-<arch>.tar.gz  a self-contained directory that runs in place (e.g. from /opt/edge-agent)
#   edge-operator_<version>_<arch>.deb  installs /usr/bin/edgectl (keys, model packages, pushes) for workstations
#   edge-operator-<version>-<arch>.tar.gz  edgectl alone
# Each package carries its binary's man pages and bash, zsh and fish completions, generated from the CLI
# definitions by a build for this machine (`cargo run`).
#
# The binaries are built with `cargo build --release` (cross-compiled for arm64/armhf: run cross/setup.sh first).
# ONNX Runtime: amd64 and arm64 take libonnxruntime from third_party/ (scripts/fetch-onnxruntime.sh); armhf has
# none in any registry, so it needs EDGE_ORT_ARMV7=/path/to/your/libonnxruntime.so.1.x (see cross/README.md).
# Set EDGE_PACKAGE_NO_BUILD=1 to package binaries that are already built.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/package"
starter=activity-classifier
[ "$#" -gt 0 ] || set -- amd64 arm64
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
mkdir -p "$out"

# Man pages and completions: the same for every architecture, so written once by this machine's build.
docs="$out/docs"
rm -rf "$docs"
for tool in device-agent:device-agent edgectl:edge-operator; do
  name="${tool%%:*}" crate="${tool##*:}"
  mkdir -p "$docs/$name/man" "$docs/$name/completions"
  cargo run --locked --quiet -p "$crate" -- man --out-dir "$docs/$name/man"
  gzip -9n "$docs/$name/man/"*.1
  cargo run --locked --quiet -p "$crate" -- completions bash > "$docs/$name/completions/$name"
  cargo run --locked --quiet -p "$crate" -- completions zsh > "$docs/$name/completions/_$name"
  cargo run --locked --quiet -p "$crate" -- completions fish > "$docs/$name/completions/$name.fish"
done

# Installs the man pages and completions of binary $1 under the usr directory $2, where man and the shells look.
install_docs() {
  local name="$1" usr="$2"
  mkdir -p "$usr/share/man/man1" "$usr/share/bash-completion/completions" "$usr/share/zsh/vendor-completions" \
           "$usr/share/fish/vendor_completions.d"
  install -m 0644 "$docs/$name/man/"*.1.gz "$usr/share/man/man1/"
  install -m 0644 "$docs/$name/completions/$name" "$usr/share/bash-completion/completions/$name"
  install -m 0644 "$docs/$name/completions/_$name" "$usr/share/zsh/vendor-completions/_$name"
  install -m 0644 "$docs/$name/completions/$name.fish" "$usr/share/fish/vendor_completions.d/$name.fish"
}

# The glibc floor of ELF files: the highest GLIBC_x.y symbol version they reference.
glibc_floor() {
  local glibc
  glibc="$(for f in "$@"; do readelf -V --wide "$f"; done | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)"
  [ -n "$glibc" ] || { echo "package.sh: no GLIBC symbol versions found in $*" >&2; exit 1; }
  echo "$glibc"
}

for arch in "$@"; do
  case "$arch" in
    amd64) triple=x86_64-unknown-linux-gnu; release="$target_dir/release"
           ort="$(ls third_party/onnxruntime/x86_64/libonnxruntime.so.* 2>/dev/null | head -n1 || true)"
           build=(cargo build --locked --release -p device-agent -p edge-operator) ;;
    arm64) triple=aarch64-unknown-linux-gnu; release="$target_dir/$triple/release"
           ort="$(ls third_party/onnxruntime/aarch64/libonnxruntime.so.* 2>/dev/null | head -n1 || true)"
           build=(cargo build --locked --release -p device-agent -p edge-operator --target "$triple") ;;
    armhf) triple=armv7-unknown-linux-gnueabihf; release="$target_dir/$triple/release"
           ort="${EDGE_ORT_ARMV7:-}"
           build=(cargo build --locked --release -p device-agent -p edge-operator --target "$triple") ;;
    *) echo "package.sh: unknown architecture $arch (amd64, arm64 or armhf)" >&2; exit 2 ;;
  esac
  if [ -z "$ort" ] || [ ! -s "$ort" ]; then
    case "$arch" in
      armhf) echo "package.sh: armhf needs EDGE_ORT_ARMV7=/path/to/libonnxruntime.so.1.x: no registry ships ONNX Runtime for armv7; build it as cross/README.md explains" >&2 ;;
      *) echo "package.sh: no ONNX Runtime for $arch under third_party/: run scripts/fetch-onnxruntime.sh ${triple%%-*}" >&2 ;;
    esac
    exit 1
  fi
  binary="$release/device-agent" edgectl="$release/edgectl"
  [ -n "${EDGE_PACKAGE_NO_BUILD:-}" ] || "${build[@]}"
  for built in "$binary" "$edgectl"; do
    [ -x "$built" ] || { echo "package.sh: $built is missing: run ${build[*]}" >&2; exit 1; }
  done

  # --- Debian package -------------------------------------------------------------------------------------
  stage="$out/$arch/deb"
  rm -rf "$stage"
  mkdir -p "$stage/DEBIAN" "$stage/usr/lib/edge-agent" "$stage/usr/bin" "$stage/etc/edge-agent" \
           "$stage/lib/systemd/system" "$stage/usr/share/edge-agent/models" "$stage/usr/share/edge-agent/samples" \
           "$stage/usr/share/doc/edge-agent"
  install -m 0755 "$binary" "$stage/usr/lib/edge-agent/device-agent"
  # The SONAME name, beside the binary: the agent looks there first (no LD_LIBRARY_PATH, no ldconfig).
  install -m 0644 "$ort" "$stage/usr/lib/edge-agent/libonnxruntime.so.1"
  ln -s ../lib/edge-agent/device-agent "$stage/usr/bin/device-agent"
  install -m 0644 cross/package/agent.toml "$stage/etc/edge-agent/agent.toml"
  install -m 0644 cross/package/edge-agent.service "$stage/lib/systemd/system/edge-agent.service"
  cp -R "models/$starter" "$stage/usr/share/edge-agent/models/$starter"
  install -m 0644 models/recordings/activity.csv "$stage/usr/share/edge-agent/samples/activity.csv"
  install -m 0644 cross/package/copyright "$stage/usr/share/doc/edge-agent/copyright"
  install -m 0644 docs/arm-and-packages.md "$stage/usr/share/doc/edge-agent/README.md"
  install_docs device-agent "$stage/usr"
  find "$stage/usr/share" -type d -exec chmod 0755 {} +
  find "$stage/usr/share" -type f -exec chmod 0644 {} +
  for script in postinst prerm postrm; do install -m 0755 "cross/package/$script" "$stage/DEBIAN/$script"; done
  echo /etc/edge-agent/agent.toml > "$stage/DEBIAN/conffiles"
  (cd "$stage" && find usr lib -type f -exec md5sum {} + | sort -k2) > "$stage/DEBIAN/md5sums"
  size_kb="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
  glibc="$(glibc_floor "$binary" "$ort")"
  cat > "$stage/DEBIAN/control" <<CONTROL
Package: edge-agent
Version: $version
Architecture: $arch
Maintainer: Edge Agent maintainers <edge-agent@localhost>
Installed-Size: $size_kb
Depends: libc6 (>= $glibc), libstdc++6 (>= 6), libgcc-s1 | libgcc1, adduser
Suggests: mosquitto, mosquitto-clients
Section: misc
Priority: optional
Homepage: https://example.invalid/edge-agent
Description: edge inference agent: ONNX Runtime in, MQTT out
 Runs camera frames and sensor windows through ONNX Runtime and publishes
 predictions and health over MQTT. Ships ONNX Runtime $(basename "$ort" | sed 's/libonnxruntime.so.//')
 (CPU execution provider) beside the agent, a systemd unit and a starter
 model bundle ($starter).
CONTROL
  deb="$out/edge-agent_${version}_${arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null

  # --- tarball: runs in place ------------------------------------------------------------------------------
  name="edge-agent-$version-$arch"
  tree="$out/$arch/$name"
  rm -rf "$tree"
  mkdir -p "$tree/models"
  install -m 0755 "$binary" "$tree/device-agent"
  install -m 0644 "$ort" "$tree/libonnxruntime.so.1"
  cp -R "models/$starter" "$tree/models/$starter"
  install -m 0644 models/recordings/activity.csv "$tree/activity.csv"
  # Paths in a config are relative to the config file, so the directory can live anywhere.
  sed "s|/var/lib/edge-agent/models/|models/|; s|/var/lib/edge-agent/incoming|incoming|; s|/var/lib/edge-agent/update|update|" cross/package/agent.toml > "$tree/agent.toml"
  sed "s|/usr/lib/edge-agent/|/opt/edge-agent/|g; s|/etc/edge-agent/|/opt/edge-agent/|g; s|^ReadWritePaths=.*|ReadWritePaths=/var/lib/edge-agent /opt/edge-agent/models|" \
    cross/package/edge-agent.service > "$tree/edge-agent.service"
  install -m 0644 cross/package/copyright "$tree/COPYRIGHT"
  install -m 0644 docs/arm-and-packages.md "$tree/README.md"
  cp -R "$docs/device-agent/man" "$docs/device-agent/completions" "$tree/"
  tar --owner=0 --group=0 --numeric-owner -C "$out/$arch" -czf "$out/$name.tar.gz" "$name"

  printf '%s: agent %s B (glibc >= %s), %s %s B, %s %s B\n' "$arch" "$(stat -c %s "$binary")" "$glibc" \
    "$(basename "$deb")" "$(stat -c %s "$deb")" "$name.tar.gz" "$(stat -c %s "$out/$name.tar.gz")"

  # --- the operator's tool: edgectl alone ----------------------------------------------------------------
  stage="$out/$arch/operator-deb"
  rm -rf "$stage"
  mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/doc/edge-operator"
  install -m 0755 "$edgectl" "$stage/usr/bin/edgectl"
  install -m 0644 cross/package/copyright "$stage/usr/share/doc/edge-operator/copyright"
  install_docs edgectl "$stage/usr"
  find "$stage/usr/share" -type d -exec chmod 0755 {} +
  (cd "$stage" && find usr -type f -exec md5sum {} + | sort -k2) > "$stage/DEBIAN/md5sums"
  size_kb="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
  operator_glibc="$(glibc_floor "$edgectl")"
  cat > "$stage/DEBIAN/control" <<CONTROL
Package: edge-operator
Version: $version
Architecture: $arch
Maintainer: Edge Agent maintainers <edge-agent@localhost>
Installed-Size: $size_kb
Depends: libc6 (>= $operator_glibc), libgcc-s1 | libgcc1
Suggests: edge-agent
Section: misc
Priority: optional
Homepage: https://example.invalid/edge-agent
Description: operator tool of the edge inference agent
 edgectl makes signing keys, packs and signs model bundles, and pushes them
 to devices over MQTT (or rolls them back). Recording golden self-test
 vectors needs an ONNX Runtime library (--onnxruntime), such as the one
 edge-agent ships.
CONTROL
  operator_deb="$out/edge-operator_${version}_${arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$operator_deb" >/dev/null

  operator_name="edge-operator-$version-$arch"
  tree="$out/$arch/$operator_name"
  rm -rf "$tree"
  mkdir -p "$tree"
  install -m 0755 "$edgectl" "$tree/edgectl"
  cp -R "$docs/edgectl/man" "$docs/edgectl/completions" "$tree/"
  install -m 0644 cross/package/copyright "$tree/COPYRIGHT"
  tar --owner=0 --group=0 --numeric-owner -C "$out/$arch" -czf "$out/$operator_name.tar.gz" "$operator_name"

  printf '%s: edgectl %s B (glibc >= %s), %s %s B, %s %s B\n' "$arch" "$(stat -c %s "$edgectl")" \
    "$operator_glibc" "$(basename "$operator_deb")" "$(stat -c %s "$operator_deb")" "$operator_name.tar.gz" \
    "$(stat -c %s "$out/$operator_name.tar.gz")"
done
