#!/usr/bin/env bash
# Start a Docker engine when none is running, and stop only the one this script started.
#
#   scripts/docker-engine.sh start    # no-op if `docker info` already answers
#   scripts/docker-engine.sh stop     # stops the engine `start` launched, nothing else
#   scripts/docker-engine.sh status
#
# `start` launches Debian's `dockerd` as a background process (no systemd needed); it needs root.
# The started engine's PID and log live in $GRADCAM_DOCKERD_DIR (default /tmp/gradcam-dockerd).
set -euo pipefail
state_dir=${GRADCAM_DOCKERD_DIR:-/tmp/gradcam-dockerd}
pid_file=$state_dir/dockerd.pid

engine_answers() { docker info >/dev/null 2>&1; }

started_pid() {
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null && cat "$pid_file"
}

start() {
  if ! command -v docker >/dev/null 2>&1; then
    echo "error: no docker command: install Docker Engine (Debian: apt-get install docker.io)" >&2
    exit 1
  fi
  if engine_answers; then
    echo "Docker engine: running"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "error: no Docker engine answers and dockerd is not installed" \
      "(Debian: apt-get install docker.io)" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: no Docker engine answers, and starting one needs root:" \
      "run 'sudo scripts/docker-engine.sh start' or start the docker service" >&2
    exit 1
  fi
  mkdir -p "$state_dir"
  nohup dockerd >"$state_dir/dockerd.log" 2>&1 &
  echo $! >"$pid_file"
  for _ in $(seq 1 60); do
    if engine_answers; then
      echo "Docker engine: started (pid $(cat "$pid_file"), log $state_dir/dockerd.log)"
      return 0
    fi
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  echo "error: dockerd did not start; its log: $state_dir/dockerd.log" >&2
  tail -n 5 "$state_dir/dockerd.log" >&2 || true
  exit 1
}

stop() {
  local pid
  pid=$(started_pid) || { echo "Docker engine: none started here"; rm -f "$pid_file"; return 0; }
  kill "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pid_file"
  echo "Docker engine: stopped (pid $pid)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if engine_answers; then echo "running"; else echo "not running"; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
