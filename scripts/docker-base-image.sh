#!/usr/bin/env bash
# Build the base image `debian:bookworm-slim` from Debian's packages with debootstrap, for machines
# that cannot pull from a registry. The Dockerfiles then say `FROM debian:bookworm-slim` as
# they do everywhere else. Does nothing if the image is already there (--force rebuilds it).
#
#   scripts/docker-base-image.sh [--force]
#
# Needs root, debootstrap and a Docker engine; starts the engine if none is running and stops
# it again afterwards (only if it started it). The Debian mirror is the one apt uses here
# (override with DEBIAN_MIRROR).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=debian:bookworm-slim
force=${1:-}

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hs -m1 -E '^URIs: *http' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)
  mirror=${mirror:-$(grep -hs -m1 -E '^deb +http' /etc/apt/sources.list | awk '{print $2}' || true)}
  mirror=${mirror:-http://deb.debian.org/debian}
fi

engine_started=""
cleanup() {
  [ -n "${rootfs:-}" ] && rm -rf "$rootfs"
  if [ -n "$engine_started" ]; then "$here/docker-engine.sh" stop >/dev/null; fi
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  "$here/docker-engine.sh" start
  engine_started=1
fi
if [ "$force" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image: already there"
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
  exit 1
fi
rootfs=$(mktemp -d /tmp/bookworm-rootfs.XXXXXX)
echo "debootstrap bookworm from $mirror ..."
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
# What the official slim image also leaves out: package lists, caches, docs, man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$image" >/dev/null
echo "$image: built ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
