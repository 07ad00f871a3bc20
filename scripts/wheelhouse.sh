#!/usr/bin/env bash
# Download every wheel the container images need into wheelhouse/ (git-ignored), for the image's
# Python and platform, so that `docker build` installs with no index and no network
# (air-gapped clusters, machines where HTTPS does not verify inside containers).
#
#   scripts/wheelhouse.sh                                            # CPU image: tensorflow-cpu
#   TENSORFLOW='tensorflow[and-cuda]==2.21.0' scripts/wheelhouse.sh   # GPU image (adds its wheels)
#   scripts/wheelhouse.sh --if-needed     # nothing to do when these very requirements are there
#
# Also fetches the Debian packages the images add to debian:bookworm-slim (Python, its venv and
# shared library) into wheelhouse/debs/ when this host runs apt on Debian bookworm.
# A complete download leaves a stamp named after what it covered (the Python version, TensorFlow
# wheel, requirements and pins): --if-needed (`make compose-up`) downloads again only when one of
# them changed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${WHEELHOUSE:-wheelhouse}
py=${WHEEL_PYTHON:-3.11}
tensorflow=${TENSORFLOW:-tensorflow-cpu==2.21.0}
python=${PYTHON:-python3}
mkdir -p "$out"

# The third-party requirements of the packages (they themselves are built in the image), and
# what building them needs.
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
"$python" scripts/requirements_of.py all "$tensorflow" "setuptools>=68" wheel >"$requirements"
key=$(cat "$requirements" requirements/constraints.txt <(echo "python $py") | sha256sum | cut -c1-16)
stamp="$out/.complete-$key"
if [ "${1:-}" = --if-needed ] && [ -f "$stamp" ]; then
  echo "$out/: already holds every package for CPython $py and $tensorflow"
  exit 0
fi

platforms=(--platform any --platform manylinux2014_x86_64)
for minor in $(seq 17 39); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
abi=cp${py/./}
echo "Downloading wheels for CPython $py into $out/ ..."
"$python" -m pip download --isolated --disable-pip-version-check --quiet \
  --dest "$out" --only-binary=:all: \
  --python-version "$py" --implementation cp --abi "$abi" --abi abi3 --abi none \
  "${platforms[@]}" -c requirements/constraints.txt -r "$requirements"
echo "$(find "$out" -maxdepth 1 -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out/"

# Debian packages, resolved against an empty bookworm-slim (not against this host's packages).
if command -v apt-get >/dev/null 2>&1 && grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then
  status=$(mktemp)
  debs="$out/debs"
  mkdir -p "$debs/partial"
  : >"$status"
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    docker run --rm --network none debian:bookworm-slim cat /var/lib/dpkg/status >"$status"
  fi
  apt-get -qq -o Dir::State::status="$status" -o Dir::Cache::archives="$(cd "$debs" && pwd)" \
    -o APT::Sandbox::User=root install --download-only --no-install-recommends -y \
    python3 python3-venv libpython3.11 >/dev/null
  rm -rf "$status" "$debs/partial" "$debs/lock"
  echo "$(find "$debs" -name '*.deb' | wc -l) Debian packages in $debs/"
fi
touch "$stamp"
