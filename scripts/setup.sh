#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian 12 with rustup Rust and Python 3, idempotently:
# Mosquitto (the tests start their own brokers), OpenSSL (TLS test certificates), Prometheus (the /metrics test),
# podman, buildah and runc (the container tests),
# and libonnxruntime from the `onnxruntime` wheel on PyPI. Run as root (or with sudo available).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/apt-install.sh" mosquitto mosquitto-clients openssl
# The RTSP tests' camera: GStreamer's RTSP server (through the system python3's `gi`), x264 to encode the
# project's frames live, ffmpeg to scale them; tests/rtsp/server.py.
"$root/scripts/apt-install.sh" python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
  gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools ffmpeg
# The Prometheus test's server (tests/tests/prometheus.rs starts its own on a loopback port with its own config and
# storage; the packaged service is not used).
"$root/scripts/apt-install.sh" prometheus
# The container tests (tests/tests/container.rs, kubernetes.rs) and cross/image.sh: buildah builds the image from
# scratch (nothing is pulled), podman runs it with runc (crun fails on rlimits and cgroups in containers like CI's).
"$root/scripts/apt-install.sh" podman buildah runc
# The NATS cluster of the fleet and failover tests (tests/src/nats.rs: three nodes with their MQTT gateway, started
# by the tests on loopback ports; the packaged service is not used).
"$root/scripts/apt-install.sh" nats-server
# The distribution's broker service is not used: every test and the demo start their own on a loopback port.
"$root/scripts/fetch-onnxruntime.sh" x86_64
