#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Chromium and its driver (real-browser
# dashboard tests), nginx (the gRPC load-balancer config is tested in front of two real servers),
# and for the container tests Debian's Docker engine (docker.io), docker-compose and debootstrap
# (builds the debian:bookworm-slim base image where no registry can be reached).
# Debian/Ubuntu; run as root (CI) or with sudo. Skips what is already installed.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)   # gRPC balancer test
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
