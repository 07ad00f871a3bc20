#!/usr/bin/env bash
# The container stack for users: build the images, start and stop Triton and the dashboard.
#
#   scripts/compose.sh build    # both images; offline (--network none) when wheelhouse/ is filled
#   scripts/compose.sh up       # build if needed, start, wait until healthy, print the addresses
#   scripts/compose.sh down     # stop and remove the containers (models stay in model_repository/)
#
# Picks docker-compose.yml (GPU) when an NVIDIA GPU and its container runtime are here, else
# docker-compose.cpu.yml; GRADCAM_COMPOSE_FILE overrides. Ports: GRADCAM_GRPC_PORT (8001),
# GRADCAM_HTTP_PORT (8000), GRADCAM_METRICS_PORT (8002), GRADCAM_DASHBOARD_PORT (8501).
# Every problem it can name (no Docker, no rights, a port taken) is one line, exit code 1.
set -euo pipefail
cd "$(dirname "$0")/.."
here=scripts

fail() {
  echo "error: $*" >&2
  exit 1
}

compose_file() {
  if [ -n "${GRADCAM_COMPOSE_FILE:-}" ]; then
    echo "$GRADCAM_COMPOSE_FILE"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
    && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
    echo docker-compose.yml
  else
    echo docker-compose.cpu.yml
  fi
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$(compose_file)" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f "$(compose_file)" "$@"
  else
    fail "neither 'docker compose' nor docker-compose is installed (Debian: apt-get install docker-compose)"
  fi
}

need_engine() {
  command -v docker >/dev/null 2>&1 \
    || fail "Docker is not installed (Debian: apt-get install docker.io; elsewhere: Docker Engine)"
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    fail "no Docker engine answers to this user: start it (sudo systemctl start docker)," \
      "or add yourself to the 'docker' group, or use sudo"
  fi
  "$here/docker-engine.sh" start >&2
}

need_base_image() {
  local base
  base=$(grep -m1 -E '^\s+BASE_IMAGE:' "$(compose_file)" | sed -E 's/.*BASE_IMAGE: *"?([^"]*)"?/\1/')
  docker image inspect "$base" >/dev/null 2>&1 && return 0
  echo "pulling $base ..."
  docker pull -q "$base" >/dev/null 2>&1 && return 0
  if [ "$base" = "debian:bookworm-slim" ] && command -v debootstrap >/dev/null 2>&1; then
    echo "$base cannot be pulled: building it from Debian's packages"
    "$here/docker-base-image.sh"
    return 0
  fi
  fail "the base image $base is not here and cannot be pulled (no registry?);" \
    "on Debian: apt-get install debootstrap && make base-image"
}

image_of() {  # the image name a compose service uses
  grep -A12 "^  $1:" "$(compose_file)" | grep -m1 -E '^\s+image:' | awk '{print $2}'
}

arg_of() {  # a build argument of the triton service
  grep -m1 -E "^\s+$1:" "$(compose_file)" | sed -E "s/.*$1: *\"?([^\"]*)\"?/\1/"
}

build() {
  need_engine
  need_base_image
  local network=()
  if ls wheelhouse/*.whl >/dev/null 2>&1; then
    network=(--network none)
    echo "building from wheelhouse/ with no network"
  fi
  docker build "${network[@]}" -f docker/Dockerfile --target triton \
    --build-arg BASE_IMAGE="$(arg_of BASE_IMAGE)" --build-arg TENSORFLOW="$(arg_of TENSORFLOW)" \
    -t "$(image_of triton)" .
  docker build "${network[@]}" -f docker/Dockerfile --target dashboard -t "$(image_of dashboard)" .
}

check_port() {  # port, what, the variable that moves it
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    fail "port $1 ($2) is already in use on this host: stop what uses it or set $3=another port"
  fi
}

up() {
  need_engine
  if ! compose ps -q triton 2>/dev/null | grep -q .; then
    check_port "${GRADCAM_GRPC_PORT:-8001}" gRPC GRADCAM_GRPC_PORT
    check_port "${GRADCAM_HTTP_PORT:-8000}" HTTP GRADCAM_HTTP_PORT
    check_port "${GRADCAM_METRICS_PORT:-8002}" metrics GRADCAM_METRICS_PORT
    check_port "${GRADCAM_DASHBOARD_PORT:-8501}" dashboard GRADCAM_DASHBOARD_PORT
  fi
  if ! docker image inspect "$(image_of triton)" >/dev/null 2>&1 \
    || ! docker image inspect "$(image_of dashboard)" >/dev/null 2>&1; then
    build
  fi
  mkdir -p "${GRADCAM_MODELS:-model_repository}"
  echo "starting $(compose_file); the first start exports the model (about a minute on a CPU) ..."
  compose up -d
  echo "Dashboard: http://localhost:${GRADCAM_DASHBOARD_PORT:-8501}"
  echo "gRPC:      localhost:${GRADCAM_GRPC_PORT:-8001}  (gradcam-video in.mp4 -o out.mp4 --url localhost:${GRADCAM_GRPC_PORT:-8001})"
  echo "Logs:      $(compose_file | sed 's/^/docker-compose -f /') logs -f triton"
}

down() {
  need_engine
  compose down
  "$here/docker-engine.sh" stop >/dev/null
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  *) echo "usage: $0 build|up|down" >&2; exit 2 ;;
esac
