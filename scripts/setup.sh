#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian 12 with rustup Rust and Python 3, idempotently:
# Mosquitto (the tests start their own brokers), OpenSSL (TLS test certificates), and libonnxruntime from the
# `onnxruntime` wheel on PyPI. Run as root (or with sudo available).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
packages=(mosquitto mosquitto-clients openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The distribution's broker service is not used: every test and the demo start their own on a loopback port.
"$root/scripts/fetch-onnxruntime.sh" x86_64
