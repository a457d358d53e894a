#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian 12 with rustup Rust and Python 3, idempotently:
# Mosquitto (the tests start their own brokers), OpenSSL (TLS test certificates), and libonnxruntime from the
# `onnxruntime` wheel on PyPI. Run as root (or with sudo available).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/apt-install.sh" mosquitto mosquitto-clients openssl
# The distribution's broker service is not used: every test and the demo start their own on a loopback port.
"$root/scripts/fetch-onnxruntime.sh" x86_64
