# Sourced by the benchmark scripts: starts a private Mosquitto on a free loopback port. Sets W (a work directory),
# port and pids; on exit every PID in pids is stopped and W removed.
W=$(mktemp -d); chmod 755 "$W" # Mosquitto drops to its own user when started as root.
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# No limit on the messages queued for a counting subscriber: a full queue would drop what it should count.
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n' "$port" > "$W/m.conf"
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$W/m.conf" > "$W/m.log" 2>&1 & pids+=($!)
