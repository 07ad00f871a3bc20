#!/usr/bin/env bash
# The container stack for users: build the images, start and stop Triton and the dashboard.
#
#   scripts/compose.sh build    # fill wheelhouse/ if needed, then build (cached layers: seconds)
#   scripts/compose.sh up       # build, start, print the addresses
#   scripts/compose.sh down     # stop and remove the containers (models stay in model_repository/)
#
# The stack: docker-compose.yml (CPU), plus docker-compose.gpu.yml when an NVIDIA GPU and its
# container runtime are here; COMPOSE_FILE (Compose's own variable) overrides the choice.
# Packages come from wheelhouse/, which this host's pip fills first (it verifies TLS where a
# build inside Docker may not, behind a proxy that re-signs HTTPS); with every package there the
# images build with no network. Every `up` builds again: unchanged sources take seconds.
# Ports: GRADCAM_GRPC_PORT (8001), GRADCAM_HTTP_PORT (8000), GRADCAM_METRICS_PORT (8002),
# GRADCAM_DASHBOARD_PORT (8501). Every problem it can name (no Docker, no rights, a port taken)
# is one line, exit code 1.
set -euo pipefail
cd "$(dirname "$0")/.."
here=scripts
python=${PYTHON:-python3}

fail() {
  echo "error: $*" >&2
  exit 1
}

gpu_here() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
    && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia
}

choose_stack() {  # exports COMPOSE_FILE: the caller's, else the stack for this host
  if [ -z "${COMPOSE_FILE:-}" ]; then
    COMPOSE_FILE=docker-compose.yml
    if gpu_here; then COMPOSE_FILE=docker-compose.yml:docker-compose.gpu.yml; fi
  fi
  export COMPOSE_FILE
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose "$@"
  else
    fail "neither 'docker compose' nor docker-compose is installed (Debian: apt-get install docker-compose)"
  fi
}

as_typed() {  # the compose command a user types for this stack, e.g. for the logs
  local command=docker-compose
  if docker compose version >/dev/null 2>&1; then command="docker compose"; fi
  if [ "$COMPOSE_FILE" != docker-compose.yml ]; then
    command+=$(printf ' -f %s' ${COMPOSE_FILE//:/ })
  fi
  echo "$command"
}

setting() {  # a build argument of the triton service, as Compose resolves the stack
  compose config | grep -m1 -E "^\s+$1:" | sed -E "s/.*$1: *['\"]?([^'\"]*)['\"]?/\1/"
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
  base=$(setting BASE_IMAGE)
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

fill_wheelhouse() {  # this host's pip downloads what the stack's images install, if not there yet
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "no pip on this host ($python): the images install their packages from PyPI as they build"
    return 0
  fi
  TENSORFLOW=$(setting TENSORFLOW) PYTHON=$python bash "$here/wheelhouse.sh" --if-needed \
    || fail "could not download the images' packages into wheelhouse/ (pip's message above)"
}

build() {
  need_engine
  choose_stack
  need_base_image
  fill_wheelhouse
  local network=default
  if ls wheelhouse/*.whl >/dev/null 2>&1 && ls wheelhouse/debs/*.deb >/dev/null 2>&1; then
    network=none
    echo "building from wheelhouse/ with no network"
  fi
  GRADCAM_BUILD_NETWORK=$network compose build
}

check_port() {  # port, what, the variable that moves it
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    fail "port $1 ($2) is already in use on this host: stop what uses it or set $3=another port"
  fi
}

up() {
  need_engine
  choose_stack
  if ! compose ps -q triton 2>/dev/null | grep -q .; then
    check_port "${GRADCAM_GRPC_PORT:-8001}" gRPC GRADCAM_GRPC_PORT
    check_port "${GRADCAM_HTTP_PORT:-8000}" HTTP GRADCAM_HTTP_PORT
    check_port "${GRADCAM_METRICS_PORT:-8002}" metrics GRADCAM_METRICS_PORT
    check_port "${GRADCAM_DASHBOARD_PORT:-8501}" dashboard GRADCAM_DASHBOARD_PORT
  fi
  build
  mkdir -p "${GRADCAM_MODELS:-model_repository}"
  echo "starting ${COMPOSE_FILE//:/ + }; the first start exports the model (about a minute on a CPU) ..."
  compose up -d
  echo "Dashboard: http://localhost:${GRADCAM_DASHBOARD_PORT:-8501}"
  echo "gRPC:      localhost:${GRADCAM_GRPC_PORT:-8001}  (gradcam-video in.mp4 -o out.mp4 --url localhost:${GRADCAM_GRPC_PORT:-8001})"
  echo "Logs:      $(as_typed) logs -f triton"
}

down() {
  need_engine
  choose_stack
  compose down
  "$here/docker-engine.sh" stop >/dev/null
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  *) echo "usage: $0 build|up|down" >&2; exit 2 ;;
esac
